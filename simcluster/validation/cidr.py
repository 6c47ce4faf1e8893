"""CIDR parsing with the semantics of the Kubernetes CEL ``isCIDR``/``cidr()`` library.

That library uses Go's ``netip.ParsePrefix`` and then refuses IPv6 zones and IPv4-mapped IPv6
addresses. Host bits may be set (``10.0.0.1/8`` is a valid CIDR to CEL), leading zeros are not.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

_BITS_RE = re.compile(r"^(0|[1-9][0-9]{0,2})$")


@dataclass(frozen=True, slots=True)
class Cidr:
    """A parsed prefix as CEL's ``net.CIDR`` sees it."""

    addr: ipaddress.IPv4Address | ipaddress.IPv6Address
    prefix: int

    @property
    def family(self) -> int:
        return self.addr.version

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(f"{self.addr}/{self.prefix}", strict=False)

    def contains(self, other: Cidr) -> bool:
        """CEL ``containsCIDR``: same family, other's address inside, and not a wider prefix."""
        return self.family == other.family and self.prefix <= other.prefix and other.addr in self.network


@lru_cache(maxsize=4096)
def parse_cidr(value: object) -> Cidr | None:
    """Parse like CEL ``cidr()``; None where ``isCIDR`` would be false."""
    if not isinstance(value, str) or value.count("/") != 1 or "%" in value:
        return None
    addr_s, bits_s = value.split("/")
    if not _BITS_RE.match(bits_s):
        return None
    try:
        addr = ipaddress.ip_address(addr_s)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return None
    bits = int(bits_s)
    if bits > addr.max_prefixlen:
        return None
    return Cidr(addr, bits)


def is_cidr(value: object) -> bool:
    return parse_cidr(value) is not None
