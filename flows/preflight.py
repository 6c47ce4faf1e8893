"""Preflight: everything the run depends on, checked before anything is written.

The runbook's step 1 — read the cluster's networks and pick a CIDR that clashes with nothing — plus
what an administrator forgets: APIs present, permissions, IP families, namespaces that cannot take the
label any more, capacity per node subnet, another run holding the network, and the cluster's own
admission of every object the run will create (server-side dry runs). Fails with every problem listed.
"""

from __future__ import annotations

from tasks.kube import ClusterParams, connect
from tasks.orchestration import step
from tasks.preflight import PreflightResult, run_preflight
from tasks.reports.publish import report
from tasks.spec import RolloutSpec


@step("preflight")
def preflight(
    spec: RolloutSpec, cluster: ClusterParams | None = None, reports_dir: str | None = None
) -> PreflightResult:
    """Check a rollout spec against the cluster without changing anything.

    Args:
        spec: The rollout spec (network, namespaces, VMs, fan-out, connectivity, churn).
        cluster: How to reach the cluster (kubeconfig, context, or in-cluster).
        reports_dir: Where reports/<run-id>/ goes on the machine running this; empty = ./reports.
    """
    kube = connect(cluster, spec.api)
    return report(spec, run_preflight(kube, spec), reports_dir=reports_dir)
