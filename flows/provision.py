"""Provision: the runbook's steps 2 and 3 — namespaces labelled at creation, the credentials Secret,
the ClusterUserDefinedNetwork — and proof that OVN-Kubernetes rendered it into every namespace."""

from __future__ import annotations

import time

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import ClusterParams, connect, reports_dir, say, spec_summary
from flows.preflight import preflight
from tasks.artifacts import publish_markdown
from tasks.kube import Kube
from tasks.model import StepSummary
from tasks.provision import ProvisionResult, ensure_credentials, ensure_namespaces, ensure_network, run_password
from tasks.provision import wait_network_ready as _wait_network_ready
from tasks.reports import write_run_reports
from tasks.spec import RolloutSpec


@task(name="create namespaces", cache_policy=NO_CACHE)
def create_namespaces(kube: Kube, spec: RolloutSpec, result: ProvisionResult) -> None:
    ensure_namespaces(kube, spec, result)


@task(name="create credentials", cache_policy=NO_CACHE)
def create_credentials(kube: Kube, spec: RolloutSpec, result: ProvisionResult) -> None:
    ensure_credentials(kube, spec, run_password(kube, spec), result)


@task(name="create network", cache_policy=NO_CACHE)
def create_network(kube: Kube, spec: RolloutSpec, result: ProvisionResult) -> None:
    ensure_network(kube, spec, result)


@task(name="wait for the network in every namespace", cache_policy=NO_CACHE)
def wait_network_ready(kube: Kube, spec: RolloutSpec, result: ProvisionResult, timeout: float) -> None:
    _wait_network_ready(kube, spec, timeout, result)


@flow(name="provision", log_prints=False)
def provision(
    spec: RolloutSpec,
    cluster: ClusterParams | None = None,
    skip_preflight: bool = False,
    network_timeout_seconds: float = 300,
) -> ProvisionResult:
    """Preflight, then namespaces + credentials + ClusterUserDefinedNetwork, then wait until ready.

    Args:
        spec: The rollout spec.
        cluster: How to reach the cluster.
        skip_preflight: Only when a preflight of this spec just passed (the rollout flow does this).
        network_timeout_seconds: How long to wait for NetworkCreated in every namespace.
    """
    if not skip_preflight:
        preflight(spec, cluster)
    started = time.monotonic()
    kube = connect(cluster, spec)
    result = ProvisionResult()
    create_namespaces(kube, spec, result)
    create_credentials(kube, spec, result)
    create_network(kube, spec, result)
    wait_network_ready(kube, spec, result, network_timeout_seconds)
    lines = [
        f"# Provisioning of run `{spec.run_id}`",
        "",
        f"Network `{spec.network.name}` ({spec.network.topology}) ready in "
        f"{result.network_ready_s or 0:.1f}s in {len(result.nads)} namespaces.",
        "",
        f"Created: {len(result.created)}, adopted from this run: {len(result.adopted)}.",
    ]
    publish_markdown("provision", "\n".join(lines), "Provisioning")
    write_run_reports(
        reports_dir(spec),
        run_id=spec.run_id,
        spec_summary=spec_summary(spec),
        steps=[
            StepSummary(
                "provision",
                True,
                {
                    "namespaces": len(result.nads),
                    "created": len(result.created),
                    "adopted": len(result.adopted),
                    "network_ready_s": round(result.network_ready_s or 0, 2),
                    "wall_s": round(time.monotonic() - started, 2),
                },
            )
        ],
    )
    say(
        f"network {spec.network.name} ready in {len(result.nads)} namespaces "
        f"({len(result.created)} objects created, {len(result.adopted)} adopted)"
    )
    return result
