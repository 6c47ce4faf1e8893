"""CIDR checks for preflight: does the network we are about to create clash with anything?

The ClusterUserDefinedNetwork CRD accepts any syntactically valid CIDR. Overlaps with the cluster's own
networks and with OVN-Kubernetes' internal subnets are only reported later, by the controller, as a
False status condition, and the network spec is immutable afterwards. So the tool checks them first,
with plain ``ipaddress`` arithmetic, and proposes a concrete free CIDR as the fix.

Everything here is pure: strings in, dataclasses out, no cluster access.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Literal

IPNetwork = IPv4Network | IPv6Network
Topology = Literal["Layer3", "Layer2"]
Severity = Literal["fail", "warn", "info"]

#: Private IPv4 ranges the fix proposals are taken from (RFC 1918).
IPV4_CANDIDATES: tuple[str, ...] = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
#: Unique-local IPv6 range the fix proposals are taken from (RFC 4193).
IPV6_CANDIDATES: tuple[str, ...] = ("fd00::/8",)

# OVN-Kubernetes defaults (OpenShift's masquerade default for clusters installed on 4.17+).
DEFAULT_MASQUERADE: tuple[str, ...] = ("169.254.0.0/17", "fd69::/112")
DEFAULT_JOIN: tuple[str, ...] = ("100.64.0.0/16", "fd98::/64")
DEFAULT_UDN_JOIN: tuple[str, ...] = ("100.65.0.0/16", "fd99::/64")
DEFAULT_TRANSIT: tuple[str, ...] = ("100.88.0.0/16", "fd97::/64")


def parse_cidr(cidr: str) -> IPNetwork:
    """Parse a CIDR leniently (host bits allowed) with an error message a user can act on."""
    try:
        return ip_network(str(cidr).strip(), strict=False)
    except ValueError as exc:
        raise ValueError(f"{cidr!r} is not a valid CIDR (expected e.g. 192.168.0.0/16 or fd10::/64)") from exc


@dataclass(frozen=True, slots=True)
class NamedSubnet:
    """A subnet the cluster already uses, with the reason an overlap matters."""

    name: str
    cidr: str
    why: str
    kind: str
    #: False when OVN-K tolerates an overlap (the Layer2 transit subnet is relocated automatically).
    enforced: bool = True


@dataclass(frozen=True, slots=True)
class ExistingNetwork:
    """A CUDN or UDN found on the cluster; its subnets may legally overlap ours."""

    kind: str  # "ClusterUserDefinedNetwork" | "UserDefinedNetwork"
    name: str
    subnets: tuple[str, ...]
    namespace: str | None = None

    @property
    def display(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True, slots=True)
class Overlap:
    """One clash between a requested subnet and something else, ready for a preflight table."""

    subnet: str
    other: str
    other_name: str
    kind: str
    severity: Severity
    message: str
    fix: str = ""
    suggestion: str | None = None

    def row(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "subnet": self.subnet,
            "overlaps": self.other,
            "with": self.other_name,
            "detail": self.message,
            "fix": self.fix,
        }


def internal_subnets(
    topology: Topology,
    *,
    masquerade: Sequence[str] = DEFAULT_MASQUERADE,
    join: Sequence[str] = DEFAULT_JOIN,
    udn_join: Sequence[str] = DEFAULT_UDN_JOIN,
    transit: Sequence[str] = DEFAULT_TRANSIT,
) -> list[NamedSubnet]:
    """OVN-K's internal subnets a primary UDN must stay clear of, for the given topology.

    The defaults are OVN-K's; pass the cluster's values when CNO overrides them
    (``internalJoinSubnet``, ``internalTransitSwitchSubnet``, an upgraded cluster's masquerade range).
    """
    _check_topology(topology)
    out: list[NamedSubnet] = []
    for cidr in join:
        out.append(
            NamedSubnet(
                "OVN-K join subnet (default network)",
                cidr,
                "the default network's gateway routers are addressed from it; OVN-K rejects a UDN overlapping it",
                "join",
            )
        )
    for cidr in udn_join:
        out.append(
            NamedSubnet(
                "OVN-K join subnet (user-defined networks)",
                cidr,
                "every primary UDN without joinSubnets uses it for its gateway routers;"
                " pod and join addresses would collide, so OVN-K rejects the overlap",
                "udn-join",
            )
        )
    layer3 = topology == "Layer3"
    for cidr in transit:
        out.append(
            NamedSubnet(
                "OVN-K transit switch subnet",
                cidr,
                "Layer3 networks interconnect the nodes' switches over it; OVN-K rejects a Layer3 UDN overlapping it"
                if layer3
                else "a Layer2 primary network's transit subnet is moved by OVN-K to the first free block,"
                " so an overlap is tolerated",
                "transit",
                enforced=layer3,
            )
        )
    for cidr in masquerade:
        out.append(
            NamedSubnet(
                "OVN-K masquerade subnet",
                cidr,
                "host-to-service traffic and each UDN's masquerade addresses come from it; OVN-K rejects an overlap",
                "masquerade",
            )
        )
    return out


def suggest_free_subnet(
    prefixlen: int,
    avoid: Iterable[str],
    candidates: Sequence[str] = IPV4_CANDIDATES,
) -> str | None:
    """First subnet of ``prefixlen`` inside the candidates that overlaps none of ``avoid``.

    Walks sorted integer intervals instead of enumerating subnets, so a /30 inside 10.0.0.0/8 costs the
    same as a /16. Entries of ``avoid`` in another address family are ignored.
    """
    avoid_nets = [parse_cidr(a) for a in avoid]
    for cand in candidates:
        block = parse_cidr(cand)
        if not block.prefixlen <= prefixlen <= block.max_prefixlen:
            continue
        size = 1 << (block.max_prefixlen - prefixlen)
        start, end = int(block.network_address), int(block.broadcast_address)
        busy = sorted(
            (int(a.network_address), int(a.broadcast_address))
            for a in avoid_nets
            if a.version == block.version and a.overlaps(block)
        )
        for lo, hi in busy:
            if start + size - 1 < lo:
                break  # the gap before this busy interval fits
            if hi >= start:
                start = -(-(hi + 1) // size) * size  # next aligned start after the busy interval
            if start + size - 1 > end:
                break
        if start + size - 1 <= end:
            cls = IPv4Network if block.version == 4 else IPv6Network
            return str(cls((start, prefixlen)))
    return None


def find_overlaps(
    subnets: Sequence[str],
    *,
    cluster_networks: Sequence[str],
    service_networks: Sequence[str],
    topology: Topology,
    existing_udns: Sequence[ExistingNetwork] = (),
    internal: Sequence[NamedSubnet] | None = None,
    self_name: str | None = None,
) -> list[Overlap]:
    """Every clash of the requested subnets, classified.

    Overlaps with clusterNetwork, serviceNetwork and OVN-K's enforced internal subnets are ``fail``
    (the network would never come up); with other UDNs/CUDNs ``warn`` (legal, the networks are
    isolated, but confusing); with the Layer2 transit subnet ``info``. Only same-family CIDRs are
    compared. ``self_name`` skips the CUDN of that name, so a rerun does not clash with itself.
    """
    _check_topology(topology)
    ours = [(s, parse_cidr(s)) for s in subnets]
    internal_list = list(internal) if internal is not None else internal_subnets(topology)
    blocking: list[tuple[str, str, str, str]] = []  # (cidr, display name, kind, why)
    for c in cluster_networks:
        blocking.append(
            (c, "clusterNetwork", "cluster", "the default pod network; OVN-K rejects a UDN that overlaps it")
        )
    for c in service_networks:
        blocking.append(
            (c, "serviceNetwork", "service", "Service ClusterIPs are routed from every pod; OVN-K rejects it")
        )
    others = [e for e in existing_udns if not (self_name and e.name == self_name and e.namespace is None)]

    # Everything a proposal must stay clear of: cluster, services, all internal ranges, other UDNs.
    avoid_all = (
        [b[0] for b in blocking]
        + [n.cidr for n in internal_list]
        + [c for e in others for c in e.subnets]
        + [s for s, _ in ours]
    )

    def proposal(net: IPNetwork, replacing: str) -> str | None:
        avoid = [a for a in avoid_all if a != replacing]
        cands = IPV4_CANDIDATES if net.version == 4 else IPV6_CANDIDATES
        return suggest_free_subnet(net.prefixlen, avoid, cands)

    out: list[Overlap] = []
    for i, (s, net) in enumerate(ours):
        for s2, net2 in ours[i + 1 :]:
            if net.version == net2.version and net.overlaps(net2):
                out.append(
                    Overlap(
                        s,
                        s2,
                        "another subnet of this network",
                        "self",
                        "fail",
                        f"{s} and {s2} are both requested for this network and overlap; the CRD rejects"
                        " subnets that overlap or contain each other",
                        f"drop one of them, or keep {_describe_containing(net, net2)} only",
                    )
                )
        for c, disp, kind, why in blocking:
            other = parse_cidr(c)
            if other.version == net.version and net.overlaps(other):
                sug = proposal(net, s)
                out.append(
                    Overlap(
                        s,
                        c,
                        disp,
                        kind,
                        "fail",
                        f"{s} overlaps the {disp} {c}: {why}",
                        _fix_text(s, c, sug),
                        sug,
                    )
                )
        for ns in internal_list:
            other = parse_cidr(ns.cidr)
            if other.version != net.version or not net.overlaps(other):
                continue
            if ns.enforced:
                sug = proposal(net, s)
                out.append(
                    Overlap(
                        s,
                        ns.cidr,
                        ns.name,
                        ns.kind,
                        "fail",
                        f"{s} overlaps the {ns.name} {ns.cidr}: {ns.why}",
                        _fix_text(s, ns.cidr, sug),
                        sug,
                    )
                )
            else:
                out.append(
                    Overlap(
                        s,
                        ns.cidr,
                        ns.name,
                        ns.kind,
                        "info",
                        f"{s} overlaps the {ns.name} {ns.cidr}: {ns.why}",
                    )
                )
        for e in others:
            for c in e.subnets:
                other = parse_cidr(c)
                if other.version == net.version and net.overlaps(other):
                    sug = proposal(net, s)
                    fix = (
                        f"nothing required; to keep addresses unique across networks use e.g. {sug}"
                        if sug
                        else "nothing required"
                    )
                    out.append(
                        Overlap(
                            s,
                            c,
                            e.display,
                            "udn",
                            "warn",
                            f"{s} overlaps {c} of {e.display}: allowed (the networks are isolated), but the"
                            " same address may then name two VMs, which confuses reports and troubleshooting",
                            fix,
                            sug,
                        )
                    )
    return out


def _fix_text(ours: str, theirs: str, suggestion: str | None) -> str:
    if suggestion:
        return f"choose a CIDR outside {theirs} for network.subnets (instead of {ours}), e.g. {suggestion}"
    return f"choose a CIDR outside {theirs} for network.subnets (instead of {ours})"


def _describe_containing(a: IPNetwork, b: IPNetwork) -> str:
    return str(a) if a.prefixlen <= b.prefixlen else str(b)


def _check_topology(topology: str) -> None:
    if topology not in ("Layer3", "Layer2"):
        raise ValueError(f"topology must be Layer3 or Layer2, not {topology!r}")


__all__ = [
    "IPV4_CANDIDATES",
    "IPV6_CANDIDATES",
    "ExistingNetwork",
    "NamedSubnet",
    "Overlap",
    "find_overlaps",
    "internal_subnets",
    "parse_cidr",
    "suggest_free_subnet",
]
