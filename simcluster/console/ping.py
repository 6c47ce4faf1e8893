"""``ping`` with iputils semantics (options, timing, output, exit codes) over a simulated network.

Time runs on a guest clock: every wait is ``asyncio.sleep(guest_seconds * time_scale)``, while the
printed times are guest times, so a scaled-down run prints what a real one would. ``-D`` stamps lines
with the guest's wall clock (``[<unix seconds>.<microseconds>] ``, iputils ``print_timestamp``): the
clock at the start plus the guest seconds since, so stamps advance by the intervals the guest sees.
``-O`` prints ``no answer yet for icmp_seq=N`` before the next request when request N has had no
reply (iputils ``pinger``; printed even with ``-q``).
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import math
import random
import re
import time
from dataclasses import dataclass
from typing import Protocol

from .fedora import IPUTILS_VERSION
from .net import GuestInterface

# getopt string of iputils ping: every option it knows, those taking an argument followed by ":".
_OPTSTRING = "h?4bRT:6F:N:aABc:dDfi:I:l:Lm:M:nOp:qQ:rs:S:t:UvVw:W:"
_LONG_MAX = 9223372036854775807
_INT_MAX = 2147483647
MIN_USER_INTERVAL_MS = 2
MAX_DUP_CHK = 0x10000  # iputils ping.h: sequence numbers are reported modulo this
ARP_RESOLVE_SECONDS = 3.0  # three ARP requests one second apart, then the kernel gives up
DEFAULT_LINGER = 10.0
_INTEGER = re.compile(r"[+-]?[0-9]+")

USAGE = """
Usage
  ping [options] <destination>

Options:
  <destination>      DNS name or IP address
  -4                 use IPv4
  -6                 use IPv6
  -c <count>         stop after <count> replies
  -i <interval>      seconds between sending each packet
  -I <interface>     either interface name or address
  -n                 no dns name resolution
  -q                 quiet output
  -s <size>          use <size> as number of data bytes to be sent
  -t <ttl>           define time to live
  -V                 print version and exit
  -w <deadline>      reply wait <deadline> in seconds
  -W <timeout>       time to wait for response

For more details see ping(8).
"""


class PingExit(Exception):
    """ping stops before sending anything: what it printed and its exit status."""

    def __init__(self, status: int, err: str = "", out: str = "") -> None:
        super().__init__(status, err)
        self.status = status
        self.err = err
        self.out = out


@dataclass(slots=True)
class PingOptions:
    target: str = ""
    count: int | None = None
    deadline: int | None = None
    linger: float = DEFAULT_LINGER
    interval: float = 1.0
    quiet: bool = False
    size: int = 56
    family: int = 0
    device: str | None = None
    timestamps: bool = False  # -D
    outstanding: bool = False  # -O


class PingHost(Protocol):
    """What ping needs from the guest it runs in."""

    @property
    def time_scale(self) -> float: ...

    def interface(self) -> GuestInterface | None: ...
    def gateway(self) -> str | None: ...
    def echo(self, target: str, at: float | None = None) -> float | None: ...
    def resolves(self, target: str) -> bool: ...
    def interrupted(self) -> bool: ...
    def out(self, text: str) -> None: ...
    def err(self, text: str) -> None: ...
    def flush(self) -> None: ...


def getopt(args: list[str], optstring: str, prog: str) -> tuple[list[tuple[str, str]], list[str]]:
    """GNU getopt with argument permutation; errors raise PingExit-style messages via ValueError."""
    takes_arg = {c: optstring[i + 1 : i + 2] == ":" for i, c in enumerate(optstring) if c != ":"}
    opts: list[tuple[str, str]] = []
    operands: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            operands.extend(args[i:])
            break
        if arg.startswith("--"):
            raise ValueError(f"{prog}: unrecognized option '{arg}'\n")
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            continue
        j = 1
        while j < len(arg):
            ch = arg[j]
            j += 1
            if ch not in takes_arg:
                raise ValueError(f"{prog}: invalid option -- '{ch}'\n")
            if not takes_arg[ch]:
                opts.append((ch, ""))
                continue
            if j < len(arg):
                opts.append((ch, arg[j:]))
            elif i < len(args):
                opts.append((ch, args[i]))
                i += 1
            else:
                raise ValueError(f"{prog}: option requires an argument -- '{ch}'\n")
            break
    return opts, operands


def _strtol(value: str, lo: int, hi: int) -> int:
    text = value.lstrip(" \t\n")
    if not _INTEGER.fullmatch(text):
        raise PingExit(1, f"ping: invalid argument: '{value}'\n")
    num = int(text)
    if num < lo or num > hi:
        raise PingExit(1, f"ping: invalid argument: '{value}': out of range: {lo} <= value <= {hi}\n")
    return num


def _strtod(value: str, what: str) -> float:
    try:
        num = float(value)
    except ValueError:
        raise PingExit(2, f"ping: {what}: {value}\n") from None
    if math.isnan(num) or math.isinf(num):
        raise PingExit(2, f"ping: {what}: {value}: Numerical result out of range\n")
    return num


def parse_ping(argv: list[str], *, root: bool) -> PingOptions:
    try:
        opts, operands = getopt(argv[1:], _OPTSTRING, "ping")
    except ValueError as exc:
        raise PingExit(2, str(exc) + USAGE) from None
    o = PingOptions()
    for ch, val in opts:
        if ch in "h?":
            raise PingExit(2, USAGE)
        if ch == "V":
            raise PingExit(0, out=f"ping from iputils {IPUTILS_VERSION}\n")
        if ch in "46":
            fam = int(ch)
            if o.family and o.family != fam:
                raise PingExit(2, "ping: only one -4 or -6 option may be specified\n")
            o.family = fam
        elif ch == "c":
            o.count = _strtol(val, 1, _LONG_MAX)
        elif ch == "w":
            o.deadline = _strtol(val, 0, _INT_MAX) or None
        elif ch == "W":
            linger = _strtod(val, "bad linger time")
            if linger < 0.001 or linger > _INT_MAX / 1000:
                raise PingExit(2, f"ping: bad linger time: {val}\n")
            o.linger = int(linger * 1000) / 1000
        elif ch == "i":
            interval = _strtod(val, "bad timing interval")
            if interval < 0 or interval > _INT_MAX // 1000:
                raise PingExit(2, f"ping: bad timing interval: {val}\n")
            o.interval = int(interval * 1000) / 1000
        elif ch == "f":
            o.interval = 0.0
            o.quiet = True
        elif ch == "q":
            o.quiet = True
        elif ch == "D":
            o.timestamps = True
        elif ch == "O":
            o.outstanding = True
        elif ch == "s":
            o.size = _strtol(val, 0, _INT_MAX)
        elif ch == "t":
            _strtol(val, 0, 255)
        elif ch == "l":
            preload = _strtol(val, 1, 65536)
            if not root and preload > 3:
                raise PingExit(2, f"ping: cannot set preload to value greater than 3: {preload}\n")
        elif ch == "I":
            o.device = val
    if not root and o.interval * 1000 < MIN_USER_INTERVAL_MS:
        raise PingExit(
            2,
            f"ping: cannot flood, minimal interval for user must be >= {MIN_USER_INTERVAL_MS} ms, "
            "use -i 0.002 (or higher)\n",
        )
    if not operands:
        raise PingExit(1, "ping: usage error: Destination address required\n")
    o.target = operands[-1]
    return o


def _fmt_ms(us: int) -> str:
    return f"{us // 1000}.{us % 1000:03d}"


def _fmt_triptime(us: int) -> str:
    if us >= 100000 - 50:
        return f"{(us + 500) // 1000}"
    if us >= 10000 - 5:
        return f"{(us + 50) // 1000}.{((us + 50) % 1000) // 100}"
    if us >= 1000:
        return f"{(us + 5) // 1000}.{((us + 5) % 1000) // 10:02d}"
    return f"{us // 1000}.{us % 1000:03d}"


def timestamp(wall: float) -> str:
    """iputils print_timestamp: ``[<tv_sec>.<tv_usec, 6 digits>] ``."""
    us = int(wall * 1_000_000)
    return f"[{us // 1_000_000}.{us % 1_000_000:06d}] "


_REPLY, _UNREACH = 0, 1


async def run_ping(o: PingOptions, host: PingHost) -> int:
    """Run a parsed ping to completion (or until interrupted); return its exit status."""
    target = o.target
    name = target
    if target == "localhost":
        target = "127.0.0.1"
    try:
        dst = ipaddress.ip_address(target)
    except ValueError:
        raise PingExit(2, f"ping: {name}: Name or service not known\n") from None
    if isinstance(dst, ipaddress.IPv6Address):
        if o.family == 4:
            raise PingExit(2, f"ping: {name}: Address family for hostname not supported\n")
        raise PingExit(2, "ping: connect: Network is unreachable\n")
    if o.family == 6:
        raise PingExit(2, f"ping: {name}: Address family for hostname not supported\n")
    iface = host.interface()
    own = iface.ipv4() if iface is not None else []
    local = dst.is_loopback or any(dst == a.ip for a in own)
    on_link = any(dst in a.network for a in own)
    gateway = host.gateway()
    if not local and (not own or (not on_link and not gateway)):
        raise PingExit(2, "ping: connect: Network is unreachable\n")
    if o.device is not None and o.device not in ("lo", iface.name if iface else "eth0"):
        raise PingExit(2, f"ping: SO_BINDTODEVICE {o.device}: No such device\n")
    src = "127.0.0.1" if dst.is_loopback else (str(own[0].ip) if own else "")
    shown = f"{name} ({dst})" if name != str(dst) else str(dst)
    via = f" from {src} {o.device}:" if o.device else ""
    host.out(f"PING {name} ({dst}){via} {o.size}({o.size + 28}) bytes of data.\n")
    host.flush()

    timing = o.size >= 16
    ttl = 64 if (local or on_link) else 63
    if gateway is not None and str(dst) == gateway:
        ttl = 254
    interval = max(o.interval, 0.001)
    loop = asyncio.get_running_loop()
    start = loop.time()
    scale = host.time_scale
    clock = getattr(host, "clock", None)
    wall0 = clock() if clock is not None else time.time()  # the guest's wall clock at guest time 0

    def stamp(t: float) -> str:
        return timestamp(wall0 + t) if o.timestamps else ""

    received: set[int] = set()
    events: list[tuple[float, int, int, int]] = []  # (guest time, kind, seq, rtt µs)
    ntrans = nrecv = nerr = 0
    rtts: list[int] = []
    pipesize = 1
    next_send = 0.0
    last_send = 0.0
    exit_at: float | None = None
    deadline_at = float(o.deadline) if o.deadline else None
    arp_until: float | None = None
    interrupted_at: float | None = None

    while True:
        can_send = o.count is None or ntrans < o.count or deadline_at is not None
        t_next = min(
            x
            for x in (
                next_send if can_send else None,
                events[0][0] if events else None,
                exit_at,
                deadline_at,
            )
            if x is not None
        )
        if interrupted_at is not None:
            # SIGINT came at guest time `interrupted_at`: whatever was due before it happened (a loop
            # that fell behind real time catches up now), nothing after it does
            if t_next > interrupted_at:
                break
        else:
            delay = start + t_next * scale - loop.time()
            try:
                # A reply due within a millisecond of real time is read without giving the loop a turn:
                # the event loop's timer granularity must not widen the window in which a Ctrl-C
                # catches a request "in flight" beyond what the scaled RTT is.
                if delay > 0.001 or not events or t_next != events[0][0]:
                    await asyncio.sleep(max(0.0, delay))
            except asyncio.CancelledError:
                if not host.interrupted():
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                interrupted_at = (loop.time() - start) / scale
                continue
        t = t_next
        if (deadline_at is not None and t >= deadline_at) or (exit_at is not None and t >= exit_at):
            break
        if events and events[0][0] <= t:
            # everything the socket holds is read in one go (a failed ARP errors all queued packets)
            while events and events[0][0] <= t:
                _, kind, seq, us = heapq.heappop(events)
                pipesize = max(pipesize, ntrans - seq + 1)
                if kind == _REPLY:
                    nrecv += 1
                    rtts.append(us)
                    received.add(seq)
                    if not o.quiet:
                        tail = f" time={_fmt_triptime(us)} ms" if timing else ""
                        host.out(f"{stamp(t)}{o.size + 8} bytes from {shown}: icmp_seq={seq} ttl={ttl}{tail}\n")
                else:
                    nerr += 1
                    if not o.quiet:
                        host.out(f"{stamp(t)}From {src} icmp_seq={seq} Destination Host Unreachable\n")
            host.flush()
        if o.count is not None and nrecv + nerr >= o.count:
            break
        if deadline_at is not None and nerr:
            break
        if can_send and next_send <= t:
            if o.outstanding and ntrans > 0 and ntrans not in received:
                host.out(f"{stamp(t)}no answer yet for icmp_seq={ntrans % MAX_DUP_CHK}\n")
                host.flush()
            ntrans += 1
            seq = ntrans
            last_send = t
            next_send = t + interval
            if local:
                rtt: float | None = 0.015 + random.random() * 0.03
            else:
                rtt = host.echo(str(dst), start + t * scale)
            if rtt is not None:
                us = max(1, round(rtt * 1000))
                heapq.heappush(events, (t + us / 1e6, _REPLY, seq, us))
            elif (on_link or gateway) and (
                (arp_until is not None and t < arp_until) or not host.resolves(str(dst) if on_link else str(gateway))
            ):
                # the kernel's neighbour resolution failed (the target on link, else the gateway)
                if arp_until is None or t >= arp_until:
                    arp_until = t + ARP_RESOLVE_SECONDS + 0.001
                heapq.heappush(events, (arp_until, _UNREACH, seq, 0))
            if o.count is not None and ntrans >= o.count and deadline_at is None and exit_at is None:
                # iputils: two max RTTs (at least one interval) after a reply, else the linger time
                exit_at = t + (max(2 * max(rtts) / 1e6, interval) if nrecv else o.linger)

    ack = getattr(host, "acknowledge_interrupt", None)
    if interrupted_at is not None and ack is not None:
        ack()  # the ^C echo follows what was printed before it
    host.out(f"\n--- {name} ping statistics ---\n")
    line = f"{ntrans} packets transmitted, {nrecv} received"
    if nerr:
        line += f", +{nerr} errors"
    if ntrans:
        loss = (ntrans - nrecv) * 100.0 / ntrans
        elapsed = round(last_send * 1000) + (ntrans - 1 if ntrans > 1 else 0)
        line += f", {loss:g}% packet loss, time {elapsed}ms"
    host.out(line + "\n")
    comma = ""
    tail = ""
    if nrecv and timing:
        total = len(rtts)
        tsum = sum(rtts)
        tsum2 = sum(x * x for x in rtts)
        tmavg = tsum // total
        tmdev = math.isqrt(max(0, tsum2 // total - tmavg * tmavg))
        tail += f"rtt min/avg/max/mdev = {_fmt_ms(min(rtts))}/{_fmt_ms(tmavg)}/{_fmt_ms(max(rtts))}/{_fmt_ms(tmdev)} ms"
        comma = ", "
    if pipesize > 1:
        tail += f"{comma}pipe {pipesize}"
    host.out(tail + "\n")
    host.flush()
    if not nrecv or (o.deadline and o.count is not None and nrecv < o.count):
        return 1
    return 0
