"""Teardown: a safe way back — delete what one run created, in finalizer order, and nothing else."""

from __future__ import annotations

import contextlib

from tasks.kube import ClusterParams, connect
from tasks.lock import run_lock
from tasks.orchestration import step
from tasks.reports.publish import report
from tasks.spec import RolloutSpec
from tasks.teardown import TeardownResult, run_teardown


@step("teardown")
def teardown(
    spec: RolloutSpec,
    cluster: ClusterParams | None = None,
    dry_run: bool = False,
    timeout_seconds: float = 600,
    reports_dir: str | None = None,
) -> TeardownResult:
    """Delete the run's VMs, migrations, namespaces and network (only objects that are this run's).

    Args:
        spec: The rollout spec of the run (its runId, network and namespaces decide what goes).
        cluster: How to reach the cluster.
        dry_run: List what would be deleted and delete nothing.
        timeout_seconds: How long to wait for finalizers to let go.
        reports_dir: Where reports/<run-id>/ goes on the machine running this; empty = ./reports.
    """
    kube = connect(cluster, spec.api)
    with contextlib.nullcontext() if dry_run else run_lock(kube, spec):
        result = run_teardown(kube, spec, dry_run=dry_run, timeout=timeout_seconds)
    if dry_run:
        print(result.headline(), flush=True)
        return result
    return report(spec, result, reports_dir=reports_dir)
