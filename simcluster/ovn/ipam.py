"""Address allocation inside a subnet, mirroring OVN-Kubernetes' IPAM.

OVN-K (go-controller/pkg/allocator/ip ``NewAllocatorCIDRRange`` over a round-robin bitmap, fed by
``logical_switch_manager.AddOrUpdateSwitch`` / the cluster manager's ``infrastructureExcludeCIDRs``):

* offset 0 of the bitmap is the address after the network address; the network address and, for
  IPv4, the broadcast address are never in the range; an IPv6 range covers at most 65536 addresses;
* .1 (gateway) and .2 (management port) are excluded, so the first workload address is .3;
* ``AllocateNext`` scans from a ``next`` offset that moves past each allocation and wraps, so a
  released address is reused only after every other free one has been tried (no immediate reuse);
  allocating a specific address or releasing one does not move ``next``.

VMs care because their addresses are what the rollout records and compares; the simulated cluster
must give the same .3, .4, ... sequence a real cluster gives.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from simcluster.ovn.subnets import NodeSubnetAllocator

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# allocator/ip: "IPv6 ranges are capped at 65536 addresses"
IPV6_RANGE_CAP = 65536
# allocator/ip ErrFull text; shows up in virt-launcher events when a subnet is full
ERR_SUBNET_EXHAUSTED = "subnet address pool exhausted"


class SubnetIPAllocator:
    """Round-robin address allocator for one subnet (a node subnet, or a whole Layer2 subnet).

    ``exclude`` holds extra addresses or CIDRs inside the subnet that must never be handed out.
    ``size``/``used``/``free`` count workload addresses only: gateway, management and excluded
    addresses are not part of them.
    """

    def __init__(self, cidr: str, exclude: Iterable[str] | None = None) -> None:
        self.network: IPNetwork = ipaddress.ip_network(cidr, strict=False)
        full = self.network.num_addresses
        if self.network.version == 6:
            full = min(full, IPV6_RANGE_CAP)
        slots = full - 1  # the network address is never in the range
        if self.network.version == 4:
            slots -= 1  # nor is the IPv4 broadcast address
        self._base = int(self.network.network_address) + 1
        self._max = max(0, slots)
        self._allocated: set[int] = set()
        self._reserved: set[int] = set()
        self._next = 0
        for infra in (self.gateway(), self.management()):
            off = self._offset(infra)
            if off is not None:
                self._reserve(off)
        for item in exclude or ():
            self._exclude(item)

    # -- helpers ----------------------------------------------------------------------------------
    def _offset(self, ip: str | IPAddress) -> int | None:
        addr = ipaddress.ip_address(ip)
        if addr.version != self.network.version or addr not in self.network:
            return None
        off = int(addr) - self._base
        return off if 0 <= off < self._max else None

    def _ip(self, offset: int) -> str:
        return str(ipaddress.ip_address(self._base + offset))

    def _reserve(self, offset: int) -> None:
        self._allocated.add(offset)
        self._reserved.add(offset)

    def _exclude(self, item: str) -> None:
        sub = ipaddress.ip_network(item, strict=False)
        if sub.version != self.network.version or not sub.subnet_of(self.network):  # type: ignore[arg-type]
            raise ValueError(f"failed to exclude subnet {item}: not contained in {self.network}")
        lo = max(int(sub.network_address) - self._base, 0)
        hi = min(int(sub.broadcast_address) - self._base, self._max - 1)
        for off in range(lo, hi + 1):
            self._reserve(off)

    # -- well-known addresses ---------------------------------------------------------------------
    def gateway(self) -> str:
        """The node/network gateway, first address after the network address (``GetNodeGatewayIfAddr``)."""
        return str(self.network.network_address + 1)

    def management(self) -> str:
        """The management port address, second after the network address (``GetNodeManagementIfAddr``)."""
        return str(self.network.network_address + 2)

    @property
    def cidr(self) -> str:
        return str(self.network)

    def prefixed(self, ip: str) -> str:
        """``ip`` with this subnet's prefix length, as OVN-K writes ``ip_addresses``."""
        return f"{ipaddress.ip_address(ip)}/{self.network.prefixlen}"

    # -- allocation -------------------------------------------------------------------------------
    def allocate(self) -> str | None:
        """Next free address round-robin, or None when the subnet is exhausted."""
        if len(self._allocated) >= self._max:
            return None
        for i in range(self._max):
            at = (self._next + i) % self._max
            if at not in self._allocated:
                self._allocated.add(at)
                self._next = (at + 1) % self._max
                return self._ip(at)
        return None  # pragma: no cover - unreachable, count says there is a free slot

    def allocate_specific(self, ip: str) -> bool:
        """Take ``ip``; False if it is outside the range, reserved or already taken."""
        off = self._offset(ip)
        if off is None or off in self._allocated:
            return False
        self._allocated.add(off)
        return True

    def release(self, ip: str) -> None:
        """Give ``ip`` back (gateway, management and excluded addresses stay reserved)."""
        off = self._offset(ip)
        if off is not None and off not in self._reserved:
            self._allocated.discard(off)

    def contains(self, ip: str) -> bool:
        """Whether ``ip`` lies inside this subnet."""
        addr = ipaddress.ip_address(ip)
        return addr.version == self.network.version and addr in self.network

    def is_allocated(self, ip: str) -> bool:
        """Whether ``ip`` is currently handed out to a workload."""
        off = self._offset(ip)
        return off is not None and off in self._allocated and off not in self._reserved

    def is_reserved(self, ip: str) -> bool:
        """Whether ``ip`` can never be handed out (network, broadcast, gateway, management, excluded)."""
        if not self.contains(ip):
            return False
        off = self._offset(ip)
        return off is None or off in self._reserved

    def allocated_ips(self) -> list[str]:
        """Workload addresses in use, in address order."""
        return [self._ip(o) for o in sorted(self._allocated - self._reserved)]

    @property
    def size(self) -> int:
        return self._max - len(self._reserved)

    @property
    def used(self) -> int:
        return len(self._allocated) - len(self._reserved)

    @property
    def free(self) -> int:
        return self._max - len(self._allocated)


class Layer2Pool:
    """IPAM of a Layer2 network: one allocator per configured subnet (normally one per IP family).

    The cluster manager allocates from the whole subnet, excluding .1/.2 of each subnet; a workload
    gets one address from every subnet or none at all.
    """

    def __init__(self, cidrs: Sequence[str], exclude: Iterable[str] | None = None) -> None:
        if not cidrs:
            raise ValueError("a Layer2 pool needs at least one subnet")
        excl = list(exclude or ())
        self.allocators = [SubnetIPAllocator(c, [e for e in excl if _inside(e, c)]) for c in cidrs]

    def allocate(self) -> list[str] | None:
        """One address per subnet; on exhaustion of any subnet nothing is kept and None is returned."""
        got: list[tuple[SubnetIPAllocator, str]] = []
        for alloc in self.allocators:
            ip = alloc.allocate()
            if ip is None:
                for a, taken in got:
                    a.release(taken)
                return None
            got.append((alloc, ip))
        return [ip for _, ip in got]

    def allocate_specific(self, ips: Sequence[str]) -> bool:
        """Take all of ``ips`` (each must fall in one subnet) or none of them."""
        got: list[tuple[SubnetIPAllocator, str]] = []
        for ip in ips:
            alloc = self._owner(ip)
            if alloc is None or not alloc.allocate_specific(ip):
                for a, taken in got:
                    a.release(taken)
                return False
            got.append((alloc, ip))
        return True

    def release(self, ips: Iterable[str]) -> None:
        for ip in ips:
            alloc = self._owner(ip)
            if alloc is not None:
                alloc.release(ip)

    def _owner(self, ip: str) -> SubnetIPAllocator | None:
        for alloc in self.allocators:
            if alloc.contains(ip):
                return alloc
        return None

    def prefixed(self, ips: Sequence[str]) -> list[str]:
        """Addresses with their subnet prefix length (``10.0.0.3/24``)."""
        out = []
        for ip in ips:
            alloc = self._owner(ip)
            out.append(alloc.prefixed(ip) if alloc else ip)
        return out

    def gateways(self) -> list[str]:
        return [a.gateway() for a in self.allocators]

    @property
    def size(self) -> int:
        """Workloads that fit: the smallest subnet decides."""
        return min(a.size for a in self.allocators)

    @property
    def free(self) -> int:
        return min(a.free for a in self.allocators)


def _inside(item: str, cidr: str) -> bool:
    sub = ipaddress.ip_network(item, strict=False)
    net = ipaddress.ip_network(cidr, strict=False)
    return sub.version == net.version and sub.subnet_of(net)  # type: ignore[arg-type]


class PersistentClaims:
    """IPAMClaim-style persistence: a claim keeps its addresses until the claim itself is released.

    OVN-K stores the addresses in the IPAMClaim (``<vmi>.<network>``); they stay reserved while the
    claim exists, even with no pod, so a VM keeps its IP across restart and live migration.
    """

    def __init__(self, pool: Layer2Pool) -> None:
        self.pool = pool
        self._claims: dict[str, list[str]] = {}

    def ensure(self, claim: str) -> list[str] | None:
        """The claim's addresses, allocating them on first use; None if the pool is exhausted."""
        ips = self._claims.get(claim)
        if ips is not None:
            return list(ips)
        ips = self.pool.allocate()
        if ips is None:
            return None
        self._claims[claim] = ips
        return list(ips)

    def get(self, claim: str) -> list[str] | None:
        ips = self._claims.get(claim)
        return list(ips) if ips is not None else None

    def restore(self, claim: str, ips: Sequence[str]) -> bool:
        """Re-register addresses read back from an IPAMClaim status; False on conflict."""
        if claim in self._claims:
            return self._claims[claim] == list(ips)
        if not self.pool.allocate_specific(ips):
            return False
        self._claims[claim] = list(ips)
        return True

    def release(self, claim: str) -> None:
        """Free the claim's addresses (the IPAMClaim was deleted)."""
        ips = self._claims.pop(claim, None)
        if ips:
            self.pool.release(ips)

    def claims(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._claims.items()}

    def __contains__(self, claim: object) -> bool:
        return claim in self._claims

    def __len__(self) -> int:
        return len(self._claims)


class NodeNetworkIPAM:
    """Per-node IPAM of a Layer3 network: node subnets from the cluster CIDRs, addresses inside them.

    Serves both Layer3 UDNs and the default cluster network (clusterNetwork, e.g. 10.128.0.0/14 with
    hostPrefix 23) used by pods and VMs in namespaces without a primary UDN. A node without a subnet,
    or with a full one, cannot start workloads of this network: ``allocate`` returns None.
    """

    def __init__(self, cidrs: Sequence[tuple[str, int | None]]) -> None:
        self.subnets = NodeSubnetAllocator(cidrs)
        self._nodes: dict[str, list[SubnetIPAllocator]] = {}

    def ensure_node(self, node: str) -> list[str] | None:
        """Node subnets of ``node`` (allocated on first use); None when the network has none left."""
        if node in self._nodes:
            return [a.cidr for a in self._nodes[node]]
        subnets = self.subnets.allocate(node)
        if subnets is None:
            return None
        self._nodes[node] = [SubnetIPAllocator(s) for s in subnets]
        return subnets

    def restore_node(self, node: str, subnets: Sequence[str]) -> None:
        """Rebuild a node's subnets from its ``k8s.ovn.org/node-subnets`` annotation."""
        self.subnets.restore(node, subnets)
        self._nodes[node] = [SubnetIPAllocator(s) for s in subnets]

    def remove_node(self, node: str) -> None:
        """Forget a deleted node and free its subnets for later nodes."""
        self._nodes.pop(node, None)
        self.subnets.release(node)

    def node_subnets(self, node: str) -> list[str] | None:
        allocs = self._nodes.get(node)
        return [a.cidr for a in allocs] if allocs is not None else None

    def allocators(self, node: str) -> list[SubnetIPAllocator] | None:
        return self._nodes.get(node)

    def allocate(self, node: str) -> list[str] | None:
        """One address per family from the node's subnets; None if the node has no subnet or it is full."""
        allocs = self._nodes.get(node)
        if allocs is None:
            return None
        got: list[tuple[SubnetIPAllocator, str]] = []
        for alloc in allocs:
            ip = alloc.allocate()
            if ip is None:
                for a, taken in got:
                    a.release(taken)
                return None
            got.append((alloc, ip))
        return [ip for _, ip in got]

    def allocate_specific(self, node: str, ips: Sequence[str]) -> bool:
        """Re-take known addresses on ``node`` (after a restart of the simulator)."""
        allocs = self._nodes.get(node)
        if allocs is None:
            return False
        got: list[tuple[SubnetIPAllocator, str]] = []
        for ip in ips:
            alloc = next((a for a in allocs if a.contains(ip)), None)
            if alloc is None or not alloc.allocate_specific(ip):
                for a, taken in got:
                    a.release(taken)
                return False
            got.append((alloc, ip))
        return True

    def release(self, node: str, ips: Iterable[str]) -> None:
        for alloc in self._nodes.get(node, ()):
            for ip in ips:
                if alloc.contains(ip):
                    alloc.release(ip)

    def capacity(self) -> int:
        """Node subnets this network can hand out."""
        return self.subnets.capacity()


class DefaultNetworkIPAM(NodeNetworkIPAM):
    """The cluster default network: ``clusterNetwork`` entries (cidr, hostPrefix) carved per node."""

    @classmethod
    def from_cluster_network(cls, entries: Sequence[dict[str, object]]) -> DefaultNetworkIPAM:
        """Build from ``networks.config.openshift.io`` ``spec.clusterNetwork`` ({cidr, hostPrefix})."""
        pairs: list[tuple[str, int | None]] = []
        for e in entries:
            host = e.get("hostPrefix")
            pairs.append((str(e["cidr"]), int(host) if isinstance(host, int | str) else None))
        return cls(pairs)
