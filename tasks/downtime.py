"""Downtime per move, as a peer that stays put sees it: timestamped pings (`ping -D -O`) over its console.

While a VM moves (a live migration, a restart, a drain's evacuation), another VM of the run pings the
moving VM's address continuously; after the move it waits for the first reply — at the old address,
or at the new one when the VMI reports another (Layer3 after a node change, any restart without a
persistent IP). The outage is read from the guest's own timestamps (iputils ``-D`` prints
``[seconds.micros]`` before each line), so neither the console's latency nor the host's clock enter it:

* last reply before: the last reply before the longest silence of the window;
* first reply after: the first reply after it, and from which address;
* packets lost: the requests sent in between (``icmp_seq`` numbers, per address);
* downtime: the silence, in milliseconds.

The parsing and the arithmetic are pure functions (:func:`parse_ping_lines`, :func:`outage`); the
:class:`PingWatch` drives one peer's console.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tasks.console import REGISTRY, ConsoleDoor, ConsoleError, ConsoleSession
from tasks.model import Downtime
from tasks.probeplan import VMEndpoint

Key = tuple[str, str]

# iputils: "[1712345678.123456] 64 bytes from 10.0.0.5: icmp_seq=3 ttl=64 time=0.512 ms"
_REPLY = re.compile(
    r"^\[(?P<ts>\d+\.\d+)\]\s+\d+ bytes from (?P<ip>[0-9a-fA-F:.]+?)(?: \([^)]*\))?: icmp_seq=(?P<seq>\d+)"
)
# iputils -O: "[1712345678.323456] no answer yet for icmp_seq=4"
_NO_ANSWER = re.compile(r"^\[(?P<ts>\d+\.\d+)\]\s+no answer yet for icmp_seq=(?P<seq>\d+)")
_SENT = re.compile(r"(?P<tx>\d+) packets transmitted")


@dataclass(frozen=True)
class Reply:
    at: float  # the guest's clock, seconds since the epoch
    ip: str
    seq: int


@dataclass(frozen=True)
class Outage:
    """What a peer saw of one move; ``downtime_ms`` is None when it never answered again (or never had)."""

    last_reply_before: float | None
    first_reply_after: float | None
    first_reply_ip: str
    packets_lost: int | None
    downtime_ms: float | None
    note: str = ""


def parse_ping_lines(text: str) -> tuple[list[Reply], list[tuple[float, int]]]:
    """Replies and ``no answer yet`` marks of ``ping -D -O`` output (other lines ignored)."""
    replies: list[Reply] = []
    silent: list[tuple[float, int]] = []
    for line in text.splitlines():
        line = line.strip()
        m = _REPLY.match(line)
        if m:
            replies.append(Reply(float(m.group("ts")), m.group("ip"), int(m.group("seq"))))
            continue
        m = _NO_ANSWER.match(line)
        if m:
            silent.append((float(m.group("ts")), int(m.group("seq"))))
    return replies, silent


def outage(
    before: Sequence[Reply], after: Sequence[Reply] = (), *, sent_before: int | None = None, interval: float = 0.2
) -> Outage:
    """The silence a move caused (pure).

    ``before``: the replies of the ping that ran across the move (to the address the VM had). ``after``:
    the replies of a ping to its new address once the move was over, if one was needed. The outage is
    the longest silence between consecutive replies of ``before`` — or, when ``before`` never answers
    again, from its last reply to the first reply of ``after``. ``sent_before`` (the requests the first
    ping sent, from its statistics) counts the requests lost after its last reply.
    """
    b = sorted(before, key=lambda r: r.at)
    a = sorted(after, key=lambda r: r.at)
    if not b:
        if a:
            return Outage(None, a[0].at, a[0].ip, None, None, "never answered before the move")
        return Outage(None, None, "", None, None, "never answered, before or after the move")
    gaps = [(b[i + 1].at - b[i].at, i) for i in range(len(b) - 1)]
    widest = max(gaps, default=(0.0, -1))
    tail_lost = (sent_before - b[-1].seq) if sent_before is not None else None
    if a:  # the old address went quiet; the first reply at the new one ends the outage
        last = b[-1]
        first = a[0]
        lost = (tail_lost or 0) + (first.seq - 1)
        return Outage(last.at, first.at, first.ip, lost, round((first.at - last.at) * 1000.0, 1))
    # Only the old address: the outage is the widest silence, unless the ping ended silent after the move.
    if tail_lost is not None and tail_lost > 0 and tail_lost * interval > widest[0]:
        return Outage(b[-1].at, None, "", tail_lost, None, "no reply after the move")
    if widest[1] < 0 or widest[0] <= interval * 1.5:
        # a reply for every request: any silence was shorter than the interval can show
        return Outage(b[-1].at if widest[1] < 0 else b[widest[1]].at, None, b[-1].ip, 0, 0.0, "no loss seen")
    i = widest[1]
    last, first = b[i], b[i + 1]
    return Outage(last.at, first.at, first.ip, first.seq - last.seq - 1, round((first.at - last.at) * 1000.0, 1))


def ping_command(ip: str, interval: float, *, count: int | None = None, deadline: int | None = None) -> str:
    """``ping -D -O -i <interval> [-c N] [-w S] <ip>`` (timestamps, and a line for each unanswered request)."""
    parts = ["ping", "-D", "-O", "-i", f"{interval:g}"]
    if count is not None:
        parts += ["-c", str(count)]
    if deadline is not None:
        parts += ["-w", str(deadline)]
    return " ".join([*parts, ip])


@dataclass
class PingWatch:
    """One peer pinging one moving VM across its move.

    :meth:`start` logs nothing in (the session is logged in already) and starts the continuous ping,
    returning once the first reply came (or ``first_reply_wait`` passed: the VM may not answer at all);
    the move happens; :meth:`finish` reads what the ping printed meanwhile, waits up to ``reply_wait``
    for one more reply, stops the ping (Ctrl-C: its statistics give the requests sent) and, when the old
    address stayed silent and the VMI now reports another, pings that one until it answers.
    """

    session: ConsoleSession
    target_ip: str
    interval: float = 0.2
    reply_wait: float = 60.0
    first_reply_wait: float = 3.0
    before: list[Reply] = field(default_factory=list)
    after: list[Reply] = field(default_factory=list)
    sent_before: int | None = None
    error: str = ""
    silent_before: bool = False
    _text: str = ""

    def start(self) -> None:
        try:
            self.session.start(ping_command(self.target_ip, self.interval))
            self._read_until(lambda: bool(self.before) or self.session.at_prompt(), self.first_reply_wait)
            if self.session.at_prompt():  # ping gave up at once (e.g. the peer's guest has no route)
                said = " ".join(self._text.split())[-200:]
                self.session.interrupt()
                self.error = f"the ping from {self.session.vmi} ended at once: {said or 'no output'}"
            elif not self.before:  # it does not answer now: there is no outage of this move to measure
                self.session.interrupt()
                self.silent_before = True
        except ConsoleError as e:
            self.error = f"could not start the ping from {self.session.vmi}: {e}"

    def _read(self, timeout: float) -> None:
        self._text += self.session.read_output(timeout)
        self.before, _ = parse_ping_lines(self._text)

    def _read_until(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._read(min(0.5, left))

    def finish(self, new_ip: str = "") -> Outage:
        """The move is over (as the cluster reports it): the outage this peer saw."""
        if self.error:
            return Outage(None, None, "", None, None, self.error)
        if self.silent_before:
            return Outage(None, None, "", None, None, f"did not answer {self.target_ip} before the move")
        moved_address = bool(new_ip) and new_ip != self.target_ip
        try:
            self._read(0.3)  # what the move left in the pipe
            seen = len(self.before)
            # The old address answers again after the move (Layer2), or, when the VMI reports another,
            # probably never: give it a few intervals before asking the new one.
            wait = min(self.reply_wait, 3 * self.interval + 2) if moved_address else self.reply_wait
            self._read_until(lambda: len(self.before) > seen, wait)
            tail, _ = self.session.interrupt()
            self._text += tail
            self.before, _ = parse_ping_lines(self._text)
            m = _SENT.search(tail)
            self.sent_before = int(m.group("tx")) if m else None
            if moved_address and len(self.before) <= seen:
                out, _ = self.session.run(
                    ping_command(new_ip, self.interval, count=1, deadline=max(1, int(self.reply_wait))),
                    timeout=self.reply_wait + 15,
                )
                self.after, _ = parse_ping_lines(out)
        except ConsoleError as e:
            self.error = f"the ping from {self.session.vmi} broke off: {e}"
        result = outage(self.before, self.after, sent_before=self.sent_before, interval=self.interval)
        if self.error:
            return Outage(
                result.last_reply_before,
                result.first_reply_after,
                result.first_reply_ip,
                result.packets_lost,
                result.downtime_ms,
                "; ".join(x for x in (result.note, self.error) if x),
            )
        return result


def summarize(outages: Iterable[Outage]) -> dict[str, float | int | None]:
    """Count and quantiles (ms) of the measured downtimes; how many moves never answered again."""
    from tasks.reports.common import percentiles

    outages = list(outages)
    measured = [o.downtime_ms for o in outages if o.downtime_ms is not None]
    p50, p95, p99 = percentiles(measured, [50, 95, 99])
    return {
        "measured": len(measured),
        "no_reply_after": sum(1 for o in outages if o.downtime_ms is None and o.last_reply_before is not None),
        "p50_ms": None if not measured else round(p50, 1),
        "p95_ms": None if not measured else round(p95, 1),
        "p99_ms": None if not measured else round(p99, 1),
        "max_ms": max(measured) if measured else None,
    }


def _iso(ts: float | None) -> str:
    from tasks.reports.common import iso_utc

    return iso_utc(ts)


def as_downtime(peer: str, o: Outage) -> Downtime:
    """The record a move keeps of what its peer saw."""
    return Downtime(
        peer=peer,
        last_reply_before=_iso(o.last_reply_before),
        first_reply_after=_iso(o.first_reply_after),
        first_reply_ip=o.first_reply_ip,
        packets_lost=o.packets_lost,
        downtime_ms=o.downtime_ms,
        note=o.note,
    )


class DowntimeMonitor:
    """Pings moving VMs from VMs that stay put, one console session per peer (logged in once, reused),
    at most ``max_sessions`` peers at once.

    ``begin(key, ip)`` before a VM's move (returns once its ping answered, or a few seconds passed);
    ``end(key, new_ip)`` after it — it waits for the first reply after the move, so call it from a worker
    thread when moves overlap. Thread-safe; ``close()`` logs every peer out.
    """

    def __init__(
        self,
        kube: ConsoleDoor,
        credentials: tuple[str, str],
        peers: Sequence[VMEndpoint],
        *,
        interval: float = 0.2,
        reply_wait: float = 60.0,
        max_sessions: int = 32,
        peer_wait: float = 30.0,
    ) -> None:
        self.kube = kube
        self.credentials = credentials
        self.interval = interval
        self.reply_wait = reply_wait
        self.peer_wait = peer_wait
        self._free: list[VMEndpoint] = list(peers)[: max(0, max_sessions)]
        self._sessions: dict[Key, ConsoleSession] = {}
        self._watches: dict[Key, tuple[VMEndpoint, PingWatch]] = {}
        self._skipped: dict[Key, str] = {}
        self._cond = threading.Condition()

    @property
    def peers(self) -> int:
        return len(self._free) + len(self._watches)

    def skip(self, key: Key, why: str) -> None:
        """Record why a move is not measured (its ``end`` returns that note)."""
        with self._cond:
            self._skipped[key] = why

    def _take_peer(self, moving: Key, avoid: Callable[[VMEndpoint], bool] | None) -> VMEndpoint | None:
        deadline = time.monotonic() + self.peer_wait
        with self._cond:
            while True:
                for i, p in enumerate(self._free):
                    if p.key != moving and (avoid is None or not avoid(p)):
                        return self._free.pop(i)
                left = deadline - time.monotonic()
                if left <= 0 or not (self._free or self._watches):
                    return None
                self._cond.wait(left)

    def _give_back(self, peer: VMEndpoint) -> None:
        with self._cond:
            self._free.append(peer)
            self._cond.notify_all()

    def _session(self, peer: VMEndpoint) -> ConsoleSession:
        s = self._sessions.get(peer.key)
        if s is None or not s.connected:
            s = ConsoleSession(self.kube, peer.namespace, peer.name, registry=REGISTRY, claim_wait=30.0)
            s.connect()
            s.login(*self.credentials, timeout=60.0)
            self._sessions[peer.key] = s
        return s

    def begin(self, key: Key, ip: str, avoid: Callable[[VMEndpoint], bool] | None = None) -> None:
        """Start pinging ``ip`` (the VM ``key``) from a free peer for which ``avoid`` is false (a drain
        avoids peers on the node being drained: they are about to move themselves)."""
        with self._cond:
            if key in self._skipped:
                return
        if not ip:
            self.skip(key, "no address to ping")
            return
        peer = self._take_peer(key, avoid)
        if peer is None:
            self.skip(key, "no VM that stays put was free to ping from")
            return
        try:
            session = self._session(peer)
        except ConsoleError as e:
            self._give_back(peer)
            self.skip(key, f"could not log in to {peer.namespace}/{peer.name} to ping from: {e}")
            return
        watch = PingWatch(session, ip, interval=self.interval, reply_wait=self.reply_wait)
        watch.start()
        with self._cond:
            self._watches[key] = (peer, watch)

    def end(self, key: Key, new_ip: str = "") -> Downtime:
        with self._cond:
            held = self._watches.pop(key, None)
            skipped = self._skipped.pop(key, "")
        if held is None:
            return Downtime(note=skipped or "not measured")
        peer, watch = held
        try:
            result = watch.finish(new_ip)
        finally:
            if watch.error:  # a broken session is dropped; the peer is tried afresh next time
                broken = self._sessions.pop(peer.key, None)
                if broken is not None:
                    broken.close()
            self._give_back(peer)
        return as_downtime(f"{peer.namespace}/{peer.name}", result)

    def close(self) -> None:
        for s in list(self._sessions.values()):
            s.close()
        self._sessions.clear()
