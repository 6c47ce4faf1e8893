"""Address capacity: Layer3 node subnets, Layer2 pool, migration headroom."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.capacity import (
    NodeInfo,
    layer2_capacity,
    layer3_capacity,
    migration_headroom,
    node_subnet_count,
    spread_evenly,
    usable_addresses,
)


def workers(n: int, **kw) -> list[NodeInfo]:
    return [NodeInfo(f"worker-{i}", **kw) for i in range(n)]


@pytest.mark.parametrize(
    ("prefix", "version", "usable"),
    [(24, 4, 252), (23, 4, 508), (26, 4, 60), (29, 4, 4), (30, 4, 0), (31, 4, 0), (32, 4, 0), (64, 6, 65533)],
)
def test_usable_addresses(prefix: int, version: int, usable: int) -> None:
    """Network, .1 gateway, .2 management and broadcast are reserved; IPv6 ranges cap at 65536."""
    assert usable_addresses(prefix, version) == usable


def test_node_subnet_count() -> None:
    assert node_subnet_count(16, 24) == 256
    assert node_subnet_count(24, 26) == 4
    assert node_subnet_count(48, 64, 6) == 65535  # the all-zero subnet is skipped
    assert node_subnet_count(56, 64, 6) == 256
    assert node_subnet_count(24, 16) == 0


def test_seed_layer3_numbers() -> None:
    """The runbook: 192.168.0.0/16, hostSubnet 24, four VMs over the workers."""
    rep = layer3_capacity("192.168.0.0/16", 24, workers(3), vms_planned=4)
    assert rep.node_subnets_available == 256
    assert rep.usable_per_subnet == 252
    assert rep.verdict == "ok" and rep.fixes == []
    assert [r["planned"] for r in rep.rows()] == [2, 1, 1]
    assert rep.total_usable == 3 * 252
    assert rep.total_headroom == 3 * 252 - 4
    assert set(rep.rows()[0]) == {
        "node",
        "schedulable",
        "subnet",
        "usable",
        "existing",
        "planned",
        "headroom",
        "status",
        "note",
    }
    assert rep.summary()["nodeSubnetsAvailable"] == 256


def test_layer3_too_many_vms_per_node_fails_with_fixes() -> None:
    rep = layer3_capacity("192.168.0.0/16", 24, workers(3), vms_planned=900)
    assert rep.verdict == "fail"
    assert all(r["status"] == "fail" for r in rep.rows())
    assert any("hostSubnet 23 (508 addresses per node" in f for f in rep.fixes)
    assert any("add 1 schedulable node" in f for f in rep.fixes)


def test_layer3_more_nodes_than_subnets_fails() -> None:
    rep = layer3_capacity("10.100.0.0/24", 26, workers(6), vms_planned=12)
    assert rep.node_subnets_available == 4
    assert rep.verdict == "fail"
    assert rep.nodes_without_subnet == ["worker-4", "worker-5"]
    assert "4 node subnets for 6 nodes" in rep.messages[0]
    assert any(f.startswith("use hostSubnet 27") or f.startswith("use hostSubnet 28") for f in rep.fixes)


def test_layer3_needs_bigger_cidr() -> None:
    rep = layer3_capacity("10.100.0.0/24", 25, workers(4), vms_planned=400)
    assert rep.verdict == "fail"
    assert any(f.startswith("use a /") and "CIDR" in f for f in rep.fixes)


def test_layer3_tight_headroom_warns() -> None:
    rep = layer3_capacity("10.10.0.0/16", 24, workers(2), vms_planned=480)
    assert rep.verdict == "warn"
    assert {r["status"] for r in rep.rows()} == {"warn"}
    assert rep.fixes and "hostSubnet 23" in rep.fixes[0]


def test_layer3_existing_and_estimate() -> None:
    nodes = workers(3)
    rep = layer3_capacity(
        "192.168.0.0/16",
        24,
        nodes,
        vms_planned=10,
        vms_per_node_estimate={"worker-0": 10},
        existing_vms_per_node={"worker-0": 240},
    )
    rows = {r["node"]: r for r in rep.rows()}
    assert rows["worker-0"]["headroom"] == 2 and rows["worker-0"]["status"] == "warn"
    assert rows["worker-1"]["planned"] == 0
    assert rep.existing == 240
    with pytest.raises(ValueError, match="unknown nodes"):
        layer3_capacity("192.168.0.0/16", 24, nodes, 1, vms_per_node_estimate={"ghost": 1})


def test_layer3_unschedulable_and_max_vms() -> None:
    nodes = [NodeInfo("master-0", schedulable=False), NodeInfo("w1", max_vms=2), NodeInfo("w2", max_vms=3)]
    rep = layer3_capacity("192.168.0.0/16", 24, nodes, vms_planned=7)
    rows = {r["node"]: r for r in rep.rows()}
    assert rows["master-0"]["planned"] == 0 and rows["master-0"]["subnet"] == "yes"
    assert (rows["w1"]["planned"], rows["w2"]["planned"]) == (2, 3)
    assert rep.unplaced_vms == 2 and rep.verdict == "fail"
    only_masters = layer3_capacity("192.168.0.0/16", 24, [NodeInfo("m", schedulable=False)], 1)
    assert only_masters.verdict == "fail"


def test_layer3_invalid_host_subnet() -> None:
    bad = layer3_capacity("192.168.0.0/16", 16, workers(1), 1)
    assert bad.verdict == "fail" and "longer than" in bad.messages[0]
    v6 = layer3_capacity("fd10::/48", 80, workers(1), 1)
    assert v6.verdict == "fail" and "/64" in v6.messages[0]
    ok6 = layer3_capacity("fd10::/48", 64, workers(3), 100)
    assert ok6.verdict == "ok" and ok6.usable_per_subnet == 65533


def test_layer2_pool() -> None:
    tiny = layer2_capacity("10.130.0.0/30", vms_planned=1)
    assert tiny.usable_per_subnet == 0 and tiny.verdict == "fail"
    assert tiny.fixes == ["use a /29 or larger subnet (4 usable addresses) instead of /30"]
    ok = layer2_capacity("10.200.0.0/16", vms_planned=1000, claims_held=500)
    assert ok.usable_per_subnet == 65532 and ok.verdict == "ok" and ok.total_headroom == 64032
    full = layer2_capacity("10.200.0.0/24", vms_planned=250, claims_held=3)
    assert full.verdict == "fail" and "1 VMs would get no IP" in full.messages[0]
    warn = layer2_capacity("10.200.0.0/24", vms_planned=240)
    assert warn.verdict == "warn" and "/23" in warn.fixes[0]
    assert layer2_capacity("fd10::/64", 5000).usable_per_subnet == 65533
    assert warn.rows()[0]["usable"] == 252


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 5000), st.lists(st.one_of(st.none(), st.integers(0, 300)), min_size=1, max_size=30))
def test_spread_evenly_respects_caps_and_totals(vms: int, caps: list[int | None]) -> None:
    nodes = [NodeInfo(f"n{i}", max_vms=c) for i, c in enumerate(caps)]
    out = spread_evenly(vms, nodes)
    unplaced = out.pop("", 0)
    assert sum(out.values()) + unplaced == vms
    for n in nodes:
        assert n.max_vms is None or out[n.name] <= n.max_vms
    uncapped = [out[n.name] for n in nodes if n.max_vms is None]
    if uncapped:
        assert unplaced == 0
        assert max(uncapped) - min(uncapped) <= 1
    if unplaced:
        assert all(out[n.name] == n.max_vms for n in nodes)


def test_migration_headroom() -> None:
    mh = migration_headroom(
        "192.168.0.0/16",
        24,
        in_use_per_node={"w0": 252, "w1": 250, "w2": 10},
        incoming_per_node={"w1": 5, "w2": 5},
        nodes_without_subnet=["w3"],
    )
    rows = {r["node"]: r for r in mh.rows()}
    assert rows["w1"]["status"] == "fail" and "3 migration(s) would fail" in rows["w1"]["note"]
    assert rows["w2"]["status"] == "ok" and rows["w2"]["free_after"] == 237
    assert rows["w0"]["status"] == "ok"  # nothing migrates into it
    assert rows["w3"]["note"] == "no node subnet"
    assert mh.full_nodes == ["w1", "w3"] and mh.verdict == "fail"

    probe = migration_headroom("192.168.0.0/16", 24, {"w0": 252, "w1": 251, "w2": 3})
    status = {r["node"]: r["status"] for r in probe.rows()}
    assert status == {"w0": "fail", "w1": "warn", "w2": "ok"}
