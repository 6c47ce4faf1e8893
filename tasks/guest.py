"""What a guest itself holds, read over its serial console, and why a probe failed, in words.

The VMI status reports the *pod's* address (from the pod interface, no guest agent needed), which is
not necessarily what the guest has: OVN-Kubernetes answers a VM's DHCP only on Layer2 primary
networks (``ovn/base_network_controller_user_defined.go`` ``requireDHCP``), and on Layer3 a live
migration gives the target pod a new address and MAC that the running guest never learns
(``pkg/kubevirt/pod.go`` ``IsPodAllowedForMigration``: Layer2 and Localnet only). So every report
puts the guest's own addresses (``ip -j addr show eth0``, global scope, as OVN-Kubernetes' e2e
``RetrieveAllGlobalAddressesFromGuest`` reads them) beside the VMI's, and names the cause of each
failure from what was seen. Pure functions over plain data, except the one console command string.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tasks.model import ProbeResult

#: The command the console runs to see the guest's addresses and MAC (iproute2's JSON output).
GUEST_ADDR_COMMAND = "ip -j addr show eth0"

NO_DHCP_LAYER3 = "this network serves no DHCP to VMs (OVN-Kubernetes answers VM DHCP only on Layer2 primary networks)"
NO_LEASE_LAYER2 = "the guest got no DHCP lease on this Layer2 network"

Key = tuple[str, str]


@dataclass(frozen=True)
class GuestView:
    """One VM as the cluster reports it and as its guest sees itself."""

    namespace: str
    vm: str
    node: str = ""
    vmi_ips: tuple[str, ...] = ()  # the VMI status's global addresses
    guest_ips: tuple[str, ...] = ()  # the guest's global addresses on eth0
    guest_mac: str = ""
    looked: bool = False  # the console was read
    error: str = ""  # why it could not be read

    @property
    def key(self) -> Key:
        return (self.namespace, self.vm)

    def holds(self, ip: str) -> bool:
        return ip in self.guest_ips

    def has_family(self, version: int) -> bool:
        return any(ipaddress.ip_address(a).version == version for a in self.guest_ips)

    @property
    def verdict(self) -> str:
        """In a few words: does the guest hold what the cluster says it has?"""
        if not self.looked:
            return f"not read: {self.error}" if self.error else "not read"
        if not self.guest_ips:
            return "no address"
        if self.vmi_ips and set(self.vmi_ips) <= set(self.guest_ips):
            return "holds its VMI address"
        return "holds another address"

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "vm": self.vm,
            "node": self.node,
            "vmi_ips": " ".join(self.vmi_ips),
            "guest_ips": " ".join(self.guest_ips),
            "guest_mac": self.guest_mac,
            "verdict": self.verdict,
            "error": self.error,
        }


def global_addresses(addresses: Iterable[str]) -> tuple[str, ...]:
    """Addresses a peer can reach: not link-local, not loopback (KubeVirt ≥ 1.6 may report a guest's
    link-local IPv6 address as the VMI's ``ipAddress`` when the guest holds no other)."""
    out = []
    for a in addresses:
        try:
            ip = ipaddress.ip_address(a.split("/")[0])
        except ValueError:
            continue
        if not (ip.is_link_local or ip.is_loopback):
            out.append(str(ip))
    return tuple(out)


def parse_ip_addr(text: str) -> tuple[str, tuple[str, ...]]:
    """(MAC, global addresses) of ``ip -j addr show eth0``; raises ValueError when it is not that."""
    doc = json.loads(text.strip() or "null")
    if not isinstance(doc, list) or not doc or not isinstance(doc[0], dict):
        raise ValueError("`ip -j addr` printed no interface")
    link = doc[0]
    addrs = [str(a.get("local", "")) for a in link.get("addr_info") or [] if a.get("scope") == "global"]
    return str(link.get("address", "")), global_addresses(addrs)


def vmi_addresses(vmi: Mapping[str, Any]) -> tuple[str, ...]:
    """The VMI status's global addresses of its primary interface (``interfaces[0]``)."""
    ifaces = ((vmi.get("status") or {}).get("interfaces")) or []
    if not ifaces:
        return ()
    first = ifaces[0]
    listed = list(first.get("ipAddresses") or []) or ([first["ipAddress"]] if first.get("ipAddress") else [])
    return global_addresses(listed)


def vmi_ready(vmi: Mapping[str, Any]) -> bool:
    """The VMI runs and KubeVirt reports it Ready (its ``Ready`` condition is True)."""
    st = vmi.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
    return st.get("phase") == "Running" and ready


def no_address_hint(topology: str) -> str:
    return NO_DHCP_LAYER3 if topology == "Layer3" else NO_LEASE_LAYER2


def _family(ip: str) -> tuple[int, str]:
    v = ipaddress.ip_address(ip).version
    return v, f"IPv{v}"


def cause(probe: ProbeResult, views: Mapping[Key, GuestView], topology: str) -> str:
    """Why a probe did not match its expectation, in words an administrator can act on ("" if it did)."""
    if probe.passed:
        return ""
    if probe.outcome == "error":
        return f"the probe could not run: {probe.error}" if probe.error else "the probe could not run"
    if probe.expect == "silent":
        return f"{probe.dst_ip} answered although it must not: the networks are not isolated"
    try:
        version, family = _family(probe.dst_ip)
    except ValueError:
        return f"{probe.dst_ip!r} is not an address"
    src = views.get((probe.src_namespace, probe.src_vm))
    dst = views.get((probe.dst_namespace, probe.dst_vm)) if probe.dst_namespace else None
    if src is not None and src.looked and not src.has_family(version):
        return f"the source guest has no {family} address to send from: {no_address_hint(topology)}"
    if dst is not None and dst.looked:
        if not dst.guest_ips:
            return f"the target guest has no {family} address (its VMI status says {probe.dst_ip}): {no_address_hint(topology)}"
        if not dst.holds(probe.dst_ip):
            return (
                f"the VMI status says {probe.dst_ip}, the guest still holds {', '.join(dst.guest_ips)}: "
                "it never learned the address its pod got"
            )
    return (
        f"no reply from {probe.dst_ip} although both guests hold their addresses: loss between nodes or a network fault"
    )


def explain(results: Sequence[ProbeResult], views: Mapping[Key, GuestView], topology: str) -> list[ProbeResult]:
    """The results with ``cause`` filled in for every probe that did not match its expectation."""
    return [r if r.passed else replace(r, cause=cause(r, views, topology)) for r in results]


@dataclass
class GuestCensus:
    """How many guests hold what their VMI says, for headlines and summaries."""

    total: int = 0
    holding: int = 0
    no_address: int = 0
    other: int = 0
    unread: int = 0
    examples: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, views: Iterable[GuestView]) -> GuestCensus:
        c = cls()
        for v in views:
            c.total += 1
            verdict = v.verdict
            if verdict == "holds its VMI address":
                c.holding += 1
            elif verdict == "no address":
                c.no_address += 1
            elif verdict.startswith("not read"):
                c.unread += 1
            else:
                c.other += 1
                if len(c.examples) < 3:
                    c.examples.append(
                        f"{v.namespace}/{v.vm}: VMI {', '.join(v.vmi_ips) or '—'}, guest {', '.join(v.guest_ips)}"
                    )
        return c

    def line(self, topology: str) -> str:
        parts = [f"{self.holding} of {self.total} guests hold their VMI address"]
        if self.no_address:
            parts.append(f"{self.no_address} have no address ({no_address_hint(topology)})")
        if self.other:
            parts.append(f"{self.other} hold another address")
        if self.unread:
            parts.append(f"{self.unread} could not be read")
        return "; ".join(parts)
