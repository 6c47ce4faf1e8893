"""ClusterUserDefinedNetwork / UserDefinedNetwork validation as OpenShift 4.19 ships it.

Source of truth: the CRDs in openshift/cluster-network-operator release-4.19
(bindata/network/ovn-kubernetes/common/001-crd.yaml), whose Layer2/Layer3 rules equal
ovn-kubernetes v1.1.0 plus Localnet. On 4.19 the whole CUDN ``spec.network`` (UDN: ``spec``) is
immutable, Layer3 takes at most 2 subnets, and the MTU message of the *UDN* CRD still has the
upstream typo "subent" (the CUDN one does not). Each rule below names the CEL expression it mirrors.
"""

from __future__ import annotations

from typing import Any

from .cidr import Cidr, is_cidr, parse_cidr
from .schema import Rule, Schema, arr, integer, label_selector, obj, string

CIDR_INVALID = "CIDR is invalid"
TWO_FAMILIES = "When 2 CIDRs are set, they must be from different IP families"
JOIN_PRIMARY_ONLY = "JoinSubnets is only supported for Primary network"
MTU_IPV6 = "MTU should be greater than or equal to 1280 when IPv6 subnet is used"
MTU_IPV6_UDN = "MTU should be greater than or equal to 1280 when IPv6 subent is used"  # sic, UDN CRD 4.19
MTU_IPV6_LOCALNET = "MTU should be greater than or equal to 1280 when an IPv6 subnet is used"
HOSTSUBNET_SMALLER = "HostSubnet must be smaller than CIDR subnet"
HOSTSUBNET_V4 = "HostSubnet must < 32 for ipv4 CIDR"
L2_SUBNETS_REQUIRED = "Subnets is required with ipam.mode is Enabled or unset"
L2_SUBNETS_UNSET = "Subnets must be unset when ipam.mode is Disabled"
L2_DISABLED_SECONDARY = "Disabled ipam.mode is only supported for Secondary network"
LIFECYCLE_ENABLED = "lifecycle Persistent is only supported when ipam.mode is Enabled"
LAYER3_PRESENCE = "spec.layer3 is required when topology is Layer3 and forbidden otherwise"
LAYER2_PRESENCE = "spec.layer2 is required when topology is Layer2 and forbidden otherwise"
LOCALNET_PRESENCE = "spec.localnet is required when topology is Localnet and forbidden otherwise"
NETWORK_IMMUTABLE = "Network spec is immutable"
SPEC_IMMUTABLE = "Spec is immutable"
LOCALNET_SUBNETS = "Subnets is required with ipam.mode is Enabled or unset, and forbidden otherwise"
LOCALNET_EXCLUDE_UNSET = "excludeSubnets must be unset when subnets is unset"
LOCALNET_EXCLUDE_IN = "excludeSubnets must be subnetworks of the networks specified in the subnets field"
LOCALNET_PHYSNET = "physicalNetworkName cannot contain `,` or `:` characters"
VLAN_ACCESS = "vlan access config is required when vlan mode is 'Access', and forbidden otherwise"


# --- CEL helpers ------------------------------------------------------------------------------
def _cidr(value: Any) -> Cidr:
    """A CIDR already checked with ``is_cidr`` (the CEL rules guard with ``isCIDR`` first)."""
    parsed = parse_cidr(value)
    assert parsed is not None
    return parsed


def _family(value: Any) -> int | None:
    c = parse_cidr(value)
    return c.family if c else None


def _two_families(items: list[Any], key: str | None = None) -> bool:
    """size(self) != 2 || !isCIDR(a) || !isCIDR(b) || family(a) != family(b)."""
    if len(items) != 2:
        return True
    a, b = (i.get(key) if isinstance(i, dict) else None for i in items) if key else items
    fa, fb = _family(a), _family(b)
    return fa is None or fb is None or fa != fb


def _exactly_one_v6(cidrs: list[Any]) -> bool:
    """CEL ``exists_one(i, isCIDR(i) && cidr(i).ip().family() == 6)``: exactly one, not at least one."""
    return sum(1 for c in cidrs if _family(c) == 6) == 1


def _mtu_ok(s: dict, cidrs: list[Any]) -> bool:
    return "subnets" not in s or "mtu" not in s or not _exactly_one_v6(cidrs) or s["mtu"] >= 1280


def _ipam_mode(s: dict) -> str | None:
    ipam = s.get("ipam")
    return ipam.get("mode") if isinstance(ipam, dict) else None


def _cidr_list(max_items: int = 2) -> Schema:
    return arr(
        string(max_length=43, rules=(Rule(CIDR_INVALID, is_cidr),)),
        min_items=1,
        max_items=max_items,
        rules=(Rule(TWO_FAMILIES, _two_families),),
    )


def _ipam() -> Schema:
    return obj(
        {"lifecycle": string(enum=("Persistent",)), "mode": string(enum=("Enabled", "Disabled"))},
        min_properties=1,
        rules=(
            Rule(
                LIFECYCLE_ENABLED,
                lambda s: s.get("lifecycle") != "Persistent" or "mode" not in s or s["mode"] == "Enabled",
            ),
        ),
    )


def _mtu() -> Schema:
    return integer(minimum=576, maximum=65536)


def _role(*values: str) -> Schema:
    return string(enum=values)


def _join_primary(s: dict) -> bool:
    return "joinSubnets" not in s or s.get("role") == "Primary"


def _layer3(mtu_message: str) -> Schema:
    subnet = obj(
        {
            "cidr": string(max_length=43, rules=(Rule(CIDR_INVALID, is_cidr),)),
            "hostSubnet": integer(minimum=1, maximum=127),
        },
        required=("cidr",),
        rules=(
            Rule(
                HOSTSUBNET_SMALLER,
                lambda s: (
                    "hostSubnet" not in s or not is_cidr(s.get("cidr")) or s["hostSubnet"] > _cidr(s["cidr"]).prefix
                ),
            ),
            Rule(
                HOSTSUBNET_V4,
                lambda s: (
                    "hostSubnet" not in s
                    or not is_cidr(s.get("cidr"))
                    or _cidr(s["cidr"]).family != 4
                    or s["hostSubnet"] < 32
                ),
            ),
        ),
    )
    return obj(
        {
            "joinSubnets": _cidr_list(),
            "mtu": _mtu(),
            "role": _role("Primary", "Secondary"),
            "subnets": arr(
                subnet,
                min_items=1,
                max_items=2,
                rules=(Rule(TWO_FAMILIES, lambda s: _two_families(s, "cidr")),),
            ),
        },
        required=("role", "subnets"),
        rules=(
            Rule(JOIN_PRIMARY_ONLY, _join_primary),
            Rule(
                mtu_message,
                lambda s: (
                    _mtu_ok(s, [i.get("cidr") if isinstance(i, dict) else None for i in s["subnets"]])
                    if "subnets" in s
                    else True
                ),
            ),
        ),
    )


def _layer2(mtu_message: str) -> Schema:
    return obj(
        {
            "ipam": _ipam(),
            "joinSubnets": _cidr_list(),
            "mtu": _mtu(),
            "role": _role("Primary", "Secondary"),
            "subnets": _cidr_list(),
        },
        required=("role",),
        rules=(
            # has(self.ipam) && has(self.ipam.mode) && self.ipam.mode != 'Enabled' || has(self.subnets)
            Rule(L2_SUBNETS_REQUIRED, lambda s: _ipam_mode(s) not in (None, "Enabled") or "subnets" in s),
            Rule(L2_SUBNETS_UNSET, lambda s: _ipam_mode(s) != "Disabled" or "subnets" not in s),
            Rule(L2_DISABLED_SECONDARY, lambda s: _ipam_mode(s) != "Disabled" or s.get("role") == "Secondary"),
            Rule(JOIN_PRIMARY_ONLY, _join_primary),
            Rule(mtu_message, lambda s: _mtu_ok(s, s.get("subnets") or [])),
        ),
    )


def _exclude_inside(s: dict) -> bool:
    """excludeSubnets.all(e, subnets.exists(s, cidr(s).containsCIDR(cidr(e)))).

    Where upstream would hit a CEL runtime error (no subnets, unparsable CIDR) other rules already
    report the problem, so this one stays quiet instead of guessing the evaluation-error text.
    """
    if "excludeSubnets" not in s or "subnets" not in s:
        return True
    nets = [parse_cidr(x) for x in s["subnets"]]
    for e in s["excludeSubnets"]:
        ec = parse_cidr(e)
        if ec is None or any(n is None for n in nets):
            return True
        if not any(n.contains(ec) for n in nets if n is not None):
            return False
    return True


def _localnet() -> Schema:
    vlan = obj(
        {
            "access": obj({"id": integer(minimum=1, maximum=4094)}, required=("id",)),
            "mode": string(enum=("Access",)),
        },
        required=("mode",),
        rules=(Rule(VLAN_ACCESS, lambda s: ("access" in s) if s.get("mode") == "Access" else "access" not in s),),
    )
    return obj(
        {
            "excludeSubnets": arr(
                string(max_length=43, rules=(Rule(CIDR_INVALID, is_cidr),)), min_items=1, max_items=25
            ),
            "ipam": _ipam(),
            "mtu": _mtu(),
            "physicalNetworkName": string(
                min_length=1,
                max_length=253,
                rules=(Rule(LOCALNET_PHYSNET, lambda s: "," not in s and ":" not in s and s != ""),),
            ),
            "role": _role("Secondary"),
            "subnets": _cidr_list(),
            "vlan": vlan,
        },
        required=("physicalNetworkName", "role"),
        rules=(
            Rule(
                LOCALNET_SUBNETS,
                lambda s: ("subnets" in s) if _ipam_mode(s) in (None, "Enabled") else "subnets" not in s,
            ),
            Rule(LOCALNET_EXCLUDE_UNSET, lambda s: "excludeSubnets" not in s or "subnets" in s),
            Rule(MTU_IPV6_LOCALNET, lambda s: _mtu_ok(s, s.get("subnets") or [])),
            Rule(LOCALNET_EXCLUDE_IN, _exclude_inside, field_path=".excludeSubnets"),
        ),
    )


def _presence(topology: str, key: str, message: str) -> Rule:
    """has(self.topology) && self.topology == T ? has(self.key) : !has(self.key)."""
    return Rule(message, lambda s: (key in s) if s.get("topology") == topology else key not in s)


def _immutable(message: str) -> Rule:
    return Rule(message, lambda new, old: new == old, transition=True)


_NETWORK = obj(
    {
        "layer2": _layer2(MTU_IPV6),
        "layer3": _layer3(MTU_IPV6),
        "localnet": _localnet(),
        "topology": string(enum=("Layer2", "Layer3", "Localnet")),
    },
    required=("topology",),
    rules=(
        _presence("Layer3", "layer3", LAYER3_PRESENCE),
        _presence("Layer2", "layer2", LAYER2_PRESENCE),
        _presence("Localnet", "localnet", LOCALNET_PRESENCE),
        _immutable(NETWORK_IMMUTABLE),
    ),
)

CUDN_SCHEMA = obj(
    {
        "apiVersion": string(),
        "kind": string(),
        "metadata": obj(),
        "spec": obj(
            {"namespaceSelector": label_selector(), "network": _NETWORK},
            required=("namespaceSelector", "network"),
        ),
    },
    required=("spec",),
)

UDN_SCHEMA = obj(
    {
        "apiVersion": string(),
        "kind": string(),
        "metadata": obj(),
        "spec": obj(
            {
                "layer2": _layer2(MTU_IPV6_UDN),
                "layer3": _layer3(MTU_IPV6_UDN),
                "topology": string(enum=("Layer2", "Layer3")),
            },
            required=("topology",),
            rules=(
                _immutable(SPEC_IMMUTABLE),
                _presence("Layer3", "layer3", LAYER3_PRESENCE),
                _presence("Layer2", "layer2", LAYER2_PRESENCE),
            ),
        ),
    },
    required=("spec",),
)

# k8s.cni.cncf.io CRDs: no CEL rules.
NAD_SCHEMA = obj({"apiVersion": string(), "kind": string(), "metadata": obj(), "spec": obj({"config": string()})})
IPAMCLAIM_SCHEMA = obj(
    {
        "apiVersion": string(),
        "kind": string(),
        "metadata": obj(),
        "spec": obj({"interface": string(), "network": string()}, required=("interface", "network")),
    }
)
