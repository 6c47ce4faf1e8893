"""KubeVirt: VirtualMachines become VirtualMachineInstances that get scheduled, started and stopped.

Plays virt-controller (VM → VMI per runStrategy, the VMI create admission it goes through, crash-loop
back-off, VM status, one virt-launcher pod per VMI), the scheduler (spread by free capacity,
nodeSelector, Ready and schedulable nodes), kubelet (the launcher pod's sandbox, with the network
annotations OVN-K and Multus write) and virt-handler (phases Pending → Scheduling → Scheduled →
Running with `phaseTransitionTimestamps`, interface status from the pod interface and the guest agent,
Ready, LiveMigratable and AgentConnected conditions). Start-up times come from the cluster's latency
profile (the realistic one also applies virt-controller's and virt-handler's client rate limits and
virt-handler's 10 workers per node); start failures and NotReady nodes come from the fault knobs.

A VMI's running launcher pod that goes away (evicted, deleted) shuts its guest down (``Succeeded``),
and the VM's run strategy decides what follows. virt-handler's pods belong to the ``virt-handler``
DaemonSet (so ``kubectl drain --ignore-daemonsets`` skips them); launcher pods carry virt-launcher's
emptyDir volumes (so a drain needs ``--delete-emptydir-data``).
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from aiohttp import web

from simcluster import errors, kinds, validation, vmnet
from simcluster.console import fedora
from simcluster.controllers.base import Controller, Runtime
from simcluster.controllers.ipam import DEFAULT_NETWORK, Attachment, IPAMController
from simcluster.controllers.ipam import mac_for as vmnet_mac
from simcluster.options import GUEST_AGENT
from simcluster.profiles import profile
from simcluster.ratelimit import TokenBucket, WorkerPool
from simcluster.seed import KUBEVIRT_NAME, KUBEVIRT_NAMESPACE
from simcluster.selectors import selector_from_match
from simcluster.store import Event, deep_copy, now_rfc3339
from simcluster.validation import binding_plugin_error

VM_FINALIZER = "kubevirt.io/virtualMachineControllerFinalize"
VMI_FINALIZER = "foregroundDeleteVirtualMachine"
RUNNING_STRATEGIES = ("Always", "RerunOnFailure")
# Marks a pod whose pod IP this simulator took from the default network's IPAM (released with the pod).
POD_ADDRESS_ANNOTATION = "simcluster.io/pod-address"
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


LAUNCHER_IMAGE = "registry.redhat.io/container-native-virtualization/virt-launcher-rhel9:v4.19.3"
LAUNCHER_IMAGE_ID = (
    "registry.redhat.io/container-native-virtualization/virt-launcher-rhel9@sha256:"
    "5d1b4e0c9a7f3e2d6c8b1a0f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d"
)
HANDLER_IMAGE = "registry.redhat.io/container-native-virtualization/virt-handler-rhel9:v4.19.3"
HANDLER_DAEMONSET = "virt-handler"  # virt-operator's DaemonSet (components/daemonsets.go NewHandlerDaemonSet)
# The emptyDir volumes of every virt-launcher pod (virt-controller services/rendervolumes.go Volumes); they
# are why `kubectl drain` needs --delete-emptydir-data for nodes running VMs.
LAUNCHER_EMPTYDIRS = (
    "private",
    "public",
    "sockets",
    "virt-bin-share-dir",
    "libvirt-runtime",
    "ephemeral-disks",
    "container-disks",
)
# virt-handler runs its VMI controller with 10 workers (cmd/virt-handler/virt-handler.go, vmController.Run(10, …)).
HANDLER_WORKERS = 10
# API writes per VM start, as the realistic profile charges them to each component's token bucket:
# virt-controller creates the VMI and the launcher pod and updates VMI and VM status a few times;
# virt-handler updates the VMI status (Scheduled → Running) and records its events.
CONTROLLER_WRITES_PER_START = 6
HANDLER_WRITES_PER_START = 3
# KubeVirt defaults (pkg/virt-config/virt-config.go); HCO sets none unless a tuningPolicy is chosen.
# virt-handler's were 5/10 up to v1.6 and are 50/100 from v1.7.
DEFAULT_CONTROLLER_RATE = (200.0, 400)
DEFAULT_HANDLER_RATE = (5.0, 10)
DEFAULT_HANDLER_RATE_V17 = (50.0, 100)
GUEST_OS_INFO = {
    "id": "fedora",
    "kernelRelease": fedora.KERNEL_RELEASE,
    "kernelVersion": fedora.KERNEL_VERSION,
    "machine": "x86_64",
    "name": "Fedora Linux",
    "prettyName": fedora.PRETTY_NAME,
    "version": "41 (Cloud Edition)",
    "versionId": "41",
}
_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's utilrand alphabet (generateName)


def pod_network_name(vmi: dict[str, Any]) -> str:
    nets = (vmi.get("spec") or {}).get("networks") or []
    return next((n["name"] for n in nets if "pod" in n), nets[0]["name"] if nets else "default")


def interface_status(
    vmi: dict[str, Any],
    att: Attachment,
    nic: vmnet.GuestNic | None = None,
    agent: bool = False,
    per_family: bool = False,
) -> list[dict[str, Any]]:
    """`status.interfaces` as KubeVirt reports a pod-network binding-plugin interface: the pod
    interface's addresses, the domain's MAC (the guest NIC's), merged with the guest agent's report."""
    return [vmnet.interface_status(pod_network_name(vmi), att.ips, att.pod_interface, nic, agent, per_family)]


def _hostname(vmi: dict[str, Any]) -> str:
    explicit = (vmi.get("spec") or {}).get("hostname")
    return str(explicit) if explicit else vmi["metadata"]["name"].split(".")[0][:63]


def _rate(cfg: dict[str, Any], component: str, default: tuple[float, int]) -> tuple[float, int]:
    """QPS and burst of a component's client from the KubeVirt CR (zero or absent: the default)."""
    tb = (
        (((cfg.get(component) or {}).get("restClient") or {}).get("rateLimiter") or {}).get("tokenBucketRateLimiter")
    ) or {}
    try:
        qps = float(tb.get("qps") or 0) or default[0]
        burst = int(tb.get("burst") or 0) or default[1]
    except (TypeError, ValueError):
        return default
    return qps, burst


class KubeVirtController(Controller):
    name = "kubevirt"
    resources = (kinds.VM, kinds.VMI, kinds.NODE, kinds.KUBEVIRT, kinds.POD)

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.profile = profile(rt.config.profile)
        self.load: dict[str, int] = {}  # node → VMIs placed there (incl. migration targets)
        self.placed: dict[tuple[str, str], str] = {}  # (ns, vmi) → node counted in load
        self.blocked: set[tuple[str, str]] = set()  # VMIs waiting for a node or an address
        self.failures: dict[tuple[str, str], int] = {}  # VM → consecutive start failures
        self.create_errors: dict[tuple[str, str], str] = {}  # VM → why its VMI could not be created
        self._retry_armed = False
        self._not_ready: set[str] = set()
        self.guest_agent = rt.config.option(GUEST_AGENT) == "present"
        # KubeVirt 1.6 merges the agent's report per IP family (netstat.go); 1.5 per interface
        self.per_family = vmnet.kubevirt_at_least(rt.config.kubevirt_version, 1, 6)
        self.handler_default = (
            DEFAULT_HANDLER_RATE_V17
            if vmnet.kubevirt_at_least(rt.config.kubevirt_version, 1, 7)
            else DEFAULT_HANDLER_RATE
        )
        self.agents: set[str] = set()  # uids of VMIs whose guest agent is connected
        self.pod_addresses: dict[tuple[str, str], tuple[str, str]] = {}  # (ns, pod) → (node, default-network IP)
        self.handlers: dict[str, str] = {}  # node → its virt-handler pod's IP (the migration target address)
        self._suffix_rng = random.Random(rt.config.seed)
        cfg = self._kubevirt_config()
        self.controller_bucket = TokenBucket(*_rate(cfg, "controllerConfiguration", DEFAULT_CONTROLLER_RATE))
        self.handler_buckets: dict[str, TokenBucket] = {}
        self.controller_limited, self.handler_limited = self._limited(cfg)
        self.handler_workers: dict[str, WorkerPool] = {}

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
        for node in self.store.items(kinds.NODE):
            self.ensure_handler(node["metadata"]["name"])
        self._handler_daemonset_status()

    # ---- configuration -------------------------------------------------------------------
    def _kubevirt_config(self) -> dict[str, Any]:
        kv = self.store.try_get(kinds.KUBEVIRT, KUBEVIRT_NAMESPACE, KUBEVIRT_NAME)
        return ((kv or {}).get("spec") or {}).get("configuration") or {}

    def _limited(self, cfg: dict[str, Any]) -> tuple[bool, bool]:
        """Whether virt-controller's and virt-handler's client limits apply: always in the realistic
        profile, and in any profile once the KubeVirt CR sets that component's rate limiter."""

        def explicit(component: str) -> bool:
            return bool(((cfg.get(component) or {}).get("restClient") or {}).get("rateLimiter") or {})

        return (
            self.profile.rate_limited or explicit("controllerConfiguration"),
            self.profile.rate_limited or explicit("handlerConfiguration"),
        )

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
        for pod in self.store.items(kinds.POD):
            md, st = pod["metadata"], pod.get("status") or {}
            node = (pod.get("spec") or {}).get("nodeName") or ""
            if st.get("podIP") and (md.get("annotations") or {}).get(POD_ADDRESS_ANNOTATION):
                self.pod_addresses[(md["namespace"], md["name"])] = (node, st["podIP"])
            if (md.get("labels") or {}).get("kubevirt.io") == "virt-handler" and st.get("podIP"):
                self.handlers[node] = st["podIP"]
        for vmi in self.store.items(kinds.VMI):
            if any(c.get("type") == "AgentConnected" for c in (vmi.get("status") or {}).get("conditions") or []):
                self.agents.add(vmi["metadata"]["uid"])
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
        elif ev.resource == kinds.NODE.key and ev.type == "DELETED":
            self.handlers.pop(md["name"], None)
            for pod in self.store.items(kinds.POD, KUBEVIRT_NAMESPACE):
                if (pod.get("spec") or {}).get("nodeName") == md["name"]:
                    self.delete_pod(KUBEVIRT_NAMESPACE, pod["metadata"]["name"])
            self._handler_daemonset_status()
        elif ev.resource == kinds.NODE.key:
            if ev.type == "ADDED":
                self.ensure_handler(md["name"])
                self._handler_daemonset_status()
            self._retry_blocked()
        elif ev.resource == kinds.POD.key and ev.type == "DELETED":
            where = self.pod_addresses.pop((md.get("namespace", ""), md["name"]), None)
            if where is not None:
                self.ipam.release_pod_address(*where)
            if (md.get("labels") or {}).get("kubevirt.io") == "virt-launcher":
                self._launcher_gone(ev.obj)
            elif (md.get("labels") or {}).get("kubevirt.io") == "virt-handler":
                node = (ev.obj.get("spec") or {}).get("nodeName") or ""
                if self.handlers.get(node) == (ev.obj.get("status") or {}).get("podIP"):
                    self.handlers.pop(node, None)
                if self.store.try_get(kinds.NODE, "", node) is not None:
                    self.rt.later(0, lambda: self._replace_handler(node))
        elif ev.resource == kinds.KUBEVIRT.key:
            self.controller_limited, self.handler_limited = self._limited(self._kubevirt_config())
            self.controller_bucket.configure(
                *_rate(self._kubevirt_config(), "controllerConfiguration", DEFAULT_CONTROLLER_RATE)
            )
            rate = _rate(self._kubevirt_config(), "handlerConfiguration", self.handler_default)
            for bucket in self.handler_buckets.values():
                bucket.configure(*rate)

    def _on_vmi(self, ev: Event) -> None:
        md = ev.obj["metadata"]
        ns, name = md["namespace"], md["name"]
        if ev.type == "ADDED":
            self.rt.later(0, lambda: self._advance(ns, name))
        elif ev.type == "DELETED":
            self._uncount(ns, name)
            self.ipam.detach(ns, name)
            self.agents.discard(md.get("uid", ""))
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
            self.create_errors.pop((ns, name), None)
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
        return isinstance(retry_at, str) and retry_at > now_rfc3339() and self.profile.name == "realistic"

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
        key = (md["namespace"], md["name"])
        try:
            # virt-controller creates the VMI through the API, so virt-api's VMI create webhook judges
            # it (e.g. a template without memory: vmi-create-admitter.go, ValidateVirtualMachineInstanceMandatoryFields).
            validation.admit(kinds.VMI.key, vmi, None, "CREATE")
        except validation.AdmissionDenied as e:
            if self.create_errors.get(key) != e.message:
                self.create_errors[key] = e.message
                self.rt.event(
                    vm,
                    "FailedCreate",
                    f"Error creating virtual machine instance: {e.message}",
                    "Warning",
                    "virt-controller",
                )
            return
        self.create_errors.pop(key, None)
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
            failure = self.create_errors.get((vm["metadata"]["namespace"], vm["metadata"]["name"]))
            if failure and vmi is None:
                # vm.go processFailureCondition: the sync error of startVMI, reason FailedCreate
                _set_condition(s, _cond("Failure", "True", "FailedCreate", f"Failure while starting VMI: {failure}"))
            else:
                _drop_condition(s, "Failure")

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
        total = len(list(nodes)) - (1 if exclude else 0)
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

            self.rt.mutate_status(kinds.VMI, ns, name, scheduling)
            delay = self.profile.draw(rng, self.profile.schedule) / 2
            if self.controller_limited:
                # virt-controller's client: the pod, VMI and VM writes of this start wait for tokens
                delay += self.controller_bucket.reserve(CONTROLLER_WRITES_PER_START)
            placed = node
            self.rt.later(delay, lambda: self._sandbox(ns, name, placed))
            return
        if phase == "Scheduling" and st.get("nodeName") is None:
            node = self.placed.get((ns, name))
            if node:
                self._sandbox(ns, name, node)

    # ---- virt-launcher and virt-handler pods --------------------------------------------
    def _pod_name(self, ns: str, prefix: str) -> str:
        for _ in range(16):
            candidate = prefix[:58] + "".join(self._suffix_rng.choices(_SUFFIX, k=5))
            if self.store.try_get(kinds.POD, ns, candidate) is None:
                return candidate
        return self.store.generate_name(kinds.POD, ns, prefix)

    def launcher_pods(self, vmi: dict[str, Any]) -> list[dict[str, Any]]:
        """The virt-launcher pods a VMI controls (its owner references), oldest first."""
        out = []
        for rt, ns, name in self.store.dependents(vmi["metadata"]["uid"]):
            if rt is kinds.POD:
                pod = self.store.try_get(kinds.POD, ns, name)
                if pod is not None:
                    out.append(pod)
        out.sort(key=lambda p: int(p["metadata"]["resourceVersion"]))
        return out

    def active_pods(self, vmi: dict[str, Any]) -> dict[str, str]:
        """`status.activePods`: pod UID → node of every pod the VMI controls (vmi.go setActivePods)."""
        return {p["metadata"]["uid"]: (p.get("spec") or {}).get("nodeName", "") for p in self.launcher_pods(vmi)}

    def _network_annotations(self, ns: str, att: Attachment, default: tuple[str, str, str] | None) -> dict[str, str]:
        """What OVN-K (`k8s.ovn.org/pod-networks`) and Multus (`k8s.v1.cni.cncf.io/network-status`) write."""
        net = self.ipam.network_of(att)
        cfg = self.rt.config
        service = list(cfg.service_network)
        status: list[dict[str, Any]] = []
        networks: dict[str, Any] = {}
        gw = att.gateways[0] if att.gateways else ""
        if att.network == DEFAULT_NETWORK:
            cluster = [e["cidr"] for e in cfg.cluster_network]
            routes = [{"dest": c, "nextHop": gw} for c in [*cluster, *service, "100.64.0.0/16"]]
            networks["default"] = {
                "ip_addresses": list(att.prefixed),
                "mac_address": att.mac,
                "gateway_ips": list(att.gateways),
                "routes": routes,
                "ip_address": att.prefixed[0] if att.prefixed else "",
                "gateway_ip": gw,
                "role": "primary",
            }
            status.append(
                {
                    "name": "ovn-kubernetes",
                    "interface": "eth0",
                    "ips": list(att.ips),
                    "mac": att.mac,
                    "default": True,
                    "dns": {},
                }
            )
        else:
            if default is not None:
                dip, dprefixed, dgw = default
                dmac = vmnet_mac(dip)
                cluster = [e["cidr"] for e in cfg.cluster_network]
                networks["default"] = {
                    "ip_addresses": [dprefixed],
                    "mac_address": dmac,
                    "gateway_ips": [dgw],
                    "routes": [{"dest": c, "nextHop": dgw} for c in [*cluster, "100.64.0.0/16"]],
                    "ip_address": dprefixed,
                    "gateway_ip": dgw,
                    "role": "infrastructure-locked",
                }
                status.append({"name": "ovn-kubernetes", "interface": "eth0", "ips": [dip], "mac": dmac, "dns": {}})
            nad = self.ipam.by_namespace.get(ns, "")
            nad_name = nad[len("cluster_udn_") :] if nad.startswith("cluster_udn_") else nad.split("_", 1)[-1]
            routes = []
            if net is not None and net.topology == "layer3":
                routes += [{"dest": c, "nextHop": gw} for c, _ in net.subnets]
            routes += [{"dest": c, "nextHop": gw} for c in [*service, "100.65.0.0/16"]]
            networks[f"{ns}/{nad_name}"] = {
                "ip_addresses": list(att.prefixed),
                "mac_address": att.mac,
                "gateway_ips": list(att.gateways),
                "routes": routes,
                "ip_address": att.prefixed[0] if att.prefixed else "",
                "gateway_ip": gw,
                "role": "primary",
            }
            status.append(
                {
                    "name": "ovn-kubernetes",
                    "interface": att.pod_interface,
                    "ips": list(att.ips),
                    "mac": att.mac,
                    "default": True,
                    "dns": {},
                }
            )
        out = {
            "k8s.ovn.org/pod-networks": json.dumps(networks, separators=(",", ":")),
            "k8s.v1.cni.cncf.io/network-status": json.dumps(status, indent=1),
        }
        if att.claim:
            out["k8s.ovn.org/primary-udn-ipamclaim"] = att.claim
        return out

    def create_launcher(
        self, vmi: dict[str, Any], node: str, name: str, att: Attachment | None, migration_uid: str = ""
    ) -> dict[str, Any]:
        """A virt-launcher pod for `vmi` on `node` (services/template.go), Pending; with `att` its
        sandbox is up and its network annotations and pod IP are set."""
        md = vmi["metadata"]
        ns = md["namespace"]
        host = _hostname(vmi)
        labels = dict(md.get("labels") or {})
        labels.update(
            {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": md["uid"], "vm.kubevirt.io/name": host}
        )
        if migration_uid:
            labels["kubevirt.io/migrationJobUID"] = migration_uid
        annotations = {
            k: v
            for k, v in (md.get("annotations") or {}).items()
            if not k.startswith(
                (
                    "kubectl.kubernetes.io",
                    "kubevirt.io/storage-observed-api-version",
                    "kubevirt.io/latest-observed-api-version",
                )
            )
        }
        annotations.update(
            {
                "kubevirt.io/domain": md["name"],
                "kubectl.kubernetes.io/default-container": "compute",
                "kubevirt.io/migrationTransportUnix": "true",
                "descheduler.alpha.kubernetes.io/request-evict-only": "",
            }
        )
        memory = ((((vmi.get("spec") or {}).get("domain") or {}).get("resources") or {}).get("requests") or {}).get(
            "memory"
        )
        status: dict[str, Any] = {"phase": "Pending", "qosClass": "Burstable", "hostIP": self._node_ip(node)}
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "kubevirt.io/v1",
                        "kind": "VirtualMachineInstance",
                        "name": md["name"],
                        "uid": md["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "nodeName": node,
                "hostname": host,
                "restartPolicy": "Never",
                "schedulerName": "default-scheduler",
                "terminationGracePeriodSeconds": 210,
                "readinessGates": [{"conditionType": "kubevirt.io/virtual-machine-unpaused"}],
                "containers": [
                    {
                        "name": "compute",
                        "image": LAUNCHER_IMAGE,
                        "resources": {"requests": {"memory": str(memory)}} if memory else {},
                    }
                ],
                "volumes": [{"name": v, "emptyDir": {}} for v in LAUNCHER_EMPTYDIRS],
            },
            "status": status,
        }
        if att is not None:
            self._attach_network(pod, att, vmi)
        return self.store.create(kinds.POD, pod)

    def _attach_network(self, pod: dict[str, Any], att: Attachment, vmi: dict[str, Any] | None = None) -> None:
        """The sandbox is up: OVN-K's and Multus' annotations, the pod IP (the default network's)."""
        md = pod["metadata"]
        ns, node = md["namespace"], pod["spec"]["nodeName"]
        default: tuple[str, str, str] | None = None
        if att.network == DEFAULT_NETWORK:
            pod_ip = att.ips[0] if att.ips else ""
        else:
            default = self.ipam.allocate_pod_address(node)
            pod_ip = default[0] if default else ""
            if default is not None:
                self.pod_addresses[(ns, md["name"])] = (node, default[0])
                md["annotations"][POD_ADDRESS_ANNOTATION] = "default"
        extra = self._network_annotations(ns, att, default)
        secondary = [
            n["multus"]["networkName"]
            for n in ((vmi or {}).get("spec") or {}).get("networks") or []
            if isinstance(n.get("multus"), dict) and n["multus"].get("networkName")
        ]
        if secondary:
            networks = json.loads(extra["k8s.ovn.org/pod-networks"])
            for nad in secondary:
                key = nad if "/" in nad else f"{ns}/{nad}"
                networks[key] = {"ip_addresses": None, "mac_address": "", "role": "secondary"}
            extra["k8s.ovn.org/pod-networks"] = json.dumps(networks, separators=(",", ":"))
        md["annotations"].update(extra)
        if pod_ip:
            pod["status"]["podIP"] = pod_ip
            pod["status"]["podIPs"] = [{"ip": pod_ip}]

    def _node_ip(self, node: str) -> str:
        obj = self.store.try_get(kinds.NODE, "", node)
        for a in ((obj or {}).get("status") or {}).get("addresses") or []:
            if a.get("type") == "InternalIP":
                return str(a.get("address", ""))
        return ""

    def set_pod_phase(self, ns: str, name: str, phase: str, reason: str = "") -> None:
        now = now_rfc3339()

        def edit(o: dict[str, Any]) -> None:
            st = o.setdefault("status", {})
            st["phase"] = phase
            ready = "True" if phase == "Running" else "False"
            st["conditions"] = [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                {"type": "Ready", "status": ready, "lastTransitionTime": now},
                {"type": "kubevirt.io/virtual-machine-unpaused", "status": "True", "lastTransitionTime": now},
            ]
            st.setdefault("startTime", now)
            state: dict[str, Any]
            if phase == "Running":
                state = {"running": {"startedAt": now}}
            elif phase in ("Succeeded", "Failed"):
                state = {
                    "terminated": {
                        "exitCode": 0 if phase == "Succeeded" else 1,
                        "reason": reason or "Completed",
                        "finishedAt": now,
                    }
                }
            else:
                state = {"waiting": {"reason": reason or "ContainerCreating"}}
            st["containerStatuses"] = [
                {
                    "name": "compute",
                    "image": LAUNCHER_IMAGE,
                    "imageID": "" if phase == "Pending" else LAUNCHER_IMAGE_ID,
                    "ready": phase == "Running",
                    "restartCount": 0,
                    "started": phase == "Running",
                    "state": state,
                }
            ]

        self.rt.mutate_status(kinds.POD, ns, name, edit)

    def delete_pod(self, ns: str, name: str) -> None:
        try:
            self.rt.api.delete_object(kinds.POD, ns, name, "Background")
        except errors.ApiError as e:
            if e.code != 404:
                raise

    def ensure_handler(self, node: str) -> None:
        """virt-handler's pod on `node` (a DaemonSet pod on the pod network): its IP is what a migration
        to this node advertises as ``targetNodeAddress`` (migration-target.go, unless a dedicated
        migration network is configured)."""
        if node in self.handlers or not self.store.try_get(kinds.NAMESPACE, "", KUBEVIRT_NAMESPACE):
            return
        ds = self._handler_daemonset()
        address = self.ipam.allocate_pod_address(node)
        if address is None:
            return
        name = self._pod_name(KUBEVIRT_NAMESPACE, "virt-handler-")
        now = now_rfc3339()
        self.store.create(
            kinds.POD,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": KUBEVIRT_NAMESPACE,
                    "labels": {"kubevirt.io": "virt-handler", "app.kubernetes.io/component": "compute"},
                    "annotations": {POD_ADDRESS_ANNOTATION: "default"},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "DaemonSet",
                            "name": HANDLER_DAEMONSET,
                            "uid": ds["metadata"]["uid"],
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": {
                    "nodeName": node,
                    "containers": [{"name": "virt-handler", "image": HANDLER_IMAGE}],
                    "restartPolicy": "Always",
                },
                "status": {
                    "phase": "Running",
                    "hostIP": self._node_ip(node),
                    "podIP": address[0],
                    "podIPs": [{"ip": address[0]}],
                    "startTime": now,
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                },
            },
        )
        self.handlers[node] = address[0]
        self.pod_addresses[(KUBEVIRT_NAMESPACE, name)] = (node, address[0])

    def _handler_daemonset(self) -> dict[str, Any]:
        """virt-operator's `virt-handler` DaemonSet (created on first use, e.g. in a restored state)."""
        ds = self.store.try_get(kinds.DAEMONSET, KUBEVIRT_NAMESPACE, HANDLER_DAEMONSET)
        if ds is not None:
            return ds
        labels = {"kubevirt.io": "virt-handler", "app.kubernetes.io/component": "compute"}
        return self.store.create(
            kinds.DAEMONSET,
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {
                    "name": HANDLER_DAEMONSET,
                    "namespace": KUBEVIRT_NAMESPACE,
                    "labels": {**labels, "app.kubernetes.io/managed-by": "virt-operator"},
                },
                "spec": {
                    "selector": {"matchLabels": {"kubevirt.io": "virt-handler"}},
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": "kubevirt-handler",
                            "hostPID": True,
                            "nodeSelector": {"kubernetes.io/os": "linux"},
                            "containers": [{"name": "virt-handler", "image": HANDLER_IMAGE}],
                        },
                    },
                },
                "status": {},
            },
        )

    def _handler_daemonset_status(self) -> None:
        """The DaemonSet controller's counts: one ready virt-handler pod per node."""
        if not self.store.try_get(kinds.NAMESPACE, "", KUBEVIRT_NAMESPACE):
            return
        self._handler_daemonset()
        nodes = len(list(self.store.items(kinds.NODE)))
        running = sum(
            1
            for p in self.store.items(kinds.POD, KUBEVIRT_NAMESPACE)
            if (p["metadata"].get("labels") or {}).get("kubevirt.io") == "virt-handler"
            and (p.get("status") or {}).get("phase") == "Running"
        )

        def edit(o: dict[str, Any]) -> None:
            o["status"] = {
                "currentNumberScheduled": running,
                "desiredNumberScheduled": nodes,
                "numberAvailable": running,
                "numberMisscheduled": 0,
                "numberReady": running,
                "observedGeneration": o["metadata"].get("generation", 1),
                "updatedNumberScheduled": running,
            }

        self.rt.mutate_status(kinds.DAEMONSET, KUBEVIRT_NAMESPACE, HANDLER_DAEMONSET, edit)

    def _replace_handler(self, node: str) -> None:
        """The DaemonSet controller recreates a deleted virt-handler pod on its node."""
        self.ensure_handler(node)
        self._handler_daemonset_status()

    def handler_address(self, node: str) -> str:
        self.ensure_handler(node)
        return self.handlers.get(node, "")

    def _launcher_gone(self, pod: dict[str, Any]) -> None:
        """A virt-launcher pod was deleted (evicted, or `kubectl delete pod`) while its VMI lives on.

        virt-controller recounts the VMI's pods (``setActivePods``). If it was the VMI's running pod,
        virt-launcher got SIGTERM and shut the guest down over ACPI within its grace period, which
        virt-handler reports as ``Succeeded`` (vm.go ``calculateVmPhaseForStatusReason``:
        ``ReasonShutdown``) with the event "The VirtualMachineInstance was shut down."; the VM's
        run strategy then decides whether a new VMI starts. A pod gone before its guest ran leaves
        the VMI ``Failed``. A migration target pod's loss is the migration controller's to handle.
        """
        md = pod["metadata"]
        ns = md.get("namespace", "")
        ref = next(
            (
                r
                for r in md.get("ownerReferences") or []
                if r.get("kind") == "VirtualMachineInstance" and r.get("controller")
            ),
            None,
        )
        if ref is None:
            return
        vmi = self.store.try_get(kinds.VMI, ns, ref.get("name", ""))
        if vmi is None or vmi["metadata"]["uid"] != ref.get("uid") or vmi["metadata"].get("deletionTimestamp"):
            return
        name = vmi["metadata"]["name"]
        st = vmi.get("status") or {}
        pods = self.active_pods(vmi)
        self.rt.mutate_status(kinds.VMI, ns, name, lambda o: o.setdefault("status", {}).__setitem__("activePods", pods))
        node = (pod.get("spec") or {}).get("nodeName") or ""
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        phase = st.get("phase")
        if phase in ("Succeeded", "Failed") or (st.get("nodeName") and node != st.get("nodeName")):
            return  # a finished VMI, or a migration target pod (not the VMI's current pod)
        if phase != "Running":
            self._fail(ns, name, "PodNotExists", "virt-launcher pod was deleted before the guest started")
            return
        self.ipam.detach(ns, name)
        self._uncount(ns, name)
        self.agents.discard(vmi["metadata"]["uid"])

        def shut_down(o: dict[str, Any]) -> None:
            s = o.setdefault("status", {})
            set_phase(s, "Succeeded")
            _set_condition(s, _cond("Ready", "False", "PodTerminating", "virt-launcher pod is terminating"))
            _drop_condition(s, "AgentConnected")

        self.rt.mutate_status(kinds.VMI, ns, name, shut_down)
        self.rt.event(vmi, "Stopped", "The VirtualMachineInstance was shut down.", component="virt-handler")
        self._retry_blocked()

    # ---- sandbox, boot, guest agent ------------------------------------------------------
    def _sandbox(self, ns: str, name: str, node: str) -> None:
        """The launcher pod starts on `node`: it needs an address on the VM's primary network."""
        vmi = self.store.try_get(kinds.VMI, ns, name)
        if vmi is None or vmi["metadata"].get("deletionTimestamp"):
            return
        pending = next((p for p in self.launcher_pods(vmi) if (p.get("status") or {}).get("phase") == "Pending"), None)
        pod_name = pending["metadata"]["name"] if pending else self._pod_name(ns, f"virt-launcher-{_hostname(vmi)}-")
        att = self.ipam.attach(vmi, node, pod_name)
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
            if pending is None:
                pending = self.create_launcher(vmi, node, pod_name, None)
            self.rt.mutate_status(kinds.VMI, ns, name, sandbox_failed)
            if not any(c.get("reason") == "FailedCreatePodSandBox" for c in before):
                self.rt.event(vmi, "FailedCreatePodSandBox", message, "Warning", component="kubelet")
                self.rt.event(pending, "FailedCreatePodSandBox", message, "Warning", component="kubelet")
            self._arm_retry()
            return
        self.blocked.discard((ns, name))
        if pending is None:
            self.create_launcher(vmi, node, pod_name, att)
        else:

            def network(o: dict[str, Any]) -> None:
                self._attach_network(o, att, vmi)

            self.rt.mutate_status(kinds.POD, ns, pod_name, network)
        pods = self.active_pods(vmi)

        def scheduled(o: dict[str, Any]) -> None:
            s = o.setdefault("status", {})
            set_phase(s, "Scheduled")
            s["nodeName"] = node
            s["activePods"] = pods
            o["metadata"].setdefault("labels", {})["kubevirt.io/nodeName"] = node
            _drop_condition(s, "Ready")

        self.rt.mutate_status(kinds.VMI, ns, name, scheduled)
        self.rt.later(self.profile.draw(self.rt.rng, self.profile.start), lambda: self._boot(ns, name, node))

    def _handler_delay(self, node: str) -> float:
        """virt-handler on `node`: a free worker of its 10, then tokens of its client for the status writes."""
        pool = self.handler_workers.get(node)
        if pool is None:
            pool = self.handler_workers[node] = WorkerPool(HANDLER_WORKERS)
            rate = _rate(self._kubevirt_config(), "handlerConfiguration", self.handler_default)
            self.handler_buckets[node] = TokenBucket(*rate)
        work = self.profile.draw(self.rt.rng, self.profile.domain_start)
        wait = pool.start(work) + work
        return wait + self.handler_buckets[node].reserve(HANDLER_WRITES_PER_START)

    def _boot(self, ns: str, name: str, node: str, throttled: bool = False) -> None:
        vmi = self.store.try_get(kinds.VMI, ns, name)
        if (
            vmi is None
            or vmi["metadata"].get("deletionTimestamp")
            or (vmi.get("status") or {}).get("phase") != "Scheduled"
        ):
            return
        if self.handler_limited and not throttled:
            self.rt.later(self._handler_delay(node), lambda: self._boot(ns, name, node, throttled=True))
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
        nic = self.ipam.boot_guest(ns, name)
        migratable, why = self._migratable(vmi)
        for pod in self.launcher_pods(vmi):
            if (pod.get("status") or {}).get("phase") == "Pending":
                self.set_pod_phase(ns, pod["metadata"]["name"], "Running")

        def running(o: dict[str, Any]) -> None:
            s = o.setdefault("status", {})
            set_phase(s, "Running")
            s["nodeName"] = node
            s["interfaces"] = interface_status(o, att, nic) if att else []
            s["launcherContainerImageVersion"] = LAUNCHER_IMAGE
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
        if self.guest_agent and att is not None:
            uid = vmi["metadata"]["uid"]
            delay = self.profile.draw(self.rt.rng, self.profile.agent)
            self.rt.later(delay, lambda: self._agent_connected(ns, name, uid))

    def _agent_connected(self, ns: str, name: str, uid: str) -> None:
        """qemu-guest-agent in the booted guest connects; virt-launcher's first poll fills the status
        (guestOSInfo, interfaceName, and the guest's addresses merged into the interface)."""
        vmi = self.store.try_get(kinds.VMI, ns, name)
        if vmi is None or vmi["metadata"]["uid"] != uid or (vmi.get("status") or {}).get("phase") != "Running":
            return
        self.agents.add(uid)
        self.refresh_interfaces(ns, name)

    def refresh_interfaces(self, ns: str, name: str, extra: Any = None) -> None:
        """Recompute `status.interfaces` from the current port, the guest NIC and the agent (plus
        `extra(status)` edits in the same write)."""
        att = self.ipam.attachment(ns, name)
        nic = self.ipam.guest(ns, name)

        def edit(o: dict[str, Any]) -> None:
            s = o.setdefault("status", {})
            agent = o["metadata"]["uid"] in self.agents
            if att is not None:
                s["interfaces"] = interface_status(o, att, nic, agent, self.per_family)
            if agent:
                s["guestOSInfo"] = dict(GUEST_OS_INFO)
                _set_condition(s, _cond("AgentConnected", "True"))
            if extra is not None:
                extra(o)

        self.rt.mutate_status(kinds.VMI, ns, name, edit)

    def _fail(self, ns: str, name: str, reason: str, message: str) -> None:
        vmi = self.store.try_get(kinds.VMI, ns, name)
        if vmi is not None:
            for pod in self.launcher_pods(vmi):
                if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    self.set_pod_phase(ns, pod["metadata"]["name"], "Failed", "Error")
        self.ipam.detach(ns, name)
        self._uncount(ns, name)

        def failed(o: dict[str, Any]) -> None:
            s = o.setdefault("status", {})
            set_phase(s, "Failed")
            s["reason"] = reason
            _set_condition(s, _cond("Ready", "False", reason, message))
            _drop_condition(s, "AgentConnected")

        self.rt.mutate_status(kinds.VMI, ns, name, failed)
        if vmi is not None:
            self.agents.discard(vmi["metadata"]["uid"])
            self.rt.event(vmi, reason, message, "Warning", component="virt-handler")
        self._retry_blocked()

    def _begin_stop(self, ns: str, name: str) -> None:
        def finish() -> None:
            vmi = self.store.try_get(kinds.VMI, ns, name)
            if vmi is None:
                return
            for pod in self.launcher_pods(vmi):
                self.delete_pod(ns, pod["metadata"]["name"])
            self.ipam.detach(ns, name)
            self._uncount(ns, name)
            self.agents.discard(vmi["metadata"]["uid"])

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
