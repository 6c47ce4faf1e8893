"""Read what ``ping`` printed (iputils on Fedora/RHEL, BusyBox on Alpine/Cirros) into numbers and a verdict.

Pure functions over text: no console, no cluster. The console hands over the output captured between
the echo of the command and the next prompt (CRLF or LF line endings, either is fine) and the exit
status read with ``echo $?``.

Outcomes, in order of precedence:

* ``reply``: at least one echo reply came back;
* ``unreachable``: no reply, and the network said why (``+N errors`` in the summary, ``From … Destination
  Host Unreachable`` / ``Destination Net Unreachable`` lines, ``Network is unreachable``);
* ``timeout``: packets went out, nothing came back and nobody complained (a silent drop);
* ``error``: nothing we can read as a ping result (unknown host, usage error, garbage).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

PingOutcome = Literal["reply", "timeout", "unreachable", "error"]

# "3 packets transmitted, 2 received, +1 errors, 33.3333% packet loss, time 2003ms" (iputils)
# "3 packets transmitted, 3 packets received, 0% packet loss" (BusyBox)
_SUMMARY = re.compile(
    r"(?P<tx>\d+) packets transmitted, (?P<rx>\d+) (?:packets )?received(?P<extra>(?:, \+\d+ \w+)*)"
    r"(?:, (?P<loss>\d+(?:\.\d+)?)% packet loss)?"
)
_EXTRA = re.compile(r"\+(\d+) (\w+)")
# "rtt min/avg/max/mdev = 0.215/0.482/0.901/0.297 ms" (iputils)
# "round-trip min/avg/max = 0.101/0.205/0.310 ms" (BusyBox; newer BusyBox adds /stddev)
_RTT = re.compile(
    r"(?:rtt|round-trip) min/avg/max(?:/(?:mdev|stddev))? = "
    r"(?P<min>\d+(?:\.\d+)?)/(?P<avg>\d+(?:\.\d+)?)/(?P<max>\d+(?:\.\d+)?)(?:/(?P<mdev>\d+(?:\.\d+)?))? ?ms"
)
_DEST_UNREACHABLE = re.compile(r"Destination (?:Host|Net|Network|Port|Protocol) Unreachable", re.I)
_NET_UNREACHABLE = re.compile(r"Network is unreachable", re.I)
_UNKNOWN_HOST = re.compile(
    r"(?:Name or service not known|Temporary failure in name resolution|unknown host|bad address)", re.I
)


@dataclass(frozen=True, slots=True)
class PingStats:
    """One ping run, read from its output. ``loss_pct`` is 100.0 when nothing could be read."""

    transmitted: int = 0
    received: int = 0
    errors: int = 0
    loss_pct: float = 100.0
    rtt_min: float | None = None
    rtt_avg: float | None = None
    rtt_max: float | None = None
    rtt_mdev: float | None = None
    outcome: PingOutcome = "error"
    detail: str = ""  # why the outcome is "error" or "unreachable", in a few words


def _first_line(text: str, rx: re.Pattern[str]) -> str:
    for line in text.splitlines():
        if rx.search(line):
            return line.strip()
    return ""


def _last(rx: re.Pattern[str], text: str) -> re.Match[str] | None:
    found = None
    for found in rx.finditer(text):  # noqa: B007 - only the last one is wanted
        pass
    return found


def _loss(tx: int, rx: int) -> float:
    """What iputils would print; it omits the figure when nothing was sent."""
    return (tx - rx) * 100.0 / tx if tx else 100.0


def parse_ping(output: str, exit_code: int | None) -> PingStats:
    """Parse ping's output (and its exit status, when known) into :class:`PingStats`."""
    text = output.replace("\r\n", "\n").replace("\r", "\n")
    unreachable_lines = len(_DEST_UNREACHABLE.findall(text))
    net_unreachable = bool(_NET_UNREACHABLE.search(text))

    # The last summary and RTT lines win: a stray earlier line (an echoed command) cannot.
    summary = _last(_SUMMARY, text)
    rtt = _last(_RTT, text)

    if summary is None:
        if net_unreachable or unreachable_lines:
            line = _first_line(text, _NET_UNREACHABLE) or _first_line(text, _DEST_UNREACHABLE)
            return PingStats(errors=unreachable_lines, outcome="unreachable", detail=line)
        if _UNKNOWN_HOST.search(text):
            return PingStats(outcome="error", detail=_first_line(text, _UNKNOWN_HOST))
        last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
        why = f"no ping summary in the output (exit code {exit_code})"
        return PingStats(outcome="error", detail=f"{why}: {last[:200]}" if last else why)

    tx, rx = int(summary["tx"]), int(summary["rx"])
    errors = 0
    for n, what in _EXTRA.findall(summary["extra"] or ""):
        if what == "errors":
            errors = int(n)
    loss = float(summary["loss"]) if summary["loss"] is not None else _loss(tx, rx)
    rmin = ravg = rmax = rmdev = None
    if rtt is not None:
        rmin, ravg, rmax = float(rtt["min"]), float(rtt["avg"]), float(rtt["max"])
        rmdev = float(rtt["mdev"]) if rtt["mdev"] is not None else None

    outcome: PingOutcome
    detail = ""
    if rx > 0:
        outcome = "reply"
    elif errors or unreachable_lines or net_unreachable:
        outcome = "unreachable"
        line = _first_line(text, _DEST_UNREACHABLE) or _first_line(text, _NET_UNREACHABLE)
        detail = line or f"+{errors} errors"
    elif tx == 0:
        outcome, detail = "error", "no packets transmitted"
    else:
        outcome = "timeout"
    return PingStats(tx, rx, errors, loss, rmin, ravg, rmax, rmdev, outcome, detail)


__all__ = ["PingOutcome", "PingStats", "parse_ping"]
