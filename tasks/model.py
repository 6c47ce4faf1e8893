"""Plain records that flow between the steps of a rollout and into the reports.

Each step produces lists of these; the report code turns them into tables. They are frozen
dataclasses of plain values (no Kubernetes objects), so they are cheap to build by the ten thousand,
easy to test, and serialise to JSON for `run.json` and Prefect artifacts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Outcome = Literal["reply", "timeout", "unreachable", "error"]


@dataclass(frozen=True)
class VMRecord:
    """One VM after fan-out: where it runs, its address, and when it reached each phase.

    Times are seconds since the epoch as the client observed them (watch events), so latencies have
    sub-second resolution; `created` is the VM's creation as the server stamped it when the client
    did not create it itself (a resumed run).
    """

    namespace: str
    name: str
    node: str = ""
    ip: str = ""
    phase: str = ""
    ready: bool = False
    reason: str = ""  # why it is not ready (phase reason or condition message)
    created: float | None = None  # VM created (client: the create call returned)
    scheduled: float | None = None  # VMI phase Scheduled seen
    running: float | None = None  # VMI phase Running seen
    ready_at: float | None = None  # VM Ready condition True seen
    adopted: bool = False  # existed before this run's create (resume), carries this run's labels
    spec_drift: bool = False  # its spec-hash annotation differs from the spec's

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProbeResult:
    """One ping from a source VM's console to a target address."""

    src_namespace: str
    src_vm: str
    src_node: str
    dst_ip: str
    dst_namespace: str = ""  # empty for foreign targets (canary outside the network, default network)
    dst_vm: str = ""
    dst_node: str = ""
    kind: Literal["mesh", "isolation"] = "mesh"
    expect: Literal["reply", "silent"] = "reply"
    transmitted: int = 0
    received: int = 0
    loss_pct: float = 100.0
    rtt_min_ms: float | None = None
    rtt_avg_ms: float | None = None
    rtt_max_ms: float | None = None
    outcome: Outcome = "error"
    exit_code: int | None = None
    error: str = ""  # console or parsing problem, when outcome is "error"
    cause: str = ""  # why it did not match its expectation, in words (tasks.guest.cause)

    @property
    def passed(self) -> bool:
        """Whether the probe matches its expectation: replies where expected, silence where required."""
        if self.outcome == "error":
            return False
        return self.received > 0 if self.expect == "reply" else self.received == 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d


@dataclass(frozen=True)
class VMSnapshot:
    """A VM's placement and address at one moment (before/after churn)."""

    namespace: str
    name: str
    node: str
    ip: str
    mac: str = ""
    phase: str = ""
    ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class Downtime:
    """What a VM that stayed put saw of one move, pinging it (``ping -D``) across it."""

    peer: str = ""  # "ns/vm" that pinged; "" = not measured
    last_reply_before: str = ""  # ISO-8601 UTC, the guest's clock
    first_reply_after: str = ""
    first_reply_ip: str = ""  # which address answered first after the move
    packets_lost: int | None = None
    downtime_ms: float | None = None
    note: str = ""  # why it is missing or incomplete, in words


@dataclass(frozen=True)
class MoveResult:
    """What one move did: a live migration (``migration`` = the VMIM), a restart (``stop/start``) or a
    drain's eviction (``eviction → <VMIM>``)."""

    namespace: str
    vm: str
    migration: str  # the VMIM name, or how the VM was moved
    phase: str  # Succeeded | Failed | (timeout: the last phase seen)
    source_node: str = ""
    target_node: str = ""
    started: str = ""  # migrationState.startTimestamp, or when the tool began the move
    ended: str = ""
    duration_s: float | None = None
    failure_reason: str = ""
    action: str = "migrate"  # migrate | restart | drain
    ip_before: str = ""  # the VMI address when the move began ("" = take it from the snapshot)
    ip_after: str = ""  # ... and when it ended ("" = from the snapshot after)
    drain_node: str = ""  # the node being drained (action drain)
    downtime: Downtime = Downtime()


@dataclass(frozen=True)
class ChurnRow:
    """Before/after of one VM selected for migration."""

    namespace: str
    vm: str
    node_before: str
    node_after: str
    ip_before: str
    ip_after: str
    migration_phase: str
    duration_s: float | None = None
    failure_reason: str = ""
    old_ip_holder: str = ""  # "<ns>/<vm>" now holding the old address (stale-IP hazard), if any
    action: str = "migrate"  # migrate | restart | drain
    guest_ip_before: str = ""  # what the guest itself held (read over its console), "" = none / not read
    guest_ip_after: str = ""
    reachable_after: str = ""  # "yes" / "no" from a peer that did not move, "" = not probed
    cause: str = ""  # why it is not reachable after the move, in words
    move: int = 1  # the VM's n-th move of this churn (a rolling drain can move a VM more than once)
    drain_node: str = ""
    via: str = ""  # the VMIM, "stop/start", or "eviction → <VMIM>"
    downtime_ms: float | None = None  # from the last reply before to the first after, by a peer's ping -D
    packets_lost: int | None = None
    first_reply_ip: str = ""
    last_reply_before: str = ""
    first_reply_after: str = ""
    downtime_peer: str = ""
    downtime_note: str = ""

    @property
    def node_changed(self) -> bool:
        return bool(self.node_after) and self.node_before != self.node_after

    @property
    def ip_changed(self) -> bool:
        return bool(self.ip_after) and self.ip_before != self.ip_after

    @property
    def stale_ip_hazard(self) -> bool:
        return bool(self.old_ip_holder)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(node_changed=self.node_changed, ip_changed=self.ip_changed, stale_ip_hazard=self.stale_ip_hazard)
        return d


@dataclass(frozen=True)
class Check:
    """One preflight check: ok | warn | fail, what was found, and how to fix it."""

    name: str
    status: Literal["ok", "warn", "fail"]
    detail: str
    fix: str = ""


@dataclass
class StepSummary:
    """What a step reports upward to the rollout summary and run.json."""

    step: str
    ok: bool
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
