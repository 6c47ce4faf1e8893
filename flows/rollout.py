"""Rollout: the whole runbook under one run id — preflight → provision → fan-out → ping matrix →
churn → reports. A rerun with the same run id resumes: what exists is adopted, what is missing made."""

from __future__ import annotations

import time

from flows.churn import churn as churn_step
from flows.connectivity import connectivity
from flows.fanout import fanout
from flows.preflight import preflight
from flows.provision import provision
from flows.teardown import teardown
from tasks.connectivity import launch_canary
from tasks.earlyprobe import EarlyProber, early_probing_applies, hand_over
from tasks.history import remember
from tasks.kube import ClusterParams, connect
from tasks.lock import run_lock
from tasks.orchestration import say, step
from tasks.reports.publish import report, run_dir
from tasks.rollout import RolloutResult, cluster_bound
from tasks.spec import RolloutSpec, load_spec


@step("rollout")
def rollout(
    spec: RolloutSpec,
    cluster: ClusterParams | None = None,
    ping: bool = True,
    churn: bool = True,
    reports_dir: str | None = None,
) -> RolloutResult:
    """Preflight, provision the network, fan out the VMs, prove connectivity, measure migration churn.

    Args:
        spec: The rollout spec (the Prefect UI renders it as a form).
        cluster: How to reach the cluster.
        ping: Run the connectivity ping matrix.
        churn: Run the live-migration churn step.
        reports_dir: Where reports/<run-id>/ goes on the machine running this; empty = ./reports.
    """
    started = time.monotonic()
    result = RolloutResult(run_id=spec.run_id, reports=str(run_dir(spec.run_id, reports_dir)))
    preflight(spec, cluster, reports_dir)
    kube = connect(cluster, spec.api)
    with run_lock(kube, spec):
        provision(spec, cluster, skip_preflight=True, reports_dir=reports_dir)
        if ping and spec.connectivity.mode != "off" and spec.connectivity.isolation_canary:
            launch_canary(kube, spec)  # it boots alongside the fleet, so the ping step need not wait for it
        early = EarlyProber(kube, spec).start() if ping and early_probing_applies(spec) else None
        try:
            result.fanout = result.keep_going(lambda: fanout(spec, cluster, reports_dir))
        finally:
            if early is not None:
                hand_over(spec, cluster, early.finish())  # the ping step takes what ran meanwhile
        if ping and spec.connectivity.mode != "off":
            result.connectivity = result.keep_going(lambda: connectivity(spec, cluster, reports_dir))
        if churn:
            result.churn = result.keep_going(lambda: churn_step(spec, cluster, reports_dir=reports_dir, record=False))
    result.wall_s = time.monotonic() - started
    c = spec.connectivity
    result.bound = cluster_bound(kube, result, c.ping_count, c.ping_interval_seconds)
    try:
        return report(spec, result, reports_dir=reports_dir)
    finally:
        say(remember(result.reports))


@step("rollout-from-file", "scheduled rollout")
def rollout_from_file(
    spec_file: str,
    overrides: list[str] | None = None,
    run_id: str | None = None,
    cluster: ClusterParams | None = None,
    teardown_after: bool = False,
    reports_dir: str | None = None,
) -> RolloutResult:
    """A rollout whose spec is a file in the repository (for scheduled runs).

    Args:
        spec_file: Path of the rollout spec, relative to the working directory (e.g. specs/scheduled.yaml).
        overrides: Helm-style overrides, e.g. ["vms.perNamespace=100"].
        run_id: Run id; empty = generated per run (a scheduled run is a new run each time).
        cluster: How to reach the cluster.
        teardown_after: Remove the run's objects once its reports are written (a nightly scale test).
        reports_dir: Where reports/<run-id>/ goes on the machine running this; empty = ./reports.
    """
    spec = load_spec(spec_file, overrides or [], run_id=run_id)
    try:
        return rollout(spec, cluster, reports_dir=reports_dir)
    finally:
        if teardown_after:
            teardown(spec, cluster, reports_dir=reports_dir)
