"""Fan-out: the runbook's step 4 — create the VMs, wait until they run, write down each IP — for
hundreds to tens of thousands of VMs, as fast as the API allows, following them to Ready by watch.

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
from tasks.kube.resources import VM, VMI
from tasks.model import VMRecord
from tasks.orchestration import BATCH_WORKERS, say, unit
from tasks.outcome import Artifact, FanoutFailed, StepResult
from tasks.progress import step_progress
from tasks.render import render_vms
from tasks.reports.provisioning import inventory_frame, latency_quantiles, pacing_note
from tasks.reports.state import RunParts
from tasks.scope import RUN_LABEL, SPEC_HASH_ANNOTATION, RunScope
from tasks.spec import RolloutSpec


@dataclass
class CreateOutcome:
    namespace: str
    name: str
    created_at: float | None = None  # client time the create returned
    adopted: bool = False
    drift: bool = False
    error: str = ""


def timestamp(value: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 time as the API server writes it; None when absent."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def create_vm(kube: Kube, obj: dict[str, Any], spec_hash: str, scope: RunScope) -> CreateOutcome:
    """Create one VM; an existing one is adopted only when it is this run's (see :mod:`tasks.scope`)."""
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
    if not scope.owns(live):
        labels = live["metadata"].get("labels") or {}
        out.error = (
            f"a VirtualMachine {md['namespace']}/{md['name']} exists that this run did not create "
            f"(run label {labels.get(RUN_LABEL)!r}); rename the VMs or delete it"
        )
        return out
    out.adopted = True
    out.created_at = timestamp(live["metadata"].get("creationTimestamp"))
    out.drift = (live["metadata"].get("annotations") or {}).get(SPEC_HASH_ANNOTATION) != spec_hash
    return out


@unit("create VM batch")
def create_batch(
    objs: list[dict[str, Any]],
    kube: Kube,
    spec_hash: str,
    scope: RunScope,
    threads: int,
    on_done: Callable[[], None] | None = None,
) -> list[CreateOutcome]:
    """Create a batch concurrently; the shared limiter in ``kube`` paces the whole process, not the batch."""

    def one(obj: dict[str, Any]) -> CreateOutcome:
        outcome = create_vm(kube, obj, spec_hash, scope)
        if on_done is not None:
            on_done()
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="fanout") as pool:
        return list(pool.map(one, objs))


@dataclass
class _Timeline:
    scheduled: float | None = None
    running: float | None = None
    ready: float | None = None
    vmi: dict[str, Any] | None = None
    vm: dict[str, Any] | None = None
    # A crash-looping VM's failed VMI is deleted and replaced: remember why the last one failed, so a
    # VM caught between two attempts is reported with its cause, not as "phase Scheduling".
    last_failure: str = ""
    failed_vmis: set[str] = field(default_factory=set)


class ReadinessTracker:
    """Follows this run's VMIs and VMs by watch and stamps each VM's phase times as events arrive."""

    def __init__(self, kube: Kube, spec: RolloutSpec) -> None:
        self.kube = kube
        self.spec = spec
        self.scope = spec.scope()
        self.selector = self.scope.selector
        self.expected = {(r.namespace, r.name) for r in spec.vm_refs()}
        self.timelines: dict[tuple[str, str], _Timeline] = {}
        self.lock = threading.Condition()
        self._informers: list[Any] = []
        self._vm_changes: list[tuple[str, str]] = []  # keys whose VM readiness flipped, in order (for waiters)

    def start(self) -> None:
        self._informers = [
            self.kube.informer(VMI, label_selector=self.selector, on_event=self._vmi_event),
            self.kube.informer(VM, label_selector=self.selector, on_event=self._vm_event),
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
        if ev.type == "RELISTED" or not self.scope.in_fleet(ev.object):
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
                if phase == "Failed":
                    tl.last_failure = vmi_reason(ev.object)
                    tl.failed_vmis.add(ev.object["metadata"].get("uid", ""))
        # no wake-up: waiters only care about VM readiness, which comes with the VM's own events

    def _vm_event(self, ev: WatchEvent) -> None:
        if ev.type == "RELISTED" or not self.scope.in_fleet(ev.object):
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
                created = (
                    oc.created_at if oc else timestamp(((tl.vm or {}).get("metadata") or {}).get("creationTimestamp"))
                )
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
                        reason=""
                        if ready
                        else not_ready_reason(tl.vm, tl.vmi, oc, tl.last_failure, len(tl.failed_vmis)),
                        created=created,
                        scheduled=tl.scheduled,
                        running=tl.running,
                        ready_at=tl.ready,
                        adopted=bool(oc and oc.adopted),
                        spec_drift=bool(oc and oc.drift),
                    )
                )
        return out


def not_ready_reason(
    vm: dict[str, Any] | None,
    vmi: dict[str, Any] | None,
    outcome: CreateOutcome | None,
    last_failure: str = "",
    failures_seen: int = 0,
) -> str:
    """Why a VM is not Ready, in the cluster's own words (pure).

    `last_failure` is the reason of the last VMI of this VM seen Failed: KubeVirt deletes a failed VMI
    and starts another after a back-off, so at the deadline a crash-looping VM may sit in a fresh
    attempt (Pending, Scheduling) whose status says nothing of why the previous ones died.
    """
    if outcome is not None and outcome.error:
        return outcome.error
    if vm is None:
        return "the VirtualMachine does not exist"
    printable = (vm.get("status") or {}).get("printableStatus", "")
    vm_status = f"VM status {printable or 'unknown'}"
    if vmi is None:
        now = "no VirtualMachineInstance"
    else:
        now = vmi_reason(vmi) or f"phase {(vmi.get('status') or {}).get('phase') or 'Pending'}"
        if (vmi.get("status") or {}).get("phase") == "Failed":
            return now
    if last_failure:
        # KubeVirt counts a VM's consecutive failed starts in status.startFailure (virt-controller's
        # VM controller); fall back on the failed VMIs this run saw when the VM does not say.
        start_failure = (vm.get("status") or {}).get("startFailure") or {}
        count = int(start_failure.get("consecutiveFailCount") or failures_seen or 1)
        return f"{last_failure} ({count} failed start{'s' if count != 1 else ''}; restarting: {now}, {vm_status})"
    if vmi is not None and vmi_reason(vmi):
        return now
    return f"{now} ({vm_status})"


def vmi_reason(vmi: dict[str, Any]) -> str:
    """A VMI's own account of why it is not running: the first False condition with a message, or its
    status reason; empty when it gives none (pure)."""
    st = vmi.get("status") or {}
    for ctype in ("PodScheduled", "Synchronized", "Ready"):
        for c in st.get("conditions") or []:
            if c.get("type") == ctype and c.get("status") == "False" and c.get("message"):
                return f"{st.get('phase', '')}: {c.get('reason', '')}: {c['message']}"
    if st.get("reason"):
        return f"{st.get('phase', '')}: {st['reason']}"
    return ""


@dataclass
class FanoutResult(StepResult):
    step = "fanout"
    failure = FanoutFailed
    report_file = "provisioning.md"
    records: list[VMRecord] = field(default_factory=list)
    outcomes: list[CreateOutcome] = field(default_factory=list)
    create_s: float = 0.0
    created: int = 0
    adopted: int = 0
    requests: int = 0
    qps: float = 0.0
    burst: int = 0

    @property
    def errors(self) -> list[CreateOutcome]:
        return [oc for oc in self.outcomes if oc.error]

    @property
    def ready(self) -> int:
        return sum(r.ready for r in self.records)

    @property
    def create_rate_per_s(self) -> float:
        """VMs created per second (not requests: creates are one request each, reads come on top)."""
        return self.created / self.create_s if self.create_s else 0.0

    def ok(self) -> bool:
        return self.ready == len(self.records) and not self.errors

    def figures(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 2),
            "create_s": round(self.create_s, 2),
            "created": self.created,
            "adopted": self.adopted,
            "create_rate_per_s": round(self.create_rate_per_s, 1),
            "ready": self.ready,
            "total": len(self.records),
            "api_requests": self.requests,
        }

    def problems(self) -> list[str]:
        return [f"not ready: {r.namespace}/{r.name}: {r.reason}" for r in self.records if not r.ready]

    def headline(self) -> str:
        rate = self.create_rate_per_s
        return (
            f"{self.ready}/{len(self.records)} VMs ready in {self.wall_s:.1f}s ({self.created} created, "
            f"{self.adopted} adopted, {rate:.1f} VMs/s{pacing_note(rate, self.qps, self.burst)})"
        )

    def failure_message(self) -> str:
        bad = [r for r in self.records if not r.ready]
        first = f": {bad[0].namespace}/{bad[0].name}: {bad[0].reason}" if bad else ""
        return f"{len(bad)} of {len(self.records)} VMs are not Ready{first}"

    def parts(self) -> RunParts:
        return RunParts(records=self.records)

    def artifacts(self) -> list[Artifact]:
        return [
            Artifact("vm-inventory", "VMs of the run", table=inventory_frame(self.records)),
            Artifact(
                "vm-latency", "VM start-up latency quantiles (ms)", table=latency_quantiles(self.records).reset_index()
            ),
            Artifact("provisioning", "Provisioning report", markdown_file="provisioning.md"),
        ]


def run_fanout(kube: Kube, spec: RolloutSpec) -> FanoutResult:
    """Create every VM of the spec (resuming a run that was cut short) and wait by watch until all are Ready."""
    objs = render_vms(spec)
    total = len(objs)
    say(
        f"creating {total} VM{'s' if total != 1 else ''} in {len(spec.namespace_names())} namespaces "
        f"(api.qps {spec.api.qps:g}, burst {spec.api.burst}, at most {spec.api.max_in_flight} requests in flight)"
    )
    tracker = ReadinessTracker(kube, spec)
    started = time.monotonic()
    outcomes: dict[tuple[str, str], CreateOutcome] = {}
    tracker.start()
    try:
        with step_progress("VMs created", total, key="fanout-create", unit=" VMs") as created_bar:
            size = spec.fanout.batch_size_for(total)
            batches = [objs[i : i + size] for i in range(0, total, size)]
            results = create_batch.map(
                batches,
                kube=kube,
                spec_hash=spec.spec_hash(),
                scope=spec.scope(),
                threads=max(1, spec.api.max_in_flight // BATCH_WORKERS),
                on_done=lambda: created_bar.advance(),
            )
        for batch in results:
            for oc in batch:
                outcomes[(oc.namespace, oc.name)] = oc
        create_s = time.monotonic() - started
        ok_keys = [k for k, oc in outcomes.items() if not oc.error]
        with step_progress("VMs ready", len(ok_keys), key="fanout-progress", unit=" VMs") as ready_bar:
            tracker.wait_all_ready(spec.fanout.ready_timeout_seconds, ok_keys, tick=ready_bar.update)
        records = tracker.records(outcomes)
    finally:
        tracker.stop()
    return FanoutResult(
        wall_s=time.monotonic() - started,
        records=records,
        outcomes=list(outcomes.values()),
        create_s=create_s,
        created=sum(1 for oc in outcomes.values() if oc.created_at and not oc.adopted and not oc.error),
        adopted=sum(1 for oc in outcomes.values() if oc.adopted),
        requests=kube.stats.requests,
        qps=spec.api.qps,
        burst=spec.api.burst,
    )
