"""Downtime per move from a peer's `ping -D -O` (issue 17): the parser reads iputils' output, the outage is the
silence the move caused — at the old address, or until the new one answered — and the drain plan picks the nodes
an administrator asked for or says why it cannot."""

from __future__ import annotations

import pytest

from tasks.downtime import Outage, Reply, outage, parse_ping_lines, ping_command, summarize
from tasks.drain import DrainPlanError, plan_nodes

T0 = 1733474400.0


def replies(ip: str, seqs: list[int], interval: float = 0.2, start: float = T0) -> list[Reply]:
    return [Reply(start + (s - 1) * interval, ip, s) for s in seqs]


def test_parse_iputils_timestamped_output() -> None:
    text = (
        "PING 10.0.0.5 (10.0.0.5) 56(84) bytes of data.\n"
        "[1733474400.000123] 64 bytes from 10.0.0.5: icmp_seq=1 ttl=64 time=0.421 ms\n"
        "[1733474400.200456] 64 bytes from 10.0.0.5: icmp_seq=2 ttl=64 time=0.398 ms\n"
        "[1733474400.600111] no answer yet for icmp_seq=3\n"
        "[1733474401.000222] 64 bytes from 10.0.0.5: icmp_seq=6 ttl=64 time=1.02 ms\n"
        "^C\n--- 10.0.0.5 ping statistics ---\n"
        "6 packets transmitted, 3 received, 50% packet loss, time 1000ms\n"
    )
    got, silent = parse_ping_lines(text)
    assert [(r.seq, r.ip) for r in got] == [(1, "10.0.0.5"), (2, "10.0.0.5"), (6, "10.0.0.5")]
    assert got[0].at == pytest.approx(1733474400.000123)
    assert silent == [(pytest.approx(1733474400.600111), 3)]


def test_lines_without_timestamps_are_not_taken_for_replies() -> None:
    got, _ = parse_ping_lines("64 bytes from 10.0.0.5: icmp_seq=1 ttl=64 time=0.4 ms\n")
    assert got == []


def test_a_live_migration_blip_on_one_address() -> None:
    """Layer2: replies until seq 10, silence, replies again from seq 13 at the same address."""
    before = replies("10.0.0.5", [*range(1, 11), *range(13, 20)])
    o = outage(before, sent_before=19)
    assert (o.packets_lost, o.first_reply_ip, o.downtime_ms) == (2, "10.0.0.5", pytest.approx(600.0))
    assert o.last_reply_before == pytest.approx(T0 + 9 * 0.2)


def test_no_loss_is_zero_not_unknown() -> None:
    o = outage(replies("10.0.0.5", list(range(1, 30))), sent_before=29)
    assert (o.downtime_ms, o.packets_lost, o.note) == (0.0, 0, "no loss seen")


def test_the_old_address_goes_silent_and_the_new_one_answers() -> None:
    """Layer3 restart with a guest that configures its new address: the outage runs to the new address's reply."""
    before = replies("10.128.1.7", list(range(1, 6)))  # last reply at T0 + 0.8
    after = [Reply(T0 + 20.8, "10.128.2.9", 4)]  # the new address's first reply, 3 requests unanswered
    o = outage(before, after, sent_before=60)
    assert o.first_reply_ip == "10.128.2.9"
    assert o.downtime_ms == pytest.approx(20000.0)
    assert o.packets_lost == 55 + 3


def test_silent_after_the_move_has_no_downtime_figure() -> None:
    """Layer3 live migration: the guest keeps its old configuration, nothing answers afterwards."""
    o = outage(replies("10.128.1.7", list(range(1, 6))), sent_before=300)
    assert o.downtime_ms is None and o.packets_lost == 295 and o.note == "no reply after the move"


def test_never_answered() -> None:
    assert outage([], []).note == "never answered, before or after the move"
    assert outage([], [Reply(T0, "10.0.0.9", 1)]).note == "never answered before the move"


def test_ping_command() -> None:
    assert ping_command("10.0.0.5", 0.2) == "ping -D -O -i 0.2 10.0.0.5"
    assert ping_command("10.0.0.5", 0.2, count=1, deadline=30) == "ping -D -O -i 0.2 -c 1 -w 30 10.0.0.5"


def test_summarize_counts_and_quantiles() -> None:
    outs = [Outage(T0, T0 + x / 1000, "ip", 1, float(x)) for x in (100, 200, 300, 400)] + [
        Outage(T0, None, "", 9, None, "no reply after the move"),
        Outage(None, None, "", None, None, "not measured"),
    ]
    s = summarize(outs)
    assert s["measured"] == 4 and s["no_reply_after"] == 1 and s["max_ms"] == 400.0
    assert s["p50_ms"] == 250.0


NODES = ["worker-0", "worker-1", "worker-2", "worker-3"]


def test_plan_all_count_and_names() -> None:
    vms = {"worker-0": 3, "worker-1": 5, "worker-2": 5, "worker-3": 0}
    assert plan_nodes("all", NODES, NODES, vms) == ["worker-0", "worker-1", "worker-2"]
    assert plan_nodes(2, NODES, NODES, vms) == ["worker-1", "worker-2"]  # the busiest two, in name order
    assert plan_nodes(["worker-3", "worker-0"], NODES, NODES, vms) == ["worker-3", "worker-0"]


def test_plan_rejects_an_unknown_node_and_a_cluster_with_nowhere_to_go() -> None:
    with pytest.raises(DrainPlanError, match=r"no node named worker-9 .*use names from `oc get nodes`"):
        plan_nodes(["worker-9"], NODES, NODES, {"worker-0": 1})
    with pytest.raises(DrainPlanError, match="needs another schedulable node"):
        plan_nodes("all", ["worker-0"], ["worker-0"], {"worker-0": 2})
    with pytest.raises(DrainPlanError, match="no node holds a VM of this run"):
        plan_nodes("all", NODES, NODES, {})
