"""parse_ping over real-looking transcripts: iputils (Fedora/RHEL), BusyBox (Alpine/Cirros), CRLF."""

from __future__ import annotations

import pytest

from tasks.pingparse import PingStats, parse_ping

ALL_REPLIES = """\
PING 10.200.1.4 (10.200.1.4) 56(84) bytes of data.

--- 10.200.1.4 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 2003ms
rtt min/avg/max/mdev = 0.412/0.873/1.310/0.367 ms
"""

PARTIAL_LOSS = """\
PING 192.168.3.7 (192.168.3.7) 56(84) bytes of data.
64 bytes from 192.168.3.7: icmp_seq=1 ttl=64 time=0.611 ms
64 bytes from 192.168.3.7: icmp_seq=3 ttl=64 time=0.702 ms

--- 192.168.3.7 ping statistics ---
3 packets transmitted, 2 received, 33.3333% packet loss, time 2040ms
rtt min/avg/max/mdev = 0.611/0.656/0.702/0.045 ms
"""

SILENT = """\
PING 10.200.250.77 (10.200.250.77) 56(84) bytes of data.

--- 10.200.250.77 ping statistics ---
6 packets transmitted, 0 received, 100% packet loss, time 5110ms

"""

HOST_UNREACHABLE = """\
PING 10.200.0.250 (10.200.0.250) 56(84) bytes of data.
From 10.200.0.3 icmp_seq=1 Destination Host Unreachable
From 10.200.0.3 icmp_seq=2 Destination Host Unreachable
From 10.200.0.3 icmp_seq=3 Destination Host Unreachable

--- 10.200.0.250 ping statistics ---
3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2047ms
pipe 3
"""

QUIET_ERRORS = """\
PING 10.200.0.250 (10.200.0.250) 56(84) bytes of data.

--- 10.200.0.250 ping statistics ---
4 packets transmitted, 0 received, +3 errors, 100% packet loss, time 3072ms
pipe 3
"""

NET_UNREACHABLE_LINE = """\
PING 10.9.0.1 (10.9.0.1) 56(84) bytes of data.
From 10.200.0.1 icmp_seq=1 Destination Net Unreachable

--- 10.9.0.1 ping statistics ---
1 packets transmitted, 0 received, +1 errors, 100% packet loss, time 0ms
"""

DUPLICATES = """\
PING 10.1.0.9 (10.1.0.9) 56(84) bytes of data.

--- 10.1.0.9 ping statistics ---
2 packets transmitted, 2 received, +1 duplicates, 0% packet loss, time 1001ms
rtt min/avg/max/mdev = 0.100/0.200/0.300/0.082 ms
"""

BUSYBOX_OK = """\
PING 10.200.1.4 (10.200.1.4): 56 data bytes

--- 10.200.1.4 ping statistics ---
3 packets transmitted, 3 packets received, 0% packet loss
round-trip min/avg/max = 0.101/0.205/0.310 ms
"""

BUSYBOX_SILENT = """\
PING 10.200.9.9 (10.200.9.9): 56 data bytes

--- 10.200.9.9 ping statistics ---
3 packets transmitted, 0 packets received, 100% packet loss
"""


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def test_all_replies() -> None:
    s = parse_ping(ALL_REPLIES, 0)
    assert s == PingStats(3, 3, 0, 0.0, 0.412, 0.873, 1.310, 0.367, "reply", "")


@pytest.mark.parametrize("text", [PARTIAL_LOSS, crlf(PARTIAL_LOSS)], ids=["lf", "crlf"])
def test_partial_loss_is_a_reply_with_its_loss(text: str) -> None:
    s = parse_ping(text, 0)
    assert (s.transmitted, s.received, s.errors, s.outcome) == (3, 2, 0, "reply")
    assert s.loss_pct == pytest.approx(33.3333)
    assert (s.rtt_min, s.rtt_avg, s.rtt_max, s.rtt_mdev) == (0.611, 0.656, 0.702, 0.045)


@pytest.mark.parametrize("text", [SILENT, crlf(SILENT), BUSYBOX_SILENT, crlf(BUSYBOX_SILENT)])
def test_silence_is_a_timeout(text: str) -> None:
    s = parse_ping(text, 1)
    assert s.outcome == "timeout" and s.received == 0 and s.loss_pct == 100.0
    assert s.rtt_avg is None and s.errors == 0


def test_destination_host_unreachable() -> None:
    s = parse_ping(crlf(HOST_UNREACHABLE), 1)
    assert (s.transmitted, s.received, s.errors, s.outcome) == (3, 0, 3, "unreachable")
    assert s.detail == "From 10.200.0.3 icmp_seq=1 Destination Host Unreachable"


def test_errors_in_the_summary_alone_mean_unreachable() -> None:
    s = parse_ping(QUIET_ERRORS, 1)
    assert (s.transmitted, s.errors, s.outcome, s.detail) == (4, 3, "unreachable", "+3 errors")


def test_destination_net_unreachable() -> None:
    s = parse_ping(NET_UNREACHABLE_LINE, 1)
    assert s.outcome == "unreachable" and "Destination Net Unreachable" in s.detail


def test_duplicates_do_not_count_as_errors() -> None:
    s = parse_ping(DUPLICATES, 0)
    assert (s.received, s.errors, s.outcome, s.loss_pct) == (2, 0, "reply", 0.0)


def test_busybox_round_trip_line() -> None:
    s = parse_ping(crlf(BUSYBOX_OK), 0)
    assert (s.transmitted, s.received, s.outcome) == (3, 3, "reply")
    assert (s.rtt_min, s.rtt_avg, s.rtt_max, s.rtt_mdev) == (0.101, 0.205, 0.310, None)


def test_busybox_round_trip_with_stddev() -> None:
    text = BUSYBOX_OK.replace("min/avg/max = 0.101/0.205/0.310", "min/avg/max/stddev = 0.101/0.205/0.310/0.085")
    assert parse_ping(text, 0).rtt_mdev == 0.085


@pytest.mark.parametrize(
    "text",
    [
        "ping: connect: Network is unreachable\r\n",
        "connect: Network is unreachable\n",
        "ping: sendto: Network is unreachable\n",
    ],
)
def test_network_is_unreachable(text: str) -> None:
    s = parse_ping(text, 2)
    assert (s.outcome, s.transmitted, s.loss_pct) == ("unreachable", 0, 100.0)
    assert "Network is unreachable" in s.detail


@pytest.mark.parametrize(
    "text",
    [
        "ping: no-such-vm: Name or service not known\r\n",
        "ping: vm.example: Temporary failure in name resolution\n",
        "ping: bad address 'nope'\n",
    ],
)
def test_unknown_host_is_an_error(text: str) -> None:
    s = parse_ping(text, 2)
    assert s.outcome == "error" and s.detail == text.strip()


@pytest.mark.parametrize("text", ["", "-bash: ping: command not found\r\n", "\x1b[H garbage\n"])
def test_unparseable_is_an_error(text: str) -> None:
    s = parse_ping(text, 127)
    assert s.outcome == "error" and s.received == 0 and s.loss_pct == 100.0
    assert "exit code 127" in s.detail


def test_nothing_transmitted_is_an_error() -> None:
    s = parse_ping("--- x ping statistics ---\n0 packets transmitted, 0 received\n", 1)
    assert (s.outcome, s.loss_pct) == ("error", 100.0)


def test_timeout_from_a_deadline_run_with_some_replies_is_a_reply() -> None:
    text = SILENT.replace("6 packets transmitted, 0 received, 100%", "6 packets transmitted, 1 received, 83.3333%")
    s = parse_ping(text, 1)
    assert s.outcome == "reply" and s.received == 1 and s.loss_pct == pytest.approx(83.3333)


def test_the_last_summary_wins() -> None:
    s = parse_ping("echo 1 packets transmitted, 1 received\n" + SILENT, 1)
    assert (s.transmitted, s.received, s.outcome) == (6, 0, "timeout")
