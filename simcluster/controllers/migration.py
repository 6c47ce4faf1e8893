"""Live migration: VirtualMachineInstanceMigrations run through their phases within the cluster's limits.

Plays virt-api (the `virtualmachines/{name}/migrate` subresource `virtctl migrate` calls, and the
migration admission webhook) and virt-controller/virt-handler (Pending → Scheduling → Scheduled →
PreparingTarget → TargetReady → Running → Succeeded|Failed). The limits are read from the KubeVirt
CR on every decision (`parallelMigrationsPerCluster`, `parallelOutboundMigrationsPerNode`); the rest
wait in Pending. The target node is chosen by free capacity, never the source. The target gets its own
virt-launcher pod (label ``kubevirt.io/migrationJobUID``); on success the source pod completes.

On Layer3 the target pod takes an address (and the MAC derived from it) from the target node's
subnet and the old one is freed; OVN-K's live-migration handling (``IsPodAllowedForMigration``) is
for Layer2 and Localnet only. The running guest keeps its MAC and whatever it configured at boot, so
the VMI status reports the target pod's address while the guest still holds its old configuration.
On Layer2 with persistent IPs the IPAMClaim gives the target pod the same address and MAC.

A successful migration ends with a switch-over window drawn from the profile (``switchover``): the
guest is paused for the final memory copy and its port moves from the source pod to the target pod,
so it neither sends nor answers (``paused``). A migration fails when its target pod is deleted
("Migration target pod was removed during active migration.") or its VMI shuts down ("Migration
failed vmi shutdown during migration."). Migrations the evacuation controller created (annotation
``kubevirt.io/evacuationMigration``) mark their source pod ``descheduler.alpha.kubernetes.io/
eviction-in-progress`` and, after a failed one of the same VMI, wait out virt-controller's back-off
(20 s doubling, ``handleMigrationBackoff``; the profile's ``migration_backoff``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from simcluster import errors, kinds, validation
from simcluster.controllers.base import Controller, Runtime
from simcluster.controllers.ipam import IPAMController
from simcluster.controllers.kubevirt import KubeVirtController, set_phase
from simcluster.kinds import ResourceType
from simcluster.profiles import profile
from simcluster.seed import KUBEVIRT_NAME, KUBEVIRT_NAMESPACE
from simcluster.store import Event, now_rfc3339

EVACUATION_ANNOTATION = "kubevirt.io/evacuationMigration"  # types.go EvacuationMigrationAnnotation
EVICTION_IN_PROGRESS = "descheduler.alpha.kubernetes.io/eviction-in-progress"  # watch/descheduler
ACTIVE = ("Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running")
FINAL = ("Succeeded", "Failed")
STEPS = ("Scheduled", "PreparingTarget", "TargetReady", "Running")
KEEP_FINISHED = 5  # virt-controller keeps the newest 5 finished migrations per VMI
UNSCHEDULABLE_TIMEOUT = {"realistic": 300.0, "fast": 1.0, "instant": 0.2}


class MigrationController(Controller):
    name = "migration"
    resources = (kinds.VMIM, kinds.VMI, kinds.KUBEVIRT, kinds.POD)

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.profile = profile(rt.config.profile)
        self.running: dict[tuple[str, str], dict[str, Any]] = {}  # (ns, vmim) → {vmi, source, target}
        self._kick_armed = False
        # (ns, vmi) → (start, end) in loop time of its last switch-over window, kept after it ends so a
        # guest's ping scheduled inside it is judged by when it was sent, not when the loop ran it
        self.windows: dict[tuple[str, str], tuple[float, float]] = {}
        self.failed_at: dict[str, float] = {}  # VMIM uid → loop time it failed (evacuation back-off)
        self._backoff_noted: set[str] = set()  # VMIM uids whose back-off event was recorded
        self.created: dict[str, int] = {}  # VMIM uid → creation order (creationTimestamp has 1 s resolution)
        self._seq = 0
        self._kick_timer: asyncio.TimerHandle | None = None
        self._kick_due = 0.0

    def paused(self, namespace: str, name: str, at: float | None = None) -> bool:
        """Whether the VMI's guest is in a switch-over window at loop time `at` (default: now)."""
        window = self.windows.get((namespace, name))
        if window is None:
            return False
        when = self.rt.loop.time() if at is None else at
        return window[0] <= when < window[1]

    @property
    def ipam(self) -> IPAMController:
        c = self.rt.controllers["ipam"]
        assert isinstance(c, IPAMController)
        return c

    @property
    def kubevirt(self) -> KubeVirtController:
        c = self.rt.controllers["kubevirt"]
        assert isinstance(c, KubeVirtController)
        return c

    def start(self) -> None:
        super().start()
        self.rt.api.admission_hooks.append(self._admit)
        self.rt.api.register_subresource(kinds.SUBRESOURCE_GROUP, "virtualmachines", "migrate", self._migrate_vm)

    # ---- admission and the migrate subresource -------------------------------------------
    def _admit(self, rt: ResourceType, op: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if rt is not kinds.VMIM or op != "CREATE":
            return
        ns = obj["metadata"].get("namespace", "")
        vmi = self.store.try_get(kinds.VMI, ns, (obj.get("spec") or {}).get("vmiName", ""))
        validation.admit_migration(obj, vmi, list(self.store.items(kinds.VMIM, ns)))

    async def _migrate_vm(self, request: web.Request, rt: ResourceType, ns: str, name: str) -> web.StreamResponse:
        if request.method != "PUT":
            raise errors.method_not_allowed()
        opts: dict[str, Any] = {}
        raw = await request.read()
        if raw.strip():
            from simcluster.api import content_type, decode_body

            opts = decode_body(raw, content_type(request) or "application/json") or {}
        if self.store.try_get(kinds.VM, ns, name) is None:
            raise errors.not_found(kinds.VM, name)
        vmi = self.store.try_get(kinds.VMI, ns, name)
        if vmi is None or (vmi.get("status") or {}).get("phase") != "Running":
            raise errors.ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on virtualmachine.kubevirt.io "{name}": VM is not running',
                {"name": name, "group": "kubevirt.io", "kind": "virtualmachine"},
            )
        spec: dict[str, Any] = {"vmiName": name}
        if opts.get("addedNodeSelector"):
            spec["addedNodeSelector"] = opts["addedNodeSelector"]
        body = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstanceMigration",
            "metadata": {"generateName": "kubevirt-migrate-vm-", "namespace": ns},
            "spec": spec,
        }
        if opts.get("dryRun"):
            return web.Response(status=202)
        self.rt.api.create_object(kinds.VMIM, body, ns)
        return web.Response(status=202)

    # ---- events --------------------------------------------------------------------------
    def resync(self) -> None:
        for mig in self.store.items(kinds.VMIM):
            phase = (mig.get("status") or {}).get("phase", "")
            if phase in ACTIVE:  # the simulator restarted mid-migration: it failed, as a dead handler would
                self._finish(
                    mig["metadata"]["namespace"],
                    mig["metadata"]["name"],
                    False,
                    "migration interrupted by a simulator restart",
                )
        self._kick()

    def handle(self, ev: Event) -> None:
        md = ev.obj["metadata"]
        if ev.resource == kinds.VMIM.key:
            ns, name = md["namespace"], md["name"]
            if ev.type == "ADDED":
                self._seq += 1
                self.created[md["uid"]] = self._seq
                self.rt.mutate_status(kinds.VMIM, ns, name, lambda o: self._phase(o, "Pending"))
                self._kick()
            elif ev.type == "DELETED":
                self.created.pop(md["uid"], None)
                self.failed_at.pop(md["uid"], None)
                self._backoff_noted.discard(md["uid"])
            if ev.type == "DELETED" and (ns, name) in self.running:
                self._finish(
                    ns, name, False, "Migration aborted by deleting its VirtualMachineInstanceMigration", aborted=True
                )
        elif ev.resource == kinds.VMI.key and ev.type == "DELETED":
            self.windows.pop((md["namespace"], md["name"]), None)
            for key, run in list(self.running.items()):
                if run["vmi"] == (md["namespace"], md["name"]):
                    self._finish(*key, False, "the VirtualMachineInstance was deleted during migration")
        elif ev.resource == kinds.VMI.key and (ev.obj.get("status") or {}).get("phase") in FINAL:
            for key, run in list(self.running.items()):
                if run["vmi"] == (md["namespace"], md["name"]):
                    self._finish(*key, False, "Migration failed vmi shutdown during migration.")
        elif ev.resource == kinds.POD.key and ev.type == "DELETED":
            for key, run in list(self.running.items()):
                if run.get("target_pod") == md["name"] and run["vmi"][0] == md.get("namespace"):
                    self._finish(*key, False, "Migration target pod was removed during active migration.")
        elif ev.resource == kinds.KUBEVIRT.key:
            self._kick()

    @staticmethod
    def _phase(obj: dict[str, Any], phase: str) -> None:
        set_phase(obj.setdefault("status", {}), phase)

    # ---- the queue -----------------------------------------------------------------------
    def _limits(self) -> tuple[int, int]:
        kv = self.store.try_get(kinds.KUBEVIRT, KUBEVIRT_NAMESPACE, KUBEVIRT_NAME)
        mig = (((kv or {}).get("spec") or {}).get("configuration") or {}).get("migrations") or {}
        return int(mig.get("parallelMigrationsPerCluster", 5)), int(mig.get("parallelOutboundMigrationsPerNode", 2))

    def _kick(self) -> None:
        """Start as many pending migrations as the limits allow, oldest first."""
        per_cluster, per_node = self._limits()
        outbound: dict[str, int] = {}
        for run in self.running.values():
            outbound[run["source"]] = outbound.get(run["source"], 0) + 1
        pending = sorted(
            (
                m
                for m in self.store.items(kinds.VMIM)
                if (m.get("status") or {}).get("phase") == "Pending"
                and (m["metadata"]["namespace"], m["metadata"]["name"]) not in self.running
            ),
            key=lambda m: int(m["metadata"]["resourceVersion"]),
        )
        for mig in pending:
            if len(self.running) >= per_cluster:
                break
            ns, name = mig["metadata"]["namespace"], mig["metadata"]["name"]
            vmi = self.store.try_get(kinds.VMI, ns, (mig.get("spec") or {}).get("vmiName", ""))
            if vmi is None or (vmi.get("status") or {}).get("phase") != "Running":
                self._fail_pending(ns, name, "VMI is not running")
                continue
            source = (vmi.get("status") or {}).get("nodeName", "")
            if outbound.get(source, 0) >= per_node:
                continue  # this node is at its outbound limit; a later migration from elsewhere may go
            wait = self._backoff(mig, vmi)
            if wait > 0:
                self._kick_after(wait)
                continue
            outbound[source] = outbound.get(source, 0) + 1
            self._begin(mig, vmi, source)

    def _kick_after(self, delay: float) -> None:
        """One timer for the earliest back-off to end (however many migrations wait)."""
        due = self.rt.loop.time() + delay
        if self._kick_timer is not None and self._kick_due <= due:
            return
        if self._kick_timer is not None:
            self._kick_timer.cancel()

        def fire() -> None:
            self._kick_timer = None
            self._kick()

        self._kick_due = due
        self._kick_timer = self.rt.later(delay, fire)

    def _backoff(self, mig: dict[str, Any], vmi: dict[str, Any]) -> float:
        """Seconds an evacuation migration must still wait because earlier ones of its VMI failed
        (migration.go handleMigrationBackoff: 20 s after the first failure, doubling per further
        failure back to the last success; only for migrations the evacuation controller created)."""
        if EVACUATION_ANNOTATION not in (mig["metadata"].get("annotations") or {}):
            return 0.0
        ns, vmi_name = mig["metadata"]["namespace"], vmi["metadata"]["name"]
        eligible = sorted(
            (
                m
                for m in self.store.items(kinds.VMIM, ns)
                if (m.get("spec") or {}).get("vmiName") == vmi_name
                and EVACUATION_ANNOTATION in (m["metadata"].get("annotations") or {})
            ),
            key=lambda m: (m["metadata"].get("creationTimestamp", ""), self.created.get(m["metadata"]["uid"], 0)),
            reverse=True,
        )
        if len(eligible) < 2 or eligible[0]["metadata"]["uid"] != mig["metadata"]["uid"]:
            return 0.0
        backoff = 0.0
        for m in eligible[1:]:
            phase = (m.get("status") or {}).get("phase")
            if phase == "Succeeded":
                break
            if phase == "Failed" and not m["metadata"].get("deletionTimestamp"):
                backoff = self.profile.migration_backoff if backoff == 0 else backoff * 2
        if backoff == 0:
            return 0.0
        failed = self.failed_at.get(eligible[1]["metadata"]["uid"])
        left = backoff if failed is None else failed + backoff - self.rt.loop.time()
        uid = mig["metadata"]["uid"]
        if left > 0 and uid not in self._backoff_noted:
            self._backoff_noted.add(uid)
            self.rt.event(
                vmi, "MigrationBackoff", f"backoff migrating vmi {ns}/{vmi_name}", "Warning", "virt-controller"
            )
        return max(left, 0.0)

    def _fail_pending(self, ns: str, name: str, reason: str) -> None:
        def failed(o: dict[str, Any]) -> None:
            self._phase(o, "Failed")
            o["status"]["migrationState"] = {"failed": True, "failureReason": reason, "endTimestamp": now_rfc3339()}

        self.rt.mutate_status(kinds.VMIM, ns, name, failed)

    def _begin(self, mig: dict[str, Any], vmi: dict[str, Any], source: str) -> None:
        ns, name = mig["metadata"]["namespace"], mig["metadata"]["name"]
        vmi_name = vmi["metadata"]["name"]
        self.running[(ns, name)] = {
            "vmi": (ns, vmi_name),
            "source": source,
            "target": None,
            "started": now_rfc3339(),
            "uid": mig["metadata"]["uid"],
            "waited": 0.0,
        }
        self.rt.mutate_status(kinds.VMIM, ns, name, lambda o: self._phase(o, "Scheduling"))
        self._schedule_target(ns, name)

    def _schedule_target(self, ns: str, name: str) -> None:
        run = self.running.get((ns, name))
        if run is None:
            return
        vmi = self.store.try_get(kinds.VMI, *run["vmi"])
        mig = self.store.try_get(kinds.VMIM, ns, name)
        if vmi is None or mig is None:
            self._finish(ns, name, False, "the VirtualMachineInstance is gone")
            return
        probe = vmi
        added = (mig.get("spec") or {}).get("addedNodeSelector")
        if added:
            probe = {
                **vmi,
                "spec": {
                    **(vmi.get("spec") or {}),
                    "nodeSelector": {**((vmi.get("spec") or {}).get("nodeSelector") or {}), **added},
                },
            }
        target, why = self.kubevirt.pick_node(probe, exclude=run["source"])
        if target is None:
            run["waited"] += self.profile.retry
            if run["waited"] >= UNSCHEDULABLE_TIMEOUT.get(self.profile.name, 300.0):
                self._finish(ns, name, False, f"target pod is unschedulable: {why}")
                return
            self.rt.later(self.profile.retry, lambda: self._schedule_target(ns, name))
            return
        kv = self.kubevirt
        source_pod = next(
            (
                p["metadata"]["name"]
                for p in reversed(kv.launcher_pods(vmi))
                if (p.get("status") or {}).get("phase") == "Running"
            ),
            "",
        )
        pod_name = kv._pod_name(ns, f"virt-launcher-{vmi['metadata']['name'].split('.')[0][:63]}-")
        att = self.ipam.prepare_migration(vmi, target, pod_name)
        if isinstance(att, str):
            self._finish(ns, name, False, f"failed to prepare the target pod on {target}: {att}")
            return
        run["target"] = target
        kv.reserve(target, +1)
        if source_pod and EVACUATION_ANNOTATION in (mig["metadata"].get("annotations") or {}):
            # descheduler.MarkEvictionInProgress: the descheduler leaves this pod alone meanwhile
            self._mark_eviction(vmi["metadata"]["namespace"], source_pod, True)
        pod = kv.create_launcher(vmi, target, pod_name, att, migration_uid=run["uid"])
        run["target_pod"] = pod["metadata"]["name"]
        address = kv.handler_address(target)
        state = {
            "migrationUid": run["uid"],
            "sourceNode": run["source"],
            "targetNode": target,
            "sourcePod": source_pod,
            "targetPod": pod["metadata"]["name"],
            "startTimestamp": now_rfc3339(),
            "mode": "PreCopy",
            "targetNodeAddress": address,
            "migrationConfiguration": self._config(),
        }
        run["state"] = state
        pods = kv.active_pods(vmi)

        def vmi_state(o: dict[str, Any]) -> None:
            o.setdefault("status", {})["migrationState"] = dict(state)
            o["status"]["activePods"] = pods

        vmi_ns, vmi_name = run["vmi"]
        self.rt.mutate_status(kinds.VMI, vmi_ns, vmi_name, vmi_state)
        self._step(ns, name, 0)

    def _config(self) -> dict[str, Any]:
        kv = self.store.try_get(kinds.KUBEVIRT, KUBEVIRT_NAMESPACE, KUBEVIRT_NAME)
        return dict((((kv or {}).get("spec") or {}).get("configuration") or {}).get("migrations") or {})

    def _step(self, ns: str, name: str, i: int) -> None:
        run = self.running.get((ns, name))
        if run is None:
            return
        if i < len(STEPS):
            phase = STEPS[i]

            def advance(o: dict[str, Any]) -> None:
                self._phase(o, phase)
                o["status"]["migrationState"] = dict(run["state"])

            self.rt.mutate_status(kinds.VMIM, ns, name, advance)
            if phase == "PreparingTarget" and run.get("target_pod"):
                self.kubevirt.set_pod_phase(ns, run["target_pod"], "Running")
                vmi = self.store.try_get(kinds.VMI, *run["vmi"])
                if vmi is not None:
                    self.rt.event(
                        vmi,
                        "PreparingTarget",
                        f"Migration Target is listening at {run['state']['targetNodeAddress']}, on ports: 35027,44445",
                        component="virt-handler",
                    )
            share = self.profile.draw(self.rt.rng, self.profile.migration) / len(STEPS)
            self.rt.later(share, lambda: self._step(ns, name, i + 1))
            return
        if self.rt.faults.chance(self.rt.faults.migration_failure_rate):
            self._finish(ns, name, False, "Live migration failed: simulated failure (fault migration_failure_rate)")
            return
        window = self.profile.draw(self.rt.rng, self.profile.switchover)
        if window <= 0:
            self._finish(ns, name, True, "")
            return
        # the switch-over: the source is paused for the last memory copy and the port moves to the
        # target; the guest neither sends nor answers until the migration completes
        start = self.rt.loop.time()
        self.windows[run["vmi"]] = (start, start + window)
        run["switching"] = True

        def switched() -> None:
            if (ns, name) in self.running:
                self._finish(ns, name, True, "")

        self.rt.later(window, switched)

    def _mark_eviction(self, ns: str, pod: str, on: bool) -> None:
        def edit(o: dict[str, Any]) -> None:
            annotations = o["metadata"].setdefault("annotations", {})
            if on:
                annotations[EVICTION_IN_PROGRESS] = "kubevirt"
            else:
                annotations.pop(EVICTION_IN_PROGRESS, None)

        self.rt.mutate_status(kinds.POD, ns, pod, edit)

    def _finish(self, ns: str, name: str, ok: bool, reason: str, aborted: bool = False) -> None:
        run = self.running.pop((ns, name), None)
        vmi_key = run["vmi"] if run else None
        target = run.get("target") if run else None
        end = now_rfc3339()
        if vmi_key is not None and run is not None and run.get("switching"):
            start, until = self.windows.get(vmi_key, (0.0, 0.0))
            self.windows[vmi_key] = (start, min(until, self.rt.loop.time()))  # over, whatever ended it
        state = dict((run or {}).get("state") or {})
        state["endTimestamp"] = end
        if ok:
            state["completed"] = True
            state["targetNodeDomainReadyTimestamp"] = end
            state["targetNodeDomainDetected"] = True
        else:
            state["failed"] = True
            state["failureReason"] = reason
            if aborted:
                state["abortRequested"] = True
                state["abortStatus"] = "Succeeded"
        if vmi_key is not None:
            vns, vname = vmi_key
            if target:
                self.ipam.finish_migration(vns, vname, ok)
                if ok:
                    self.kubevirt.move(vns, vname, target)
                else:
                    self.kubevirt.reserve(target, -1)
            source_pod = state.get("sourcePod")
            target_pod = (run or {}).get("target_pod")
            if ok and source_pod:
                self.kubevirt.set_pod_phase(vns, source_pod, "Succeeded", "Completed")
            elif not ok and target_pod:
                self.kubevirt.set_pod_phase(vns, target_pod, "Failed", "Error")
            if not ok and source_pod:
                self._mark_eviction(vns, source_pod, False)  # descheduler.MarkSourcePodEvictionCompleted
            self._update_vmi(vmi_key, state, target if ok else None)
        if self.store.try_get(kinds.VMIM, ns, name) is not None:

            def final(o: dict[str, Any]) -> None:
                self._phase(o, "Succeeded" if ok else "Failed")
                o["status"]["migrationState"] = dict(state)

            self.rt.mutate_status(kinds.VMIM, ns, name, final)
            vmim = self.store.try_get(kinds.VMIM, ns, name)
            if vmim is not None and not ok:
                self.failed_at[vmim["metadata"]["uid"]] = self.rt.loop.time()
            if vmim is not None and vmi_key is not None:
                vmi = self.store.try_get(kinds.VMI, *vmi_key)
                if vmi is not None:
                    self.rt.event(
                        vmi,
                        "SuccessfulMigration" if ok else "FailedMigration",
                        f"The migration to node {target} {'succeeded' if ok else 'failed: ' + reason}",
                        "Normal" if ok else "Warning",
                        component="virt-controller",
                    )
            if vmi_key is not None:
                self._gc_finished(ns, vmi_key[1])
        self.rt.later(0, self._kick)

    def _update_vmi(self, key: tuple[str, str], state: dict[str, Any], target: str | None) -> None:
        vmi = self.store.try_get(kinds.VMI, *key)
        pods = self.kubevirt.active_pods(vmi) if vmi is not None else {}

        def edit(o: dict[str, Any]) -> None:
            s = o.setdefault("status", {})
            s["migrationState"] = state
            s["activePods"] = pods
            if target:
                s["nodeName"] = target
                o["metadata"].setdefault("labels", {})["kubevirt.io/nodeName"] = target
                # virt-handler's migration ACK: "clean the evacuation node name since have already
                # migrated to a new node" (vm.go)
                s.pop("evacuationNodeName", None)

        ns, name = key
        if target:
            # the target's virt-handler reports the target pod's interface (and the migrated domain's MAC)
            self.kubevirt.refresh_interfaces(ns, name, extra=edit)
        else:
            self.rt.mutate_status(kinds.VMI, ns, name, edit)

    def _gc_finished(self, ns: str, vmi_name: str) -> None:
        finished = sorted(
            (
                m
                for m in self.store.items(kinds.VMIM, ns)
                if (m.get("spec") or {}).get("vmiName") == vmi_name and (m.get("status") or {}).get("phase") in FINAL
            ),
            key=lambda m: int(m["metadata"]["resourceVersion"]),
        )
        for old in finished[:-KEEP_FINISHED]:
            try:
                self.rt.api.delete_object(kinds.VMIM, ns, old["metadata"]["name"])
            except errors.ApiError as e:
                if e.code != 404:
                    raise
