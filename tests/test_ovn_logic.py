"""Pure OVN-Kubernetes logic of the simulated cluster: node subnets, IPAM, NAD rendering, messages.

Expected values restate OVN-K behaviour (subnet_allocator.go, allocator/ip, the NAD template and
util.SubnetOverlapCheck) so that a drift from upstream shows up here, not on a real cluster.
"""

from __future__ import annotations

import ipaddress
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simcluster.ovn import (
    DefaultNetworkIPAM,
    InternalSubnets,
    Layer2Pool,
    NADRenderError,
    NodeNetworkIPAM,
    NodeSubnetAllocator,
    PersistentClaims,
    SubnetIPAllocator,
    check_overlaps,
    controller_still_running_error,
    foreign_nad_error,
    invalid_primary_network_error,
    is_primary_ovn_nad,
    nad_delete_error,
    network_allocation_condition,
    network_allocation_failed_event,
    network_created_condition,
    network_created_message,
    network_in_use_error,
    network_name,
    node_allocation_error,
    node_subnets_annotation,
    parse_node_subnets_annotation,
    primary_network_exists_error,
    render_nad,
    udn_network_created_condition,
)

PREFIX = "failed to generate NetworkAttachmentDefinition: failed to render CNI network config: "
OVERLAP = "pod or join subnet overlaps with already configured internal subnets: "
INVALID = "invalid subnet configuration: "


def _canon(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr))


def _first_range(alloc: NodeSubnetAllocator, version: int = 4):
    return alloc._ranges[version][0]


# --------------------------------------------------------------------------- node subnets
class TestNodeSubnets:
    def test_octet_aligned_sequential(self) -> None:
        a = NodeSubnetAllocator([("10.1.0.0/16", 24)])
        assert [a.allocate(f"n{i}") for i in range(3)] == [["10.1.0.0/24"], ["10.1.1.0/24"], ["10.1.2.0/24"]]
        assert a.capacity() == 256

    def test_default_host_subnet(self) -> None:
        a = NodeSubnetAllocator([("10.100.0.0/16", None), ("fd00:10::/48", 0)])
        assert a.allocate("n0") == ["10.100.0.0/24", "fd00:10:0:1::/64"]

    def test_fill_and_exhaust_slash24(self) -> None:
        a = NodeSubnetAllocator([("10.1.0.0/16", 24)])
        for n in range(256):
            assert a.allocate(f"n{n}") == [f"10.1.{n}.0/24"]
        assert a.allocate("extra") is None

    def test_not_octet_aligned_zero_bits_first(self) -> None:
        a = NodeSubnetAllocator([("10.1.0.0/16", 26)])
        assert a.capacity() == 1024
        for n in range(256):
            assert a.allocate(f"a{n}") == [f"10.1.{n}.0/26"]
        for n in range(256):
            assert a.allocate(f"b{n}") == [f"10.1.{n}.64/26"]
        assert a.allocate("c0") == ["10.1.0.128/26"]
        _first_range(a).next = 1023
        assert a.allocate("last") == ["10.1.255.192/26"]
        assert a.allocate("wrapped") == ["10.1.1.128/26"]

    def test_large_host_bits(self) -> None:
        a = NodeSubnetAllocator([("10.1.0.0/16", 22)])
        assert [a.allocate(f"n{i}")[0] for i in range(3)] == ["10.1.0.0/22", "10.1.4.0/22", "10.1.8.0/22"]
        assert a.capacity() == 64

    def test_subnet_bits_span_two_octets(self) -> None:
        a = NodeSubnetAllocator([("10.0.0.0/14", 22)])
        got = [a.allocate(f"n{i}")[0] for i in range(9)]
        assert got[:4] == ["10.0.0.0/22", "10.1.0.0/22", "10.2.0.0/22", "10.3.0.0/22"]
        assert got[4:8] == ["10.0.4.0/22", "10.1.4.0/22", "10.2.4.0/22", "10.3.4.0/22"]
        assert got[8] == "10.0.8.0/22"
        _first_range(a).next = 255
        assert a.allocate("x") == ["10.3.252.0/22"]
        assert a.allocate("y") == ["10.1.8.0/22"]

    def test_ipv6_skips_zero_subnet(self) -> None:
        a = NodeSubnetAllocator([("fd01::/48", 64)])
        assert a.capacity() == 65535
        for n in range(1, 257):
            assert a.allocate(f"n{n}") == [str(ipaddress.ip_network(f"fd01:0:0:{n:x}::/64"))]
        _first_range(a, 6).next = 0xFFFF
        assert a.allocate("top") == ["fd01:0:0:ffff::/64"]
        assert a.allocate("wrap") == ["fd01:0:0:101::/64"]

    def test_ipv6_large_subnet_bits_capped_at_2_pow_24(self) -> None:
        a = NodeSubnetAllocator([("fd01::/48", 84)])
        for n in range(1, 256):
            assert a.allocate(f"n{n}") == [_canon(f"fd01:0:0:0:{n >> 4:x}:{(n << 12) & 0xFFFF:x}::/84")]
        assert a.allocate("n256") == [_canon("fd01:0:0:0:10:0::/84")]
        _first_range(a, 6).next = 0x00FFFFFF
        assert a.allocate("top") == [_canon("fd01:0:0:f:ffff:f000::/84")]
        assert a.allocate("wrap") == [_canon("fd01:0:0:0:10:1000::/84")]

    def test_no_subnet_bits(self) -> None:
        a = NodeSubnetAllocator([("10.1.0.0/16", 16)])
        assert a.allocate("n0") == ["10.1.0.0/16"]
        assert a.allocate("n1") is None

    def test_invalid_lengths(self) -> None:
        with pytest.raises(ValueError, match="larger than number of networks"):
            NodeSubnetAllocator([("10.1.0.0/16", 14)])
        with pytest.raises(ValueError, match="host capacity cannot be zero"):
            NodeSubnetAllocator([("10.1.0.0/16", 32)])

    def test_exhaustion_e2e_shape(self) -> None:
        # network_segmentation e2e: Layer3 10.10.100.0/24 with hostSubnet 25 on more than 2 nodes
        a = NodeSubnetAllocator([("10.10.100.0/24", 25)])
        assert a.capacity() == 2
        assert a.allocate("worker-1") == ["10.10.100.0/25"]
        assert a.allocate("worker-2") == ["10.10.100.128/25"]
        assert a.allocate("worker-3") is None
        assert _first_range(a).next == 0

    def test_same_node_gets_same_subnet(self) -> None:
        a = NodeSubnetAllocator([("10.1.0.0/16", 24)])
        assert a.allocate("n0") == a.allocate("n0") == ["10.1.0.0/24"]
        assert a.usage() == 1

    def test_round_robin_reuse_only_after_wraparound(self) -> None:
        a = NodeSubnetAllocator([("10.0.0.0/22", 24)])  # 4 node subnets
        assert a.allocate("a") == ["10.0.0.0/24"]
        assert a.allocate("b") == ["10.0.1.0/24"]
        a.release("a")
        assert a.allocate("c") == ["10.0.2.0/24"]
        assert a.allocate("d") == ["10.0.3.0/24"]
        assert a.allocate("e") == ["10.0.0.0/24"]  # wrapped around to the released one
        assert a.allocate("f") is None

    def test_dual_stack_and_release_on_partial_failure(self) -> None:
        a = NodeSubnetAllocator([("10.0.0.0/23", 24), ("fd00::/63", 64)])
        # IPv6 /63 with /64: 2 subnets, no zero-word skipping (only 1 subnet bit)
        assert a.capacity() == 2
        assert a.allocate("n0") == ["10.0.0.0/24", "fd00::/64"]
        assert a.allocate("n1") == ["10.0.1.0/24", "fd00:0:0:1::/64"]
        a.release("n0")
        a.restore("v6only", ["fd00::/64"])
        assert a.allocate("n2") is None  # IPv4 found one, IPv6 full: the IPv4 one is given back
        assert "n2" not in a.allocated()
        assert a.allocated()["v6only"] == ["fd00::/64"]

    def test_multiple_ranges_in_order(self) -> None:
        a = NodeSubnetAllocator([("10.0.0.0/24", 25), ("10.0.8.0/24", 25)])
        got = [a.allocate(f"n{i}") for i in range(5)]
        assert got == [["10.0.0.0/25"], ["10.0.0.128/25"], ["10.0.8.0/25"], ["10.0.8.128/25"], None]

    def test_restore_and_conflicts(self) -> None:
        a = NodeSubnetAllocator([("10.128.0.0/14", 23)])
        # hostPrefix 23 in a /14 shares the third octet: 10.128/10.129/10.130/10.131 .0.0 come first
        a.restore("n0", ["10.128.0.0/23"])
        a.restore("n1", ["10.130.0.0/23"])
        assert a.allocate("n2") == ["10.129.0.0/23"]
        assert a.allocate("n3") == ["10.131.0.0/23"]
        assert a.allocate("n4") == ["10.128.2.0/23"]
        with pytest.raises(ValueError, match="already owned by n0"):
            a.restore("other", ["10.128.0.0/23"])
        with pytest.raises(ValueError, match="does not belong to any known range"):
            a.restore("other", ["192.168.0.0/23"])
        assert a.allocated() == {
            "n0": ["10.128.0.0/23"],
            "n1": ["10.130.0.0/23"],
            "n2": ["10.129.0.0/23"],
            "n3": ["10.131.0.0/23"],
            "n4": ["10.128.2.0/23"],
        }

    def test_huge_range_is_lazy(self) -> None:
        start = time.perf_counter()
        a = NodeSubnetAllocator([("10.0.0.0/8", 30)])
        assert a.capacity() == 1 << 22
        got = [a.allocate(f"n{i}") for i in range(2000)]
        assert got[0] == ["10.0.0.0/30"]
        assert got[1] == ["10.0.1.0/30"]  # zero bits in the shared octet first
        assert time.perf_counter() - start < 2.0

    def test_exhausted_huge_range_answers_fast(self) -> None:
        a = NodeSubnetAllocator([("10.0.0.0/16", 24)])
        for i in range(256):
            a.allocate(f"n{i}")
        start = time.perf_counter()
        for _ in range(1000):
            assert a.allocate("late") is None
        assert time.perf_counter() - start < 1.0

    @settings(max_examples=60, deadline=None)
    @given(
        prefix=st.integers(min_value=8, max_value=28),
        extra=st.integers(min_value=1, max_value=9),
        count=st.integers(min_value=1, max_value=300),
    )
    def test_property_unique_and_inside(self, prefix: int, extra: int, count: int) -> None:
        host = min(prefix + extra, 31)
        cidr = str(ipaddress.ip_network(f"10.0.0.0/{prefix}", strict=False))
        a = NodeSubnetAllocator([(cidr, host)])
        got = []
        for i in range(min(count, a.capacity())):
            sub = a.allocate(f"n{i}")
            assert sub is not None
            got.append(ipaddress.ip_network(sub[0]))
        assert len({str(g) for g in got}) == len(got)
        net = ipaddress.ip_network(cidr)
        assert all(g.subnet_of(net) and g.prefixlen == host for g in got)
        if count >= a.capacity():
            assert a.allocate("over") is None


class TestNodeSubnetsAnnotation:
    def test_new_and_merge(self) -> None:
        first = node_subnets_annotation(None, "default", ["10.128.0.0/23"])
        assert first == '{"default":["10.128.0.0/23"]}'
        both = node_subnets_annotation(first, "cluster_udn_x", ["192.168.0.0/24"])
        assert both == '{"cluster_udn_x":["192.168.0.0/24"],"default":["10.128.0.0/23"]}'
        assert parse_node_subnets_annotation(both)["cluster_udn_x"] == ["192.168.0.0/24"]

    def test_reads_single_stack_string_and_removes(self) -> None:
        old = '{"default":"10.244.0.0/24","cluster_udn_x":["192.168.0.0/24"]}'
        out = node_subnets_annotation(old, "cluster_udn_x", None)
        assert out == '{"default":["10.244.0.0/24"]}'
        assert node_subnets_annotation(out, "default", []) is None


# --------------------------------------------------------------------------- IPAM
class TestSubnetIPAllocator:
    def test_reserved_and_first_is_dot3(self) -> None:
        a = SubnetIPAllocator("10.128.0.0/23")
        assert a.gateway() == "10.128.0.1"
        assert a.management() == "10.128.0.2"
        assert a.allocate() == "10.128.0.3"
        assert a.allocate() == "10.128.0.4"
        assert a.size == 512 - 4
        assert a.prefixed("10.128.0.3") == "10.128.0.3/23"

    def test_no_immediate_reuse_and_wrap(self) -> None:
        a = SubnetIPAllocator("192.168.1.0/29")  # .3 .4 .5 .6 usable
        assert [a.allocate() for _ in range(2)] == ["192.168.1.3", "192.168.1.4"]
        a.release("192.168.1.3")
        assert a.allocate() == "192.168.1.5"
        assert a.allocate() == "192.168.1.6"
        assert a.allocate() == "192.168.1.3"  # only after wrap-around
        assert a.allocate() is None
        assert a.free == 0 and a.used == 4

    def test_specific_does_not_move_next(self) -> None:
        a = SubnetIPAllocator("10.0.0.0/24")
        assert a.allocate_specific("10.0.0.10")
        assert not a.allocate_specific("10.0.0.10")
        assert not a.allocate_specific("10.0.0.1")  # gateway
        assert not a.allocate_specific("10.0.0.255")  # broadcast
        assert not a.allocate_specific("10.0.1.5")
        assert a.allocate() == "10.0.0.3"

    def test_release_of_reserved_is_ignored(self) -> None:
        a = SubnetIPAllocator("10.0.0.0/30")
        a.release("10.0.0.1")
        assert a.allocate() is None

    def test_slash30_has_no_usable_ip(self) -> None:
        pool = Layer2Pool(["10.130.0.0/30"])
        assert pool.size == 0
        assert pool.allocate() is None

    def test_ipv6_capped(self) -> None:
        a = SubnetIPAllocator("fd00::/64")
        assert a.size == 65536 - 1 - 2
        assert a.allocate() == "fd00::3"
        assert not a.allocate_specific("fd00::1:0")  # beyond the 65536-address cap

    def test_exclude(self) -> None:
        a = SubnetIPAllocator("10.0.0.0/28", exclude={"10.0.0.3", "10.0.0.4/31"})
        assert a.allocate() == "10.0.0.6"
        assert a.is_reserved("10.0.0.4") and a.is_reserved("10.0.0.0")
        with pytest.raises(ValueError):
            SubnetIPAllocator("10.0.0.0/28", exclude={"10.0.1.0/30"})

    @settings(max_examples=80, deadline=None)
    @given(
        prefix=st.integers(min_value=22, max_value=30),
        ops=st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=1000)), max_size=400),
    )
    def test_property_unique_inside_never_reserved(self, prefix: int, ops: list[tuple[bool, int]]) -> None:
        cidr = f"10.20.0.0/{prefix}"
        net = ipaddress.ip_network(cidr)
        forbidden = {
            net.network_address,
            net.broadcast_address,
            net.network_address + 1,
            net.network_address + 2,
        }
        a = SubnetIPAllocator(cidr)
        held: list[str] = []
        for alloc, idx in ops:
            if alloc or not held:
                ip = a.allocate()
                if ip is None:
                    assert a.free == 0
                    continue
                assert ip not in held
                assert ipaddress.ip_address(ip) in net
                assert ipaddress.ip_address(ip) not in forbidden
                held.append(ip)
            else:
                a.release(held.pop(idx % len(held)))
            assert a.used == len(held)
        assert sorted(held, key=ipaddress.ip_address) == a.allocated_ips()

    @settings(max_examples=40, deadline=None)
    @given(n=st.integers(min_value=1, max_value=300))
    def test_property_ipv6_unique(self, n: int) -> None:
        a = SubnetIPAllocator("fd99:1::/64")
        ips = [a.allocate() for _ in range(n)]
        assert len(set(ips)) == n
        assert "fd99:1::1" not in ips and "fd99:1::2" not in ips


class TestLayer2AndClaims:
    def test_dual_stack_pool(self) -> None:
        pool = Layer2Pool(["192.168.100.0/24", "2001:dbb::/64"])
        assert pool.allocate() == ["192.168.100.3", "2001:dbb::3"]
        assert pool.gateways() == ["192.168.100.1", "2001:dbb::1"]
        assert pool.prefixed(["192.168.100.3", "2001:dbb::3"]) == ["192.168.100.3/24", "2001:dbb::3/64"]

    def test_pool_all_or_nothing(self) -> None:
        pool = Layer2Pool(["10.0.0.0/29", "fd00::/125"])  # 4 IPv4 (.3-.6), 5 IPv6 (::3-::7)
        for _ in range(4):
            assert pool.allocate() is not None
        assert pool.allocate() is None
        assert pool.allocators[1].used == 4

    def test_persistent_claims_survive_restart_and_migration(self) -> None:
        claims = PersistentClaims(Layer2Pool(["10.200.0.0/24"]))
        first = claims.ensure("vm1.net1")
        assert first == ["10.200.0.3"]
        other = claims.ensure("vm2.net1")
        for _ in range(5):  # restarts / migrations re-use the claim
            assert claims.ensure("vm1.net1") == first
        assert other == ["10.200.0.4"]
        claims.release("vm1.net1")
        assert claims.ensure("vm3.net1") == ["10.200.0.5"]  # released IP not reused at once
        assert "vm1.net1" not in claims and len(claims) == 2

    def test_claims_restore(self) -> None:
        claims = PersistentClaims(Layer2Pool(["10.200.0.0/24"]))
        assert claims.restore("vm9.net1", ["10.200.0.77"])
        assert not claims.restore("vm8.net1", ["10.200.0.77"])
        assert claims.get("vm9.net1") == ["10.200.0.77"]
        assert claims.ensure("vm1.net1") == ["10.200.0.3"]

    def test_claims_exhaustion(self) -> None:
        claims = PersistentClaims(Layer2Pool(["10.130.0.0/30"]))
        assert claims.ensure("vm.net1") is None
        assert claims.get("vm.net1") is None


class TestNodeNetworkIPAM:
    def test_default_network(self) -> None:
        ipam = DefaultNetworkIPAM.from_cluster_network([{"cidr": "10.128.0.0/14", "hostPrefix": 23}])
        assert ipam.capacity() == 512
        assert ipam.ensure_node("worker-0") == ["10.128.0.0/23"]
        assert ipam.ensure_node("worker-1") == ["10.129.0.0/23"]
        assert ipam.allocate("worker-1") == ["10.129.0.3"]
        assert ipam.allocate("unknown") is None

    def test_layer3_migration_changes_ip(self) -> None:
        ipam = NodeNetworkIPAM([("192.168.0.0/16", 24)])
        ipam.ensure_node("a")
        ipam.ensure_node("b")
        ip_a = ipam.allocate("a")
        assert ip_a == ["192.168.0.3"]
        ip_b = ipam.allocate("b")
        ipam.release("a", ip_a)
        assert ip_b == ["192.168.1.3"]

    def test_full_node_subnet_and_no_subnet(self) -> None:
        ipam = NodeNetworkIPAM([("10.10.100.0/24", 30)])
        assert ipam.ensure_node("n0") == ["10.10.100.0/30"]
        assert ipam.allocate("n0") is None  # .1 .2 reserved, .3 broadcast
        ipam2 = NodeNetworkIPAM([("10.10.100.0/24", 25)])
        ipam2.ensure_node("n0")
        ipam2.ensure_node("n1")
        assert ipam2.ensure_node("n2") is None
        assert ipam2.allocate("n2") is None
        ipam2.remove_node("n0")
        assert ipam2.ensure_node("n2") == ["10.10.100.0/25"]

    def test_restore_node(self) -> None:
        ipam = NodeNetworkIPAM([("10.128.0.0/14", 23)])
        ipam.restore_node("n0", ["10.128.0.0/23"])
        assert ipam.allocate_specific("n0", ["10.128.0.3"])
        assert ipam.allocate("n0") == ["10.128.0.4"]
        assert ipam.ensure_node("n1") == ["10.129.0.0/23"]


# --------------------------------------------------------------------------- NAD rendering
def _cudn(network: dict, **meta: object) -> dict:
    md = {"name": "test-net", "uid": "1"}
    md.update(meta)
    return {
        "apiVersion": "k8s.ovn.org/v1",
        "kind": "ClusterUserDefinedNetwork",
        "metadata": md,
        "spec": {"namespaceSelector": {}, "network": network},
    }


L2_PRIMARY = {
    "topology": "Layer2",
    "layer2": {
        "role": "Primary",
        "subnets": ["192.168.100.0/24", "2001:dbb::/64"],
        "mtu": 1500,
        "ipam": {"lifecycle": "Persistent"},
    },
}


class TestRenderNAD:
    def test_layer2_primary_matches_upstream_example(self) -> None:
        nad = render_nad(_cudn(L2_PRIMARY), "mynamespace", cni_version="1.1.0")
        expected = {
            "cniVersion": "1.1.0",
            "type": "ovn-k8s-cni-overlay",
            "name": "cluster_udn_test-net",
            "netAttachDefName": "mynamespace/test-net",
            "role": "primary",
            "topology": "layer2",
            "joinSubnet": "100.65.0.0/16,fd99::/64",
            "transitSubnet": "100.88.0.0/16,fd97::/64",
            "subnets": "192.168.100.0/24,2001:dbb::/64",
            "mtu": 1500,
            "allowPersistentIPs": True,
        }
        assert json.loads(nad["spec"]["config"]) == expected
        # byte-exact: Go marshals a map with sorted keys and no spaces
        assert nad["spec"]["config"] == json.dumps(expected, sort_keys=True, separators=(",", ":"))
        assert nad["metadata"] == {
            "name": "test-net",
            "namespace": "mynamespace",
            "labels": {"k8s.ovn.org/user-defined-network": ""},
            "ownerReferences": [
                {
                    "apiVersion": "k8s.ovn.org/v1",
                    "kind": "ClusterUserDefinedNetwork",
                    "name": "test-net",
                    "uid": "1",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "finalizers": ["k8s.ovn.org/user-defined-network-protection"],
        }
        assert nad["apiVersion"] == "k8s.cni.cncf.io/v1" and nad["kind"] == "NetworkAttachmentDefinition"
        assert is_primary_ovn_nad(nad)

    def test_default_cni_version_is_v1_2(self) -> None:
        nad = render_nad(_cudn(L2_PRIMARY), "ns1")
        assert json.loads(nad["spec"]["config"])["cniVersion"] == "1.0.0"

    def test_layer3_primary_and_labels_annotations(self) -> None:
        cudn = _cudn(
            {
                "topology": "Layer3",
                "layer3": {
                    "role": "Primary",
                    "subnets": [{"cidr": "192.168.0.0/16", "hostSubnet": 24}, {"cidr": "2001:dbb::/60"}],
                    "mtu": 1400,
                },
            },
            labels={"testLabel": "test"},
            annotations={"testAnnotation": "test", "k8s.ovn.org/testAnnotation": "test"},
        )
        nad = render_nad(cudn, "ns1")
        conf = json.loads(nad["spec"]["config"])
        assert conf == {
            "cniVersion": "1.0.0",
            "type": "ovn-k8s-cni-overlay",
            "name": "cluster_udn_test-net",
            "netAttachDefName": "ns1/test-net",
            "role": "primary",
            "topology": "layer3",
            "joinSubnet": "100.65.0.0/16,fd99::/64",
            "subnets": "192.168.0.0/16/24,2001:dbb::/60",
            "mtu": 1400,
        }
        assert nad["metadata"]["labels"] == {"k8s.ovn.org/user-defined-network": "", "testLabel": "test"}
        assert nad["metadata"]["annotations"] == {"testAnnotation": "test"}

    def test_secondary_has_no_join_or_transit_and_custom_join(self) -> None:
        sec = _cudn({"topology": "Layer2", "layer2": {"role": "Secondary", "subnets": ["10.9.0.0/24"]}})
        conf = json.loads(render_nad(sec, "ns")["spec"]["config"])
        assert "joinSubnet" not in conf and "transitSubnet" not in conf and "mtu" not in conf
        net = json.loads(json.dumps(L2_PRIMARY))
        net["layer2"]["joinSubnets"] = ["100.62.0.0/24", "fd92::/64"]
        conf = json.loads(render_nad(_cudn(net), "ns")["spec"]["config"])
        assert conf["joinSubnet"] == "100.62.0.0/24,fd92::/64"

    def test_namespaced_udn(self) -> None:
        udn = {
            "apiVersion": "k8s.ovn.org/v1",
            "kind": "UserDefinedNetwork",
            "metadata": {"name": "test-net", "namespace": "mynamespace", "uid": "1"},
            "spec": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["10.0.0.0/24"]}},
        }
        nad = render_nad(udn, "mynamespace", cluster_udn=False)
        conf = json.loads(nad["spec"]["config"])
        assert conf["name"] == "mynamespace_test-net"
        assert conf["transitSubnet"] == "100.88.0.0/16"
        assert nad["metadata"]["ownerReferences"][0]["kind"] == "UserDefinedNetwork"
        assert network_name(udn) == "mynamespace_test-net"
        assert network_name(_cudn(L2_PRIMARY)) == "cluster_udn_test-net"

    def test_layer2_transit_moves_past_overlap(self) -> None:
        net = {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["100.88.0.0/24", "fd97::/64"]}}
        conf = json.loads(render_nad(_cudn(net), "ns")["spec"]["config"])
        assert conf["transitSubnet"] == "100.89.0.0/16,fd97:0:0:1::/64"

    def test_render_error_is_condition_message(self) -> None:
        net = {"topology": "Layer3", "layer3": {"role": "Primary", "subnets": [{"cidr": "10.128.0.0/16"}]}}
        internal = InternalSubnets(cluster_networks=("10.128.0.0/14",), service_networks=("172.30.0.0/16",))
        with pytest.raises(NADRenderError) as err:
            render_nad(_cudn(net), "ns", internal=internal)
        assert str(err.value) == (
            PREFIX + INVALID + OVERLAP + 'user defined subnet "10.128.0.0/16" overlaps cluster subnet "10.128.0.0/14"'
        )

    def test_topology_config_missing(self) -> None:
        with pytest.raises(NADRenderError, match="topology Layer3 is specified but Layer3 config is nil"):
            render_nad(_cudn({"topology": "Layer3"}), "ns")

    def test_persistent_ips_disabled(self) -> None:
        with pytest.raises(NADRenderError, match="allowPersistentIPs is set but persistentIPs is Disabled"):
            render_nad(_cudn(L2_PRIMARY), "ns", internal=InternalSubnets(persistent_ips_enabled=False))


# --------------------------------------------------------------------------- overlap messages
def _check(topology: str, role: str, subnets: list[str], join: list[str] | None = None) -> str | None:
    return check_overlaps(
        topology,
        role,
        subnets,
        join,
        cluster_networks=["10.128.0.0/14"],
        service_networks=["172.30.0.0/16"],
        name="cluster_udn_x",
    )


class TestOverlaps:
    def test_clean(self) -> None:
        assert _check("Layer3", "Primary", ["192.168.0.0/16/24"]) is None
        assert _check("Layer2", "Primary", ["192.168.0.0/16"]) is None

    @pytest.mark.parametrize(
        ("subnet", "kind", "other"),
        [
            ("10.129.0.0/16", "cluster subnet", "10.128.0.0/14"),
            ("172.30.0.0/16", "service subnet", "172.30.0.0/16"),
            ("100.64.0.0/16", "built-in join subnet", "100.64.0.0/16"),
            ("169.254.0.0/16", "masquerade subnet", "169.254.0.0/17"),
            ("100.88.0.0/16", "transit switch subnet", "100.88.0.0/16"),
        ],
    )
    def test_layer3_internal_kinds(self, subnet: str, kind: str, other: str) -> None:
        msg = _check("Layer3", "Primary", [f"{subnet}/24"])
        assert msg == PREFIX + INVALID + OVERLAP + f'user defined subnet "{subnet}" overlaps {kind} "{other}"'

    def test_udn_join_named_first(self) -> None:
        msg = _check("Layer3", "Primary", ["100.65.0.0/16/24"])
        assert msg == PREFIX + INVALID + OVERLAP + (
            'user defined join subnet "100.65.0.0/16" overlaps user defined subnet "100.65.0.0/16"'
        )

    def test_user_join_overlapping_builtin_join(self) -> None:
        msg = _check("Layer3", "Primary", ["192.168.0.0/16/24"], ["100.64.0.0/16"])
        assert msg == PREFIX + INVALID + OVERLAP + (
            'user defined join subnet "100.64.0.0/16" overlaps built-in join subnet "100.64.0.0/16"'
        )

    def test_layer2_primary_no_invalid_prefix_and_transit_ok(self) -> None:
        assert _check("Layer2", "Primary", ["100.88.0.0/16"]) is None  # transit moves instead
        msg = _check("Layer2", "Primary", ["10.128.0.0/16"])
        assert msg == PREFIX + OVERLAP + 'user defined subnet "10.128.0.0/16" overlaps cluster subnet "10.128.0.0/14"'

    def test_layer2_secondary_keeps_invalid_prefix(self) -> None:
        msg = _check("Layer2", "Secondary", ["172.30.5.0/24"])
        assert (
            msg
            == PREFIX
            + INVALID
            + OVERLAP
            + 'user defined subnet "172.30.5.0/24" overlaps service subnet "172.30.0.0/16"'
        )

    def test_non_canonical_cidr_is_masked_and_ipv6(self) -> None:
        msg = _check("Layer3", "Primary", ["169.254.100.5/24/26"])
        assert msg is not None and msg.endswith(
            'user defined subnet "169.254.100.0/24" overlaps masquerade subnet "169.254.0.0/17"'
        )
        msg6 = check_overlaps(
            "Layer3",
            "Primary",
            ["fd98::/48"],
            None,
            cluster_networks=["10.128.0.0/14", "fd01::/48"],
            service_networks=["172.30.0.0/16"],
            name="cluster_udn_x",
        )
        assert msg6 is not None and msg6.endswith(
            'user defined subnet "fd98::/48" overlaps built-in join subnet "fd98::/64"'
        )

    def test_parse_errors(self) -> None:
        assert _check("Layer3", "Primary", ["10.0.0.0/24"]) == PREFIX + INVALID + (
            "error while parsing subnets: cannot use a host subnet length mask shorter than or equal to the "
            "cluster subnet mask. host subnet length: 24, cluster subnet length: 24"
        )
        assert _check("Layer3", "Primary", ["fd00::/48/60"]) == (
            PREFIX + INVALID + "error while parsing subnets: IPv6 only supports /64 host subnets"
        )
        assert _check("Layer2", "Primary", ["fd00::/64"]) == PREFIX + (
            "error while parsing subnets: network cluster_udn_x is attempting to use ipv6 subnets "
            "but the cluster does not support ipv6"
        )


# --------------------------------------------------------------------------- texts
class TestMessages:
    def test_namespace_errors(self) -> None:
        assert invalid_primary_network_error("ns1") == (
            'invalid primary network state for namespace "ns1": a valid primary user defined network or '
            "network attachment definition custom resource, and required namespace label "
            '"k8s.ovn.org/primary-user-defined-network" must both be present'
        )
        assert primary_network_exists_error("ns1", "other") == (
            'primary network already exist in namespace "ns1": "other"'
        )
        assert foreign_nad_error("ns1", "net") == (
            "foreign NetworkAttachmentDefinition with the desired name already exist [ns1/net]"
        )
        in_use = network_in_use_error(["ns1/virt-launcher-b", "ns1/virt-launcher-a"])
        assert in_use == "network in use by the following pods: [ns1/virt-launcher-a ns1/virt-launcher-b]"
        assert nad_delete_error("ns1", "net", in_use).startswith(
            "failed to delete NetworkAttachmentDefinition [ns1/net]: network in use"
        )
        assert controller_still_running_error("net") == (
            "cannot remove cluster UDN, controller for network cluster_udn_net is still running"
        )

    def test_network_created(self) -> None:
        assert network_created_message(["b", "a"]) == (
            "NetworkAttachmentDefinition has been created in following namespaces: [a, b]"
        )
        ok = network_created_condition(["ns-b", "ns-a"])
        assert ok["status"] == "True" and ok["reason"] == "NetworkAttachmentDefinitionCreated"
        bad = network_created_condition(["a"], errors=[invalid_primary_network_error("b"), "x"])
        assert bad["status"] == "False" and bad["reason"] == "NetworkAttachmentDefinitionSyncError"
        assert bad["message"].endswith("\nx")
        deleting = network_created_condition(["a"], deleting=["a/net"])
        assert deleting["reason"] == "NetworkAttachmentDefinitionDeleted"
        assert deleting["message"] == "NetworkAttachmentDefinition are being deleted: [a/net]"
        udn = udn_network_created_condition("boom")
        assert udn["reason"] == "SyncError" and udn["message"] == "boom"
        assert udn_network_created_condition()["message"] == "NetworkAttachmentDefinition has been created"

    def test_allocation(self) -> None:
        assert network_allocation_condition() == {
            "type": "NetworkAllocationSucceeded",
            "status": "True",
            "reason": "NetworkAllocationSucceeded",
            "message": "Network allocation succeeded for all synced nodes.",
        }
        failed = network_allocation_condition("worker-3")
        assert failed["reason"] == "InternalError"
        assert failed["message"] == (
            "Network allocation failed for at least one node: worker-3, check UDN events for more info."
        )
        err = node_allocation_error("worker-3", "cluster_udn_x")
        assert err == "error allocating network for node worker-3, network name cluster_udn_x: no subnets available"
        ev = network_allocation_failed_event("worker-3", err)
        assert ev["reason"] == "NetworkAllocationFailed" and ev["message"].startswith(
            "Error occurred for node worker-3: "
        )
