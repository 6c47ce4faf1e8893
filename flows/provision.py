"""Provision: the runbook's steps 2 and 3 — namespaces labelled at creation, the credentials Secret,
the ClusterUserDefinedNetwork — and proof that OVN-Kubernetes rendered it into every namespace."""

from __future__ import annotations

from flows.preflight import preflight
from tasks.kube import ClusterParams, connect
from tasks.lock import run_lock
from tasks.orchestration import step
from tasks.preflight import confirm_under_lock
from tasks.provision import ProvisionResult, run_provision
from tasks.reports.publish import report
from tasks.spec import RolloutSpec


@step("provision")
def provision(
    spec: RolloutSpec,
    cluster: ClusterParams | None = None,
    skip_preflight: bool = False,
    network_timeout_seconds: float = 300,
    reports_dir: str | None = None,
) -> ProvisionResult:
    """Preflight, then namespaces + credentials + ClusterUserDefinedNetwork, then wait until ready.

    Args:
        spec: The rollout spec.
        cluster: How to reach the cluster.
        skip_preflight: Only when a preflight of this spec just passed (the rollout does this).
        network_timeout_seconds: How long to wait for NetworkCreated in every namespace.
        reports_dir: Where reports/<run-id>/ goes on the machine running this; empty = ./reports.
    """
    if not skip_preflight:
        preflight(spec, cluster, reports_dir)
    kube = connect(cluster, spec.api)
    with run_lock(kube, spec):
        confirm_under_lock(kube, spec)
        result = run_provision(kube, spec, network_timeout=network_timeout_seconds)
    return report(spec, result, reports_dir=reports_dir)
