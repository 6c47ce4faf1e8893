"""Rolling drain: what a cluster upgrade does to the run's VMs, one node at a time.

For each node in turn: cordon it (:mod:`tasks.cordon`), ask to evict the virt-launcher pod of each of
the run's VMIs on it — a policy/v1 Eviction, as ``kubectl drain`` does — and wait until every one has
left, then uncordon. KubeVirt answers the eviction of a VM with evictionStrategy LiveMigrate by marking
the VMI for evacuation (``status.evacuationNodeName``) and refusing the eviction with 429; its
evacuation controller then creates the live migrations, within ``parallelMigrationsPerCluster`` and
``parallelOutboundMigrationsPerNode`` (KubeVirt ``pkg/virt-api/webhooks/validating-webhook/admitters``,
``pkg/virt-controller/watch/drain/evacuation``). A pod that is simply evicted (201: no live migration
for it) stops its VM, and the VM controller starts it again elsewhere. A 429 without an evacuation
(a PodDisruptionBudget) is asked again every 5 s, as kubectl drain does.

Only the run's VMs are evicted: other workloads on the node stay (the cordon keeps new pods off it
meanwhile), because the tool touches nothing that is not the run's. The eviction requests are kept to
a few at a time so that each move can be watched by a peer's ping (:mod:`tasks.downtime`); KubeVirt's
own limits are lower, so the drain is not slowed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tasks.cordon import cordon, uncordon, unschedulable
from tasks.downtime import DowntimeMonitor
from tasks.kube import Kube, KubeError, WatchEvent
from tasks.kube.resources import NODE, POD, VMI, VMIM
from tasks.model import Downtime, MoveResult
from tasks.reports.common import iso_utc, natsorted

#: Seconds between eviction requests refused without an evacuation (kubectl drain waits 5 s).
EVICTION_RETRY_SECONDS = 5.0
#: Evictions in flight at once on one node, at least (KubeVirt moves 2 per node at a time on OpenShift).
MIN_IN_FLIGHT = 4

Key = tuple[str, str]


class DrainPlanError(ValueError):
    """churn.nodes names what the cluster cannot drain; nothing was changed."""


@dataclass(frozen=True)
class NodeDrain:
    """One node's drain: how long from cordon to the last of the run's VMs gone, and what moved."""

    node: str
    started: str
    ended: str
    duration_s: float
    vms: int
    moved: int
    failed: int
    cordoned_by_us: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def plan_nodes(
    wanted: str | int | Sequence[str], schedulable: Sequence[str], all_nodes: Sequence[str], vms_on: Mapping[str, int]
) -> list[str]:
    """The nodes to drain, in order (pure).

    ``all``: every node holding VMs of the run; a count: that many of them, those holding the most VMs
    (ties by name); names: those nodes, each must exist. At least one schedulable node must stay out of
    the drain at any time, or the VMs have nowhere to go.
    """
    holding = natsorted(n for n, k in vms_on.items() if k > 0)
    if wanted == "all":
        nodes = holding
    elif isinstance(wanted, int):
        order = {n: i for i, n in enumerate(holding)}
        ranked = sorted(holding, key=lambda n: (-vms_on[n], order[n]))
        nodes = natsorted(ranked[:wanted])
    else:
        unknown = [n for n in wanted if n not in all_nodes]
        if unknown:
            known = ", ".join(natsorted(all_nodes)[:10])
            raise DrainPlanError(
                f"churn.nodes: no node named {', '.join(unknown)} in the cluster (nodes: {known}): "
                "use names from `oc get nodes`, a count, or 'all'"
            )
        nodes = list(wanted)
    if not nodes:
        raise DrainPlanError("churn.nodes: no node holds a VM of this run, so there is nothing to drain")
    for n in nodes:
        if not [m for m in schedulable if m != n]:
            raise DrainPlanError(
                f"draining {n} needs another schedulable node for its VMs, and the cluster has none: "
                "add or uncordon a node, or use churn.action: restart"
            )
    return nodes


def _launcher_pod(kube: Kube, vmi: dict[str, Any], node: str) -> str | None:
    """The running virt-launcher pod of a VMI on ``node`` (label ``kubevirt.io/created-by=<VMI uid>``)."""
    uid = vmi["metadata"].get("uid", "")
    pods, _ = kube.list(POD, vmi["metadata"]["namespace"], label_selector=f"kubevirt.io/created-by={uid}")
    for p in pods:
        st = p.get("status") or {}
        if (p.get("spec") or {}).get("nodeName") == node and st.get("phase") in ("Pending", "Running"):
            return str(p["metadata"]["name"])
    return None


def _address(vmi: dict[str, Any] | None) -> str:
    return str(((((vmi or {}).get("status") or {}).get("interfaces") or [{}])[0]).get("ipAddress", ""))


def _node(vmi: dict[str, Any] | None) -> str:
    return str(((vmi or {}).get("status") or {}).get("nodeName", ""))


@dataclass
class _Watch:
    """The run's VMIs as the cluster reports them (one informer), for waiting without polling."""

    cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def on_event(self, ev: WatchEvent) -> None:
        if ev.type == "RELISTED":
            return
        md = ev.object["metadata"]
        k = f"{md.get('namespace')}/{md['name']}"
        with self.cond:
            if ev.type == "DELETED":
                self.cache.pop(k, None)
            else:
                self.cache[k] = ev.object
            self.cond.notify_all()


class DrainRunner:
    """Drains the given nodes one after the other, moving the run's VMs off each."""

    def __init__(
        self,
        kube: Kube,
        run_id: str,
        selector: str,
        *,
        timeout: float,
        monitor: DowntimeMonitor | None = None,
        in_flight: int = 0,
    ) -> None:
        self.kube = kube
        self.run_id = run_id
        self.selector = selector
        self.timeout = timeout
        self.monitor = monitor
        self.in_flight = max(in_flight, MIN_IN_FLIGHT)
        self.nodes: list[NodeDrain] = []
        self._watch = _Watch()

    def run(
        self, nodes: Sequence[str], on_progress: Callable[[int, int], None] | None = None
    ) -> tuple[list[MoveResult], list[NodeDrain]]:
        informer = self.kube.informer(VMI, label_selector=self.selector, on_event=self._watch.on_event)
        moves: list[MoveResult] = []
        try:
            informer.synced.wait(60)
            for i, node in enumerate(nodes):
                moves.extend(self.drain_node(node))
                if on_progress is not None:
                    on_progress(i + 1, len(nodes))
        finally:
            informer.stop()
        return moves, self.nodes

    def _node_now(self, key: Key) -> str:
        with self._watch.cond:
            return _node(self._watch.cache.get(f"{key[0]}/{key[1]}"))

    def _on(self, node: str) -> list[dict[str, Any]]:
        with self._watch.cond:
            return [v for v in self._watch.cache.values() if _node(v) == node]

    def drain_node(self, node: str) -> list[MoveResult]:
        started = time.time()
        t0 = time.monotonic()
        current = self.kube.get(NODE, node) or {}
        ours = cordon(self.kube, node, self.run_id)
        note = "" if ours or not unschedulable(current) else "cordoned already by someone else (left cordoned)"
        vmis = sorted(self._on(node), key=lambda v: (v["metadata"]["namespace"], v["metadata"]["name"]))
        deadline = t0 + self.timeout
        try:
            workers = max(1, min(self.in_flight, len(vmis)))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"drain-{node}") as pool:
                moves = list(pool.map(lambda v: self.move_off(v, node, deadline), vmis))
        finally:
            if ours:
                uncordon(self.kube, node, self.run_id)
        ended = time.time()
        self.nodes.append(
            NodeDrain(
                node,
                iso_utc(started),
                iso_utc(ended),
                round(ended - started, 3),
                len(vmis),
                sum(m.phase == "Succeeded" for m in moves),
                sum(m.phase != "Succeeded" for m in moves),
                ours,
                note,
            )
        )
        return moves

    def move_off(self, vmi: dict[str, Any], node: str, deadline: float) -> MoveResult:
        """Evict one VMI's launcher pod and wait until the VMI runs elsewhere (migrated or restarted)."""
        ns, name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        key, ckey = (ns, name), f"{ns}/{name}"
        uid = vmi["metadata"].get("uid", "")
        ip_before = _address(vmi)
        started = time.time()
        if self.monitor is not None:
            self.monitor.begin(key, ip_before, avoid=lambda peer: self._node_now(peer.key) == node)
        how, reason, phase = "eviction", "", "Failed"
        evicted_at = 0.0
        try:
            while True:
                pod = _launcher_pod(self.kube, vmi, node)
                if pod is None:
                    break  # gone already (a migration or a restart got there first)
                status, message = self.kube.evict(pod, ns)
                if status in (200, 201):
                    how = "eviction (the VM restarted elsewhere)"
                    break
                if status == 404:
                    break
                with self._watch.cond:
                    now = self._watch.cache.get(ckey) or vmi
                if (now.get("status") or {}).get("evacuationNodeName") == node or "evacuation" in message.lower():
                    how = "eviction → live migration"
                    break
                if time.monotonic() + EVICTION_RETRY_SECONDS > deadline:
                    reason = f"eviction refused until the timeout: {message}"
                    break
                time.sleep(EVICTION_RETRY_SECONDS)  # a disruption budget: ask again, as kubectl drain does
            evicted_at = time.monotonic()

            def left(c: dict[str, dict[str, Any]]) -> bool:
                v = c.get(ckey)
                if v is None:
                    return False
                st = v.get("status") or {}
                moved = _node(v) not in ("", node) and st.get("phase") == "Running"
                migrating = (
                    bool(st.get("migrationState") or {})
                    and not (st.get("migrationState") or {}).get("completed")
                    and not (st.get("migrationState") or {}).get("failed")
                )
                return moved and not migrating

            if not reason:
                with self._watch.cond:
                    ok = self._watch.cond.wait_for(
                        lambda: left(self._watch.cache), max(0.0, deadline - time.monotonic())
                    )
                if ok:
                    phase = "Succeeded"
                else:
                    phase = "Timeout"
                    reason = f"still on {node} when the drain timeout ({self.timeout:g}s) passed"
        except KubeError as e:
            reason = f"{e.code} {e.reason}: {e.message}"
        with self._watch.cond:
            after = self._watch.cache.get(ckey)
        ms = ((after or {}).get("status") or {}).get("migrationState") or {}
        if after is not None and after["metadata"].get("uid") != uid:
            how = "eviction (the VM restarted elsewhere)"
        elif ms.get("migrationUid"):
            how = f"eviction → {self._migration_name(ns, str(ms['migrationUid'])) or 'live migration'}"
        ip_after = _address(after)
        downtime = Downtime(note="not measured")
        if self.monitor is not None:
            downtime = self.monitor.end(key, ip_after)
        ended = time.time()
        return MoveResult(
            ns,
            name,
            how,
            phase,
            source_node=node,
            target_node=_node(after) if phase == "Succeeded" else "",
            started=iso_utc(started),
            ended=iso_utc(ended),
            duration_s=round(time.monotonic() - evicted_at, 3) if evicted_at else None,
            failure_reason=reason,
            action="drain",
            ip_before=ip_before,
            ip_after=ip_after,
            drain_node=node,
            downtime=downtime,
        )

    def _migration_name(self, namespace: str, uid: str) -> str:
        try:
            migs, _ = self.kube.list(VMIM, namespace)
        except KubeError:
            return ""
        return next((str(m["metadata"]["name"]) for m in migs if m["metadata"].get("uid") == uid), "")
