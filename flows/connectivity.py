"""Connectivity: the runbook's step 5 — log in to a VM's serial console and ping the others — as a
probe plan over the whole fleet (full mesh when small, sampled with guaranteed coverage when large)
plus isolation probes that must go unanswered: a canary VM outside the network."""

from __future__ import annotations

from tasks.connectivity import ConnectivityResult, run_connectivity
from tasks.earlyprobe import take_early_round
from tasks.kube import ClusterParams, connect
from tasks.lock import run_lock
from tasks.orchestration import say, step
from tasks.reports.publish import report
from tasks.spec import RolloutSpec


@step("connectivity")
def connectivity(
    spec: RolloutSpec, cluster: ClusterParams | None = None, reports_dir: str | None = None
) -> ConnectivityResult:
    """Ping matrix over the serial consoles, plus isolation probes that must go unanswered.

    Args:
        spec: The rollout spec (its connectivity section: mode, peersPerVm, pingCount, maxSessions, canary).
        cluster: How to reach the cluster.
        reports_dir: Where reports/<run-id>/ goes on the machine running this; empty = ./reports.
    """
    kube = connect(cluster, spec.api)
    with run_lock(kube, spec):
        result = run_connectivity(kube, spec, early=take_early_round(spec, cluster))
    if not result.results:
        say(f"connectivity: {result.mode}")
        return result
    return report(spec, result, reports_dir=reports_dir)
