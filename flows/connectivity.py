"""Connectivity: the runbook's step 5 — log in to a VM's serial console and ping the others — as a
probe plan over the whole fleet (full mesh when small, sampled with guaranteed coverage when large)
plus isolation probes that must go unanswered: a canary VM outside the network and its address on
the default network."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import ClusterParams, TerminalProgress, connect, reports_dir, say, spec_summary
from tasks.artifacts import progress, publish_markdown, publish_table
from tasks.connectivity import credentials_from_secret, run_probes
from tasks.kube import Kube
from tasks.model import ChurnRow, ProbeResult, StepSummary, VMSnapshot
from tasks.probeplan import Probe, ProbePlan, Target, VMEndpoint, group_by_source, plan_isolation, plan_probes
from tasks.reports import connectivity_summary, failing_pairs, write_run_reports
from tasks.spec import RUN_LABEL, RolloutSpec

VMI_API = ("kubevirt.io/v1", "VirtualMachineInstance")
VM_API = ("kubevirt.io/v1", "VirtualMachine")
NS_API = ("v1", "Namespace")
CANARY = "canary"


class ConnectivityFailed(Exception):
    """Pairs that should reach each other did not, or an isolation probe was answered."""


@dataclass
class ConnectivityResult:
    results: list[ProbeResult]
    coverage: dict[str, Any]
    summary: dict[str, Any]
    wall_s: float = 0.0
    sessions: int = 0
    notes: list[str] = field(default_factory=list)


def endpoints(kube: Kube, spec: RolloutSpec) -> list[VMEndpoint]:
    """The run's VMs that are Running with an address."""
    vmis, _ = kube.list(*VMI_API, label_selector=f"{RUN_LABEL}={spec.run_id}")
    out = []
    for v in vmis:
        st = v.get("status") or {}
        ifaces = st.get("interfaces") or []
        if st.get("phase") == "Running" and ifaces and ifaces[0].get("ipAddress"):
            out.append(
                VMEndpoint(
                    v["metadata"]["namespace"], v["metadata"]["name"], st.get("nodeName", ""), ifaces[0]["ipAddress"]
                )
            )
    return sorted(out, key=lambda e: (e.namespace, e.name))


def canary_namespace(spec: RolloutSpec) -> str:
    return f"{spec.run_id}-canary"


@task(name="start isolation canary", cache_policy=NO_CACHE)
def start_canary(kube: Kube, spec: RolloutSpec, timeout: float = 600) -> Target | None:
    """A VM in a namespace the network does not select: on the default network, it must stay unreachable."""
    ns = canary_namespace(spec)
    kube.create_or_get(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {**spec.labels(), "udn-rollout.io/role": "canary"}},
        }
    )
    vm = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": CANARY, "namespace": ns, "labels": spec.labels()},
        "spec": {
            "runStrategy": "Always",
            "template": {
                "metadata": {"labels": spec.labels()},
                "spec": {
                    "domain": {
                        "devices": {
                            "interfaces": [{"name": "default", "masquerade": {}}],
                            "disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}}],
                        },
                        "resources": {"requests": {"memory": "512Mi"}},
                    },
                    "networks": [{"name": "default", "pod": {}}],
                    "volumes": [{"name": "containerdisk", "containerDisk": {"image": spec.vms.image}}],
                },
            },
        },
    }
    kube.create_or_get(vm)

    def running(obj: dict[str, Any] | None) -> bool:
        st = (obj or {}).get("status") or {}
        return st.get("phase") == "Running" and bool((st.get("interfaces") or [{}])[0].get("ipAddress"))

    try:
        vmi = kube.wait_for(*VMI_API, CANARY, ns, condition=running, timeout=timeout)
    except TimeoutError:
        return None
    st = (vmi or {}).get("status") or {}
    return Target(st["interfaces"][0]["ipAddress"], f"canary {ns}/{CANARY} (default network)", ns, st.get("nodeName"))


@task(name="remove isolation canary", cache_policy=NO_CACHE)
def remove_canary(kube: Kube, spec: RolloutSpec) -> None:
    kube.delete(*NS_API, canary_namespace(spec))


def _credentials(kube: Kube, spec: RolloutSpec) -> tuple[str, str]:
    return credentials_from_secret(kube, spec.namespace_names()[0], spec.credentials_secret_name())


@task(name="run probes", cache_policy=NO_CACHE)
def probe(kube: Kube, spec: RolloutSpec, plan: ProbePlan, eps: list[VMEndpoint]) -> list[ProbeResult]:
    c = spec.connectivity
    groups = group_by_source(plan)
    bar = TerminalProgress("VMs probed", len(groups))
    handle = progress("connectivity-progress", f"Source VMs probed, run {spec.run_id}")
    lock_done = [0]

    def on_progress(done: int, total: int) -> None:
        lock_done[0] = done
        bar.update(done, total)

    results = run_probes(
        kube,
        groups,
        {e.key: e for e in eps},
        _credentials(kube, spec),
        ping_count=c.ping_count,
        ping_timeout=c.ping_timeout_seconds,
        max_sessions=c.max_sessions,
        on_progress=on_progress,
    )
    bar.finish()
    handle.update(100.0)
    return results


@flow(name="connectivity", log_prints=False)
def connectivity(spec: RolloutSpec, cluster: ClusterParams | None = None) -> ConnectivityResult:
    """Ping matrix over the serial consoles, plus isolation probes that must go unanswered.

    Args:
        spec: The rollout spec (its connectivity section: mode, peersPerVm, pingCount, maxSessions, canary).
        cluster: How to reach the cluster.
    """
    started = time.monotonic()
    c = spec.connectivity
    kube = connect(cluster, spec)
    eps = endpoints(kube, spec)
    if c.mode == "off" or len(eps) < 1:
        say("connectivity: nothing to probe" if c.mode != "off" else "connectivity: off")
        return ConnectivityResult([], {}, {})
    plan = plan_probes(eps, mode=c.mode, full_mesh_threshold=c.full_mesh_threshold, k=c.peers_per_vm, seed=0)
    canary = start_canary(kube, spec) if c.isolation_canary else None
    try:
        if canary is not None:
            plan = plan.extended(plan_isolation(eps, [canary], per_source=1, seed=0))
        results = probe(kube, spec, plan, eps)
    finally:
        if canary is not None:
            remove_canary(kube, spec)
    coverage = plan.coverage()
    summary = connectivity_summary(results)
    wall = time.monotonic() - started
    out = reports_dir(spec)
    failing = [r for r in results if not r.passed]
    figures = {
        "probes": len(results),
        "sources": len({(r.src_namespace, r.src_vm) for r in results}),
        "failing": len(failing),
        "wall_s": round(wall, 2),
        "mode": plan.mode,
    }
    write_run_reports(
        out,
        run_id=spec.run_id,
        spec_summary=spec_summary(spec),
        probes=results,
        plan_coverage=coverage,
        figures={"connectivity": figures},
        steps=[
            StepSummary(
                "connectivity",
                not failing,
                figures,
                [f"{r.src_namespace}/{r.src_vm} → {r.dst_ip}: {r.outcome}, expected {r.expect}" for r in failing[:50]],
            )
        ],
    )
    publish_table("connectivity-failing-pairs", failing_pairs(results), "Failing pairs")
    publish_markdown("connectivity", (out / "connectivity.md").read_text(), "Connectivity report")
    say(
        f"{len(results)} probes from {figures['sources']} VMs ({plan.mode}): {len(failing)} failing; "
        f"report {out / 'connectivity.html'}"
    )
    if failing:
        raise ConnectivityFailed(
            f"{len(failing)} of {len(results)} probes did not match their expectation (see {out / 'connectivity.md'})"
        )
    return ConnectivityResult(results, coverage, summary, wall, figures["sources"])


def reprobe_moved(kube: Kube, spec: RolloutSpec, rows: list[ChurnRow], after: list[VMSnapshot]) -> list[ProbeResult]:
    """After churn: from a VM that did not move, the moved VM's new address must answer and its old
    address must stay silent (unless another VM now holds it — the stale-IP hazard, reported apart)."""
    moved = {(r.namespace, r.vm) for r in rows if r.node_changed}
    running = [s for s in after if s.ip and s.phase == "Running"]
    # Peers that stayed put; when every VM moved (fraction 1, a drained fleet), the other moved VMs.
    still = [s for s in running if (s.namespace, s.name) not in moved] or running
    by_key = {(s.namespace, s.name): s for s in after}
    probes: list[Probe] = []
    for i, r in enumerate(sorted(rows, key=lambda r: (r.namespace, r.vm))):
        peers = [s for s in still if (s.namespace, s.name) != (r.namespace, r.vm)]
        if (r.namespace, r.vm) not in moved or not peers:
            continue
        peer = peers[i % len(peers)]
        src = VMEndpoint(peer.namespace, peer.name, peer.node, peer.ip)
        now = by_key.get((r.namespace, r.vm))
        if now and now.ip:
            probes.append(Probe(src, VMEndpoint(now.namespace, now.name, now.node, now.ip), "mesh", "reply"))
        if r.ip_changed and not r.old_ip_holder:
            probes.append(
                Probe(src, Target(r.ip_before, f"old address of {r.namespace}/{r.vm}"), "isolation", "silent")
            )
    if not probes:
        return []
    eps = {(s.namespace, s.name): VMEndpoint(s.namespace, s.name, s.node, s.ip) for s in after}
    plan = ProbePlan(probes=probes, mode="full", vms=tuple(eps.values()))
    c = spec.connectivity
    return run_probes(
        kube,
        group_by_source(plan),
        eps,
        _credentials(kube, spec),
        ping_count=c.ping_count,
        ping_timeout=c.ping_timeout_seconds,
        max_sessions=c.max_sessions,
    )
