"""CIDR overlap classification and free-subnet proposals."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.cidr import (
    ExistingNetwork,
    find_overlaps,
    internal_subnets,
    parse_cidr,
    suggest_free_subnet,
)

CLUSTER = ["10.128.0.0/14"]
SERVICE = ["172.30.0.0/16"]


def overlaps(subnets, topology="Layer3", existing=(), **kw):
    return find_overlaps(
        subnets,
        cluster_networks=kw.pop("cluster", CLUSTER),
        service_networks=kw.pop("service", SERVICE),
        topology=topology,
        existing_udns=list(existing),
        **kw,
    )


def test_internal_subnets_names_and_enforcement() -> None:
    l3 = {n.cidr: n for n in internal_subnets("Layer3")}
    l2 = {n.cidr: n for n in internal_subnets("Layer2")}
    assert l3["100.64.0.0/16"].name == "OVN-K join subnet (default network)"
    assert l3["100.65.0.0/16"].name == "OVN-K join subnet (user-defined networks)"
    assert l3["169.254.0.0/17"].kind == "masquerade"
    assert set(l3) == {
        "100.64.0.0/16",
        "fd98::/64",
        "100.65.0.0/16",
        "fd99::/64",
        "100.88.0.0/16",
        "fd97::/64",
        "169.254.0.0/17",
        "fd69::/112",
    }
    assert l3["100.88.0.0/16"].enforced and not l2["100.88.0.0/16"].enforced
    assert all(n.why for n in l3.values())


def test_internal_subnets_overrides() -> None:
    subs = internal_subnets("Layer3", masquerade=("169.254.169.0/29",), join=(), udn_join=(), transit=())
    assert [s.cidr for s in subs] == ["169.254.169.0/29"]
    with pytest.raises(ValueError, match="Layer3 or Layer2"):
        internal_subnets("Localnet")  # type: ignore[arg-type]


def test_seed_cidr_is_clean() -> None:
    assert overlaps(["192.168.0.0/16"]) == []
    assert overlaps(["192.168.0.0/16"], topology="Layer2") == []


def test_cluster_network_overlap_fails_with_concrete_fix() -> None:
    [o] = overlaps(["10.128.0.0/16"])
    assert o.severity == "fail" and o.kind == "cluster"
    assert "10.128.0.0/16" in o.message and "10.128.0.0/14" in o.message
    assert "clusterNetwork" in o.message
    assert o.suggestion is not None and o.suggestion in o.fix
    sug = ip_network(o.suggestion)
    assert sug.prefixlen == 16
    for busy in ["10.128.0.0/14", "172.30.0.0/16", "100.64.0.0/10", "169.254.0.0/16"]:
        assert not sug.overlaps(ip_network(busy))


def test_service_network_overlap_fails() -> None:
    [o] = overlaps(["172.30.128.0/24"])
    assert (o.severity, o.kind, o.other) == ("fail", "service", "172.30.0.0/16")
    assert "serviceNetwork" in o.message


def test_udn_join_clash() -> None:
    [o] = overlaps(["100.65.0.0/24"])
    assert (o.severity, o.kind, o.other) == ("fail", "udn-join", "100.65.0.0/16")
    assert "100.65.0.0/24" in o.message and "100.65.0.0/16" in o.message


def test_default_join_and_masquerade_clash() -> None:
    [j] = overlaps(["100.64.10.0/24"])
    assert (j.severity, j.kind) == ("fail", "join")
    [m] = overlaps(["169.254.0.0/16"])
    assert (m.severity, m.kind, m.other) == ("fail", "masquerade", "169.254.0.0/17")


def test_transit_fails_on_layer3_only() -> None:
    [l3] = overlaps(["100.88.0.0/16"], topology="Layer3")
    assert (l3.severity, l3.kind) == ("fail", "transit")
    [l2] = overlaps(["100.88.0.0/16"], topology="Layer2")
    assert (l2.severity, l2.kind) == ("info", "transit")
    assert "moved" in l2.message


def test_wide_cidr_reports_every_clash() -> None:
    found = overlaps(["100.0.0.0/8"])
    assert {o.kind for o in found} == {"join", "udn-join", "transit"}
    assert all(o.severity == "fail" for o in found)


def test_existing_udns_warn_and_self_is_skipped() -> None:
    existing = [
        ExistingNetwork("ClusterUserDefinedNetwork", "udn-cluster-primary-l3", ("192.168.0.0/16",)),
        ExistingNetwork("UserDefinedNetwork", "tenant", ("192.168.4.0/24", "fd10::/64"), namespace="team-a"),
    ]
    found = overlaps(["192.168.0.0/16"], existing=existing)
    assert [(o.severity, o.kind) for o in found] == [("warn", "udn"), ("warn", "udn")]
    assert "UserDefinedNetwork team-a/tenant" in found[1].message
    assert found[0].suggestion is not None
    rerun = overlaps(["192.168.0.0/16"], existing=existing, self_name="udn-cluster-primary-l3")
    assert [o.other for o in rerun] == ["192.168.4.0/24"]


def test_dual_stack_compares_same_family_only() -> None:
    found = overlaps(
        ["192.168.0.0/16", "fd99::/80"],
        cluster=["10.128.0.0/14", "fd01::/48"],
        service=["172.30.0.0/16", "fd02::/112"],
    )
    assert [(o.subnet, o.other, o.severity) for o in found] == [("fd99::/80", "fd99::/64", "fail")]
    assert found[0].suggestion is not None and ":" in found[0].suggestion
    assert overlaps(["fd10::/64"], cluster=["fd01::/48"], service=["fd02::/112"]) == []
    [c] = overlaps(["fd01:0:0:5::/64"], cluster=["fd01::/48"])
    assert c.kind == "cluster"


def test_requested_subnets_overlapping_each_other_fail() -> None:
    found = overlaps(["192.168.0.0/16", "192.168.3.0/24"])
    assert [(o.kind, o.severity) for o in found] == [("self", "fail")]


def test_rows_for_report() -> None:
    [o] = overlaps(["10.128.0.0/16"])
    assert set(o.row()) == {"severity", "subnet", "overlaps", "with", "detail", "fix"}


def test_invalid_cidr_message() -> None:
    with pytest.raises(ValueError, match="not a valid CIDR"):
        parse_cidr("192.168.0.0/33")
    with pytest.raises(ValueError, match="not a valid CIDR"):
        overlaps(["nonsense"])


def test_suggest_free_subnet_basics() -> None:
    assert suggest_free_subnet(16, []) == "10.0.0.0/16"
    assert suggest_free_subnet(16, ["10.0.0.0/16", "10.1.0.0/24"]) == "10.2.0.0/16"
    assert suggest_free_subnet(16, ["10.0.0.0/8"]) == "172.16.0.0/16"
    assert suggest_free_subnet(16, ["10.0.0.0/8", "172.16.0.0/12"]) == "192.168.0.0/16"
    assert suggest_free_subnet(16, ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]) is None
    assert suggest_free_subnet(12, ["10.0.0.0/9"]) == "10.128.0.0/12"
    assert suggest_free_subnet(9, ["10.0.0.0/16"]) == "10.128.0.0/9"
    assert suggest_free_subnet(30, ["10.0.0.0/9", "10.128.0.0/30"]) == "10.128.0.4/30"
    assert suggest_free_subnet(7, []) is None  # larger than every candidate
    assert suggest_free_subnet(64, ["fd00::/64"], candidates=("fd00::/8",)) == "fd00:0:0:1::/64"
    assert suggest_free_subnet(16, ["fd00::/8"]) == "10.0.0.0/16"  # other family ignored


@settings(max_examples=200, deadline=None)
@given(
    st.integers(8, 30),
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(6, 30)), max_size=25),
)
def test_suggestion_is_free_aligned_and_inside_a_candidate(prefixlen: int, busy: list[tuple[int, int]]) -> None:
    avoid = [str(ip_network((addr, p), strict=False)) for addr, p in busy]
    sug = suggest_free_subnet(prefixlen, avoid)
    cands = [ip_network(c) for c in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
    if sug is None:
        # No free block: brute force agrees wherever the enumeration is small enough.
        for c in cands:
            if c.prefixlen <= prefixlen and prefixlen - c.prefixlen <= 12:
                assert all(any(s.overlaps(ip_network(a)) for a in avoid) for s in c.subnets(new_prefix=prefixlen))
        return
    net = ip_network(sug)  # strict: aligned
    assert net.prefixlen == prefixlen
    assert any(net.subnet_of(c) for c in cands)
    assert not any(net.overlaps(ip_network(a)) for a in avoid)
