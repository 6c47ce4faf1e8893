"""Rollout: the whole runbook under one run id — preflight → provision → fan-out → ping matrix →
churn → reports. A rerun with the same run id resumes: what exists is adopted, what is missing made."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from prefect import flow

from flows.churn import ChurnFailed, ChurnResult
from flows.churn import churn as churn_flow
from flows.common import ClusterParams, cluster_lock, connect, reports_dir, say, spec_summary
from flows.connectivity import ConnectivityFailed, ConnectivityResult, connectivity
from flows.fanout import FanoutFailed, fanout
from flows.preflight import preflight
from flows.provision import provision
from tasks.fanout import FanoutResult
from tasks.reports import write_run_reports
from tasks.spec import RolloutSpec, load_spec


class RolloutFailed(Exception):
    """A step after provisioning failed; the reports say what, and the run can be resumed."""


@dataclass
class RolloutResult:
    run_id: str
    reports: str
    wall_s: float
    fanout: FanoutResult | None = None
    connectivity: ConnectivityResult | None = None
    churn: ChurnResult | None = None
    problems: list[str] = field(default_factory=list)

    def headline(self) -> dict[str, Any]:
        out: dict[str, Any] = {"runId": self.run_id, "wall_s": round(self.wall_s, 1)}
        if self.fanout:
            out["vms_ready"] = sum(r.ready for r in self.fanout.records)
            out["vms"] = len(self.fanout.records)
        if self.connectivity:
            out["probes"] = len(self.connectivity.results)
            out["probes_failing"] = sum(not r.passed for r in self.connectivity.results)
        if self.churn:
            rows = self.churn.rows
            out["migrated"] = sum(r.node_changed for r in rows)
            out["ip_changed"] = sum(r.ip_changed for r in rows)
            out["stale_ip_hazards"] = sum(r.stale_ip_hazard for r in rows)
        return out


@flow(name="rollout", log_prints=False)
def rollout(
    spec: RolloutSpec, cluster: ClusterParams | None = None, ping: bool = True, churn: bool = True
) -> RolloutResult:
    """Preflight, provision the network, fan out the VMs, prove connectivity, measure migration churn.

    Args:
        spec: The rollout spec (the Prefect UI renders it as a form).
        cluster: How to reach the cluster.
        ping: Run the connectivity ping matrix.
        churn: Run the live-migration churn step.
    """
    started = time.monotonic()
    out = reports_dir(spec)
    result = RolloutResult(spec.run_id, str(out), 0.0)
    with cluster_lock(connect(cluster, spec)):
        preflight(spec, cluster)
        provision(spec, cluster, skip_preflight=True)
        try:
            result.fanout = fanout(spec, cluster)
        except FanoutFailed as e:
            result.problems.append(str(e))
        if ping and spec.connectivity.mode != "off":
            try:
                result.connectivity = connectivity(spec, cluster)
            except ConnectivityFailed as e:
                result.problems.append(str(e))
        if churn:
            try:
                result.churn = churn_flow(spec, cluster)
            except ChurnFailed as e:
                result.problems.append(str(e))
    result.wall_s = time.monotonic() - started
    write_run_reports(
        out,
        run_id=spec.run_id,
        spec_summary=spec_summary(spec),
        figures={"rollout": result.headline()},
        title=f"Rollout {spec.run_id}",
    )
    say(f"rollout {spec.run_id} finished in {result.wall_s:.0f}s; reports in {out}/summary.md")
    if result.problems:
        raise RolloutFailed("; ".join(result.problems))
    return result


@flow(name="rollout-from-file", log_prints=False)
def rollout_from_file(
    spec_file: str,
    overrides: list[str] | None = None,
    run_id: str | None = None,
    cluster: ClusterParams | None = None,
    teardown_after: bool = False,
) -> RolloutResult:
    """A rollout whose spec is a file in the repository (for scheduled runs).

    Args:
        spec_file: Path of the rollout spec, relative to the working directory (e.g. specs/scheduled.yaml).
        overrides: Helm-style overrides, e.g. ["vms.perNamespace=100"].
        run_id: Run id; empty = generated per run (a scheduled run is a new run each time).
        cluster: How to reach the cluster.
        teardown_after: Remove the run's objects once its reports are written (a nightly scale test).
    """
    from flows.teardown import teardown

    spec = load_spec(spec_file, overrides or [], run_id=run_id)
    try:
        return rollout(spec, cluster)
    finally:
        if teardown_after:
            teardown(spec, cluster)
