"""Layer3 node-subnet allocation, mirroring OVN-Kubernetes' cluster manager.

OVN-K (go-controller/pkg/clustermanager/node/subnet_allocator.go) carves one host subnet per node and
IP family out of each cluster CIDR. The simulated cluster must hand out the *same* subnets in the *same*
order, so that IPs, capacity reports and "what-if" answers match a real cluster. Behaviour mirrored:

* subnets are numbered from the start of the CIDR; index ``n`` becomes ``cidr + (n << hostBits)``;
* IPv4 host lengths that are not octet aligned rotate the index so that subnets with all zero bits in
  the shared octet come first (10.1.0.0/16 with /26: 10.1.0.0/26, 10.1.1.0/26, ... then 10.1.0.64/26);
* IPv6 ranges with >= 16 subnet bits skip indices whose low 16 bits are zero ("skip the 0 subnet");
* at most 2**24 subnets per range are considered;
* allocation is round-robin: a ``next`` pointer that moves past the last allocated index, so a released
  subnet is reused only after wrap-around; a failed scan resets ``next`` to 0;
* ranges of one family are tried in the order given; a node asks for one subnet per configured family,
  and if the second family fails the subnet just taken from the first is released again.

Subnets are generated lazily from their index, so a /8 with /30 host subnets costs nothing up front.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# OVN-K caps a range at 1<<24 subnets ("16M subnets ought to be enough for anybody").
_MAX_SUBNETS_PER_RANGE = 1 << 24

NODE_SUBNETS_ANNOTATION = "k8s.ovn.org/node-subnets"


def default_host_subnet(cidr: str) -> int:
    """Host subnet length used when a Layer3 subnet has none: /24 for IPv4, /64 for IPv6 (OVN-K default)."""
    return 24 if ipaddress.ip_network(cidr, strict=False).version == 4 else 64


class _SubnetRange:
    """One cluster CIDR carved into host subnets of one length (OVN-K ``subnetAllocatorRange``)."""

    def __init__(self, cidr: str, host_subnet: int) -> None:
        network = ipaddress.ip_network(cidr, strict=False)
        addr_len = network.max_prefixlen
        if host_subnet >= addr_len:
            raise ValueError("host capacity cannot be zero")
        if host_subnet < network.prefixlen:
            raise ValueError("subnet capacity cannot be larger than number of networks available")
        self.network: IPNetwork = network
        self.version = network.version
        self.host_subnet = host_subnet
        self.host_bits = addr_len - host_subnet
        self.subnet_bits = host_subnet - network.prefixlen
        self.next = 0
        self._base = int(network.network_address)
        self._num = min(1 << self.subnet_bits, _MAX_SUBNETS_PER_RANGE)
        self._skip_zero_word = self.version == 6 and self.subnet_bits >= 16
        # subnet string -> owner, exactly like OVN-K's allocMap (restored subnets may be odd ones)
        self.alloc_map: dict[str, str] = {}
        self._by_owner: dict[str, list[str]] = {}
        # indices of generated subnets that are taken; lets a full range answer in O(1)
        self._taken: set[int] = set()
        self._left_shift = 0
        self._left_mask = 0
        self._right_shift = 0
        self._right_mask = 0
        hb, sb = self.host_bits, self.subnet_bits
        if addr_len == 32 and hb % 8 != 0 and (hb - 1) // 8 != (hb + sb - 1) // 8:
            self._left_shift = 8 - hb % 8
            self._left_mask = (1 << sb) - 1
            self._right_shift = sb - self._left_shift
            self._right_mask = (1 << self._left_shift) - 1

    # -- index <-> subnet -------------------------------------------------------------------------
    def _rotate(self, n: int) -> int:
        if not self._left_shift:
            return n
        return ((n << self._left_shift) & self._left_mask) | ((n >> self._right_shift) & self._right_mask)

    def _unrotate(self, r: int) -> int:
        if not self._left_shift:
            return r
        return ((r >> self._left_shift) | ((r & self._right_mask) << self._right_shift)) & self._left_mask

    def generate(self, n: int) -> str | None:
        """The subnet with allocation index ``n``, or None for an IPv6 subnet OVN-K skips."""
        if self._skip_zero_word and n & 0xFFFF == 0:
            return None
        addr = ipaddress.ip_address(self._base + (self._rotate(n) << self.host_bits))
        return f"{addr}/{self.host_subnet}"

    def index_of(self, subnet: IPNetwork) -> int | None:
        """Allocation index of a subnet this range would generate, else None."""
        if subnet.prefixlen != self.host_subnet or not self.contains(subnet):
            return None
        r = (int(subnet.network_address) - self._base) >> self.host_bits
        n = self._unrotate(r)
        if n >= self._num or self._rotate(n) != r or self.generate(n) is None:
            return None
        return n

    # -- bookkeeping ------------------------------------------------------------------------------
    def contains(self, subnet: IPNetwork) -> bool:
        return subnet.version == self.version and subnet.network_address in self.network

    def allocatable(self) -> int:
        """Subnets this range can really hand out (the IPv6 zero-word ones excluded)."""
        if self._skip_zero_word:
            return self._num - (self._num + 0xFFFF) // 0x10000
        return self._num

    def owned_by(self, owner: str) -> str | None:
        subnets = self._by_owner.get(owner)
        return subnets[0] if subnets else None

    def _record(self, owner: str, subnet: str) -> None:
        self.alloc_map[subnet] = owner
        self._by_owner.setdefault(owner, []).append(subnet)

    def allocate(self, owner: str) -> str | None:
        existing = self.owned_by(owner)
        if existing is not None:
            return existing
        if len(self._taken) < self.allocatable():
            for i in range(self._num):
                n = (i + self.next) % self._num
                if n in self._taken:
                    continue
                subnet = self.generate(n)
                if subnet is None or subnet in self.alloc_map:
                    continue
                self._record(owner, subnet)
                self._taken.add(n)
                self.next = n + 1
                return subnet
        self.next = 0
        return None

    def mark(self, owner: str, subnet: IPNetwork) -> bool:
        """Mark ``subnet`` as owned; False if it is outside this range. Raises if owned by another."""
        if not self.contains(subnet):
            return False
        key = str(subnet)
        current = self.alloc_map.get(key)
        if current is None:
            self._record(owner, key)
            n = self.index_of(subnet)
            if n is not None:
                self._taken.add(n)
            return True
        if current == owner:
            return True
        raise ValueError(f"network {key} already owned by {current}")

    def release(self, owner: str, subnet: str) -> bool:
        if self.alloc_map.get(subnet) != owner:
            return False
        del self.alloc_map[subnet]
        owned = self._by_owner[owner]
        owned.remove(subnet)
        if not owned:
            del self._by_owner[owner]
        n = self.index_of(ipaddress.ip_network(subnet))
        if n is not None:
            self._taken.discard(n)
        return True

    def release_all(self, owner: str) -> None:
        for subnet in list(self._by_owner.get(owner, ())):
            self.release(owner, subnet)


class NodeSubnetAllocator:
    """Per-node host subnets for one Layer3 network (or the default cluster network).

    ``cidrs`` holds ``(cidr, hostSubnet)`` pairs; a hostSubnet of 0/None means the OVN-K default
    (/24 IPv4, /64 IPv6). A node gets one subnet per IP family present.
    """

    def __init__(self, cidrs: Sequence[tuple[str, int | None]]) -> None:
        self._ranges: dict[int, list[_SubnetRange]] = {4: [], 6: []}
        for cidr, host in cidrs:
            rng = _SubnetRange(cidr, host or default_host_subnet(cidr))
            self._ranges[rng.version].append(rng)
        if not self._ranges[4] and not self._ranges[6]:
            raise ValueError("at least one cluster CIDR is required")

    @property
    def families(self) -> list[int]:
        """IP versions this network carves subnets for, IPv4 first."""
        return [v for v in (4, 6) if self._ranges[v]]

    def _allocate_family(self, version: int, node: str) -> str | None:
        for rng in self._ranges[version]:
            subnet = rng.allocate(node)
            if subnet is not None:
                return subnet
        return None

    def allocate(self, node: str) -> list[str] | None:
        """Subnets for ``node`` (IPv4 first), reusing any it already has; None when a family is exhausted."""
        got: list[tuple[int, str, bool]] = []
        for version in self.families:
            existing = self._owned(version, node)
            if existing is not None:
                got.append((version, existing, False))
                continue
            subnet = self._allocate_family(version, node)
            if subnet is None:
                for v, s, new in got:
                    if new:
                        self._release_subnet(v, node, s)
                return None
            got.append((version, subnet, True))
        return [s for _, s, _ in got]

    def _owned(self, version: int, node: str) -> str | None:
        for rng in self._ranges[version]:
            subnet = rng.owned_by(node)
            if subnet is not None:
                return subnet
        return None

    def _release_subnet(self, version: int, node: str, subnet: str) -> None:
        for rng in self._ranges[version]:
            if rng.release(node, subnet):
                return

    def release(self, node: str) -> None:
        """Free every subnet of ``node``; the round-robin pointer is left alone (no early reuse)."""
        for version in (4, 6):
            for rng in self._ranges[version]:
                rng.release_all(node)

    def restore(self, node: str, subnets: Iterable[str]) -> None:
        """Mark subnets read back from a node annotation as owned by ``node`` (all or nothing).

        Raises ValueError if a subnet is outside every range or already owned by another node.
        """
        marked: list[tuple[int, str]] = []
        try:
            for text in subnets:
                subnet = ipaddress.ip_network(text, strict=False)
                if not any(rng.mark(node, subnet) for rng in self._ranges[subnet.version]):
                    raise ValueError(f"network {subnet} does not belong to any known range")
                marked.append((subnet.version, str(subnet)))
        except ValueError:
            for version, s in marked:
                self._release_subnet(version, node, s)
            raise

    def allocated(self) -> dict[str, list[str]]:
        """Node name -> its subnets, IPv4 first."""
        out: dict[str, list[str]] = {}
        for version in (4, 6):
            for rng in self._ranges[version]:
                for subnet, node in rng.alloc_map.items():
                    out.setdefault(node, []).append(subnet)
        return out

    def subnets_of(self, node: str) -> list[str]:
        """Subnets currently owned by ``node`` (empty if none)."""
        return self.allocated().get(node, [])

    def capacity(self) -> int:
        """How many nodes can hold subnets: the smallest per-family total of allocatable subnets."""
        return min(sum(r.allocatable() for r in self._ranges[v]) for v in self.families)

    def usage(self) -> int:
        """How many nodes currently hold at least one subnet."""
        return len(self.allocated())


def parse_node_subnets_annotation(value: str | None) -> dict[str, list[str]]:
    """Read ``k8s.ovn.org/node-subnets``; values may be a string (old single-stack) or a list."""
    if not value:
        return {}
    raw = json.loads(value)
    if not isinstance(raw, dict):
        raise ValueError(f"could not parse {NODE_SUBNETS_ANNOTATION!r} annotation {value!r}")
    out: dict[str, list[str]] = {}
    for name, subnets in raw.items():
        items = [subnets] if isinstance(subnets, str) else list(subnets)
        out[str(name)] = [str(ipaddress.ip_network(s, strict=False)) for s in items]
    return out


def node_subnets_annotation(existing_json: str | None, network_name: str, subnets: Sequence[str] | None) -> str | None:
    """New value of ``k8s.ovn.org/node-subnets`` after setting (or, with no subnets, removing) one network.

    OVN-K always writes lists (``{"default":["10.128.0.0/23"]}``), keys sorted as Go marshals a map, and
    returns None when no network is left: the caller then deletes the annotation, as OVN-K does.
    """
    current = parse_node_subnets_annotation(existing_json)
    if subnets:
        current[network_name] = [str(ipaddress.ip_network(s, strict=False)) for s in subnets]
    else:
        current.pop(network_name, None)
    if not current:
        return None
    return json.dumps(current, sort_keys=True, separators=(",", ":"))
