"""Fan-out: create every VM of the run as fast as the API allows, and follow them to Ready by watch.

Creation goes through `tasks.kube` (one token bucket and one in-flight cap shared by every worker,
retries on 429/5xx). Readiness comes from two informers (VMIs and VMs of this run, by label
selector): no per-VM polling. Each VM's timeline (created → scheduled → running → ready) is
stamped with the client's clock as events arrive, for kube-burner-style latency quantiles.

A rerun of the same run id adopts the VMs that exist (they carry this run's labels) and creates the
rest, so a killed fan-out finishes without duplicates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tasks.kube import Kube, KubeError, WatchEvent
from tasks.model import VMRecord
from tasks.spec import RUN_LABEL, RolloutSpec

VM_API = ("kubevirt.io/v1", "VirtualMachine")
VMI_API = ("kubevirt.io/v1", "VirtualMachineInstance")
SPEC_HASH = "udn-rollout.io/spec-hash"


@dataclass
class CreateOutcome:
    namespace: str
    name: str
    created_at: float | None = None  # client time the create returned
    adopted: bool = False
    drift: bool = False
    error: str = ""


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=__import__("datetime").UTC).timestamp()
    except ValueError:
        return None


def create_vm(kube: Kube, obj: dict[str, Any], spec_hash: str, run_id: str) -> CreateOutcome:
    """Create one VM; an existing one is adopted only when it carries this run's labels."""
    md = obj["metadata"]
    out = CreateOutcome(md["namespace"], md["name"])
    try:
        live, created = kube.create_or_get(obj)
    except KubeError as e:
        out.error = f"{e.code} {e.reason}: {e.message}"
        return out
    if created:
        out.created_at = time.time()
        return out
    labels = live["metadata"].get("labels") or {}
    if labels.get(RUN_LABEL) != run_id:
        out.error = (
            f"a VirtualMachine {md['namespace']}/{md['name']} exists that this run did not create "
            f"(run label {labels.get(RUN_LABEL)!r}); rename the VMs or delete it"
        )
        return out
    out.adopted = True
    out.created_at = _ts(live["metadata"].get("creationTimestamp"))
    out.drift = (live["metadata"].get("annotations") or {}).get(SPEC_HASH) != spec_hash
    return out


def create_batch(
    kube: Kube, objs: list[dict[str, Any]], spec_hash: str, run_id: str, threads: int
) -> list[CreateOutcome]:
    """Create a batch concurrently; the shared limiter in `kube` paces the whole process, not the batch."""
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="fanout") as pool:
        return list(pool.map(lambda o: create_vm(kube, o, spec_hash, run_id), objs))


@dataclass
class _Timeline:
    scheduled: float | None = None
    running: float | None = None
    ready: float | None = None
    vmi: dict[str, Any] | None = None
    vm: dict[str, Any] | None = None


class ReadinessTracker:
    """Follows this run's VMIs and VMs by watch and stamps each VM's phase times as events arrive."""

    def __init__(self, kube: Kube, spec: RolloutSpec) -> None:
        self.kube = kube
        self.spec = spec
        self.selector = f"{RUN_LABEL}={spec.run_id}"
        self.expected = {(r.namespace, r.name) for r in spec.vm_refs()}
        self.timelines: dict[tuple[str, str], _Timeline] = {}
        self.lock = threading.Condition()
        self._informers: list[Any] = []
        self._vm_changes: list[tuple[str, str]] = []  # keys whose VM readiness flipped, in order (for waiters)

    def start(self) -> None:
        self._informers = [
            self.kube.informer(*VMI_API, label_selector=self.selector, on_event=self._vmi_event),
            self.kube.informer(*VM_API, label_selector=self.selector, on_event=self._vm_event),
        ]
        for inf in self._informers:
            inf.synced.wait(60)

    def stop(self) -> None:
        for inf in self._informers:
            inf.stop()
        # Each informer holds this tracker through its callback: drop our side of that cycle, so the
        # caches (a copy of every VM and VMI) are freed by reference counting, not whenever a full
        # garbage collection comes round (rarely, with udn_rollout.process.tune_gc's thresholds).
        self._informers = []

    def _key(self, obj: dict[str, Any]) -> tuple[str, str]:
        return obj["metadata"]["namespace"], obj["metadata"]["name"]

    def _vmi_event(self, ev: WatchEvent) -> None:
        if ev.type == "RELISTED":
            return
        now = time.time()
        key = self._key(ev.object)
        with self.lock:
            tl = self.timelines.setdefault(key, _Timeline())
            if ev.type == "DELETED":
                tl.vmi = None
                tl.ready = None
            else:
                tl.vmi = ev.object
                phase = (ev.object.get("status") or {}).get("phase")
                if phase in ("Scheduled", "Running") and tl.scheduled is None:
                    tl.scheduled = now
                if phase == "Running" and tl.running is None:
                    tl.running = now
        # no wake-up: waiters only care about VM readiness, which comes with the VM's own events

    def _vm_event(self, ev: WatchEvent) -> None:
        if ev.type == "RELISTED":
            return
        now = time.time()
        key = self._key(ev.object)
        with self.lock:
            tl = self.timelines.setdefault(key, _Timeline())
            was_ready = tl.vm is not None and bool((tl.vm.get("status") or {}).get("ready"))
            tl.vm = None if ev.type == "DELETED" else ev.object
            is_ready = tl.vm is not None and bool((tl.vm.get("status") or {}).get("ready"))
            if is_ready and tl.ready is None:
                tl.ready = now
                # VMs and VMIs come on two watch streams: the VM's Ready may arrive just before the
                # VMI's Running. Ready implies Running implies Scheduled, so keep the timeline ordered.
                tl.scheduled = now if tl.scheduled is None else tl.scheduled
                tl.running = now if tl.running is None else tl.running
            if is_ready != was_ready:
                # Wake waiters only when a VM's readiness flips: ~5 VM events per VM, one of them
                # matters, and every wake-up costs the busy client a GIL hand-off.
                self._vm_changes.append(key)
                self.lock.notify_all()

    def wait_all_ready(
        self,
        timeout: float,
        expected: Iterable[tuple[str, str]] | None = None,
        tick: Callable[[int, int], None] | None = None,
    ) -> bool:
        """Block until every expected VM is Ready (events wake us; no polling) or the timeout passes.

        `tick(ready, expected)` runs about once a second on the calling thread (progress artifacts).
        """
        want = set(expected) if expected is not None else self.expected
        deadline = time.monotonic() + timeout
        # Count once, then re-check only the VMs whose readiness flipped since: O(flips) in all, not
        # O(VMs) per wake-up.
        with self.lock:
            missing = {k for k in want if not self._vm_ready(k)}
            seen = len(self._vm_changes)
        while True:
            with self.lock:
                for k in self._vm_changes[seen:]:
                    if k in want:
                        if self._vm_ready(k):
                            missing.discard(k)
                        else:
                            missing.add(k)
                seen = len(self._vm_changes)
                ready = len(want) - len(missing)
                left = deadline - time.monotonic()
                if missing and left > 0:
                    self.lock.wait(min(left, 1.0))
            if tick is not None:
                tick(ready, len(want))
            if not missing:
                return True
            if left <= 0:
                return False

    def _vm_ready(self, key: tuple[str, str]) -> bool:
        tl = self.timelines.get(key)
        return tl is not None and tl.vm is not None and bool((tl.vm.get("status") or {}).get("ready"))

    def records(self, outcomes: dict[tuple[str, str], CreateOutcome]) -> list[VMRecord]:
        out = []
        with self.lock:
            for ref in self.spec.vm_refs():
                key = (ref.namespace, ref.name)
                tl = self.timelines.get(key, _Timeline())
                oc = outcomes.get(key)
                vmi_status = (tl.vmi or {}).get("status") or {}
                vm_status = (tl.vm or {}).get("status") or {}
                ifaces = vmi_status.get("interfaces") or []
                ready = bool(vm_status.get("ready"))
                created = oc.created_at if oc else _ts(((tl.vm or {}).get("metadata") or {}).get("creationTimestamp"))
                if created is not None and tl.scheduled is not None and created > tl.scheduled:
                    # the create call's thread can stamp its return after the watch thread saw the VMI
                    # scheduled (the VM existed by then): the earliest sighting is the better bound
                    created = tl.scheduled
                out.append(
                    VMRecord(
                        namespace=ref.namespace,
                        name=ref.name,
                        node=vmi_status.get("nodeName", ""),
                        ip=ifaces[0].get("ipAddress", "") if ifaces else "",
                        phase=vmi_status.get("phase", "") or ("NotCreated" if tl.vm is None else "NoVMI"),
                        ready=ready,
                        reason="" if ready else not_ready_reason(tl.vm, tl.vmi, oc),
                        created=created,
                        scheduled=tl.scheduled,
                        running=tl.running,
                        ready_at=tl.ready,
                        adopted=bool(oc and oc.adopted),
                        spec_drift=bool(oc and oc.drift),
                    )
                )
        return out


def not_ready_reason(vm: dict[str, Any] | None, vmi: dict[str, Any] | None, outcome: CreateOutcome | None) -> str:
    """Why a VM is not Ready, in the cluster's own words (pure)."""
    if outcome is not None and outcome.error:
        return outcome.error
    if vm is None:
        return "the VirtualMachine does not exist"
    printable = (vm.get("status") or {}).get("printableStatus", "")
    if vmi is None:
        return f"no VirtualMachineInstance (VM status {printable or 'unknown'})"
    st = vmi.get("status") or {}
    for ctype in ("PodScheduled", "Synchronized", "Ready"):
        for c in st.get("conditions") or []:
            if c.get("type") == ctype and c.get("status") == "False" and c.get("message"):
                return f"{st.get('phase', '')}: {c.get('reason', '')}: {c['message']}"
    if st.get("reason"):
        return f"{st.get('phase', '')}: {st['reason']}"
    return f"phase {st.get('phase') or 'Pending'} (VM status {printable or 'unknown'})"


@dataclass
class FanoutResult:
    records: list[VMRecord]
    outcomes: list[CreateOutcome]
    wall_s: float
    create_s: float
    created: int
    adopted: int
    errors: list[CreateOutcome] = field(default_factory=list)
    all_ready: bool = False
    requests: int = 0
    achieved_qps: float = 0.0
