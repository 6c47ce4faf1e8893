"""KubeVirt: VirtualMachines become VirtualMachineInstances that get scheduled, started and stopped.

Plays virt-controller (VM → VMI per runStrategy, crash-loop back-off, VM status), the scheduler
(spread by free capacity, nodeSelector, Ready and schedulable nodes) and virt-handler (phases
Pending → Scheduling → Scheduled → Running with `phaseTransitionTimestamps`, interface status from
the network attachment, Ready and LiveMigratable conditions). Start-up times come from the
cluster's latency profile; start failures and NotReady nodes come from the fault knobs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from simcluster import errors, kinds
from simcluster.controllers.base import Controller, Runtime
from simcluster.controllers.ipam import Attachment, IPAMController
from simcluster.profiles import profile
from simcluster.seed import KUBEVIRT_NAME, KUBEVIRT_NAMESPACE
from simcluster.selectors import selector_from_match
from simcluster.store import Event, deep_copy, now_rfc3339
from simcluster.validation import binding_plugin_error

VM_FINALIZER = "kubevirt.io/virtualMachineControllerFinalize"
VMI_FINALIZER = "foregroundDeleteVirtualMachine"
RUNNING_STRATEGIES = ("Always", "RerunOnFailure")
NOT_MIGRATABLE = (
    "cannot migrate VMI which does not use masquerade, bridge with kubevirt.io/allow-pod-bridge-network-live-migration "
    "VM annotation or a migratable plugin to connect to the pod network"
)


def _cond(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    c: dict[str, Any] = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def _set_condition(status: dict[str, Any], cond: dict[str, Any]) -> None:
    conds = status.setdefault("conditions", [])
    for i, c in enumerate(conds):
        if c.get("type") == cond["type"]:
            if c.get("status") == cond["status"]:
                cond["lastTransitionTime"] = c.get("lastTransitionTime", cond["lastTransitionTime"])
            conds[i] = cond
            return
    conds.append(cond)


def _drop_condition(status: dict[str, Any], type_: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != type_]


def set_phase(status: dict[str, Any], phase: str) -> None:
    """Move a VMI to `phase`, recording the transition as virt-controller does."""
    if status.get("phase") == phase:
        return
    status["phase"] = phase
    status.setdefault("phaseTransitionTimestamps", []).append(
        {"phase": phase, "phaseTransitionTimestamp": now_rfc3339()}
    )


def interface_status(vmi: dict[str, Any], att: Attachment) -> list[dict[str, Any]]:
    """`status.interfaces` as KubeVirt reports a pod-network binding plugin interface, without a guest agent."""
    nets = (vmi.get("spec") or {}).get("networks") or []
    name = next((n["name"] for n in nets if "pod" in n), nets[0]["name"] if nets else "default")
    return [
        {
            "name": name,
            "ipAddress": att.ips[0] if att.ips else "",
            "ipAddresses": list(att.ips),
            "mac": att.mac,
            "infoSource": "domain, multus-status",
            "podInterfaceName": att.pod_interface,
            "queueCount": 1,
            "linkState": "up",
        }
    ]


class KubeVirtController(Controller):
    name = "kubevirt"
    resources = (kinds.VM, kinds.VMI, kinds.NODE, kinds.KUBEVIRT)

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.profile = profile(rt.config.profile)
        self.load: dict[str, int] = {}  # node → VMIs placed there (incl. migration targets)
        self.placed: dict[tuple[str, str], str] = {}  # (ns, vmi) → node counted in load
        self.blocked: set[tuple[str, str]] = set()  # VMIs waiting for a node or an address
        self.failures: dict[tuple[str, str], int] = {}  # VM → consecutive start failures
        self._retry_armed = False
        self._not_ready: set[str] = set()

    @property
    def ipam(self) -> IPAMController:
        ctrl = self.rt.controllers["ipam"]
        assert isinstance(ctrl, IPAMController)
        return ctrl

    def start(self) -> None:
        super().start()
        api = self.rt.api
        for sub in ("start", "stop", "restart"):
            api.register_subresource(kinds.SUBRESOURCE_GROUP, "virtualmachines", sub, self._subresource(sub))
        self.spawn(self._watch_faults(), name="kubevirt-node-faults")

    # ---- configuration -------------------------------------------------------------------
    def _kubevirt_config(self) -> dict[str, Any]:
        kv = self.store.try_get(kinds.KUBEVIRT, KUBEVIRT_NAMESPACE, KUBEVIRT_NAME)
        return ((kv or {}).get("spec") or {}).get("configuration") or {}

    def registered_bindings(self) -> dict[str, Any]:
        return ((self._kubevirt_config().get("network") or {}).get("binding")) or {}

    def _migratable(self, vmi: dict[str, Any]) -> tuple[bool, str]:
        spec = vmi.get("spec") or {}
        pod_nets = {n["name"] for n in spec.get("networks") or [] if "pod" in n}
        bindings = self.registered_bindings()
        annotations = vmi["metadata"].get("annotations") or {}
        for iface in ((spec.get("domain") or {}).get("devices") or {}).get("interfaces") or []:
            if iface.get("name") not in pod_nets:
                continue
            if "masquerade" in iface or "passtBinding" in iface:
                continue
            plugin = (iface.get("binding") or {}).get("name")
            if plugin and (bindings.get(plugin) or {}).get("migration") is not None:
                continue
            if "bridge" in iface and "kubevirt.io/allow-pod-bridge-network-live-migration" in annotations:
                continue
            return False, NOT_MIGRATABLE
        return True, ""

    # ---- events --------------------------------------------------------------------------
    def resync(self) -> None:
        for vmi in self.store.items(kinds.VMI):
            md = vmi["metadata"]
            node = (vmi.get("status") or {}).get("nodeName")
            if node and (vmi.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                self._count(md["namespace"], md["name"], node)
        for vm in self.store.items(kinds.VM):
            self._reconcile_vm(vm["metadata"]["namespace"], vm["metadata"]["name"])
        for vmi in self.store.items(kinds.VMI):
            phase = (vmi.get("status") or {}).get("phase")
            if phase in (None, "", "Pending", "Scheduling", "Scheduled"):
                self._advance(vmi["metadata"]["namespace"], vmi["metadata"]["name"])

    def handle(self, ev: Event) -> None:
        md = ev.obj["metadata"]
        if ev.resource == kinds.VM.key:
            self._reconcile_vm(md["namespace"], md["name"])
        elif ev.resource == kinds.VMI.key:
            self._on_vmi(ev)
        elif ev.resource == kinds.NODE.key and ev.type != "DELETED":
            self._retry_blocked()

    def _on_vmi(self, ev: Event) -> None:
        md = ev.obj["metadata"]
        ns, name = md["namespace"], md["name"]
        if ev.type == "ADDED":
            self.rt.later(0, lambda: self._advance(ns, name))
        elif ev.type == "DELETED":
            self._uncount(ns, name)
            self.ipam.detach(ns, name)
            self.blocked.discard((ns, name))
            self._retry_blocked()
        elif (
            md.get("deletionTimestamp")
            and VMI_FINALIZER in (md.get("finalizers") or [])
            and not (ev.old or {}).get("metadata", {}).get("deletionTimestamp")
        ):
            self._begin_stop(ns, name)
        owner = self._owner_vm(ev.obj)
        if owner:
            self._reconcile_vm(ns, owner)

    @staticmethod
    def _owner_vm(vmi: dict[str, Any]) -> str | None:
        for ref in vmi["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "VirtualMachine" and ref.get("controller"):
                return ref.get("name")
        return None

    # ---- VM controller -------------------------------------------------------------------
    def _reconcile_vm(self, ns: str, name: str) -> None:
        vm = self.store.try_get(kinds.VM, ns, name)
        if vm is None:
            self.failures.pop((ns, name), None)
            return
        md = vm["metadata"]
        vmi = self.store.try_get(kinds.VMI, ns, name)
        if vmi is not None and self._owner_vm(vmi) != name:
            vmi = None  # a VMI of the same name that this VM does not own is left alone
        if md.get("deletionTimestamp"):
            if vmi is not None and not vmi["metadata"].get("deletionTimestamp"):
                self.rt.api.delete_object(kinds.VMI, ns, name, "Background")
            elif vmi is None:
                self.ipam.release_claims_of(ns, name)
                self.rt.mutate_status(
                    kinds.VM,
                    ns,
                    name,
                    lambda o: o["metadata"].__setitem__(
                        "finalizers", [f for f in o["metadata"].get("finalizers") or [] if f != VM_FINALIZER]
                    ),
                )
            return
        if VM_FINALIZER not in (md.get("finalizers") or []):
            self.rt.mutate_status(
                kinds.VM, ns, name, lambda o: o["metadata"].setdefault("finalizers", []).append(VM_FINALIZER)
            )
            return  # the MODIFIED event brings us back
        strategy = (vm.get("spec") or {}).get("runStrategy") or (
            "Always" if (vm.get("spec") or {}).get("running") else "Halted"
        )
        phase = ((vmi or {}).get("status") or {}).get("phase")
        if vmi is None:
            wanted = strategy in RUNNING_STRATEGIES or (
                strategy == "Once" and not (vm.get("status") or {}).get("created")
            )
            if wanted and not self._in_backoff(vm):
                self._create_vmi(vm)
        elif strategy == "Halted" and not vmi["metadata"].get("deletionTimestamp"):
            self.rt.api.delete_object(kinds.VMI, ns, name, "Background")
        elif phase == "Failed" and strategy in RUNNING_STRATEGIES and not vmi["metadata"].get("deletionTimestamp"):
            self._crash(vm, vmi)
        elif phase == "Succeeded" and strategy == "Always" and not vmi["metadata"].get("deletionTimestamp"):
            self.rt.api.delete_object(kinds.VMI, ns, name, "Background")
        elif phase == "Running":
            self.failures.pop((ns, name), None)
        self._vm_status(vm, self.store.try_get(kinds.VMI, ns, name), strategy)

    def _in_backoff(self, vm: dict[str, Any]) -> bool:
        sf = (vm.get("status") or {}).get("startFailure") or {}
        retry_at = sf.get("retryAfterTimestamp")
        return bool(retry_at) and retry_at > now_rfc3339() and self.profile.name == "realistic"

    def _crash(self, vm: dict[str, Any], vmi: dict[str, Any]) -> None:
        ns, name = vm["metadata"]["namespace"], vm["metadata"]["name"]
        if ((vm.get("status") or {}).get("startFailure") or {}).get("lastFailedVMIUID") == vmi["metadata"]["uid"]:
            return  # this failure is recorded and its restart scheduled (recording it modifies the VM)
        count = self.failures.get((ns, name), 0) + 1
        self.failures[(ns, name)] = count
        delay = min(self.profile.retry * 2 ** (count - 1), self.profile.retry * 30)

        def record(o: dict[str, Any]) -> None:
            o.setdefault("status", {})["startFailure"] = {
                "consecutiveFailCount": count,
                "lastFailedVMIUID": vmi["metadata"]["uid"],
                "retryAfterTimestamp": now_rfc3339(),
            }

        self.rt.mutate_status(kinds.VM, ns, name, record)

        def restart() -> None:
            cur = self.store.try_get(kinds.VMI, ns, name)
            if (
                cur is not None
                and cur["metadata"]["uid"] == vmi["metadata"]["uid"]
                and not cur["metadata"].get("deletionTimestamp")
            ):
                self.rt.api.delete_object(kinds.VMI, ns, name, "Background")

        self.rt.later(delay, restart)

    def _create_vmi(self, vm: dict[str, Any]) -> None:
        md = vm["metadata"]
        template = deep_copy((vm.get("spec") or {}).get("template") or {})
        tmd = template.get("metadata") or {}
        labels = dict(tmd.get("labels") or {})
        vmi = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {
                "name": md["name"],
                "namespace": md["namespace"],
                "labels": labels,
                "annotations": {
                    **(tmd.get("annotations") or {}),
                    "kubevirt.io/vm-generation": str(md.get("generation", 1)),
                },
                "finalizers": [VM_FINALIZER, VMI_FINALIZER],
                "ownerReferences": [
                    {
                        "apiVersion": "kubevirt.io/v1",
                        "kind": "VirtualMachine",
                        "name": md["name"],
                        "uid": md["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template.get("spec") or {},
            "status": {},
        }
        try:
            self.store.create(kinds.VMI, vmi)
        except errors.ApiError as e:
            if e.code != 409:
                raise

    def _vm_status(self, vm: dict[str, Any], vmi: dict[str, Any] | None, strategy: str) -> None:
        st = (vmi or {}).get("status") or {}
        phase = st.get("phase")
        ready = phase == "Running" and any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []
        )
        deleting = bool(vmi and vmi["metadata"].get("deletionTimestamp"))
        migrating = bool((st.get("migrationState") or {}).get("startTimestamp")) and not (
            (st.get("migrationState") or {}).get("completed") or (st.get("migrationState") or {}).get("failed")
        )
        if vmi is None:
            printable = "Stopped"
        elif deleting:
            printable = "Stopping"
        elif phase == "Running":
            printable = "Migrating" if migrating else "Running"
        elif phase == "Failed":
            printable = "CrashLoopBackOff" if strategy in RUNNING_STRATEGIES else "Stopped"
        elif phase == "Succeeded":
            printable = "Stopped"
        elif any(c.get("reason") == "Unschedulable" for c in st.get("conditions") or []):
            printable = "ErrorUnschedulable"
        elif phase in ("Scheduling", "Scheduled"):
            printable = "Starting"
        else:
            printable = "Provisioning" if vmi else "Stopped"

        def edit(o: dict[str, Any]) -> None:
            s = o.setdefault("status", {})
            s["printableStatus"] = printable
            s["created"] = vmi is not None
            s["ready"] = ready
            s["runStrategy"] = strategy
            if ready:
                s.pop("startFailure", None)
            if not s["ready"]:
                s.pop("ready")
            if not s["created"]:
                s.pop("created")
            _set_condition(
                s,
                _cond(
                    "Ready",
                    "True" if ready else "False",
                    "" if ready else ("VMINotExists" if vmi is None else "PodNotReady"),
                    "" if ready or vmi is not None else "VMI does not exist",
                ),
            )
            s["volumeSnapshotStatuses"] = s.get("volumeSnapshotStatuses", [])
            if not s["volumeSnapshotStatuses"]:
                s.pop("volumeSnapshotStatuses")

        self.rt.mutate_status(kinds.VM, vm["metadata"]["namespace"], vm["metadata"]["name"], edit)

    # ---- scheduler and virt-handler ------------------------------------------------------
    def _count(self, ns: str, name: str, node: str) -> None:
        if (ns, name) in self.placed:
            return
        self.placed[(ns, name)] = node
        self.load[node] = self.load.get(node, 0) + 1

    def _uncount(self, ns: str, name: str) -> None:
        node = self.placed.pop((ns, name), None)
        if node is not None:
            self.load[node] = max(0, self.load.get(node, 0) - 1)

    def reserve(self, node: str, delta: int) -> None:
        """Migration targets hold a slot on their node while the migration runs."""
        self.load[node] = max(0, self.load.get(node, 0) + delta)

    def move(self, ns: str, name: str, target: str) -> None:
        """A migration finished: the VMI now counts on `target` (whose slot `reserve` already took)."""
        source = self.placed.get((ns, name))
        if source is not None:
            self.load[source] = max(0, self.load.get(source, 0) - 1)
        self.placed[(ns, name)] = target

    def _node_ok(self, node: dict[str, Any]) -> bool:
        name = node["metadata"]["name"]
        if name in self._not_ready or (node.get("spec") or {}).get("unschedulable"):
            return False
        return any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (node.get("status") or {}).get("conditions") or []
        )

    @staticmethod
    def _capacity(node: dict[str, Any]) -> int:
        try:
            return int(((node.get("status") or {}).get("allocatable") or {}).get("pods", "110"))
        except ValueError:
            return 110

    def pick_node(self, vmi: dict[str, Any], exclude: str | None = None) -> tuple[str | None, str]:
        """The least loaded eligible node, or None and the scheduler's explanation."""
        spec = vmi.get("spec") or {}
        selector = spec.get("nodeSelector") or {}
        match = selector_from_match({"matchLabels": selector}) if selector else None
        nodes = self.store.items(kinds.NODE)
        best: tuple[int, str] | None = None
        # Like kube-scheduler, placement knows nothing of IP addresses: a node whose subnet is full
        # still gets the pod, and the sandbox then fails with OVN-K's "subnet address pool exhausted".
        reasons = {"not ready": 0, "full": 0, "selector": 0}
        for node in nodes:
            name = node["metadata"]["name"]
            if name == exclude:
                continue
            if not self._node_ok(node):
                reasons["not ready"] += 1
                continue
            if match and not match(node["metadata"].get("labels") or {}):
                reasons["selector"] += 1
                continue
            load = self.load.get(name, 0)
            if load >= self._capacity(node):
                reasons["full"] += 1
                continue
            if best is None or (load, name) < best:
                best = (load, name)
        if best is not None:
            return best[1], ""
        total = len(nodes) - (1 if exclude else 0)
        parts = []
        if reasons["full"]:
            parts.append(f"{reasons['full']} Insufficient devices.kubevirt.io/kvm")
        if reasons["selector"]:
            parts.append(f"{reasons['selector']} node(s) didn't match Pod's node affinity/selector")
        if reasons["not ready"]:
            parts.append(f"{reasons['not ready']} node(s) had untolerated taint {{node.kubernetes.io/not-ready: }}")
        return None, f"0/{total} nodes are available: {', '.join(parts)}."

    def _advance(self, ns: str, name: str) -> None:
        """Move a VMI one step along Pending → Scheduling → Scheduled → Running."""
        vmi = self.store.try_get(kinds.VMI, ns, name)
        if vmi is None or vmi["metadata"].get("deletionTimestamp"):
            return
        st = vmi.get("status") or {}
        phase = st.get("phase") or ""
        rng = self.rt.rng
        if phase == "":

            def pending(o: dict[str, Any]) -> None:
                s = o.setdefault("status", {})
                set_phase(s, "Pending")
                s.setdefault("guestOSInfo", {})
                s["qosClass"] = "Burstable"

            self.rt.mutate_status(kinds.VMI, ns, name, pending)
            self.rt.later(self.profile.draw(rng, self.profile.schedule) / 2, lambda: self._advance(ns, name))
            return
        if phase in ("Pending", "Scheduling") and not st.get("nodeName"):
            render_error = binding_plugin_error(vmi.get("spec") or {}, set(self.registered_bindings()))
            if render_error:

                def failed_create(o: dict[str, Any]) -> None:
                    _set_condition(
                        o.setdefault("status", {}), _cond("Synchronized", "False", "FailedCreate", render_error)
                    )

                self.rt.mutate_status(kinds.VMI, ns, name, failed_create)
                return
            node, why = self.pick_node(vmi)
            if node is None:
                self.blocked.add((ns, name))

                def unschedulable(o: dict[str, Any]) -> None:
                    s = o.setdefault("status", {})
                    set_phase(s, "Scheduling")
                    _set_condition(s, _cond("PodScheduled", "False", "Unschedulable", why))
                    _set_condition(s, _cond("Ready", "False", "GuestNotRunning", "Guest VM is not reported as running"))

                self.rt.mutate_status(kinds.VMI, ns, name, unschedulable)
                self._arm_retry()
                return
            self._count(ns, name, node)

            def scheduling(o: dict[str, Any]) -> None:
                s = o.setdefault("status", {})
                set_phase(s, "Scheduling")
                _drop_condition(s, "PodScheduled")
                s["activePods"] = {o["metadata"]["uid"][:8] + "-pod": node}

            self.rt.mutate_status(kinds.VMI, ns, name, scheduling)
            self.rt.later(self.profile.draw(rng, self.profile.schedule) / 2, lambda: self._sandbox(ns, name, node))
            return
        if phase == "Scheduling" and st.get("nodeName") is None:
            node = self.placed.get((ns, name))
            if node:
                self._sandbox(ns, name, node)

    def _sandbox(self, ns: str, name: str, node: str) -> None:
        """The launcher pod starts on `node`: it needs an address on the VM's primary network."""
        vmi = self.store.try_get(kinds.VMI, ns, name)
        if vmi is None or vmi["metadata"].get("deletionTimestamp"):
            return
        att = self.ipam.attach(vmi, node)
        if isinstance(att, str):
            self.blocked.add((ns, name))
            message = (
                f'Failed to create pod sandbox: plugin type="multus-shim" name="multus-cni-network" failed (add): {att}'
            )

            def sandbox_failed(o: dict[str, Any]) -> None:
                s = o.setdefault("status", {})
                set_phase(s, "Scheduling")
                _set_condition(s, _cond("Ready", "False", "FailedCreatePodSandBox", message))

            before = (vmi.get("status") or {}).get("conditions") or []
            self.rt.mutate_status(kinds.VMI, ns, name, sandbox_failed)
            if not any(c.get("reason") == "FailedCreatePodSandBox" for c in before):
                self.rt.event(vmi, "FailedCreatePodSandBox", message, "Warning", component="kubelet")
            self._arm_retry()
            return
        self.blocked.discard((ns, name))

        def scheduled(o: dict[str, Any]) -> None:
            s = o.setdefault("status", {})
            set_phase(s, "Scheduled")
            s["nodeName"] = node
            o["metadata"].setdefault("labels", {})["kubevirt.io/nodeName"] = node
            _drop_condition(s, "Ready")

        self.rt.mutate_status(kinds.VMI, ns, name, scheduled)
        self.rt.later(self.profile.draw(self.rt.rng, self.profile.start), lambda: self._boot(ns, name, node))

    def _boot(self, ns: str, name: str, node: str) -> None:
        vmi = self.store.try_get(kinds.VMI, ns, name)
        if (
            vmi is None
            or vmi["metadata"].get("deletionTimestamp")
            or (vmi.get("status") or {}).get("phase") != "Scheduled"
        ):
            return
        if self.rt.faults.chance(self.rt.faults.vmi_start_failure_rate) or node in self._not_ready:
            reason = (
                "virt-launcher pod failed: simulated start failure (fault vmi_start_failure_rate)"
                if node not in self._not_ready
                else f"node {node} is NotReady"
            )
            self._fail(ns, name, "VirtualMachineFailed" if node not in self._not_ready else "NodeUnresponsive", reason)
            return
        att = self.ipam.attachment(ns, name)
        migratable, why = self._migratable(vmi)

        def running(o: dict[str, Any]) -> None:
            s = o.setdefault("status", {})
            set_phase(s, "Running")
            s["nodeName"] = node
            s["interfaces"] = interface_status(o, att) if att else []
            s["launcherContainerImageVersion"] = (
                "registry.redhat.io/container-native-virtualization/virt-launcher-rhel9:v4.19.3"
            )
            s["migrationMethod"] = (
                "BlockMigration"
                if any("containerDisk" in v for v in (o.get("spec") or {}).get("volumes") or [])
                else "LiveMigration"
            )
            s["migrationTransport"] = "Unix"
            s["guestOSInfo"] = {}
            s["currentCPUTopology"] = {
                "cores": ((o.get("spec") or {}).get("domain") or {}).get("cpu", {}).get("cores", 1),
                "sockets": 1,
                "threads": 1,
            }
            _set_condition(s, _cond("Ready", "True"))
            _set_condition(
                s,
                _cond("LiveMigratable", "True")
                if migratable
                else _cond("LiveMigratable", "False", "InterfaceNotLiveMigratable", why),
            )

        self.rt.mutate_status(kinds.VMI, ns, name, running)

    def _fail(self, ns: str, name: str, reason: str, message: str) -> None:
        self.ipam.detach(ns, name)
        self._uncount(ns, name)

        def failed(o: dict[str, Any]) -> None:
            s = o.setdefault("status", {})
            set_phase(s, "Failed")
            s["reason"] = reason
            _set_condition(s, _cond("Ready", "False", reason, message))

        vmi = self.store.try_get(kinds.VMI, ns, name)
        self.rt.mutate_status(kinds.VMI, ns, name, failed)
        if vmi is not None:
            self.rt.event(vmi, reason, message, "Warning", component="virt-handler")
        self._retry_blocked()

    def _begin_stop(self, ns: str, name: str) -> None:
        def finish() -> None:
            vmi = self.store.try_get(kinds.VMI, ns, name)
            if vmi is None:
                return
            self.ipam.detach(ns, name)
            self._uncount(ns, name)

            def release(o: dict[str, Any]) -> None:
                s = o.setdefault("status", {})
                if s.get("phase") not in ("Failed",):
                    set_phase(s, "Succeeded")
                o["metadata"]["finalizers"] = [
                    f for f in o["metadata"].get("finalizers") or [] if f not in (VM_FINALIZER, VMI_FINALIZER)
                ]

            self.rt.mutate_status(kinds.VMI, ns, name, release)
            self._retry_blocked()

        self.rt.later(self.profile.draw(self.rt.rng, self.profile.stop), finish)

    # ---- waiting VMIs and faults ---------------------------------------------------------
    def _arm_retry(self) -> None:
        if not self._retry_armed:
            self._retry_armed = True
            self.rt.later(max(self.profile.retry, 0.05), self._retry_blocked_timer)

    def _retry_blocked_timer(self) -> None:
        self._retry_armed = False
        self._retry_blocked()

    def _retry_blocked(self) -> None:
        for ns, name in sorted(self.blocked):
            vmi = self.store.try_get(kinds.VMI, ns, name)
            if vmi is None:
                self.blocked.discard((ns, name))
                continue
            node = self.placed.get((ns, name))
            if node is not None and not (vmi.get("status") or {}).get("nodeName"):
                self._sandbox(ns, name, node)
            else:
                self._advance(ns, name)
        if self.blocked:
            self._arm_retry()

    async def _watch_faults(self) -> None:
        """Apply the `not_ready_nodes` knob: nodes turn NotReady (and back), their VMIs fail."""
        while True:
            await asyncio.sleep(0.2)
            wanted = set(self.rt.faults.not_ready_nodes)
            if wanted == self._not_ready:
                continue
            for node in wanted - self._not_ready:
                self._set_node_ready(node, False)
                for (ns, name), where in list(self.placed.items()):
                    if where == node:
                        vmi = self.store.try_get(kinds.VMI, ns, name)
                        if vmi and (vmi.get("status") or {}).get("phase") in ("Scheduled", "Running"):
                            self._fail(ns, name, "NodeUnresponsive", f"virt-handler on node {node} is unresponsive")
            for node in self._not_ready - wanted:
                self._set_node_ready(node, True)
            self._not_ready = wanted
            self._retry_blocked()

    def _set_node_ready(self, node: str, ready: bool) -> None:
        def edit(o: dict[str, Any]) -> None:
            for c in (o.get("status") or {}).get("conditions") or []:
                if c.get("type") == "Ready":
                    c["status"] = "True" if ready else "Unknown"
                    c["reason"] = "KubeletReady" if ready else "NodeStatusUnknown"
                    c["message"] = (
                        "kubelet is posting ready status" if ready else "Kubelet stopped posting node status."
                    )
                    c["lastTransitionTime"] = now_rfc3339()

        self.rt.mutate(kinds.NODE, "", node, edit)

    # ---- start/stop/restart subresources (virtctl start|stop|restart) ---------------------
    def _subresource(self, action: str) -> Any:
        async def handler(request: web.Request, rt: kinds.ResourceType, ns: str, name: str) -> web.StreamResponse:
            if request.method != "PUT":
                raise errors.method_not_allowed()
            vm = self.store.try_get(kinds.VM, ns, name)
            if vm is None:
                raise errors.not_found(kinds.VM, name)
            strategy = (vm.get("spec") or {}).get("runStrategy") or "Halted"
            vmi = self.store.try_get(kinds.VMI, ns, name)
            if action == "start":
                if vmi is not None and (vmi.get("status") or {}).get("phase") == "Running":
                    raise errors.ApiError(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on virtualmachine.kubevirt.io "{name}": VM is already running',
                    )
                if strategy in ("Halted", "Manual", "Once"):
                    if strategy == "Halted":
                        self.rt.mutate(kinds.VM, ns, name, lambda o: o["spec"].__setitem__("runStrategy", "Always"))
                    else:
                        self._create_vmi(vm)
            elif action == "stop":
                if vmi is None:
                    raise errors.ApiError(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on virtualmachine.kubevirt.io "{name}": VM is not running',
                    )
                if strategy in RUNNING_STRATEGIES:
                    self.rt.mutate(kinds.VM, ns, name, lambda o: o["spec"].__setitem__("runStrategy", "Halted"))
                else:
                    self.rt.api.delete_object(kinds.VMI, ns, name, "Background")
            else:  # restart
                if vmi is None:
                    raise errors.ApiError(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on virtualmachine.kubevirt.io "{name}": VM is not running',
                    )
                self.rt.api.delete_object(kinds.VMI, ns, name, "Background")
            return web.Response(status=202)

        return handler
