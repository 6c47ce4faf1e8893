"""Churn execution: snapshot the fleet, live-migrate a chosen set within the cluster's limits, snapshot again.

Migrations are created the way `virtctl migrate` has virt-api create them (a
VirtualMachineInstanceMigration with generateName `kubevirt-migrate-vm-`), labelled with this run
so teardown finds them. The queue is paced by the limits in the KubeVirt CR — never more in flight
than `parallelMigrationsPerCluster`, nor more leaving one node than
`parallelOutboundMigrationsPerNode` — so the cluster's Pending queue is not flooded. Completion is
followed by one watch on this churn's migrations.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tasks.kube import Kube, KubeError, WatchEvent
from tasks.model import MigrationResult, VMSnapshot
from tasks.spec import RUN_LABEL, RolloutSpec

VMI_API = ("kubevirt.io/v1", "VirtualMachineInstance")
VMIM_API = ("kubevirt.io/v1", "VirtualMachineInstanceMigration")
KUBEVIRT_API = ("kubevirt.io/v1", "KubeVirt")
CHURN_LABEL = "udn-rollout.io/churn"
FINAL = ("Succeeded", "Failed")


def snapshot(kube: Kube, spec: RolloutSpec) -> list[VMSnapshot]:
    """Every VMI of the run: namespace, name, node, IP(s), MAC, phase."""
    vmis, _ = kube.list(*VMI_API, label_selector=f"{RUN_LABEL}={spec.run_id}")
    out = []
    for v in vmis:
        st = v.get("status") or {}
        iface = (st.get("interfaces") or [{}])[0]
        out.append(
            VMSnapshot(
                v["metadata"]["namespace"],
                v["metadata"]["name"],
                st.get("nodeName", ""),
                iface.get("ipAddress", ""),
                iface.get("mac", ""),
                st.get("phase", ""),
                tuple(iface.get("ipAddresses") or ()),
            )
        )
    return sorted(out, key=lambda s: (s.namespace, s.name))


def migration_limits(kube: Kube) -> tuple[int, int]:
    """(parallelMigrationsPerCluster, parallelOutboundMigrationsPerNode) from the KubeVirt CR."""
    kvs, _ = kube.list(*KUBEVIRT_API)
    mig = ((((kvs[0] if kvs else {}).get("spec") or {}).get("configuration") or {}).get("migrations")) or {}
    return int(mig.get("parallelMigrationsPerCluster", 5)), int(mig.get("parallelOutboundMigrationsPerNode", 2))


def _parse_ts(value: str | None) -> float | None:
    if not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def result_of(vmim: dict[str, Any], vm: str, timed_out: bool = False) -> MigrationResult:
    st = vmim.get("status") or {}
    state = st.get("migrationState") or {}
    start, end = _parse_ts(state.get("startTimestamp")), _parse_ts(state.get("endTimestamp"))
    phase = st.get("phase") or "Pending"
    reason = state.get("failureReason", "")
    if timed_out and phase not in FINAL:
        reason = f"timed out in phase {phase}"
    return MigrationResult(
        namespace=vmim["metadata"]["namespace"],
        vm=vm,
        migration=vmim["metadata"]["name"],
        phase=phase if not timed_out or phase in FINAL else f"Timeout ({phase})",
        source_node=state.get("sourceNode", ""),
        target_node=state.get("targetNode", ""),
        started=state.get("startTimestamp", ""),
        ended=state.get("endTimestamp", ""),
        duration_s=(end - start) if start is not None and end is not None else None,
        failure_reason=reason,
    )


@dataclass
class _Pending:
    namespace: str
    vm: str
    node: str


class MigrationRunner:
    """Creates migrations no faster than the cluster runs them and follows them by watch."""

    def __init__(self, kube: Kube, spec: RolloutSpec, churn_id: str, *, max_parallel: int = 0) -> None:
        self.kube = kube
        self.spec = spec
        self.churn_id = churn_id
        per_cluster, per_node = migration_limits(kube)
        self.per_cluster = min(per_cluster, max_parallel) if max_parallel > 0 else per_cluster
        self.per_node = per_node
        self.cond = threading.Condition()
        self.active: dict[str, _Pending] = {}  # VMIM name → what it migrates
        self.done: dict[str, dict[str, Any]] = {}  # VMIM name → final object
        self.vm_of: dict[str, _Pending] = {}
        self.peak_in_flight = 0

    def _on_event(self, ev: WatchEvent) -> None:
        if ev.type in ("RELISTED", "DELETED"):
            return
        name = ev.object["metadata"]["name"]
        phase = (ev.object.get("status") or {}).get("phase")
        with self.cond:
            if phase in FINAL and name in self.active:
                self.active.pop(name)
                self.done[name] = ev.object
                self.cond.notify_all()
            elif phase in FINAL:
                self.done[name] = ev.object
                self.cond.notify_all()

    def run(self, chosen: list[VMSnapshot], timeout: float) -> list[MigrationResult]:
        queue = deque(_Pending(s.namespace, s.name, s.node) for s in chosen)
        informer = self.kube.informer(
            *VMIM_API, label_selector=f"{CHURN_LABEL}={self.churn_id}", on_event=self._on_event
        )
        informer.synced.wait(60)
        deadline = time.monotonic() + timeout
        results: list[MigrationResult] = []
        try:
            while queue or self.active:
                with self.cond:
                    per_node: dict[str, int] = {}
                    for p in self.active.values():
                        per_node[p.node] = per_node.get(p.node, 0) + 1
                    startable = None
                    if len(self.active) < self.per_cluster:
                        for p in queue:
                            if per_node.get(p.node, 0) < self.per_node:
                                startable = p
                                break
                    if startable is None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self.cond.wait(min(left, 2.0))
                        continue
                    queue.remove(startable)
                name = self._create(startable)
                if name is None:
                    results.append(
                        MigrationResult(
                            startable.namespace,
                            startable.vm,
                            "",
                            "Failed",
                            source_node=startable.node,
                            failure_reason=self._last_error,
                        )
                    )
                    continue
                with self.cond:
                    if name not in self.done:
                        self.active[name] = startable
                    self.vm_of[name] = startable
                    self.peak_in_flight = max(self.peak_in_flight, len(self.active))
                if time.monotonic() > deadline:
                    break
        finally:
            informer.stop()
        with self.cond:
            for name, p in self.vm_of.items():
                if name in self.done:
                    results.append(result_of(self.done[name], p.vm))
                else:
                    live = self.kube.get(*VMIM_API, name, p.namespace) or {
                        "metadata": {"name": name, "namespace": p.namespace}
                    }
                    results.append(result_of(live, p.vm, timed_out=True))
        for p in queue:  # never started: the deadline came first
            results.append(
                MigrationResult(
                    p.namespace,
                    p.vm,
                    "",
                    "NotStarted",
                    source_node=p.node,
                    failure_reason="not started before the churn timeout",
                )
            )
        return sorted(results, key=lambda r: (r.namespace, r.vm))

    _last_error = ""

    def _create(self, p: _Pending) -> str | None:
        body = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstanceMigration",
            "metadata": {
                "generateName": "kubevirt-migrate-vm-",
                "namespace": p.namespace,
                "labels": {**self.spec.labels(), CHURN_LABEL: self.churn_id},
            },
            "spec": {"vmiName": p.vm},
        }
        try:
            return self.kube.create(body)["metadata"]["name"]
        except KubeError as e:
            self._last_error = f"{e.code} {e.reason}: {e.message}"
            return None


def network_name(spec: RolloutSpec) -> str:
    return f"cluster_udn_{spec.network.name}"


def node_usage(kube: Kube, spec: RolloutSpec, snapshots: list[VMSnapshot]) -> dict[str, dict[str, Any]]:
    """Per node: its subnet(s) of this network (Layer3, from k8s.ovn.org/node-subnets) and VMs of the run on it."""
    nodes, _ = kube.list("v1", "Node")
    out: dict[str, dict[str, Any]] = {}
    for n in nodes:
        ann = (n["metadata"].get("annotations") or {}).get("k8s.ovn.org/node-subnets") or "{}"
        try:
            subnets = json.loads(ann).get(network_name(spec)) or []
        except ValueError:
            subnets = []
        out[n["metadata"]["name"]] = {"subnets": subnets if isinstance(subnets, list) else [subnets], "vms": 0}
    for s in snapshots:
        if s.node in out:
            out[s.node]["vms"] += 1
    return out
