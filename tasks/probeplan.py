"""Probe planning for the connectivity check: who pings whom.

A full mesh proves most but costs N·(N−1) pings, so above a threshold we sample. The sampled plan must
still catch the failures that matter on an overlay network: a broken node-to-node tunnel, a namespace
left out of the network, a VM whose interface is down. Hence its guarantees:

* every (source node, target node) pair present in the fleet is probed at least once (same-node
  pairs too, when a node holds two VMs or more);
* every (source namespace, target namespace) pair likewise;
* every VM sends at least k probes and receives at least k probes (k capped at N−1);
* no self-probes and no duplicate (source, target) pairs; the same fleet and seed give the same plan.

It costs O(N·k + P) time and memory, P being the node and namespace pairs to cover (each needs a probe).

Isolation probes go to addresses that must stay silent: a canary VM in a namespace the network does not
select, the default network's addresses.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal, NamedTuple

Mode = Literal["auto", "full", "sampled"]
PlanMode = Literal["full", "sampled", "isolation"]
ProbeKind = Literal["mesh", "isolation"]
Expect = Literal["reply", "silent"]


@dataclass(frozen=True, slots=True)
class VMEndpoint:
    """A running VM as the planner sees it: where it is and the address to ping."""

    namespace: str
    name: str
    node: str
    ip: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class Target:
    """An address outside the fleet that must not answer (canary VM, default-network pod or node)."""

    ip: str
    label: str
    namespace: str | None = None
    node: str | None = None


class Probe(NamedTuple):
    """One ping from ``src`` to ``dst``. A NamedTuple: cheap to build by the ten thousand."""

    src: VMEndpoint
    dst: VMEndpoint | Target
    kind: ProbeKind = "mesh"
    expect: Expect = "reply"

    @property
    def dst_ip(self) -> str:
        return self.dst.ip


@dataclass(slots=True)
class ProbePlan:
    """The probes to run, grouped by source in the order planned, and the fleet they were planned for."""

    probes: list[Probe]
    mode: PlanMode
    vms: tuple[VMEndpoint, ...] = ()
    k: int = 0
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.probes)

    def extended(self, other: ProbePlan) -> ProbePlan:
        """This plan plus another's probes (e.g. a mesh plan plus its isolation probes)."""
        return ProbePlan(
            probes=self.probes + other.probes,
            mode=self.mode,
            vms=self.vms,
            k=self.k,
            seed=self.seed,
            notes=self.notes + other.notes,
        )

    def coverage(self) -> dict[str, Any]:
        """Counts for the report: how much of the fleet the mesh probes cover."""
        by_key = {v.key: v for v in self.vms}
        sent = dict.fromkeys(by_key, 0)
        received = dict.fromkeys(by_key, 0)
        node_req = required_pairs(v.node for v in self.vms)
        ns_req = required_pairs(v.namespace for v in self.vms)
        node_cov: set[tuple[str, str]] = set()
        ns_cov: set[tuple[str, str]] = set()
        mesh = iso = 0
        for p in self.probes:
            if p.kind == "isolation":
                iso += 1
                continue
            mesh += 1
            s, d = p.src, p.dst
            if s.key in sent:
                sent[s.key] += 1
            if isinstance(d, VMEndpoint) and d.key in received:
                received[d.key] += 1
                node_cov.add((s.node, d.node))
                ns_cov.add((s.namespace, d.namespace))
        return {
            "mode": self.mode,
            "vms": len(self.vms),
            "probes": len(self.probes),
            "mesh_probes": mesh,
            "isolation_probes": iso,
            "k": self.k,
            "min_sent": min(sent.values(), default=0),
            "max_sent": max(sent.values(), default=0),
            "min_received": min(received.values(), default=0),
            "max_received": max(received.values(), default=0),
            "node_pairs_required": len(node_req),
            "node_pairs_covered": len(node_req & node_cov),
            "namespace_pairs_required": len(ns_req),
            "namespace_pairs_covered": len(ns_req & ns_cov),
        }


def required_pairs(groups: Iterable[str]) -> set[tuple[str, str]]:
    """Ordered (a, b) pairs a plan must cover: distinct groups, and (a, a) when a holds two VMs or more."""
    counts: dict[str, int] = {}
    for g in groups:
        counts[g] = counts.get(g, 0) + 1
    return {(a, b) for a in counts for b in counts if a != b or counts[a] >= 2}


def plan_probes(
    vms: Sequence[VMEndpoint],
    *,
    mode: Mode = "auto",
    full_mesh_threshold: int = 50,
    k: int = 8,
    seed: int = 0,
) -> ProbePlan:
    """Plan mesh probes: full mesh up to ``full_mesh_threshold`` VMs (``auto``), sampled above it.

    The result depends only on the set of VMs and the seed, not on the input order.
    """
    if mode not in ("auto", "full", "sampled"):
        raise ValueError(f"mode must be auto, full or sampled, not {mode!r}")
    if k < 0:
        raise ValueError("k (peers per VM) must be >= 0")
    fleet = sorted(vms, key=lambda v: (v.namespace, v.name))
    for a, b in pairwise(fleet):
        if a.key == b.key:
            raise ValueError(f"VM {a.namespace}/{a.name} is listed twice")
    n = len(fleet)
    full = mode == "full" or (mode == "auto" and n <= full_mesh_threshold)
    if full:
        probes = [Probe(s, d) for s in fleet for d in fleet if s is not d]
        return ProbePlan(probes=probes, mode="full", vms=tuple(fleet), k=max(0, n - 1), seed=seed)
    return _sampled(fleet, k, seed)


def _sampled(fleet: list[VMEndpoint], k: int, seed: int) -> ProbePlan:
    n = len(fleet)
    rng = random.Random(seed)
    kk = min(k, max(0, n - 1))
    # 1. k-regular part: a circulant over a shuffled order. Offset d sends order[i] -> order[i+d];
    #    distinct non-zero offsets give each VM exactly kk distinct peers out and kk in, never itself.
    order = list(range(n))
    rng.shuffle(order)
    offsets = rng.sample(range(1, n), kk) if kk else []
    out: list[list[int]] = [[] for _ in range(n)]
    for d in offsets:
        for s, t in zip(order, order[d:] + order[:d], strict=True):
            out[s].append(t)

    # 2. Greedy cover of the node pairs and namespace pairs the circulant missed. An uncovered pair (a, b)
    #    means no probe yet goes from group a to group b, so any new (s in a, t in b) is not a duplicate.
    node_ids, node_members = _index(fleet, order, lambda v: v.node)
    ns_ids, ns_members = _index(fleet, order, lambda v: v.namespace)
    nn, ns = len(node_members), len(ns_members)
    node_cov = {node_ids[s] * nn + node_ids[t] for s in range(n) for t in out[s]}
    ns_cov = {ns_ids[s] * ns + ns_ids[t] for s in range(n) for t in out[s]}
    node_cur = [0] * nn
    ns_cur = [0] * ns

    def pick(members: list[list[int]], cursor: list[int], g: int) -> int:
        # Round-robin within the group spreads the extra probes over its VMs.
        lst = members[g]
        i = cursor[g]
        cursor[g] = i + 1
        return lst[i % len(lst)]

    added = 0
    for members, cursor, size, cov in (
        (node_members, node_cur, nn, node_cov),
        (ns_members, ns_cur, ns, ns_cov),
    ):
        for a in range(size):
            for b in range(size):
                if a * size + b in cov or (a == b and len(members[a]) < 2):
                    continue
                s = pick(members, cursor, a)
                t = pick(members, cursor, b)
                if s == t:  # a == b: consecutive round-robin picks in a group of >= 2 differ
                    t = pick(members, cursor, b)
                out[s].append(t)
                node_cov.add(node_ids[s] * nn + node_ids[t])
                ns_cov.add(ns_ids[s] * ns + ns_ids[t])
                added += 1

    probes = [Probe(fleet[s], fleet[t]) for s in range(n) for t in out[s]]
    notes = [f"{kk} peers per VM by rotation, {added} probes added to cover node and namespace pairs"]
    return ProbePlan(probes=probes, mode="sampled", vms=tuple(fleet), k=kk, seed=seed, notes=notes)


def ready_peers(order: Sequence[VMEndpoint], k: int) -> list[VMEndpoint]:
    """The peers of the VM that became Ready last (``order[-1]``), for probing while the fleet still
    comes up: the ``k`` VMs that became Ready just before it, nearest first.

    Over a whole ready order this is a circulant without its wrap-around: every VM sends ``k`` probes
    but the first ``k``, every VM receives ``k`` but the last ``k``; :func:`complete_plan` mends both.
    """
    if k < 0:
        raise ValueError("k (peers per VM) must be >= 0")
    return list(reversed(order[max(0, len(order) - 1 - k) : len(order) - 1]))


def complete_plan(fleet: Sequence[VMEndpoint], done: Sequence[Probe], *, k: int = 8, seed: int = 0) -> ProbePlan:
    """The mesh probes still needed after ``done`` (probes already run, e.g. while the fleet came up) for
    the sampled plan's guarantees over ``fleet``: every VM sends and receives at least k, every node
    pair and namespace pair present is probed, no self-probes, no pair twice (``done`` included).

    Each new source costs a console session, so the fill-up reuses sources: receive shortfalls go
    first to VMs that must send anyway, pair covers prefer a source already chosen. Each new probe
    mends a shortfall (a VM sending or receiving fewer than k) or covers a pair, so there are at most
    that many. Returns the plan
    of ``done`` plus the new probes (``ProbePlan.probes``), new ones after ``done``; probes whose ends
    are not in ``fleet`` (a VM gone since) are dropped from ``done``.
    """
    if k < 0:
        raise ValueError("k (peers per VM) must be >= 0")
    vms = sorted(fleet, key=lambda v: (v.namespace, v.name))
    by_key = {v.key: v for v in vms}
    n = len(vms)
    kk = min(k, max(0, n - 1))
    kept = [
        p
        for p in done
        if p.kind == "mesh" and p.src.key in by_key and isinstance(p.dst, VMEndpoint) and p.dst.key in by_key
    ]
    pairs = {(p.src.key, p.dst.key) for p in kept}  # type: ignore[union-attr]
    sent = dict.fromkeys(by_key, 0)
    received = dict.fromkeys(by_key, 0)
    for src_key, dst_key in pairs:
        sent[src_key] += 1
        received[dst_key] += 1
    new: list[Probe] = []
    sources: set[tuple[str, str]] = set()

    def add(s: VMEndpoint, t: VMEndpoint) -> bool:
        if s.key == t.key or (s.key, t.key) in pairs:
            return False
        pairs.add((s.key, t.key))
        sent[s.key] += 1
        received[t.key] += 1
        sources.add(s.key)
        new.append(Probe(s, t))
        return True

    order = list(vms)
    random.Random(seed).shuffle(order)
    # 1. Receive shortfalls: from VMs that must send anyway while they have room (each new source is a
    #    console session), then from any VM, in shuffled order, a cursor spreading the load.
    takers = [v for v in order if received[v.key] < kk]
    short = deque(v for v in order if sent[v.key] < kk)
    for t in takers:
        tries = 0
        while received[t.key] < kk and short and tries <= len(short):
            s = short.popleft()
            tries += 1
            add(s, t)
            if sent[s.key] < kk:
                short.append(s)
    cursor = 0
    for t in takers:
        tries = 0
        while received[t.key] < kk and tries < n:
            add(order[cursor % n], t)
            cursor += 1
            tries += 1
    # 2. Send shortfalls: targets in shuffled order, from a cursor that moves on so targets spread out.
    cursor = 0
    for s in [v for v in order if sent[v.key] < kk]:
        tried = 0
        while sent[s.key] < kk and tried < n:
            add(s, order[cursor % n])
            cursor += 1
            tried += 1
    # 3. Node and namespace pairs nobody probed yet: a source already chosen in the group when there is one.
    added_cover = 0
    for group in (lambda v: v.node, lambda v: v.namespace):
        members: dict[str, list[VMEndpoint]] = {}
        for v in order:
            members.setdefault(group(v), []).append(v)
        covered = {(group(by_key[a]), group(by_key[b])) for a, b in pairs}
        for a, b in sorted(required_pairs(group(v) for v in vms) - covered):
            if (a, b) in covered:
                continue  # covered by a probe added for an earlier pair
            srcs = sorted(members[a], key=lambda v: v.key not in sources)
            if any(add(s, t) for s in srcs for t in members[b]):
                covered.add((a, b))
                added_cover += 1
    notes = [
        f"{len(kept)} probes run while the fleet came up; {len(new)} more from {len(sources)} VMs "
        f"({added_cover} of them to cover node and namespace pairs)"
    ]
    return ProbePlan(probes=kept + new, mode="sampled", vms=tuple(vms), k=kk, seed=seed, notes=notes)


def _index(fleet: list[VMEndpoint], order: list[int], key: Any) -> tuple[list[int], list[list[int]]]:
    """Group ids per VM and members per group (members in shuffled order, groups sorted by name)."""
    names = sorted({key(v) for v in fleet})
    gid = {g: i for i, g in enumerate(names)}
    ids = [gid[key(v)] for v in fleet]
    members: list[list[int]] = [[] for _ in names]
    for i in order:
        members[ids[i]].append(i)
    return ids, members


def plan_isolation(
    sources: Sequence[VMEndpoint],
    foreign_targets: Sequence[Target | VMEndpoint],
    per_source: int = 1,
    seed: int = 0,
) -> ProbePlan:
    """Probes that must go unanswered: each source pings ``per_source`` foreign addresses.

    Targets are dealt round-robin over a shuffled source order, so every target is probed at least
    once whenever ``len(sources) * per_source >= len(foreign_targets)``. A target with the source's
    own address is skipped.
    """
    if per_source < 0:
        raise ValueError("per_source must be >= 0")
    srcs = sorted(sources, key=lambda v: (v.namespace, v.name))
    targets = sorted(foreign_targets, key=lambda t: (t.ip, getattr(t, "label", "") or getattr(t, "name", "")))
    nt = len(targets)
    m = min(per_source, nt)
    order = list(range(len(srcs)))
    random.Random(seed).shuffle(order)
    chosen: list[list[Target | VMEndpoint]] = [[] for _ in srcs]
    cursor = 0
    for i in order:
        src = srcs[i]
        tried = 0
        while len(chosen[i]) < m and tried < nt:
            t = targets[cursor % nt]
            cursor += 1
            tried += 1
            if t.ip != src.ip and t not in chosen[i]:
                chosen[i].append(t)
    probes = [Probe(srcs[i], t, kind="isolation", expect="silent") for i in range(len(srcs)) for t in chosen[i]]
    return ProbePlan(probes=probes, mode="isolation", vms=tuple(srcs), k=0, seed=seed)


def group_by_source(plan: ProbePlan) -> dict[tuple[str, str], list[Probe]]:
    """Probes per source VM, in plan order: the executor runs one console session per source."""
    groups: dict[tuple[str, str], list[Probe]] = {}
    for p in plan.probes:
        groups.setdefault(p.src.key, []).append(p)
    return groups


__all__ = [
    "Probe",
    "ProbePlan",
    "Target",
    "VMEndpoint",
    "complete_plan",
    "group_by_source",
    "plan_isolation",
    "plan_probes",
    "ready_peers",
    "required_pairs",
]
