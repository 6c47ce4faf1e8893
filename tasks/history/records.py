"""Plain records of the run history, shared by the report reader (``ingest``) and the database (``store``).

They know nothing about report files or SQL: ``ingest`` fills them from a run's directory, ``store``
writes and reads them, so a change of the report format touches one module and a change of database
touches another. ``summarize`` computes the per-run row once, at ingest, so that listing 100 runs of
10,000 VMs reads 100 rows instead of a million.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

#: Churn actions the tool performs (issue 17); other values are kept as written, with a warning.
KNOWN_ACTIONS = ("migrate", "restart", "drain")
#: The action of a churn.csv without an ``action`` column: until issue 17 churn only live-migrated.
DEFAULT_ACTION = "migrate"

EXIT_BAD_INPUT = 2
EXIT_DB_UNREACHABLE = 4


class HistoryError(Exception):
    """Something the user can fix; ``exit_code`` is what the CLI returns (nothing was written)."""

    exit_code = EXIT_BAD_INPUT


class IngestError(HistoryError):
    """A report directory could not be read into records (missing or malformed file)."""


class HistoryURLError(HistoryError):
    """The database URL cannot be used (malformed, or a database we do not support)."""


class HistoryUnavailable(HistoryError):
    """The database could not be reached or refused the operation."""

    exit_code = EXIT_DB_UNREACHABLE


@dataclass(frozen=True, slots=True)
class VMRow:
    """One VM as the run's inventory saw it (after fan-out)."""

    namespace: str
    name: str
    node: str = ""
    ip: str = ""
    phase: str = ""
    ready: bool = False


@dataclass(frozen=True, slots=True)
class MoveRow:
    """One move of one VM (live migration, restart, or a drain's eviction); a VM may move several times."""

    namespace: str
    name: str
    action: str = DEFAULT_ACTION
    node_before: str = ""
    node_after: str = ""
    ip_before: str = ""  # the VMI's address as the cluster reports it
    ip_after: str = ""
    guest_ip_before: str = ""  # the address the guest itself holds (console), when measured
    guest_ip_after: str = ""
    outcome: str = ""  # migration phase (Succeeded, Failed, ...) or the action's outcome
    duration_s: float | None = None
    downtime_ms: float | None = None
    packets_lost: int | None = None
    first_reply_ip: str = ""
    old_ip_holder: str = ""  # "<ns>/<vm>" now holding the old address
    failure_reason: str = ""

    @property
    def node_changed(self) -> bool:
        return bool(self.node_after) and self.node_before != self.node_after

    @property
    def ip_changed(self) -> bool:
        return bool(self.ip_after) and self.ip_before != self.ip_after

    @property
    def guest_ip_changed(self) -> bool:
        return bool(self.guest_ip_before) and bool(self.guest_ip_after) and self.guest_ip_before != self.guest_ip_after

    @property
    def stale_ip_hazard(self) -> bool:
        return bool(self.old_ip_holder)


@dataclass(frozen=True, slots=True)
class CapacityRow:
    """Addresses of one node subnet (Layer3) or of the whole pool (Layer2: ``node`` empty)."""

    node: str
    subnet: str = ""
    usable: int | None = None
    in_use: int | None = None
    free: int | None = None


@dataclass(slots=True)
class RunRecord:
    """Everything the history keeps of one run, as read from its report directory."""

    run_id: str
    started: datetime | None = None  # UTC, aware
    finished: datetime | None = None
    network: str = ""
    topology: str = ""
    cluster_server: str = ""
    status: str = ""
    source: str = ""  # the report directory it was read from
    vms: list[VMRow] = field(default_factory=list)
    moves: list[MoveRow] = field(default_factory=list)
    capacity: list[CapacityRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One row of ``udn-rollout history``: a run's figures, computed at ingest."""

    run_id: str
    started: datetime | None
    finished: datetime | None
    network: str
    topology: str
    cluster_server: str
    status: str
    vms: int
    ready: int
    moves: int
    node_changes: int
    ip_changes: int
    guest_ip_changes: int
    stale_ip_hazards: int
    downtime_count: int
    downtime_p50_ms: float | None
    downtime_p95_ms: float | None
    downtime_p99_ms: float | None
    downtime_max_ms: float | None
    lowest_free: int | None  # fewest free addresses of any node subnet (the pool on Layer2)
    lowest_free_node: str
    total_free: int | None
    total_usable: int | None
    source: str = ""
    recorded_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class VMEvent:
    """One line of ``history --vm``: the VM in a run's inventory, or one of its moves in that run."""

    run_id: str
    started: datetime | None
    network: str
    topology: str
    kind: str  # "inventory" or the move's action
    node_before: str
    node_after: str
    ip_before: str
    ip_after: str
    guest_ip_before: str = ""
    guest_ip_after: str = ""
    phase: str = ""  # inventory: VMI phase; move: outcome
    ready: bool | None = None
    downtime_ms: float | None = None
    stale_ip_hazard: bool = False


def quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated quantile (numpy's default), ``q`` in [0, 1]; None for no values."""
    n = len(sorted_values)
    if not n:
        return None
    pos = (n - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def summarize(run: RunRecord, recorded_at: datetime | None = None) -> RunSummary:
    """The run's row: counts over its moves, downtime quantiles (ms) and the tightest node subnet."""
    downtimes = sorted(m.downtime_ms for m in run.moves if m.downtime_ms is not None)
    with_free = [c for c in run.capacity if c.free is not None]
    lowest = min(with_free, key=lambda c: (c.free, c.node)) if with_free else None
    return RunSummary(
        run_id=run.run_id,
        started=run.started,
        finished=run.finished,
        network=run.network,
        topology=run.topology,
        cluster_server=run.cluster_server,
        status=run.status,
        vms=len(run.vms),
        ready=sum(v.ready for v in run.vms),
        moves=len(run.moves),
        node_changes=sum(m.node_changed for m in run.moves),
        ip_changes=sum(m.ip_changed for m in run.moves),
        guest_ip_changes=sum(m.guest_ip_changed for m in run.moves),
        stale_ip_hazards=sum(m.stale_ip_hazard for m in run.moves),
        downtime_count=len(downtimes),
        downtime_p50_ms=_round(quantile(downtimes, 0.50)),
        downtime_p95_ms=_round(quantile(downtimes, 0.95)),
        downtime_p99_ms=_round(quantile(downtimes, 0.99)),
        downtime_max_ms=_round(downtimes[-1]) if downtimes else None,
        lowest_free=lowest.free if lowest else None,
        lowest_free_node=(lowest.node or lowest.subnet) if lowest else "",
        total_free=sum(c.free for c in with_free if c.free is not None) if with_free else None,
        total_usable=sum(c.usable for c in run.capacity if c.usable is not None) if run.capacity else None,
        source=run.source,
        recorded_at=recorded_at,
    )
