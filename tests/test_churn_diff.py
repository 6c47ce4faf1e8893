"""The pure churn diff and the choice of VMs to migrate."""

from __future__ import annotations

import pytest

from tasks.churn import choose_vms, diff
from tasks.model import Downtime, MoveResult, VMSnapshot


def snap(ns: str, vm: str, node: str, ip: str, phase: str = "Running", ips: tuple[str, ...] = ()) -> VMSnapshot:
    return VMSnapshot(ns, vm, node, ip, mac=f"02:00:00:00:00:{len(vm):02x}", phase=phase, ips=ips)


def mig(ns: str, vm: str, phase: str = "Succeeded", src: str = "", dst: str = "", **kw) -> MoveResult:
    return MoveResult(ns, vm, f"{vm}-migration", phase, source_node=src, target_node=dst, **kw)


def test_layer3_node_change_changes_ip():
    before = [snap("a", "vm-1", "n1", "10.1.1.3"), snap("a", "vm-2", "n2", "10.1.2.3")]
    after = [snap("a", "vm-1", "n2", "10.1.2.4"), snap("a", "vm-2", "n1", "10.1.1.4")]
    migs = [mig("a", "vm-1", src="n1", dst="n2", duration_s=4.5), mig("a", "vm-2", src="n2", dst="n1", duration_s=3.0)]
    rows = diff(before, after, migs, [("a", "vm-1"), ("a", "vm-2")])
    assert [(r.vm, r.node_before, r.node_after, r.ip_before, r.ip_after) for r in rows] == [
        ("vm-1", "n1", "n2", "10.1.1.3", "10.1.2.4"),
        ("vm-2", "n2", "n1", "10.1.2.3", "10.1.1.4"),
    ]
    assert all(r.node_changed and r.ip_changed and not r.stale_ip_hazard for r in rows)
    assert [r.duration_s for r in rows] == [4.5, 3.0]
    assert all(r.migration_phase == "Succeeded" and r.failure_reason == "" for r in rows)


def test_layer2_keeps_ips():
    before = [snap("a", f"vm-{i}", f"n{i % 2}", f"10.2.0.{i + 3}") for i in range(4)]
    after = [snap("a", f"vm-{i}", f"n{(i + 1) % 2}", f"10.2.0.{i + 3}") for i in range(4)]
    rows = diff(before, after, [mig("a", f"vm-{i}") for i in range(4)], [("a", f"vm-{i}") for i in range(4)])
    assert all(r.node_changed for r in rows)
    assert not any(r.ip_changed or r.stale_ip_hazard for r in rows)


def test_failed_migration_keeps_source():
    before = [snap("a", "vm-1", "n1", "10.1.1.3")]
    after = [snap("a", "vm-1", "n1", "10.1.1.3")]
    m = mig("a", "vm-1", "Failed", src="n1", dst="n2", failure_reason="target virt-launcher failed to start")
    (row,) = diff(before, after, [m], [("a", "vm-1")])
    assert row.migration_phase == "Failed"
    assert row.node_after == "n1" and not row.node_changed and not row.ip_changed
    assert row.failure_reason == "target virt-launcher failed to start"


def test_stale_ip_hazard_when_old_ip_held_by_another_vm():
    before = [snap("a", "vm-1", "n1", "10.1.1.3"), snap("b", "vm-9", "n2", "10.1.2.3")]
    after = [
        snap("a", "vm-1", "n2", "10.1.2.5"),
        snap("b", "vm-9", "n2", "10.1.2.3"),
        snap("b", "vm-new", "n1", "10.1.1.3"),  # got vm-1's old address
    ]
    (row,) = diff(before, after, [mig("a", "vm-1")], [("a", "vm-1")])
    assert row.stale_ip_hazard and row.old_ip_holder == "b/vm-new"


def test_stale_ip_hazard_through_secondary_ips_and_several_holders():
    before = [snap("a", "vm-1", "n1", "10.1.1.3")]
    after = [
        snap("a", "vm-1", "n2", "10.1.2.5"),
        snap("z", "vm-z", "n1", "10.1.1.3"),
        snap("c", "vm-c", "n1", "fd00::5", ips=("fd00::5", "10.1.1.3")),
    ]
    (row,) = diff(before, after, [mig("a", "vm-1")], [("a", "vm-1")])
    assert row.old_ip_holder == "c/vm-c,z/vm-z"


def test_no_hazard_across_networks_or_for_the_vm_itself():
    before = [snap("a", "vm-1", "n1", "10.1.1.3")]
    after = [snap("a", "vm-1", "n1", "10.1.1.3"), snap("other", "vm-x", "n1", "10.1.1.3")]
    (same,) = diff(before, after, [mig("a", "vm-1", "Failed")], [("a", "vm-1")])
    assert same.old_ip_holder == "other/vm-x"  # one network by default: a duplicate address is a hazard
    nets = {("a", "vm-1"): "blue", ("other", "vm-x"): "green"}
    (row,) = diff(before, after, [mig("a", "vm-1", "Failed")], [("a", "vm-1")], network_of=nets)
    assert not row.stale_ip_hazard  # the same address on another network is no hazard
    (alone,) = diff(before, after[:1], [mig("a", "vm-1")], [("a", "vm-1")])
    assert not alone.stale_ip_hazard  # the VM itself still holding its address is not a hazard


def test_missing_records_and_unfinished_migrations():
    before = [snap("a", "vm-1", "n1", "10.1.1.3"), snap("a", "vm-2", "n1", "10.1.1.4")]
    after = [snap("a", "vm-2", "n1", "10.1.1.4")]
    migs = [
        mig("a", "vm-1", "Running", src="n1", started="2025-01-01T00:00:00Z", ended="2025-01-01T00:00:07.5Z"),
        mig("a", "vm-3", "Succeeded", src="n3", dst="n1"),
    ]
    rows = diff(before, after, migs, [("a", "vm-1"), ("a", "vm-2"), ("a", "vm-3"), ("a", "vm-1")])
    assert [r.vm for r in rows] == ["vm-1", "vm-2", "vm-3"]  # order kept, duplicate dropped
    r1, r2, r3 = rows
    assert r1.failure_reason == "did not finish (last phase Running); VM missing from the after snapshot"
    assert r1.duration_s == 7.5 and r1.node_after == "" and not r1.node_changed
    assert r2.migration_phase == "" and r2.failure_reason == "no migration recorded"
    assert r3.node_before == "n3" and r3.ip_before == ""


def test_every_move_of_a_vm_is_a_row():
    """A failed attempt then a success: two rows; the failed one left the VM where it was."""
    before = [snap("a", "vm-1", "n1", "10.1.1.3")]
    after = [snap("a", "vm-1", "n2", "10.1.2.3")]
    migs = [mig("a", "vm-1", "Failed", failure_reason="first try"), mig("a", "vm-1", "Succeeded", duration_s=2)]
    first, second = diff(before, after, migs, [("a", "vm-1")])
    assert (first.move, first.migration_phase, first.failure_reason) == (1, "Failed", "first try")
    assert (first.node_before, first.node_after, first.ip_after) == ("n1", "n1", "10.1.1.3")
    assert not first.node_changed and not first.ip_changed
    assert (second.move, second.migration_phase, second.failure_reason) == (2, "Succeeded", "")
    assert (second.node_before, second.node_after, second.ip_before, second.ip_after) == (
        "n1",
        "n2",
        "10.1.1.3",
        "10.1.2.3",
    )


def test_a_rolling_drain_moves_a_vm_twice_with_the_address_seen_between():
    """Drained off n1 to n2, then off n2 to n3 (Layer3: a new address each time); the downtime each peer saw
    goes with its move."""
    before = [snap("a", "vm-1", "n1", "10.1.1.3")]
    after = [snap("a", "vm-1", "n3", "10.1.3.3")]
    moves = [
        MoveResult(
            "a",
            "vm-1",
            "eviction → m1",
            "Succeeded",
            "n1",
            "n2",
            action="drain",
            drain_node="n1",
            ip_after="10.1.2.3",
            downtime=Downtime(peer="a/vm-9", downtime_ms=250.0, packets_lost=1),
        ),
        MoveResult(
            "a", "vm-1", "eviction → m2", "Succeeded", "n2", "n3", action="drain", drain_node="n2", ip_before="10.1.2.3"
        ),
    ]
    one, two = diff(before, after, moves, [("a", "vm-1")])
    assert (one.node_before, one.node_after, one.ip_before, one.ip_after) == ("n1", "n2", "10.1.1.3", "10.1.2.3")
    assert (one.drain_node, one.via, one.downtime_ms, one.packets_lost, one.downtime_peer) == (
        "n1",
        "eviction → m1",
        250.0,
        1,
        "a/vm-9",
    )
    assert (two.node_before, two.node_after, two.ip_before, two.ip_after) == ("n2", "n3", "10.1.2.3", "10.1.3.3")
    assert (two.move, two.action, two.downtime_ms) == (2, "drain", None)


FLEET = [snap(f"ns-{i % 3}", f"vm-{i:02d}", f"n{i % 4}", f"10.0.{i % 4}.{i + 3}") for i in range(40)] + [
    snap("ns-0", "vm-pending", "", "", phase="Scheduling")
]


def test_choose_vms_deterministic_and_sorted():
    a = choose_vms(FLEET, fraction=0.25, seed=3)
    assert a == choose_vms(list(reversed(FLEET)), fraction=0.25, seed=3)
    assert a == sorted(a) and len(set(a)) == len(a) == 10
    assert choose_vms(FLEET, fraction=0.25, seed=4) != a
    assert ("ns-0", "vm-pending") not in choose_vms(FLEET, fraction=1.0)
    assert len(choose_vms(FLEET, fraction=1.0)) == 40


@pytest.mark.parametrize(
    ("n", "fraction", "expected"),
    [
        (10, 0.25, 3),
        (10, 0.24, 2),
        (10, 0.15, 2),
        (100, 0.29, 29),
        (8, 0.5, 4),
        (7, 0.5, 4),
        (10, 0.01, 1),
        (10, 0.0, 0),
    ],
)
def test_choose_vms_fraction_rounds_half_up_and_at_least_one(n, fraction, expected):
    fleet = [snap("a", f"vm-{i}", "n1", f"10.0.0.{i + 3}") for i in range(n)]
    assert len(choose_vms(fleet, fraction=fraction)) == expected


def test_choose_vms_count_selector_and_drain():
    assert len(choose_vms(FLEET, count=7, seed=1)) == 7
    assert len(choose_vms(FLEET, count=500)) == 40
    drain = choose_vms(FLEET, drain_node="n2")
    assert drain == sorted((s.namespace, s.name) for s in FLEET if s.node == "n2")
    assert len(choose_vms(FLEET, drain_node="n2", count=3)) == 3
    matches = [("ns-1", "vm-01"), ("ns-1", "vm-04"), ("nope", "vm-x"), ("ns-0", "vm-pending")]
    assert choose_vms(FLEET, selector_matches=matches) == [("ns-1", "vm-01"), ("ns-1", "vm-04")]
    by_pred = choose_vms(FLEET, selector_matches=lambda s: s.namespace == "ns-2", fraction=0.5, seed=9)
    assert len(by_pred) == 7 and all(ns == "ns-2" for ns, _ in by_pred)  # 13 candidates → 6.5 → 7
    assert choose_vms([], fraction=0.5) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "nothing to choose by"),
        ({"fraction": 0.5, "count": 3}, "either fraction or count"),
        ({"fraction": 1.5}, "between 0 and 1"),
        ({"count": -1}, ">= 0"),
    ],
)
def test_choose_vms_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        choose_vms(FLEET, **kwargs)
