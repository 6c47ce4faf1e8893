"""The churn diff: what live migration did to each selected VM's node and address.

Pure functions over the records of ``tasks.model``: ``choose_vms`` picks the VMs to migrate from a
snapshot, ``diff`` compares the snapshots taken before and after with the migrations' outcomes. The
facts that matter to an administrator betting on a topology:

* on Layer3 a VM that changes node takes an address from the target node's subnet (its IP changes);
  on Layer2 the address must survive the move;
* a failed migration leaves the VM on its source node with its address;
* the old address may already belong to another VM (a *stale-IP hazard*: anything that cached the
  old address now talks to the wrong VM).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime

from tasks.model import ChurnRow, MoveResult, VMSnapshot

__all__ = ["MIGRATABLE_PHASES", "choose_vms", "diff"]

Key = tuple[str, str]

#: Snapshot phases a VM can be live-migrated from ("" when the snapshot did not record a phase).
MIGRATABLE_PHASES = frozenset({"", "Running"})

_TERMINAL = frozenset({"Succeeded", "Failed"})


def _addresses(s: VMSnapshot) -> list[str]:
    out = [s.ip] if s.ip else []
    out.extend(ip for ip in s.ips if ip and ip != s.ip)
    return out


def _seconds_between(started: str, ended: str) -> float | None:
    """Seconds between two RFC 3339 timestamps (as in ``migrationState``), None when unparseable."""
    if not started or not ended:
        return None
    try:
        a = datetime.fromisoformat(started.replace("Z", "+00:00"))
        b = datetime.fromisoformat(ended.replace("Z", "+00:00"))
    except ValueError:
        return None
    if (a.tzinfo is None) != (b.tzinfo is None):
        return None
    return (b - a).total_seconds()


def diff(
    before: Sequence[VMSnapshot],
    after: Sequence[VMSnapshot],
    migrations: Sequence[MoveResult],
    selected: Iterable[Key],
    *,
    network_of: Mapping[Key, str] | None = None,
) -> list[ChurnRow]:
    """One ``ChurnRow`` per move of each selected VM (in the order given, duplicates dropped); a VM
    with no move recorded gets one row saying so.

    * a VM's moves are its ``MoveResult`` records in the order listed (a rolling drain can move a VM
      more than once); node and address before a move are the record's (its source node, its
      ``ip_before``), falling back to the ``before`` snapshot for the first move and to the previous
      move's end for later ones; after the last move they come from ``after`` (empty when the VM is
      gone), after an earlier one from the record (``target_node``, ``ip_after``);
    * a move's duration is ``duration_s`` or, failing that, ``ended - started``; one that did not reach
      Succeeded/Failed gets the reason "did not finish (last phase …)";
    * stale-IP hazard: a *different* VM of the same network holds the address the VM had before the
      move in the after snapshot (``old_ip_holder`` = "ns/vm", several joined by commas). All
      snapshots form one network unless ``network_of`` maps (namespace, vm) to a network name.
    """
    nets = network_of or {}
    before_by = {(s.namespace, s.name): s for s in before}
    after_by = {(s.namespace, s.name): s for s in after}
    moves_by: dict[Key, list[MoveResult]] = {}
    for mr in migrations:
        moves_by.setdefault((mr.namespace, mr.vm), []).append(mr)

    holders: dict[tuple[str, str], list[Key]] = {}
    for key, s in after_by.items():
        net = nets.get(key, "")
        for ip in _addresses(s):
            holders.setdefault((net, ip), []).append(key)

    def holder_of(key: Key, ip: str) -> str:
        if not ip:
            return ""
        others = [k for k in holders.get((nets.get(key, ""), ip), []) if k != key]
        return ",".join(f"{ns}/{vm}" for ns, vm in sorted(others))

    rows: list[ChurnRow] = []
    seen: set[Key] = set()
    for key in selected:
        key = (key[0], key[1])
        if key in seen:
            continue
        seen.add(key)
        b, a = before_by.get(key), after_by.get(key)
        moves = moves_by.get(key) or []
        if not moves:
            missing = ["no migration recorded"] + (["VM missing from the after snapshot"] if a is None else [])
            ip_before = b.ip if b else ""
            rows.append(
                ChurnRow(
                    namespace=key[0],
                    vm=key[1],
                    node_before=b.node if b else "",
                    node_after=a.node if a else "",
                    ip_before=ip_before,
                    ip_after=a.ip if a else "",
                    migration_phase="",
                    failure_reason="; ".join(missing),
                    old_ip_holder=holder_of(key, ip_before),
                )
            )
            continue
        node_prev = b.node if b else ""
        ip_prev = b.ip if b else ""
        for i, m in enumerate(moves):
            last = i == len(moves) - 1
            node_before = m.source_node or node_prev
            ip_before = m.ip_before or ip_prev
            if last:
                node_after = a.node if a else ""
                ip_after = a.ip if a else ""
            else:
                node_after = m.target_node if m.phase == "Succeeded" else node_before
                ip_after = m.ip_after or ip_before
            reasons: list[str] = []
            duration = m.duration_s if m.duration_s is not None else _seconds_between(m.started, m.ended)
            if m.failure_reason:
                reasons.append(m.failure_reason)
            elif m.phase not in _TERMINAL:
                reasons.append(f"did not finish (last phase {m.phase or 'unknown'})")
            if last and a is None:
                reasons.append("VM missing from the after snapshot")
            d = m.downtime
            rows.append(
                ChurnRow(
                    namespace=key[0],
                    vm=key[1],
                    node_before=node_before,
                    node_after=node_after,
                    ip_before=ip_before,
                    ip_after=ip_after,
                    migration_phase=m.phase,
                    duration_s=duration,
                    failure_reason="; ".join(reasons),
                    old_ip_holder=holder_of(key, ip_before) if ip_before != ip_after or last else "",
                    action=m.action,
                    move=i + 1,
                    drain_node=m.drain_node,
                    via=m.migration,
                    downtime_ms=d.downtime_ms,
                    packets_lost=d.packets_lost,
                    first_reply_ip=d.first_reply_ip,
                    last_reply_before=d.last_reply_before,
                    first_reply_after=d.first_reply_after,
                    downtime_peer=d.peer,
                    downtime_note=d.note,
                )
            )
            node_prev, ip_prev = node_after, ip_after
    return rows


def _round_half_up(x: float) -> int:
    # The epsilon absorbs binary noise such as 0.29 * 100 = 28.999999999999996.
    return math.floor(x + 0.5 + 1e-9)


def choose_vms(
    snapshot: Sequence[VMSnapshot],
    *,
    fraction: float | None = None,
    count: int | None = None,
    selector_matches: Collection[Key] | Callable[[VMSnapshot], bool] | None = None,
    drain_node: str | None = None,
    seed: int = 0,
) -> list[Key]:
    """The VMs to migrate, as sorted (namespace, vm) pairs; the same inputs give the same choice.

    Candidates are the snapshot's VMs in a migratable phase (Running, or no phase recorded).
    ``selector_matches`` (the keys a label selector matched, or a predicate) and ``drain_node`` narrow
    the candidates; ``fraction`` or ``count`` then draw a seeded random sample from them. With only a
    filter, every candidate it keeps is chosen (``drain_node`` alone = every VM on that node).

    ``fraction`` rounds half up (25 % of 10 VMs = 3) and picks at least one VM when it is above zero
    and there are candidates; ``count`` is capped at the number of candidates.
    """
    if fraction is not None and count is not None:
        raise ValueError("give either fraction or count, not both")
    if fraction is None and count is None and selector_matches is None and drain_node is None:
        raise ValueError("nothing to choose by: give fraction, count, selector_matches or drain_node")
    if fraction is not None and not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0, got {count}")

    candidates = sorted({(s.namespace, s.name): s for s in snapshot if s.phase in MIGRATABLE_PHASES}.items())
    if selector_matches is not None:
        if callable(selector_matches):
            pred = selector_matches
            candidates = [(k, s) for k, s in candidates if pred(s)]
        else:
            wanted = {(k[0], k[1]) for k in selector_matches}
            candidates = [(k, s) for k, s in candidates if k in wanted]
    if drain_node is not None:
        candidates = [(k, s) for k, s in candidates if s.node == drain_node]
    keys = [k for k, _ in candidates]

    if fraction is not None:
        n = _round_half_up(fraction * len(keys))
        if fraction > 0 and keys:
            n = max(1, n)
    elif count is not None:
        n = count
    else:
        return keys
    n = min(n, len(keys))
    return sorted(random.Random(seed).sample(keys, n))
