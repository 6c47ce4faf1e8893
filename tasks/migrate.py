"""Churn: the runbook's step 6 — live-migrate VMs and compare IP and node before and after — as a
measured report: snapshot the fleet, migrate a chosen set within the cluster's limits, snapshot again,
diff per VM (:mod:`tasks.churn`), re-probe the moved VMs, and size each node's remaining room.

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
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from tasks.capacity import NodeInfo, layer2_capacity, layer3_capacity
from tasks.churn import choose_vms, diff
from tasks.connectivity import observe_guests, run_credentials, run_probes
from tasks.cordon import cordoned_by, release_cordons, unschedulable
from tasks.downtime import DowntimeMonitor
from tasks.drain import DrainPlanError, DrainRunner, NodeDrain, plan_nodes
from tasks.guest import GuestView, cause, explain
from tasks.kube import Kube, KubeError, WatchEvent
from tasks.kube.resources import KUBEVIRT, NODE, VM, VMI, VMIM
from tasks.model import ChurnRow, Downtime, MoveResult, ProbeResult, VMSnapshot
from tasks.orchestration import say, unit
from tasks.outcome import Artifact, ChurnFailed, PreflightFailed, StepResult
from tasks.preflight import check_churn_access
from tasks.probeplan import Probe, ProbePlan, Target, VMEndpoint, group_by_source
from tasks.progress import step_progress
from tasks.render import render_migration
from tasks.reports.churn import churn_frame, churn_summary
from tasks.reports.state import RunParts
from tasks.restart import RestartRunner
from tasks.scope import CHURN_LABEL
from tasks.spec import RolloutSpec

FINAL = ("Succeeded", "Failed")
Key = tuple[str, str]


@unit("snapshot VMs")
def snapshot(kube: Kube, spec: RolloutSpec) -> list[VMSnapshot]:
    """Every VMI of the run's fleet: namespace, name, node, IP(s), MAC, phase."""
    vmis, _ = kube.list(VMI, label_selector=spec.scope().selector)
    fleet, _ = spec.scope().split(vmis, fleet=True)
    out = []
    for v in fleet:
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
    kvs, _ = kube.list(KUBEVIRT)
    mig = ((((kvs[0] if kvs else {}).get("spec") or {}).get("configuration") or {}).get("migrations")) or {}
    return int(mig.get("parallelMigrationsPerCluster", 5)), int(mig.get("parallelOutboundMigrationsPerNode", 2))


def _parse_ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def result_of(vmim: dict[str, Any], vm: str, timed_out: bool = False) -> MoveResult:
    st = vmim.get("status") or {}
    state = st.get("migrationState") or {}
    start, end = _parse_ts(state.get("startTimestamp")), _parse_ts(state.get("endTimestamp"))
    phase = st.get("phase") or "Pending"
    reason = state.get("failureReason", "")
    if timed_out and phase not in FINAL:
        reason = f"timed out in phase {phase}"
    return MoveResult(
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
    ip: str = ""

    @property
    def key(self) -> Key:
        return (self.namespace, self.vm)


class MigrationRunner:
    """Creates migrations no faster than the cluster runs them and follows them by watch."""

    def __init__(
        self,
        kube: Kube,
        spec: RolloutSpec,
        churn_id: str,
        *,
        max_parallel: int = 0,
        monitor: DowntimeMonitor | None = None,
    ) -> None:
        self.kube = kube
        self.monitor = monitor
        self._ending: dict[str, Future[Downtime]] = {}  # VMIM name → what its peer saw
        self._enders = ThreadPoolExecutor(max_workers=16, thread_name_prefix="downtime") if monitor else None
        self.spec = spec
        self.churn_id = churn_id
        per_cluster, per_node = migration_limits(kube)
        self.per_cluster = min(per_cluster, max_parallel) if max_parallel > 0 else per_cluster
        self.per_node = per_node
        self.cond = threading.Condition()
        self.active: dict[str, _Pending] = {}  # VMIM name → what it migrates
        self.done: dict[str, dict[str, Any]] = {}  # VMIM name → final object
        self.vm_of: dict[str, _Pending] = {}
        self.starting: dict[Key, _Pending] = {}  # chosen, its pinger or migration object on the way
        self.not_started: list[MoveResult] = []  # the API refused the migration object
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

    def run(
        self, chosen: list[VMSnapshot], timeout: float, on_progress: Callable[[int, int], None] | None = None
    ) -> list[MoveResult]:
        """Migrate ``chosen`` within the limits; ``on_progress(finished, total)`` as migrations end.

        A migration's start — its downtime pinger (a peer's console: log in, start ``ping``, wait for the
        first reply) and then the VirtualMachineInstanceMigration — runs on a worker of its own, one per
        free slot, so starting N moves costs the slowest start, not the sum of them (at 2,500 moves the
        sum was most of the churn). A start counts against the limits from the moment it is chosen."""
        queue = deque(_Pending(s.namespace, s.name, s.node, s.ip) for s in chosen)
        total = len(queue)
        informer = self.kube.informer(VMIM, label_selector=f"{CHURN_LABEL}={self.churn_id}", on_event=self._on_event)
        informer.synced.wait(60)
        deadline = time.monotonic() + timeout
        starters = ThreadPoolExecutor(max_workers=max(1, self.per_cluster), thread_name_prefix="migration-start")
        try:
            while queue or self.active or self.starting:
                with self.cond:
                    per_node: dict[str, int] = {}
                    for p in (*self.active.values(), *self.starting.values()):
                        per_node[p.node] = per_node.get(p.node, 0) + 1
                    startable = None
                    if len(self.active) + len(self.starting) < self.per_cluster:
                        for p in queue:
                            if per_node.get(p.node, 0) < self.per_node:
                                startable = p
                                break
                    if on_progress is not None:
                        on_progress(len(self.done) + len(self.not_started), total)
                    self._end_finished()
                    if startable is None or time.monotonic() > deadline:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self.cond.wait(min(left, 2.0))
                        continue
                    queue.remove(startable)
                    self.starting[startable.key] = startable
                starters.submit(self._start, startable)
        finally:
            starters.shutdown(wait=True)  # a start under way ends (created, or failed) before the results
            informer.stop()
        results: list[MoveResult] = []
        with self.cond:
            results.extend(self.not_started)
            self._end_finished(everything=True)
            for name, p in self.vm_of.items():
                if name in self.done:
                    r = result_of(self.done[name], p.vm)
                else:
                    live = self.kube.get(VMIM, name, p.namespace) or {
                        "metadata": {"name": name, "namespace": p.namespace}
                    }
                    r = result_of(live, p.vm, timed_out=True)
                ending = self._ending.get(name)
                if ending is not None:
                    r = replace(r, downtime=ending.result())
                results.append(r)
        if self._enders is not None:
            self._enders.shutdown(wait=True)
        for p in queue:  # never started: the deadline came first
            results.append(
                MoveResult(
                    p.namespace,
                    p.vm,
                    "",
                    "NotStarted",
                    source_node=p.node,
                    failure_reason="not started before the churn timeout",
                )
            )
        return sorted(results, key=lambda r: (r.namespace, r.vm))

    def _start(self, p: _Pending) -> None:
        """Start one move (on a worker): its downtime pinger, then its migration object."""
        try:
            if self.monitor is not None:
                self.monitor.begin(p.key, p.ip)
            name, error = self._create(p)
        except Exception as e:  # a start must never leave its slot taken
            name, error = None, f"{type(e).__name__}: {e}"
        if name is None and self.monitor is not None:
            self.monitor.end(p.key)
        with self.cond:
            self.starting.pop(p.key, None)
            if name is None:
                self.not_started.append(
                    MoveResult(p.namespace, p.vm, "", "Failed", source_node=p.node, failure_reason=error)
                )
            else:
                if name not in self.done:
                    self.active[name] = p
                self.vm_of[name] = p
                self.peak_in_flight = max(self.peak_in_flight, len(self.active))
            self.cond.notify_all()

    def _end_finished(self, everything: bool = False) -> None:
        """Hand each finished migration (every one, at the end) to a worker that waits for the VM's
        first reply after it. Called with ``cond`` held."""
        if self.monitor is None or self._enders is None:
            return
        for name, p in self.vm_of.items():
            if name in self._ending or (name not in self.done and not everything):
                continue
            self._ending[name] = self._enders.submit(self._end_one, p)

    def _end_one(self, p: _Pending) -> Downtime:
        assert self.monitor is not None
        vmi = self.kube.get(VMI, p.vm, p.namespace) or {}
        iface = ((vmi.get("status") or {}).get("interfaces") or [{}])[0]
        return self.monitor.end(p.key, iface.get("ipAddress", ""))

    def _create(self, p: _Pending) -> tuple[str | None, str]:
        """The migration's name, or None and why the API refused it."""
        body = render_migration(self.spec, p.namespace, p.vm, self.churn_id)
        try:
            return self.kube.create(body)["metadata"]["name"], ""
        except KubeError as e:
            return None, f"{e.code} {e.reason}: {e.message}"


def network_name(spec: RolloutSpec) -> str:
    return f"cluster_udn_{spec.network.name}"


def node_usage(kube: Kube, spec: RolloutSpec, snapshots: list[VMSnapshot]) -> dict[str, dict[str, Any]]:
    """Per node: its subnet(s) of this network (Layer3, from k8s.ovn.org/node-subnets) and VMs of the run on it."""
    nodes, _ = kube.list(NODE)
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


# ---- the step ------------------------------------------------------------------------------------


@unit("choose VMs")
def choose(kube: Kube, spec: RolloutSpec, before: list[VMSnapshot]) -> list[tuple[str, str]]:
    """The run's VMs to move, by the spec's rule (the canary and anything outside the run never qualify)."""
    kind, value = spec.churn.choice()
    if kind == "selector":
        matched, _ = kube.list(VM, label_selector=f"{value},{spec.scope().selector}")
        fleet, _ = spec.scope().split(matched, fleet=True)
        return choose_vms(before, selector_matches={(m["metadata"]["namespace"], m["metadata"]["name"]) for m in fleet})
    if kind == "drainNode":
        return choose_vms(before, drain_node=str(value))
    if kind == "count":
        return choose_vms(before, count=int(value), seed=len(before))
    return choose_vms(before, fraction=float(value), seed=len(before))


def migrate(
    kube: Kube, spec: RolloutSpec, chosen: list[VMSnapshot], churn_id: str, monitor: DowntimeMonitor | None = None
) -> tuple[list[MoveResult], int]:
    runner = MigrationRunner(kube, spec, churn_id, max_parallel=spec.churn.max_parallel, monitor=monitor)
    with step_progress("migrations finished", len(chosen), key="churn-progress", unit=" VMs") as bar:
        results = runner.run(chosen, spec.churn.timeout_seconds, on_progress=bar.update)
        bar.update(len(chosen))
    return results, runner.peak_in_flight


def capacity_parts(
    kube: Kube, spec: RolloutSpec, after: list[VMSnapshot]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows and summary for capacity.md: per node subnet (Layer3) or the pool (Layer2), as used now."""
    usage = node_usage(kube, spec, after)
    sub = spec.network.subnets[0]
    if spec.network.topology == "Layer3":
        nodes = [NodeInfo(name) for name in sorted(usage)]
        per_node = {name: u["vms"] for name, u in usage.items()}
        report = layer3_capacity(sub.cidr, sub.host_subnet or 24, nodes, 0, existing_vms_per_node=per_node)
        rows = report.rows()
        for row in rows:  # the subnet OVN-K actually gave the node (k8s.ovn.org/node-subnets), not just "yes"
            actual = usage.get(row["node"], {}).get("subnets") or []
            if actual:
                row["subnet"] = ", ".join(actual)
        return rows, report.summary()
    l2 = layer2_capacity(sub.cidr, 0, claims_held=len(after))
    return l2.rows(), l2.summary()


def with_guests(rows: list[ChurnRow], before: dict[Key, GuestView], after: dict[Key, GuestView]) -> list[ChurnRow]:
    """Each VM's first move with what its guest held before, its last with what it held after (pure)."""
    last = {(r.namespace, r.vm): r.move for r in rows}
    out = []
    for r in rows:
        key = (r.namespace, r.vm)
        b, a = before.get(key), after.get(key)
        out.append(
            replace(
                r,
                guest_ip_before=" ".join(b.guest_ips) if b and b.looked and r.move == 1 else "",
                guest_ip_after=" ".join(a.guest_ips) if a and a.looked and r.move == last[key] else "",
            )
        )
    return out


def final_moves(rows: list[ChurnRow]) -> list[ChurnRow]:
    """Each VM's last move (where it ended up), in row order."""
    last: dict[Key, ChurnRow] = {}
    for r in rows:
        last[(r.namespace, r.vm)] = r
    return list(last.values())


def reprobe_plan(rows: list[ChurnRow], after: list[VMSnapshot], views: dict[Key, GuestView]) -> ProbePlan | None:
    """After churn, from a VM that did not move, each moved VM at its new VMI address, and its old address.

    What to expect follows what the guest holds, not what the topology should do: the new address
    must answer when the moved guest holds it (Layer2 keeps it; a Layer3 guest does not learn the
    target pod's address) and must stay silent when it does not; the old address must stay silent
    unless another VM now holds it (the stale-IP hazard, reported apart).
    """
    rows = final_moves(rows)
    moved = {(r.namespace, r.vm) for r in rows if r.node_changed or r.ip_changed}
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
            view = views.get((r.namespace, r.vm))
            holds = view is None or not view.looked or view.holds(now.ip)
            probes.append(
                Probe(
                    src, VMEndpoint(now.namespace, now.name, now.node, now.ip), "mesh", "reply" if holds else "silent"
                )
            )
        if r.ip_changed and not r.old_ip_holder:
            probes.append(
                Probe(src, Target(r.ip_before, f"old address of {r.namespace}/{r.vm}"), "isolation", "silent")
            )
    if not probes:
        return None
    eps = {(s.namespace, s.name): VMEndpoint(s.namespace, s.name, s.node, s.ip) for s in after}
    return ProbePlan(probes=probes, mode="full", vms=tuple(eps.values()))


@unit("re-probe moved VMs")
def reprobe_moved(
    kube: Kube, spec: RolloutSpec, rows: list[ChurnRow], after: list[VMSnapshot], views: dict[Key, GuestView]
) -> list[ProbeResult]:
    plan = reprobe_plan(rows, after, views)
    if plan is None:
        return []
    eps = {(s.namespace, s.name): VMEndpoint(s.namespace, s.name, s.node, s.ip) for s in after}
    c = spec.connectivity
    results = run_probes(
        kube,
        group_by_source(plan),
        eps,
        run_credentials(kube, spec),
        ping_count=c.ping_count,
        ping_timeout=c.ping_timeout_seconds,
        ping_interval=c.ping_interval_seconds,
        max_sessions=c.max_sessions,
    )
    return explain(results, views, spec.network.topology)


def judge_moves(
    rows: list[ChurnRow], reprobes: list[ProbeResult], views: dict[Key, GuestView], topology: str
) -> list[ChurnRow]:
    """Each moved VM's last move: was it reachable at its new VMI address from a VM that stayed, and if
    not, why (pure)."""
    at_new = {(p.dst_namespace, p.dst_vm): p for p in reprobes if p.kind == "mesh"}
    last = {(r.namespace, r.vm): r.move for r in rows}
    out = []
    for r in rows:
        p = at_new.get((r.namespace, r.vm))
        if p is None or r.move != last[(r.namespace, r.vm)]:
            out.append(r)
            continue
        reached = p.received > 0
        why = ""
        if not reached:
            why = cause(replace(p, expect="reply"), views, topology)
        out.append(replace(r, reachable_after="yes" if reached else "no", cause=why))
    return out


@dataclass
class ChurnResult(StepResult):
    step = "churn"
    failure = ChurnFailed
    report_file = "churn.html"
    topology: str = ""
    action: str = "migrate"
    rows: list[ChurnRow] = field(default_factory=list)
    migrations: list[MoveResult] = field(default_factory=list)
    reprobes: list[ProbeResult] = field(default_factory=list)
    peak_in_flight: int = 0
    capacity_rows: list[dict[str, Any]] = field(default_factory=list)
    capacity_summary: dict[str, Any] = field(default_factory=dict)
    drains: list[NodeDrain] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        """The churn report's figures and problems (``tasks.reports.churn.churn_summary``)."""
        return churn_summary(self.rows, self.topology, drains=[d.to_dict() for d in self.drains], notes=self.notes)

    @property
    def failed_migrations(self) -> list[MoveResult]:
        return [m for m in self.migrations if m.phase != "Succeeded"]

    @property
    def failed_reprobes(self) -> list[ProbeResult]:
        return [p for p in self.reprobes if not p.passed]

    def ok(self) -> bool:
        return not self.failed_migrations and not self.failed_reprobes

    def figures(self) -> dict[str, Any]:
        downtime = {x["action"]: x for x in self.summary["downtime"]}.get(self.action) or {}
        return {
            "action": self.action,
            "selected": len({(r.namespace, r.vm) for r in self.rows}),
            "moves": len(self.rows),
            "wall_s": round(self.wall_s, 2),
            "peak_in_flight": self.peak_in_flight,
            "succeeded": sum(1 for m in self.migrations if m.phase == "Succeeded"),
            "reachable_after": sum(r.reachable_after == "yes" for r in self.rows),
            "unreachable_after": sum(r.reachable_after == "no" for r in self.rows),
            "downtime_p50_ms": downtime.get("p50"),
            "downtime_p95_ms": downtime.get("p95"),
            "downtime_max_ms": downtime.get("max"),
            "downtime_measured": downtime.get("count", 0),
            "nodes_drained": len(self.drains),
        }

    def problems(self) -> list[str]:
        verb = {"migrate": "migration", "restart": "restart", "drain": "move off a drained node"}.get(
            self.action, "move"
        )
        return [f"{verb} of {m.namespace}/{m.vm}: {m.phase}: {m.failure_reason}" for m in self.failed_migrations] + [
            f"re-probe {p.src_namespace}/{p.src_vm} → {p.dst_ip}: {p.outcome} (expected {p.expect})"
            for p in self.failed_reprobes
        ]

    def headline(self) -> str:
        vms = len({(r.namespace, r.vm) for r in self.rows})
        done = {"migrate": "migrated", "restart": "restarted", "drain": "moved"}.get(self.action, "moved")
        moves = f" in {len(self.rows)} moves" if len(self.rows) != vms else ""
        drained = f" off {len(self.drains)} drained node{'s' if len(self.drains) != 1 else ''}" if self.drains else ""
        head = (
            f"{vms} VM{'s' if vms != 1 else ''} selected, {self.figures()['succeeded']} {done}{moves}{drained}, "
            f"{sum(r.node_changed for r in self.rows)} changed node, {sum(r.ip_changed for r in self.rows)} changed IP "
            f"({self.topology}); stale-IP hazards: {sum(r.stale_ip_hazard for r in self.rows)}"
        )
        f = self.figures()
        if f["downtime_measured"]:
            head += (
                f"\ndowntime as a peer saw it ({f['downtime_measured']} move{'s' if f['downtime_measured'] != 1 else ''}): P50 {f['downtime_p50_ms']:.0f} ms, "
                f"P95 {f['downtime_p95_ms']:.0f} ms, max {f['downtime_max_ms']:.0f} ms"
            )
        for d in self.drains:
            head += f"\n  drained {d.node} in {d.duration_s:.1f}s ({d.moved} of {d.vms} VMs moved)"
        probed = [r for r in self.rows if r.reachable_after]
        if probed:
            reached = sum(r.reachable_after == "yes" for r in probed)
            head += f"\nafter the move {reached} of {len(probed)} answered at their VMI address from a VM that stayed"
            whys: dict[str, int] = {}
            for r in probed:
                if r.cause:
                    whys[r.cause] = whys.get(r.cause, 0) + 1
            head += "".join(f"\n  {k}: {why}" for why, k in sorted(whys.items(), key=lambda x: -x[1]))
        return head

    def failure_message(self) -> str:
        first = self.problems()[0] if self.problems() else ""
        what = {"migrate": "migration(s)", "restart": "restart(s)", "drain": "move(s) off drained nodes"}.get(
            self.action, "move(s)"
        )
        return (
            f"{len(self.failed_migrations)} {what} failed and {len(self.failed_reprobes)} re-probe(s) did "
            f"not match" + (f"; first: {first}" if first else "")
        )

    def parts(self) -> RunParts:
        return RunParts(
            churn_rows=self.rows,
            churn_topology=self.topology,
            churn_action=self.action,
            churn_drains=[d.to_dict() for d in self.drains],
            churn_notes=self.notes,
            capacity_rows=self.capacity_rows,
            capacity_summary=self.capacity_summary,
        )

    def artifacts(self) -> list[Artifact]:
        return [
            Artifact(
                "churn", f"Churn ({self.action}): before/after and downtime per move", table=churn_frame(self.rows)
            ),
            Artifact("churn-summary", "Churn report", markdown_file="churn.md"),
        ]


@unit("read the guests over their consoles")
def look_at(kube: Kube, spec: RolloutSpec, vms: list[VMSnapshot]) -> dict[Key, GuestView]:
    """What the chosen VMs' guests hold (``ip -j addr`` over the console), beside their VMI address."""
    return observe_guests(
        kube, spec, [VMEndpoint(s.namespace, s.name, s.node, s.ip) for s in vms if s.phase == "Running"]
    )


def downtime_monitor(
    kube: Kube,
    spec: RolloutSpec,
    before: list[VMSnapshot],
    chosen: list[VMSnapshot],
    views: dict[Key, GuestView],
    concurrency: int,
) -> DowntimeMonitor | None:
    """Peers for the downtime pings: VMs that will not move (for a drain, any VM not on the node being
    drained). A moved VM whose guest holds no address a peer could ping is noted, not pinged."""
    c = spec.churn
    if not c.downtime or not chosen:
        return None
    moving = {(s.namespace, s.name) for s in chosen}
    running = [s for s in before if s.phase == "Running" and s.ip]
    stay = running if c.action == "drain" else [s for s in running if (s.namespace, s.name) not in moving]
    usable = [s for s in stay if _can_ping((s.namespace, s.name), s.ip, views)]
    monitor = DowntimeMonitor(
        kube,
        run_credentials(kube, spec),
        [VMEndpoint(s.namespace, s.name, s.node, s.ip) for s in usable],
        interval=c.ping_interval_seconds,
        reply_wait=c.reply_wait_seconds,
        # a peer is held from a move's start until its first reply after the move, which outlasts the
        # migration's slot: twice the slots keeps the next moves from waiting for a peer
        max_sessions=min(spec.connectivity.max_sessions, 2 * concurrency + 2),
    )
    for s in chosen:
        if not _can_ping((s.namespace, s.name), s.ip, views):
            monitor.skip((s.namespace, s.name), "its guest held no address to ping (see the guest columns)")
        elif not usable:
            monitor.skip((s.namespace, s.name), "no VM that stays put could ping it")
    return monitor


def _can_ping(key: Key, ip: str, views: dict[Key, GuestView]) -> bool:
    """Whether the guest is known (or assumed, when not read) to hold its VMI address."""
    view = views.get(key)
    return bool(ip) and (view is None or not view.looked or view.holds(ip))


def plan_drain(kube: Kube, spec: RolloutSpec, before: list[VMSnapshot]) -> list[str]:
    """The nodes a drain goes through, or a failed preflight (nothing changed) naming what is wrong."""
    nodes, _ = kube.list(NODE)
    names = [n["metadata"]["name"] for n in nodes]
    # a cordon an interrupted churn of this run left is lifted before the drain: count those nodes in
    schedulable = [n["metadata"]["name"] for n in nodes if not unschedulable(n) or cordoned_by(n) == spec.run_id]
    vms_on: dict[str, int] = {}
    for s in before:
        if s.phase == "Running" and s.node:
            vms_on[s.node] = vms_on.get(s.node, 0) + 1
    wanted = spec.churn.nodes if spec.churn.nodes is not None else "all"
    try:
        return plan_nodes(wanted, schedulable, names, vms_on)
    except DrainPlanError as e:
        raise PreflightFailed(str(e), ["nothing was changed on the cluster"]) from None


@unit("move VMs")
def move(
    kube: Kube,
    spec: RolloutSpec,
    chosen: list[VMSnapshot],
    churn_id: str,
    monitor: DowntimeMonitor | None,
    drain_nodes: list[str],
) -> tuple[list[MoveResult], int, list[NodeDrain], list[str]]:
    """The spec's action on the chosen VMs: (moves, peak in flight, per-node drains, notes)."""
    c = spec.churn
    if c.action == "migrate":
        results, peak = migrate(kube, spec, chosen, churn_id, monitor)
        return results, peak, [], []
    if c.action == "restart":
        runner = RestartRunner(
            kube, spec.run_id, timeout=c.timeout_seconds, max_parallel=c.max_parallel, monitor=monitor
        )
        with step_progress("VMs restarted", len(chosen), key="churn-progress", unit=" VMs") as bar:
            moves = runner.run(chosen, on_progress=bar.update)
        notes = (
            [f"cordoned while their VMs restarted, then uncordoned: {', '.join(runner.cordoned)}"]
            if runner.cordoned
            else []
        )
        return moves, runner.parallel, [], notes + runner.notes
    drainer = DrainRunner(
        kube, spec.run_id, spec.scope().selector, timeout=c.timeout_seconds, monitor=monitor, in_flight=c.max_parallel
    )
    with step_progress("nodes drained", len(drain_nodes), key="churn-progress", unit=" nodes") as bar:
        moves, drains = drainer.run(drain_nodes, on_progress=bar.update)
    return moves, drainer.in_flight, drains, []


def run_churn(kube: Kube, spec: RolloutSpec, *, reprobe: bool = True) -> ChurnResult:
    """Snapshot → choose → read the guests → move (migrate, restart or drain, a peer pinging each moving
    VM) → snapshot → diff → read the guests again → re-probe from VMs that stayed → capacity."""
    started = time.monotonic()
    c = spec.churn
    check_churn_access(kube, spec)
    before = snapshot(kube, spec)
    drain_nodes: list[str] = []
    if c.action == "drain":
        drain_nodes = plan_drain(kube, spec, before)
        keys = sorted((s.namespace, s.name) for s in before if s.phase == "Running" and s.node in drain_nodes)
    else:
        keys = choose(kube, spec, before)
    lifted = release_cordons(kube, spec.run_id) if c.action != "migrate" else []
    for node in lifted:
        say(f"uncordoned {node}: an interrupted churn of {spec.run_id} had left it cordoned")
    by_key = {(s.namespace, s.name): s for s in before}
    chosen = [by_key[k] for k in keys if k in by_key]
    churn_id = uuid.uuid4().hex[:8]
    guests_before = look_at(kube, spec, chosen) if reprobe and chosen else {}
    what = {"migrate": "migrating", "restart": "restarting", "drain": "moving"}[c.action]
    where = (
        f" off {len(drain_nodes)} node{'s' if len(drain_nodes) != 1 else ''} ({', '.join(drain_nodes)})"
        if drain_nodes
        else ""
    )
    say(f"{what} {len(chosen)} of {len(before)} VM{'s' if len(before) != 1 else ''}{where} (churn {churn_id})")
    concurrency = migration_limits(kube)[0] if c.action == "migrate" else (c.max_parallel or 10)
    monitor = downtime_monitor(kube, spec, before, chosen, guests_before, concurrency)
    try:
        moves, peak, drains, notes = move(kube, spec, chosen, churn_id, monitor, drain_nodes)
    finally:
        if monitor is not None:
            monitor.close()
    after = snapshot(kube, spec)
    rows = diff(before, after, moves, keys)
    reprobes: list[ProbeResult] = []
    if reprobe and rows:
        after_by = {(s.namespace, s.name): s for s in after}
        moved_keys = {(r.namespace, r.vm) for r in rows if r.node_changed}
        moved = [after_by[k] for k in sorted(moved_keys) if k in after_by]
        guests_after = look_at(kube, spec, moved) if moved else {}
        rows = with_guests(rows, guests_before, guests_after)
        reprobes = reprobe_moved(kube, spec, rows, after, guests_after)
        rows = judge_moves(rows, reprobes, guests_after, spec.network.topology)
    cap_rows, cap_summary = capacity_parts(kube, spec, after)
    return ChurnResult(
        wall_s=time.monotonic() - started,
        topology=spec.network.topology,
        action=c.action,
        rows=rows,
        migrations=moves,
        reprobes=reprobes,
        peak_in_flight=peak,
        capacity_rows=cap_rows,
        capacity_summary=cap_summary,
        drains=drains,
        notes=notes,
    )
