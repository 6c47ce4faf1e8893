"""What a VM's guest holds on its primary network, and what OVN lets through: pure logic, no I/O.

Three things are kept apart, as on a real cluster (sources in ``simcluster/FIDELITY.md``):

* the **port**: the launcher pod's logical switch port, i.e. the address OVN-Kubernetes allocated to
  the pod and the MAC it derived from it (``util.IPAddrToHWAddr``: 0a:58 + the IPv4 octets). Port
  security on the port admits only frames with that MAC and those addresses;
* the **guest NIC**: the MAC the domain got when it was defined (KubeVirt's managedTap binding gives
  the domain the pod interface's MAC) and whatever the guest configured on eth0 at boot. A live
  migration keeps the running guest, so the NIC keeps its MAC and configuration even when the target
  pod's port got another address and MAC;
* the **VMI status**: the pod interface's addresses (KubeVirt's pod interface cache), the domain's
  MAC, merged with the guest agent's report when an agent runs.

How the guest configures eth0 at boot (``boot``): OVN-Kubernetes answers a VM's DHCP only on Layer2
primary networks (``requireDHCP``), so there the guest gets the pod's address, the gateway .1 and the
network MTU; on Layer3 nothing answers the template's ``dhcp4: true`` and the guest ends with no IPv4
address (only its link-local IPv6), unless the ``layer3GuestAddressing=static`` option says the guest
configures the address its VMI reports.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

DHCP_LEASE_SECONDS = 3500  # OVN-K kubevirt/dhcp.go dhcpLeaseTime
DEFAULT_MTU = 1400

INFO_DOMAIN = "domain"
INFO_GUEST_AGENT = "guest-agent"
INFO_MULTUS = "multus-status"


@dataclass(frozen=True, slots=True)
class GuestNic:
    """eth0 of a running guest, fixed at boot."""

    mac: str
    addresses: tuple[tuple[str, int], ...]  # global addresses configured in the guest, with prefix length
    gateway: str | None
    mtu: int
    method: str  # "dhcp" (a lease from OVN), "static", "none" (asked DHCP, nobody answered)

    @property
    def ips(self) -> tuple[str, ...]:
        return tuple(ip for ip, _ in self.addresses)


def dhcp_served(topology: str, role: str, is_udn: bool) -> bool:
    """Does anything answer the guest's DHCP on this network?

    OVN-K programs DHCP options for VM ports only on primary Layer2 user-defined networks; KubeVirt's
    managedTap binding runs no DHCP server. The default network is treated as served (VMs there use
    KubeVirt's masquerade or bridge bindings, whose DHCP the simulator does not model in detail).
    """
    if not is_udn:
        return True
    return topology == "layer2" and role == "primary"


def boot(
    port_mac: str,
    port_prefixed: Sequence[str],
    gateways: Sequence[str],
    *,
    served: bool,
    addressing: str,
    mtu: int | None,
) -> GuestNic:
    """The guest's eth0 after boot: the NIC takes the port's MAC; its addresses depend on DHCP."""
    addrs: list[tuple[str, int]] = []
    for p in port_prefixed:
        ip, _, plen = p.partition("/")
        addrs.append((ip, int(plen) if plen else (32 if ":" not in ip else 128)))
    gateway = gateways[0] if gateways else None
    if served:
        return GuestNic(port_mac, tuple(addrs), gateway, mtu or DEFAULT_MTU, "dhcp")
    if addressing == "static":
        return GuestNic(port_mac, tuple(addrs), gateway, mtu or DEFAULT_MTU, "static")
    return GuestNic(port_mac, (), None, mtu or DEFAULT_MTU, "none")


def link_local(mac: str) -> str:
    """The EUI-64 link-local address the guest kernel derives from its MAC."""
    octets = [int(x, 16) for x in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    return str(ipaddress.IPv6Address(bytes([0xFE, 0x80, 0, 0, 0, 0, 0, 0, *eui])))


def admitted(port_mac: str, port_ips: Sequence[str], nic: GuestNic, src: str) -> bool:
    """Port security: a frame from the guest passes only with the port's MAC and one of its addresses."""
    return nic.mac == port_mac and src in port_ips and src in nic.ips


def answers(port_mac: str, port_ips: Sequence[str], nic: GuestNic, ip: str) -> bool:
    """Does the VM behind this port answer at ``ip``? OVN delivers to the port's MAC; the guest must
    own that MAC, hold the address, and its reply must pass port security."""
    return ip in port_ips and admitted(port_mac, port_ips, nic, ip)


def agent_ips(nic: GuestNic) -> list[str]:
    """What qemu-guest-agent reports for eth0: the configured addresses and the link-local one."""
    return [*nic.ips, link_local(nic.mac)]


def kubevirt_at_least(version: str, major: int, minor: int) -> bool:
    """Compare a ``vX.Y.Z`` KubeVirt version (pre-release suffixes ignored)."""
    parts = version.lstrip("v").split("-")[0].split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (IndexError, ValueError):
        return True


def _split(ips: Sequence[str]) -> tuple[list[str], list[str]]:
    v4: list[str] = []
    v6: list[str] = []
    for ip in ips:
        (v6 if ":" in ip else v4).append(ip)
    return v4, v6


def merge_agent(pod_ips: Sequence[str], reported: Sequence[str], per_family: bool) -> list[str]:
    """KubeVirt's merge of guest-agent data into an interface status (netstat.go
    ``updateVMIIfaceStatusWithGuestAgentData``).

    Up to KubeVirt 1.5 (``per_family`` False) the whole interface: the agent's addresses replace the
    pod's only when the status has no address or the agent reports none at all; the agent's primary
    address is its first IPv4, else its first address (a link-local IPv6 counts). From KubeVirt 1.6
    per family: the agent's addresses of a family replace the pod's when the status has none of that
    family or the agent reports none of it (so a guest with only a link-local address clears the
    pod's IPv4)."""
    if not per_family:
        a4, _ = _split(reported)
        agent_primary = a4[0] if a4 else (reported[0] if reported else "")
        status_primary = pod_ips[0] if pod_ips else ""
        return list(reported) if not status_primary or not agent_primary else list(pod_ips)
    s4, s6 = _split(pod_ips)
    a4, a6 = _split(reported)
    if not s4 or not a4:
        s4 = a4
    if not s6 or not a6:
        s6 = a6
    return s4 + s6


def interface_status(
    name: str, pod_ips: Sequence[str], pod_interface: str, nic: GuestNic | None, agent: bool, per_family: bool = False
) -> dict[str, object]:
    """One ``status.interfaces[]`` entry of a pod-network binding-plugin interface."""
    mac = nic.mac if nic is not None else ""
    ips = list(pod_ips)
    sources = [INFO_DOMAIN]
    entry: dict[str, object] = {"name": name}
    if agent and nic is not None:
        ips = merge_agent(ips, agent_ips(nic), per_family)
        sources.append(INFO_GUEST_AGENT)
        entry["interfaceName"] = "eth0"
    sources.append(INFO_MULTUS)
    if ips:
        entry["ipAddress"] = ips[0]
        entry["ipAddresses"] = ips
    entry.update(
        {
            "mac": mac,
            "infoSource": ", ".join(sources),
            "podInterfaceName": pod_interface,
            "queueCount": 1,
            "linkState": "up",
        }
    )
    return entry
