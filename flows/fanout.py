"""Fan-out: the runbook's step 4 — create the VMs, wait until they run, write down each IP — for
hundreds to tens of thousands of VMs, with bounded load on the API server and one watch per kind."""

from __future__ import annotations

from tasks.fanout import FanoutResult, run_fanout
from tasks.kube import ClusterParams, connect
from tasks.lock import run_lock
from tasks.orchestration import step
from tasks.provision import require_network_ready
from tasks.reports.publish import report
from tasks.spec import RolloutSpec


@step("fanout", "fan-out")
def fanout(spec: RolloutSpec, cluster: ClusterParams | None = None, reports_dir: str | None = None) -> FanoutResult:
    """Create every VM of the spec (resuming a run that was cut short) and wait until all are Ready.

    Args:
        spec: The rollout spec.
        cluster: How to reach the cluster.
        reports_dir: Where reports/<run-id>/ goes on the machine running this; empty = ./reports.
    """
    kube = connect(cluster, spec.api)
    with run_lock(kube, spec):
        require_network_ready(kube, spec)
        result = run_fanout(kube, spec)
    return report(spec, result, reports_dir=reports_dir)
