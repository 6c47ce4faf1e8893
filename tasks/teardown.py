"""Teardown: a safe way back — delete what one run created, in finalizer order, and nothing else.

VMs first (their VMIs go with them and free their addresses), migrations, then the namespaces (which
takes their Secrets and NetworkAttachmentDefinitions once nothing uses the network), then the
ClusterUserDefinedNetwork, whose finalizer lets go when its last NAD is gone. Only objects that are the
run's (its labels, within its namespaces: :mod:`tasks.scope`) are deleted; same-named objects without
the labels, and labelled objects elsewhere, are left alone and named.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tasks.cordon import cordoned_by, uncordon
from tasks.kube import Kube, WaitTimeout
from tasks.kube.resources import CUDN, LEASE, NAMESPACE, NODE, VM, VMIM, Resource
from tasks.lock import holder_of, lease_name
from tasks.orchestration import say, unit
from tasks.outcome import Artifact, StepResult, TeardownIncomplete
from tasks.progress import step_progress
from tasks.spec import RolloutSpec


@dataclass
class TeardownPlan:
    vms: list[str] = field(default_factory=list)  # ns/name
    migrations: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    network: str | None = None
    stale_lease: str | None = None  # the run's own Lease, left by a killed run
    cordons: list[str] = field(default_factory=list)  # nodes an interrupted churn of the run left cordoned
    left_alone: list[str] = field(default_factory=list)  # same names, not this run's: untouched

    def lines(self) -> list[str]:
        out = [f"VirtualMachine {v}" for v in self.vms]
        out += [f"VirtualMachineInstanceMigration {m}" for m in self.migrations]
        out += [f"Namespace {n}" for n in self.namespaces]
        if self.network:
            out.append(f"ClusterUserDefinedNetwork {self.network}")
        if self.stale_lease:
            out.append(f"Lease {self.stale_lease}")
        out += [f"cordon of Node {n} (uncordon)" for n in self.cordons]
        return out


@dataclass
class TeardownResult(StepResult):
    step = "teardown"
    failure = TeardownIncomplete
    plan: TeardownPlan = field(default_factory=TeardownPlan)
    run_id: str = ""
    dry_run: bool = False
    deleted: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.wall_s

    def ok(self) -> bool:
        return not self.remaining

    def figures(self) -> dict[str, Any]:
        return {"deleted": len(self.deleted), "remaining": len(self.remaining), "wall_s": round(self.wall_s, 2)}

    def problems(self) -> list[str]:
        return [f"still present: {x}" for x in self.remaining]

    def headline(self) -> str:
        lines = [("would delete " if self.dry_run else "delete ") + line for line in self.plan.lines()]
        lines += [f"left alone: {line}" for line in self.plan.left_alone]
        if not self.plan.lines():
            lines.append(f"nothing labelled with run {self.run_id} is left")
        if not self.dry_run:
            lines.append(f"deleted {len(self.deleted)} objects in {self.wall_s:.1f}s")
        return "\n".join(lines)

    def failure_message(self) -> str:
        return "still present after the timeout: " + "; ".join(self.remaining)

    def artifacts(self) -> list[Artifact]:
        if self.dry_run:
            return []
        md = "\n".join(
            [
                "# Teardown",
                "",
                f"Deleted {len(self.deleted)} objects in {self.wall_s:.1f}s.",
                "",
                *[f"- left alone: {x}" for x in self.plan.left_alone],
                *[f"- still present: {x}" for x in self.remaining],
            ]
        )
        return [Artifact("teardown", "Teardown", markdown=md)]


def _names(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in objs)


@unit("plan teardown")
def plan(kube: Kube, spec: RolloutSpec) -> TeardownPlan:
    """What teardown would delete (the run's objects) and what it would leave alone."""
    scope = spec.scope()
    p = TeardownPlan()
    vms, skipped_vms = scope.split(kube.list(VM, label_selector=scope.selector)[0])
    migs, skipped_migs = scope.split(kube.list(VMIM, label_selector=scope.selector)[0])
    nss, skipped_ns = scope.split(kube.list(NAMESPACE, label_selector=scope.selector)[0])
    p.vms, p.migrations = _names(vms), _names(migs)
    p.namespaces = sorted(n["metadata"]["name"] for n in nss)
    p.left_alone += [
        f"{x} (labelled with run {spec.run_id} but outside its namespaces)"
        for x in skipped_vms + skipped_migs + skipped_ns
    ]
    cudn = kube.get(CUDN, spec.network.name)
    if cudn is not None:
        if scope.owns(cudn):
            p.network = spec.network.name
        else:
            p.left_alone.append(f"ClusterUserDefinedNetwork {spec.network.name} (not created by run {spec.run_id})")
    ours = set(p.namespaces)
    for name in spec.namespace_names():
        if name not in ours and kube.get(NAMESPACE, name) is not None:
            p.left_alone.append(f"Namespace {name} (not created by run {spec.run_id})")
    lease = kube.get(LEASE, lease_name(spec.network.name), spec.lock.namespace)
    if lease is not None:
        holder = holder_of(lease)
        if holder.run_id == spec.run_id and holder.stale(datetime.now(UTC)):
            p.stale_lease = f"{spec.lock.namespace}/{holder.lease}"
    p.cordons = sorted(n["metadata"]["name"] for n in kube.list(NODE)[0] if cordoned_by(n) == spec.run_id)
    return p


def _wait_gone(kube: Kube, r: Resource, name: str, namespace: str | None, timeout: float) -> bool:
    try:
        kube.wait_for(r, name, namespace, condition=lambda obj: obj is None, timeout=timeout)
        return True
    except WaitTimeout:
        return False


@unit("delete")
def execute(kube: Kube, spec: RolloutSpec, p: TeardownPlan, *, timeout: float = 600.0) -> TeardownResult:
    started = time.monotonic()
    say(f"deleting {len(p.lines())} objects of run {spec.run_id} (VMs, then namespaces, then the network)")
    result = TeardownResult(plan=p, run_id=spec.run_id)
    deadline = started + timeout
    with step_progress("objects deleted", len(p.lines()), key="teardown-progress") as bar:
        for ref in p.vms:
            ns, name = ref.split("/", 1)
            if kube.delete(VM, name, ns):
                result.deleted.append(f"VirtualMachine {ref}")
            bar.advance()
        for ref in p.migrations:
            ns, name = ref.split("/", 1)
            if kube.delete(VMIM, name, ns):
                result.deleted.append(f"VirtualMachineInstanceMigration {ref}")
            bar.advance()
        for ref in p.vms:  # VMs hold a finalizer until their VMI is gone
            ns, name = ref.split("/", 1)
            if not _wait_gone(kube, VM, name, ns, max(deadline - time.monotonic(), 1)):
                result.remaining.append(f"VirtualMachine {ref}")
        for name in p.namespaces:
            if kube.delete(NAMESPACE, name):
                result.deleted.append(f"Namespace {name}")
        if p.network and kube.delete(CUDN, p.network):
            result.deleted.append(f"ClusterUserDefinedNetwork {p.network}")
        for name in p.namespaces:
            if not _wait_gone(kube, NAMESPACE, name, None, max(deadline - time.monotonic(), 1)):
                result.remaining.append(f"Namespace {name}")
            bar.advance()
        if p.network:
            if not _wait_gone(kube, CUDN, p.network, None, max(deadline - time.monotonic(), 1)):
                cudn = kube.get(CUDN, p.network) or {}
                why = next(
                    (
                        c.get("message")
                        for c in (cudn.get("status") or {}).get("conditions") or []
                        if c.get("type") == "NetworkCreated" and c.get("status") == "False"
                    ),
                    "",
                )
                result.remaining.append(f"ClusterUserDefinedNetwork {p.network}" + (f" ({why})" if why else ""))
            bar.advance()
        if p.stale_lease:
            ns, name = p.stale_lease.split("/", 1)
            if kube.delete(LEASE, name, ns):
                result.deleted.append(f"Lease {p.stale_lease}")
            bar.advance()
        for node in p.cordons:
            if uncordon(kube, node, spec.run_id):
                result.deleted.append(f"cordon of Node {node}")
            bar.advance()
    result.wall_s = time.monotonic() - started
    return result


def run_teardown(kube: Kube, spec: RolloutSpec, *, dry_run: bool = False, timeout: float = 600.0) -> TeardownResult:
    """Plan, then (unless ``dry_run``) delete in finalizer order."""
    started = time.monotonic()
    p = plan(kube, spec)
    if dry_run:
        return TeardownResult(plan=p, run_id=spec.run_id, dry_run=True, wall_s=time.monotonic() - started)
    return execute(kube, spec, p, timeout=timeout)
