"""What the emulated guest sees of its network, as supplied by the simulator."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class GuestInterface:
    """The guest's primary NIC as it was configured at boot (by DHCP, statically, or not at all)."""

    mac: str
    addresses: tuple[tuple[str, int], ...] | list[tuple[str, int]] = field(default_factory=tuple)
    mtu: int = 1400
    gateway: str | None = None
    name: str = "eth0"
    dynamic: bool = True  # addresses from a DHCP lease (False: configured statically)

    def ipv4(self) -> list[ipaddress.IPv4Interface]:
        out = []
        for ip, plen in self.addresses:
            addr = ipaddress.ip_interface(f"{ip}/{plen}")
            if isinstance(addr, ipaddress.IPv4Interface):
                out.append(addr)
        return out

    def ipv6(self) -> list[ipaddress.IPv6Interface]:
        out = []
        for ip, plen in self.addresses:
            addr = ipaddress.ip_interface(f"{ip}/{plen}")
            if isinstance(addr, ipaddress.IPv6Interface):
                out.append(addr)
        return out


@runtime_checkable
class GuestNetwork(Protocol):
    """The network as the guest sees it; live: values may change (e.g. after a migration).

    A network may also offer ``resolves(target: str) -> bool``: whether an on-link address answers
    ARP. Without it the guest probes with :meth:`echo` (three tries, like the kernel's three ARP
    requests) to tell "Destination Host Unreachable" from a lost reply. And it may offer
    ``echo_at(target: str, at: float | None) -> float | None``: an echo the guest's program scheduled
    for event-loop time ``at``, judged by that time (e.g. a peer paused during a migration's switch-over).
    """

    def interface(self) -> GuestInterface | None:
        """eth0 with its address, or None while DHCP has not configured one."""
        ...

    def echo(self, target: str) -> float | None:
        """One ICMP echo to ``target``: the round-trip time in ms, or None when no reply comes back."""
        ...

    def default_gateway(self) -> str | None:
        """The default route's next hop (used when the interface does not name one)."""
        ...


def link_local(mac: str) -> ipaddress.IPv6Address:
    """The EUI-64 link-local address the kernel derives from a MAC."""
    octets = [int(x, 16) for x in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    return ipaddress.IPv6Address(bytes([0xFE, 0x80, 0, 0, 0, 0, 0, 0, *eui]))


def ovn_mac(ip: str) -> str:
    """The MAC OVN-Kubernetes gives a logical port: 0a:58 followed by the IPv4 address."""
    return "0a:58:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)
