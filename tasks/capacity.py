"""Address capacity maths for preflight and churn: will every VM get an IP, now and after moving?

Layer3 carves one node subnet of ``/hostSubnet`` per node out of the CIDR; a node without one, or with
a full one, cannot start VMs of the network (and OVN-K reports NetworkAllocationSucceeded=False).
Layer2 allocates from the whole CIDR. In every subnet OVN-K reserves the network address, .1 (gateway),
.2 (management port) and, for IPv4, the broadcast address; an IPv6 range is capped at 65536 addresses.

Pure functions over plain data; the reports' ``rows()`` feed the Markdown/CSV tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_network
from typing import Any, Literal

Verdict = Literal["ok", "warn", "fail"]

#: Share of a subnet kept free before we warn: room for migrations in, restarts, a few extra VMs.
DEFAULT_MIN_HEADROOM_FRACTION = 0.1
IPV6_RANGE_CAP = 65536


def reserved_addresses(version: int) -> int:
    """Addresses OVN-K never hands to pods: network, gateway .1, management .2 (+ broadcast on IPv4)."""
    return 4 if version == 4 else 3


def usable_addresses(prefixlen: int, version: int = 4) -> int:
    """Pod/VM addresses in one subnet of ``prefixlen`` (0 for a /30 or smaller on IPv4)."""
    bits = (32 if version == 4 else 128) - prefixlen
    size = 1 << bits
    if version == 6:
        size = min(size, IPV6_RANGE_CAP)
    return max(0, size - reserved_addresses(version))


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What capacity planning needs to know about a node."""

    name: str
    schedulable: bool = True
    #: Most VMs the node can run (e.g. from allocatable ``devices.kubevirt.io/kvm``); None = unbounded.
    max_vms: int | None = None


@dataclass(slots=True)
class NodeCapacity:
    """One node's Layer3 subnet use."""

    node: str
    schedulable: bool
    has_subnet: bool
    usable: int
    existing: int
    planned: int
    status: Verdict = "ok"
    note: str = ""

    @property
    def demand(self) -> int:
        return self.existing + self.planned

    @property
    def headroom(self) -> int:
        return self.usable - self.demand

    def row(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "schedulable": self.schedulable,
            "subnet": "yes" if self.has_subnet else "none",
            "usable": self.usable,
            "existing": self.existing,
            "planned": self.planned,
            "headroom": self.headroom,
            "status": self.status,
            "note": self.note,
        }


@dataclass(slots=True)
class CapacityReport:
    """Verdict on whether the planned VMs get addresses, with what to change if not."""

    topology: Literal["Layer3", "Layer2"]
    cidr: str
    host_subnet: int | None
    vms_planned: int
    existing: int
    #: Layer3: usable addresses in each node subnet. Layer2: the whole pool.
    usable_per_subnet: int
    #: Layer3 only: node subnets the CIDR can hold, and nodes that need one.
    node_subnets_available: int | None = None
    nodes_needing_subnet: int = 0
    nodes: list[NodeCapacity] = field(default_factory=list)
    unplaced_vms: int = 0
    verdict: Verdict = "ok"
    messages: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    @property
    def nodes_without_subnet(self) -> list[str]:
        return [n.node for n in self.nodes if not n.has_subnet]

    @property
    def total_usable(self) -> int:
        if self.topology == "Layer2":
            return self.usable_per_subnet
        return sum(n.usable for n in self.nodes)

    @property
    def total_demand(self) -> int:
        return self.existing + self.vms_planned

    @property
    def total_headroom(self) -> int:
        return self.total_usable - self.total_demand

    def rows(self) -> list[dict[str, Any]]:
        """Layer3: one row per node; Layer2: one row for the pool."""
        if self.topology == "Layer3":
            return [n.row() for n in self.nodes]
        return [
            {
                "cidr": self.cidr,
                "usable": self.usable_per_subnet,
                "existing": self.existing,
                "planned": self.vms_planned,
                "headroom": self.total_headroom,
                "status": self.verdict,
            }
        ]

    def summary(self) -> dict[str, Any]:
        return {
            "topology": self.topology,
            "cidr": self.cidr,
            "hostSubnet": self.host_subnet,
            "nodeSubnetsAvailable": self.node_subnets_available,
            "nodesNeedingSubnet": self.nodes_needing_subnet,
            "usablePerSubnet": self.usable_per_subnet,
            "totalUsable": self.total_usable,
            "totalDemand": self.total_demand,
            "totalHeadroom": self.total_headroom,
            "verdict": self.verdict,
            "messages": list(self.messages),
            "fixes": list(self.fixes),
        }

    def _raise(self, verdict: Verdict) -> None:
        order = {"ok": 0, "warn": 1, "fail": 2}
        if order[verdict] > order[self.verdict]:
            self.verdict = verdict


def node_subnet_count(prefixlen: int, host_subnet: int, version: int = 4) -> int:
    """Node subnets a Layer3 CIDR yields; IPv6 skips subnets whose low 16 bits are zero, as OVN-K does."""
    bits = host_subnet - prefixlen
    if bits < 0:
        return 0
    count = 1 << bits
    if version == 6 and bits >= 16:
        count -= 1 << (bits - 16)
    return count


def spread_evenly(vms: int, nodes: Sequence[NodeInfo], existing: Mapping[str, int] | None = None) -> dict[str, int]:
    """How a scheduler that balances load would spread ``vms`` over schedulable nodes.

    Water-filling: nodes with a smaller remaining ``max_vms`` fill first, the rest share evenly (within
    one VM). VMs that fit nowhere are returned under the key ``""``.
    """
    existing = existing or {}
    sched = [n for n in nodes if n.schedulable]

    def room(n: NodeInfo) -> float:
        return math.inf if n.max_vms is None else max(0, n.max_vms - existing.get(n.name, 0))

    order = sorted(sched, key=lambda n: (room(n), n.name))
    out: dict[str, int] = {n.name: 0 for n in nodes}
    remaining = vms
    for i, n in enumerate(order):
        fair = -(-remaining // (len(order) - i))
        give = int(min(room(n), fair))
        out[n.name] = give
        remaining -= give
    if remaining:
        out[""] = remaining
    return out


def layer3_capacity(
    cidr: str,
    host_subnet: int,
    nodes: Sequence[NodeInfo],
    vms_planned: int,
    vms_per_node_estimate: Mapping[str, int] | None = None,
    existing_vms_per_node: Mapping[str, int] | None = None,
    *,
    min_headroom_fraction: float = DEFAULT_MIN_HEADROOM_FRACTION,
) -> CapacityReport:
    """Layer3: enough node subnets for every node, and enough addresses on each node for its VMs.

    Every node gets a subnet, schedulable or not (ovnkube runs everywhere). Which nodes miss out when the
    CIDR is too small depends on OVN-K's processing order; we assume the order of ``nodes``.
    Without an estimate, VMs are assumed spread evenly over schedulable nodes (see ``spread_evenly``).
    ``existing_vms_per_node`` counts addresses this network already uses there (a rerun, other pods).
    """
    net = ip_network(cidr, strict=False)
    existing = dict(existing_vms_per_node or {})
    rep = CapacityReport(
        topology="Layer3",
        cidr=str(cidr),
        host_subnet=host_subnet,
        vms_planned=vms_planned,
        existing=sum(existing.values()),
        usable_per_subnet=0,
        node_subnets_available=0,
        nodes_needing_subnet=len(nodes),
    )
    if vms_planned < 0:
        raise ValueError("vms_planned must be >= 0")
    maxlen = net.max_prefixlen
    problem = None
    if net.version == 6 and host_subnet != 64:
        problem = f"hostSubnet {host_subnet} is invalid for IPv6 {cidr}: OVN-K only supports /64 node subnets"
        fix = "set hostSubnet: 64 for the IPv6 subnet"
    elif not net.prefixlen < host_subnet <= maxlen:
        problem = f"hostSubnet {host_subnet} must be longer than the CIDR's /{net.prefixlen} and at most {maxlen}"
        fix = f"use a hostSubnet between {net.prefixlen + 1} and {min(maxlen, 30 if net.version == 4 else 64)}"
    if problem:
        rep.messages.append(problem)
        rep.fixes.append(fix)
        rep._raise("fail")
        return rep

    usable = usable_addresses(host_subnet, net.version)
    available = node_subnet_count(net.prefixlen, host_subnet, net.version)
    rep.usable_per_subnet = usable
    rep.node_subnets_available = available

    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ValueError("node names must be unique")
    if vms_per_node_estimate is not None:
        unknown = sorted(set(vms_per_node_estimate) - set(names))
        if unknown:
            raise ValueError(f"vms_per_node_estimate names unknown nodes: {', '.join(unknown)}")
        planned = {n: int(vms_per_node_estimate.get(n, 0)) for n in names}
        if sum(planned.values()) != vms_planned:
            rep.messages.append(
                f"the per-node estimate places {sum(planned.values())} VMs but {vms_planned} are planned"
            )
            rep._raise("warn")
    else:
        planned = spread_evenly(vms_planned, nodes, existing)
    rep.unplaced_vms = planned.pop("", 0)

    floor = _min_headroom(usable, min_headroom_fraction)
    for i, n in enumerate(nodes):
        has = i < available
        nc = NodeCapacity(
            node=n.name,
            schedulable=n.schedulable,
            has_subnet=has,
            usable=usable if has else 0,
            existing=existing.get(n.name, 0),
            planned=planned.get(n.name, 0),
        )
        if not has:
            nc.status = "fail"
            nc.note = "no node subnet left: VMs cannot start here"
        elif nc.headroom < 0:
            nc.status = "fail"
            nc.note = f"{-nc.headroom} addresses short"
        elif nc.headroom < floor and nc.demand:
            nc.status = "warn"
            nc.note = f"only {nc.headroom} addresses free (< {floor})"
        rep.nodes.append(nc)

    demand = [nc.demand for nc in rep.nodes if nc.schedulable]
    peak = max(demand, default=0)
    sched_with_subnet = sum(1 for nc in rep.nodes if nc.schedulable and nc.has_subnet)
    short = [nc for nc in rep.nodes if nc.has_subnet and nc.headroom < 0]
    tight = [nc for nc in rep.nodes if nc.status == "warn"]

    if len(nodes) > available:
        rep._raise("fail")
        rep.messages.append(
            f"{cidr} with hostSubnet {host_subnet} yields {available} node subnets for {len(nodes)} nodes:"
            f" {len(nodes) - available} nodes get none (NetworkAllocationSucceeded=False)"
            " and cannot run these VMs"
        )
    if short:
        rep._raise("fail")
        worst = max(short, key=lambda nc: -nc.headroom)
        rep.messages.append(
            f"{len(short)} node(s) need more addresses than a /{host_subnet} holds ({usable} usable);"
            f" worst {worst.node}: {worst.demand} needed"
        )
    if rep.unplaced_vms:
        rep._raise("fail")
        rep.messages.append(f"{rep.unplaced_vms} VMs fit on no schedulable node (max_vms reached)")
    if tight and not short:
        rep._raise("warn")
        rep.messages.append(
            f"{len(tight)} node(s) keep fewer than {floor} free addresses: migrations into them and restarts may fail"
        )
    if not any(n.schedulable for n in nodes) and vms_planned:
        rep._raise("fail")
        rep.messages.append("no schedulable node: the VMs cannot run anywhere")

    if rep.verdict != "ok" and (short or tight or len(nodes) > available):
        rep.fixes.extend(
            _layer3_fixes(
                net.prefixlen,
                net.version,
                host_subnet,
                len(nodes),
                peak,
                vms_planned + rep.existing,
                sched_with_subnet,
                available,
                min_headroom_fraction,
                need_more_addresses=bool(short or tight),
            )
        )
    if rep.verdict == "ok":
        rep.messages.append(
            f"{available} node subnets for {len(nodes)} nodes; {usable} addresses per node, peak demand {peak}"
        )
    return rep


def _min_headroom(usable: int, fraction: float) -> int:
    return max(1, math.ceil(usable * fraction))


def _fits(usable: int, demand: int, fraction: float) -> bool:
    return usable - demand >= _min_headroom(usable, fraction)


def _layer3_fixes(
    prefixlen: int,
    version: int,
    host_subnet: int,
    node_count: int,
    peak: int,
    total: int,
    sched_nodes: int,
    available: int,
    fraction: float,
    *,
    need_more_addresses: bool,
) -> list[str]:
    """Concrete changes that turn the verdict to ok: a hostSubnet, a bigger CIDR, or more nodes."""
    fixes: list[str] = []

    def valid_hosts(p: int) -> list[int]:
        hs = [64] if version == 6 else range(p + 1, 33)
        return [
            h
            for h in hs
            if h > p
            and _fits(usable_addresses(h, version), peak, fraction)
            and node_subnet_count(p, h, version) >= node_count
        ]

    def describe(p: int, h: int) -> str:
        per_node, subnets = usable_addresses(h, version), node_subnet_count(p, h, version)
        return f"{per_node} addresses per node, {subnets} node subnets"

    # Prefer the smallest change: the working hostSubnet closest to the current one.
    valid = valid_hosts(prefixlen)
    if valid:
        h = min(valid, key=lambda h: (abs(h - host_subnet), -h))
        if h != host_subnet:
            span = f"; any hostSubnet {valid[0]}-{valid[-1]} fits" if len(valid) > 1 else ""
            fixes.append(f"use hostSubnet {h} ({describe(prefixlen, h)}){span}")
    else:
        for p in range(prefixlen - 1, 7 if version == 4 else 15, -1):
            valid = valid_hosts(p)
            if valid:
                h = min(valid, key=lambda h: (abs(h - host_subnet), -h))
                fixes.append(f"use a /{p} CIDR with hostSubnet {h} ({describe(p, h)})")
                break
    if need_more_addresses and sched_nodes:
        per_node = usable_addresses(host_subnet, version)
        cap = per_node - _min_headroom(per_node, fraction)
        if cap > 0:
            needed = math.ceil(total / cap)
            extra = needed - sched_nodes
            if extra > 0 and needed <= available:
                fixes.append(f"or add {extra} schedulable node(s) so each holds at most {cap} VMs")
            elif extra > 0:
                fixes.append(
                    f"adding nodes alone does not help: {needed} nodes would be needed but only {available}"
                    " node subnets exist"
                )
    if node_count > available and not fixes:
        fixes.append("use a shorter CIDR prefix or a longer hostSubnet so every node gets a subnet")
    return fixes


def layer2_capacity(
    cidr: str,
    vms_planned: int,
    claims_held: int = 0,
    *,
    min_headroom_fraction: float = DEFAULT_MIN_HEADROOM_FRACTION,
) -> CapacityReport:
    """Layer2: one pool for the whole network against VMs planned plus persistent IPs already claimed.

    ``claims_held`` counts addresses held by IPAMClaims (persistent IPs outlive stopped VMs) and other
    pods already on the network. Call once per address family on dual-stack networks.
    """
    if vms_planned < 0 or claims_held < 0:
        raise ValueError("vms_planned and claims_held must be >= 0")
    net = ip_network(cidr, strict=False)
    pool = usable_addresses(net.prefixlen, net.version)
    rep = CapacityReport(
        topology="Layer2",
        cidr=str(cidr),
        host_subnet=None,
        vms_planned=vms_planned,
        existing=claims_held,
        usable_per_subnet=pool,
    )
    demand = vms_planned + claims_held
    floor = _min_headroom(pool, min_headroom_fraction)
    if demand > pool:
        rep._raise("fail")
        rep.messages.append(
            f"{cidr} has {pool} usable addresses but {demand} are needed"
            f" ({vms_planned} planned + {claims_held} held):"
            f" {demand - pool} VMs would get no IP (subnet address pool exhausted)"
        )
    elif pool - demand < floor and demand:
        rep._raise("warn")
        rep.messages.append(f"{cidr} keeps only {pool - demand} of {pool} addresses free (< {floor})")
    else:
        rep.messages.append(f"{cidr}: {pool} usable addresses, {demand} needed, {pool - demand} free")
    if rep.verdict != "ok":
        maxlen = net.max_prefixlen
        p = next(
            (
                p
                for p in range(maxlen, -1, -1)
                if _fits(usable_addresses(p, net.version), demand, min_headroom_fraction)
            ),
            None,
        )
        if p is not None:
            rep.fixes.append(
                f"use a /{p} or larger subnet ({usable_addresses(p, net.version)} usable addresses)"
                f" instead of /{net.prefixlen}"
            )
    return rep


@dataclass(slots=True)
class MigrationHeadroom:
    """Layer3 only: nodes whose subnet cannot take the VMs migrating into them."""

    usable_per_node: int
    nodes: list[dict[str, Any]]

    @property
    def full_nodes(self) -> list[str]:
        return [r["node"] for r in self.nodes if r["status"] == "fail"]

    @property
    def verdict(self) -> Verdict:
        statuses = {r["status"] for r in self.nodes}
        return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"

    def rows(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.nodes]


def migration_headroom(
    cidr: str,
    host_subnet: int,
    in_use_per_node: Mapping[str, int],
    incoming_per_node: Mapping[str, int] | None = None,
    *,
    nodes_without_subnet: Sequence[str] = (),
) -> MigrationHeadroom:
    """Can each target node give the VMs migrating in a fresh address from its own subnet?

    On Layer3 a migrated VM takes a new IP on the target node; the source's IP is only freed after the
    migration completes, so outgoing VMs are not credited. Without ``incoming_per_node``, a node is
    flagged when it could not accept even one migration. (Layer2 keeps the IP: nothing to check.)
    """
    net = ip_network(cidr, strict=False)
    usable = usable_addresses(host_subnet, net.version)
    incoming = incoming_per_node or {}
    missing = set(nodes_without_subnet)
    rows: list[dict[str, Any]] = []
    for node in sorted(set(in_use_per_node) | set(incoming) | missing):
        cap = 0 if node in missing else usable
        used = in_use_per_node.get(node, 0)
        inc = incoming.get(node, 0)
        free = cap - used
        need = inc if incoming_per_node is not None else 1
        if free >= need and node not in missing:
            status, note = "ok", ""
            if incoming_per_node is None and free == 1:
                status, note = "warn", "room for one migration only"
        else:
            status = "fail"
            if node in missing:
                note = "no node subnet"
            elif free < 0:
                note = f"already {-free} address(es) over capacity"
            else:
                note = f"subnet full: {need - free} migration(s) would fail"
        rows.append(
            {
                "node": node,
                "usable": cap,
                "in_use": used,
                "incoming": inc,
                "free_after": free - inc,
                "status": status,
                "note": note,
            }
        )
    return MigrationHeadroom(usable_per_node=usable, nodes=rows)


__all__ = [
    "CapacityReport",
    "MigrationHeadroom",
    "NodeCapacity",
    "NodeInfo",
    "layer2_capacity",
    "layer3_capacity",
    "migration_headroom",
    "node_subnet_count",
    "spread_evenly",
    "usable_addresses",
]
