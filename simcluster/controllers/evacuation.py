"""Evacuation: virt-controller's controller that live-migrates VMIs off a node being drained.

KubeVirt v1.5.2 ``pkg/virt-controller/watch/drain/evacuation/evacuation.go``. A node's VMIs are
evacuated when they are marked for eviction — ``status.evacuationNodeName`` set by the pod eviction
webhook (controllers/eviction.py) and still on that node — or, the deprecated way, all of them when
the node carries the taint ``kubevirt.io/drain:NoSchedule`` (``NodeDrainTaintKey``). Of those, a VMI
is migrated when it is not shutting down, its eviction strategy wants a migration
(``VMIMigratableOnEviction``: LiveMigrate, or LiveMigrateIfPossible when live-migratable),
it is live-migratable (else the event "VirtualMachineInstance is not migrateable"), it has no
unfinished migration, and it has a single active launcher pod.

Per node it creates at most ``min(parallelMigrationsPerCluster - running migrations,
parallelOutboundMigrationsPerNode - running migrations of this node's VMIs)`` migrations at a time
(running: past Pending, not final), and looks again when migrations end (or 5 s later, as its
queue's ``AddAfter``). Each is a VirtualMachineInstanceMigration ``generateName:
kubevirt-evacuation-``, annotation ``kubevirt.io/evacuationMigration: <node>``, ``spec.vmiName``
(the migration webhook adds the label ``kubevirt.io/vmi-name``), announced on the VMI with the event
``SuccessfulCreate`` "Created Migration <name>". The migration controller runs it like any other
(controllers/migration.py); its success clears ``evacuationNodeName``.
"""

from __future__ import annotations

from typing import Any

from simcluster import kinds
from simcluster.controllers.base import Controller, Runtime
from simcluster.controllers.eviction import eviction_strategy, live_migratable
from simcluster.controllers.kubevirt import KubeVirtController
from simcluster.controllers.migration import ACTIVE, EVACUATION_ANNOTATION, FINAL, MigrationController
from simcluster.errors import ApiError
from simcluster.profiles import profile
from simcluster.seed import KUBEVIRT_NAME, KUBEVIRT_NAMESPACE
from simcluster.store import Event

DRAIN_TAINT = "kubevirt.io/drain"  # MigrationConfiguration.NodeDrainTaintKey's default
GENERATE_NAME = "kubevirt-evacuation-"
REQUEUE = 5.0  # evacuation.go: c.Queue.AddAfter(node.Name, 5*time.Second) when no spot is free


class EvacuationController(Controller):
    name = "evacuation"
    resources = (kinds.VMI, kinds.VMIM, kinds.NODE, kinds.POD)

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.profile = profile(rt.config.profile)
        self.marked: dict[tuple[str, str], str] = {}  # VMIs marked for eviction → their evacuation node
        self.tainted: set[str] = set()  # nodes with the kubevirt.io/drain:NoSchedule taint
        self._dirty: set[str] = set()
        self._armed = False
        self._noted: set[str] = set()  # VMI uids told "not migrateable"

    @property
    def kubevirt(self) -> KubeVirtController:
        c = self.rt.controllers["kubevirt"]
        assert isinstance(c, KubeVirtController)
        return c

    @property
    def migration(self) -> MigrationController:
        c = self.rt.controllers["migration"]
        assert isinstance(c, MigrationController)
        return c

    # ---- what to look at ---------------------------------------------------------------------
    def resync(self) -> None:
        for node in self.store.items(kinds.NODE):
            if _drain_tainted(node):
                self.tainted.add(node["metadata"]["name"])
        for vmi in self.store.items(kinds.VMI):
            target = (vmi.get("status") or {}).get("evacuationNodeName")
            if target:
                self.marked[(vmi["metadata"]["namespace"], vmi["metadata"]["name"])] = target
        self._enqueue(*self._pending_nodes())

    def handle(self, ev: Event) -> None:
        md = ev.obj["metadata"]
        if ev.resource == kinds.NODE.key:
            name = md["name"]
            if ev.type != "DELETED" and _drain_tainted(ev.obj):
                self.tainted.add(name)
                self._enqueue(name)
            else:
                self.tainted.discard(name)
        elif ev.resource == kinds.VMI.key:
            key = (md["namespace"], md["name"])
            st = ev.obj.get("status") or {}
            if ev.type != "DELETED" and st.get("evacuationNodeName"):
                self.marked[key] = st["evacuationNodeName"]
                self._enqueue(st.get("nodeName") or "")
            else:
                self.marked.pop(key, None)
                self._noted.discard(md.get("uid", ""))
            if st.get("nodeName") in self.tainted:
                self._enqueue(st["nodeName"])
        elif ev.resource == kinds.VMIM.key:
            phase = (ev.obj.get("status") or {}).get("phase")
            old = ((ev.old or {}).get("status") or {}).get("phase")
            if ev.type == "DELETED" or (phase in FINAL and old not in FINAL) or (phase in ACTIVE) != (old in ACTIVE):
                # a migration ended or started: spots freed or taken anywhere in the cluster
                self._enqueue(*self._pending_nodes())
        elif ev.resource == kinds.POD.key and (md.get("labels") or {}).get("kubevirt.io") == "virt-launcher":
            vmi = (md.get("annotations") or {}).get("kubevirt.io/domain", "")
            phase = (ev.obj.get("status") or {}).get("phase")
            old = ((ev.old or {}).get("status") or {}).get("phase")
            if (md.get("namespace", ""), vmi) in self.marked and (ev.type == "DELETED" or phase != old):
                self._enqueue(*self._pending_nodes())

    def _pending_nodes(self) -> set[str]:
        nodes = set(self.tainted)
        for ns, name in self.marked:
            vmi = self.store.try_get(kinds.VMI, ns, name)
            node = ((vmi or {}).get("status") or {}).get("nodeName")
            if node:
                nodes.add(node)
        return nodes

    def _enqueue(self, *nodes: str, delay: float = 0.0) -> None:
        fresh = {n for n in nodes if n}
        if not fresh:
            return
        if delay > 0:
            self.rt.later(delay, lambda: self._enqueue(*fresh))
            return
        self._dirty |= fresh
        if not self._armed:
            self._armed = True
            self.rt.later(0, self._drain_queue)

    def _drain_queue(self) -> None:
        self._armed = False
        dirty, self._dirty = self._dirty, set()
        for node in sorted(dirty):
            self.sync(node)

    # ---- evacuation.go sync ---------------------------------------------------------------------
    def _kubevirt_cr(self) -> dict[str, Any] | None:
        return self.store.try_get(kinds.KUBEVIRT, KUBEVIRT_NAMESPACE, KUBEVIRT_NAME)

    def _to_migrate(self, node: str) -> list[dict[str, Any]]:
        """vmisToMigrate: every VMI of a drain-tainted node, else those marked for eviction there
        that have not moved yet and are not migrating."""
        if node in self.tainted:
            return [v for v in self.store.items(kinds.VMI) if (v.get("status") or {}).get("nodeName") == node]
        out = []
        for ns, name in sorted(self.marked):
            vmi = self.store.try_get(kinds.VMI, ns, name)
            st = (vmi or {}).get("status") or {}
            if vmi is None or st.get("nodeName") != node:
                continue
            if st.get("evacuationNodeName") != node:  # hasMigratedOnEviction
                continue
            state = st.get("migrationState") or {}
            if state.get("startTimestamp") and not state.get("endTimestamp"):  # migrations.IsMigrating
                continue
            out.append(vmi)
        return out

    def sync(self, node: str) -> None:
        if self.store.try_get(kinds.NODE, "", node) is None:
            return
        vmis = self._to_migrate(node)
        if not vmis:
            return
        kv_cr = self._kubevirt_cr()
        unfinished = {
            (m["metadata"]["namespace"], (m.get("spec") or {}).get("vmiName", ""))
            for m in self.store.items(kinds.VMIM)
            if (m.get("status") or {}).get("phase") not in FINAL
        }
        candidates: list[dict[str, Any]] = []
        not_migratable: list[dict[str, Any]] = []
        for vmi in vmis:
            md, st = vmi["metadata"], vmi.get("status") or {}
            if st.get("phase") in FINAL or md.get("deletionTimestamp"):
                continue  # shutting down
            strategy = eviction_strategy(vmi, kv_cr)
            if strategy != "LiveMigrate" and not (strategy == "LiveMigrateIfPossible" and live_migratable(vmi)):
                continue  # does not want to migrate (VMIMigratableOnEviction)
            if not live_migratable(vmi):
                not_migratable.append(vmi)
                continue
            if (md["namespace"], md["name"]) in unfinished:
                continue  # already migrating
            active = [
                p
                for p in self.kubevirt.launcher_pods(vmi)
                if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            ]
            if len(active) > 1:
                continue  # the pods of a previous migration are still going away
            candidates.append(vmi)
        if not candidates and not not_migratable:
            return
        per_cluster, per_node = self.migration._limits()
        running = list(self.migration.running.values())
        from_node = sum(1 for r in running if r.get("source") == node)
        free = min(per_cluster - len(running), per_node - from_node)
        if free <= 0:
            self._enqueue(node, delay=min(REQUEUE, self.profile.retry))
            return
        chosen = candidates[:free]
        for vmi in not_migratable[: free - len(chosen)]:
            if vmi["metadata"]["uid"] not in self._noted:
                self._noted.add(vmi["metadata"]["uid"])
                self.rt.event(
                    vmi, "FailedCreate", "VirtualMachineInstance is not migrateable", component="virt-controller"
                )
        for vmi in chosen:
            self._create_migration(vmi, node)

    def _create_migration(self, vmi: dict[str, Any], node: str) -> None:
        ns, name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        body = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstanceMigration",
            "metadata": {
                "generateName": GENERATE_NAME,
                "namespace": ns,
                "annotations": {EVACUATION_ANNOTATION: node},
            },
            "spec": {"vmiName": name},
        }
        try:
            created = self.rt.api.create_object(kinds.VMIM, body, ns)
        except ApiError as e:
            self.rt.event(vmi, "FailedCreate", f"Error creating a Migration: {e.message}", "Warning", "virt-controller")
            return
        self.rt.event(
            vmi, "SuccessfulCreate", f"Created Migration {created['metadata']['name']}", component="virt-controller"
        )


def _drain_tainted(node: dict[str, Any]) -> bool:
    return any(
        t.get("key") == DRAIN_TAINT and t.get("effect") == "NoSchedule"
        for t in (node.get("spec") or {}).get("taints") or []
    )
