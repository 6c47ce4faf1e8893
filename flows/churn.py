"""Churn: the runbook's step 6 — live-migrate VMs and compare IP and node before and after — as a
measured report: which VMs moved, which changed address, whether an old address now belongs to
another VM, how long each migration took, and how much room each node has left."""

from __future__ import annotations

from tasks.history import remember
from tasks.kube import ClusterParams, connect
from tasks.lock import run_lock
from tasks.migrate import ChurnResult, run_churn
from tasks.orchestration import say, step
from tasks.reports.publish import report, run_dir
from tasks.spec import RolloutSpec


@step("churn")
def churn(
    spec: RolloutSpec,
    cluster: ClusterParams | None = None,
    reprobe: bool = True,
    reports_dir: str | None = None,
    record: bool = True,
) -> ChurnResult:
    """Migrate a chosen set of the run's VMs and report IP and node churn per VM.

    Args:
        spec: The rollout spec (its churn section chooses the VMs: fraction, count, selector or drainNode).
        cluster: How to reach the cluster.
        reprobe: Read the moved VMs' guests and ping them afterwards from VMs that stayed.
        reports_dir: Where reports/<run-id>/ goes on the machine running this; empty = ./reports.
        record: Record the run in the run history (udn-rollout history) when the churn ends.
    """
    kube = connect(cluster, spec.api)
    with run_lock(kube, spec):
        result = run_churn(kube, spec, reprobe=reprobe)
    try:
        return report(spec, result, reports_dir=reports_dir)
    finally:
        if record:
            say(remember(run_dir(spec.run_id, reports_dir)))
