"""Preflight: everything the run depends on, checked before anything is written.

The runbook's step 1 — read the cluster's networks and pick a CIDR that clashes with nothing — plus
what an administrator forgets: APIs present, permissions, namespaces that cannot take the label
any more, capacity per node subnet. Fails with every problem listed.
"""

from __future__ import annotations

import time

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import ClusterParams, connect, reports_dir, say, spec_summary
from tasks.artifacts import publish_markdown, publish_table
from tasks.model import Check, StepSummary
from tasks.preflight import ClusterFacts, evaluate, failed, gather
from tasks.reports import checks_table_text, preflight_markdown, write_run_reports
from tasks.spec import RolloutSpec


class PreflightFailed(Exception):
    """At least one check failed; nothing was written to the cluster."""

    def __init__(self, checks: list[Check]) -> None:
        self.checks = checks
        bad = failed(checks)
        super().__init__(f"preflight failed: {len(bad)} check(s) failed: " + "; ".join(c.name for c in bad))


@task(name="read cluster facts", cache_policy=NO_CACHE)
def read_cluster(kube: object, spec: RolloutSpec) -> ClusterFacts:
    return gather(kube, spec)


@flow(name="preflight", log_prints=False)
def preflight(spec: RolloutSpec, cluster: ClusterParams | None = None) -> list[Check]:
    """Check a rollout spec against the cluster without changing anything.

    Args:
        spec: The rollout spec (network, namespaces, VMs, fan-out, connectivity, churn).
        cluster: How to reach the cluster (kubeconfig, context, or in-cluster).
    """
    started = time.monotonic()
    kube = connect(cluster, spec)
    facts = read_cluster(kube, spec)
    checks = evaluate(spec, facts)
    write_run_reports(
        reports_dir(spec),
        run_id=spec.run_id,
        spec_summary=spec_summary(spec),
        checks=checks,
        steps=[
            StepSummary(
                "preflight",
                not failed(checks),
                {"checks": len(checks), "wall_s": round(time.monotonic() - started, 2)},
                [f"{c.name}: {c.detail}" for c in failed(checks)],
            )
        ],
    )
    publish_table("preflight", [c.__dict__ for c in checks], "Preflight checks")
    publish_markdown("preflight-summary", preflight_markdown(checks), "Preflight report")
    say(checks_table_text(checks))
    if failed(checks):
        raise PreflightFailed(checks)
    return checks
