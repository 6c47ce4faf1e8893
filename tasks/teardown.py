"""Teardown: remove what a run created, in the order the finalizer chain allows, and nothing else.

VMs first (their VMIs go with them and free their addresses), migrations, then the namespaces (which
takes their Secrets and NetworkAttachmentDefinitions once nothing uses the network), then the
ClusterUserDefinedNetwork, whose finalizer lets go when its last NAD is gone. Only objects carrying
this run's labels are deleted; same-named objects without them are left alone and named.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tasks.kube import Kube
from tasks.spec import MANAGED_BY_LABEL, MANAGED_BY_VALUE, RUN_LABEL, RolloutSpec

VM_API = ("kubevirt.io/v1", "VirtualMachine")
VMI_API = ("kubevirt.io/v1", "VirtualMachineInstance")
VMIM_API = ("kubevirt.io/v1", "VirtualMachineInstanceMigration")
NS_API = ("v1", "Namespace")
CUDN_API = ("k8s.ovn.org/v1", "ClusterUserDefinedNetwork")


@dataclass
class TeardownPlan:
    vms: list[str] = field(default_factory=list)  # ns/name
    migrations: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    network: str | None = None
    left_alone: list[str] = field(default_factory=list)  # same names, not this run's: untouched

    def lines(self) -> list[str]:
        out = [f"VirtualMachine {v}" for v in self.vms]
        out += [f"VirtualMachineInstanceMigration {m}" for m in self.migrations]
        out += [f"Namespace {n}" for n in self.namespaces]
        if self.network:
            out.append(f"ClusterUserDefinedNetwork {self.network}")
        return out


@dataclass
class TeardownResult:
    plan: TeardownPlan
    deleted: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _ours(obj: dict, spec: RolloutSpec) -> bool:
    labels = obj["metadata"].get("labels") or {}
    return labels.get(RUN_LABEL) == spec.run_id and labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE


def plan(kube: Kube, spec: RolloutSpec) -> TeardownPlan:
    """What teardown would delete (by this run's label selector) and what it would leave alone."""
    sel = f"{RUN_LABEL}={spec.run_id},{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
    p = TeardownPlan()
    vms, _ = kube.list(*VM_API, label_selector=sel)
    p.vms = sorted(f"{v['metadata']['namespace']}/{v['metadata']['name']}" for v in vms)
    migs, _ = kube.list(*VMIM_API, label_selector=sel)
    p.migrations = sorted(f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in migs)
    namespaces, _ = kube.list(*NS_API, label_selector=sel)
    p.namespaces = sorted(n["metadata"]["name"] for n in namespaces)
    cudn = kube.get(*CUDN_API, spec.network.name)
    if cudn is not None:
        if _ours(cudn, spec):
            p.network = spec.network.name
        else:
            p.left_alone.append(f"ClusterUserDefinedNetwork {spec.network.name} (not created by run {spec.run_id})")
    ours = set(p.namespaces)
    for name in spec.namespace_names():
        if name in ours:
            continue
        ns = kube.get(*NS_API, name)
        if ns is not None:
            p.left_alone.append(f"Namespace {name} (not created by run {spec.run_id})")
    return p


def _wait_gone(kube: Kube, api: tuple[str, str], name: str, namespace: str | None, timeout: float) -> bool:
    try:
        kube.wait_for(*api, name, namespace, condition=lambda obj: obj is None, timeout=timeout)
        return True
    except TimeoutError:
        return False


def execute(kube: Kube, spec: RolloutSpec, p: TeardownPlan, *, timeout: float = 600.0) -> TeardownResult:
    started = time.monotonic()
    result = TeardownResult(plan=p)
    deadline = started + timeout
    for ref in p.vms:
        ns, name = ref.split("/", 1)
        if kube.delete(*VM_API, name, ns):
            result.deleted.append(f"VirtualMachine {ref}")
    for ref in p.migrations:
        ns, name = ref.split("/", 1)
        if kube.delete(*VMIM_API, name, ns):
            result.deleted.append(f"VirtualMachineInstanceMigration {ref}")
    for ref in p.vms:  # VMs hold a finalizer until their VMI is gone
        ns, name = ref.split("/", 1)
        if not _wait_gone(kube, VM_API, name, ns, max(deadline - time.monotonic(), 1)):
            result.remaining.append(f"VirtualMachine {ref}")
    for name in p.namespaces:
        if kube.delete(*NS_API, name):
            result.deleted.append(f"Namespace {name}")
    if p.network and kube.delete(*CUDN_API, p.network):
        result.deleted.append(f"ClusterUserDefinedNetwork {p.network}")
    for name in p.namespaces:
        if not _wait_gone(kube, NS_API, name, None, max(deadline - time.monotonic(), 1)):
            result.remaining.append(f"Namespace {name}")
    if p.network and not _wait_gone(kube, CUDN_API, p.network, None, max(deadline - time.monotonic(), 1)):
        cudn = kube.get(*CUDN_API, p.network) or {}
        why = next(
            (
                c.get("message")
                for c in (cudn.get("status") or {}).get("conditions") or []
                if c.get("type") == "NetworkCreated" and c.get("status") == "False"
            ),
            "",
        )
        result.remaining.append(f"ClusterUserDefinedNetwork {p.network}" + (f" ({why})" if why else ""))
    result.seconds = time.monotonic() - started
    return result
