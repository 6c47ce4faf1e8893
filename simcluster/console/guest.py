"""The emulated guest behind a VM's serial console: a Fedora Linux 41 Cloud image on ttyS0.

``GuestTerminal`` is a pure asyncio component: bytes typed by the user go into :meth:`feed`,
everything the guest prints leaves through the ``write`` callable. It models three layers the way
a real serial console stacks them:

* the kernel tty in canonical mode (echo, erase, ``^C``, type-ahead buffered while a program runs);
* agetty and login (issue banner, ``<host> login:``, ``Password:``, ``Login incorrect``);
* bash with readline (prompt, quoting, ``$?``, lists) running a handful of commands, ``ip`` and
  ``ping`` among them, over a :class:`GuestNetwork` supplied by the simulator.

No task exists while the guest is idle; a command that takes time (``ping``, ``sleep``, a failed
login's delay) runs as one task, so hundreds of guests share a loop cheaply.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from . import fedora
from .iproute import IpView, Neighbour, ip_command
from .net import GuestInterface, GuestNetwork, ovn_mac
from .ping import PingExit, parse_ping, run_ping
from .shell import Command, Incomplete, ShellSyntaxError, Unsupported, parse, split_list

__all__ = ["GuestConfig", "GuestInterface", "GuestNetwork", "GuestTerminal"]

Writer = Callable[[bytes], None]

_LOGIN, _SECRET, _SHELL = 0, 1, 2
_FAIL_DELAY = 2.0  # pam_faildelay on Fedora: two seconds before "Login incorrect"
_LOGIN_RETRIES = 3
_LEASE = 3500  # OVN-K's DHCP lease_time for VMs (kubevirt/dhcp.go)
_CLEAR = "\x1b[H\x1b[2J\x1b[3J"


@dataclass(slots=True)
class GuestConfig:
    hostname: str  # the VMI name's first DNS label: "<hostname> login: "
    username: str = "fedora"
    password: str = "fedora"
    time_scale: float = 1.0  # multiplies every real sleep; printed times stay guest times
    boot_banner: bool = True


@dataclass(slots=True)
class _Shell:
    user: str
    login: bool  # a login shell: "-bash" in messages, "logout" on exit
    cwd: str

    @property
    def root(self) -> bool:
        return self.user == "root"

    @property
    def home(self) -> str:
        return "/root" if self.root else f"/home/{self.user}"


class _Proc:
    """One running command: where its stdout/stderr go, and the guest services ping needs."""

    __slots__ = ("root", "stderr", "stdout", "term")

    def __init__(self, term: GuestTerminal, stdout: str, stderr: str, root: bool) -> None:
        self.term = term
        self.stdout = stdout
        self.stderr = stderr
        self.root = root

    @property
    def time_scale(self) -> float:
        return self.term._cfg.time_scale

    def out(self, text: str) -> None:
        if self.stdout == "tty":
            self.term._out(text)

    def err(self, text: str) -> None:
        if self.stderr == "tty":
            self.term._out(text)

    def flush(self) -> None:
        self.term._flush()

    def interface(self) -> GuestInterface | None:
        return self.term._iface()

    def gateway(self) -> str | None:
        return self.term._gateway()

    def echo(self, target: str, at: float | None = None) -> float | None:
        return self.term._echo(target, at)

    def clock(self) -> float:
        """The guest's wall clock (Unix seconds): see :meth:`GuestTerminal.clock`."""
        return self.term.clock()

    def resolves(self, target: str) -> bool:
        return self.term._resolves(target)

    def interrupted(self) -> bool:
        """A job is only ever cancelled for SIGINT (Ctrl-C) or because the guest stopped."""
        return not self.term.closed

    def acknowledge_interrupt(self) -> None:
        """The program has written what came before the SIGINT: the typed ^C is echoed now."""
        self.term._ack_interrupt()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) * self.term._cfg.time_scale)


CommandResult = int | Coroutine[Any, Any, int] | None  # None: the command took over the terminal
Handler = Callable[["GuestTerminal", _Proc, list[str]], CommandResult]


class GuestTerminal:
    """The guest side of one VM's serial port. The state survives console sessions."""

    __slots__ = (
        "_boot",
        "_boot_wall",
        "_cfg",
        "_cols",
        "_cont",
        "_echo_on",
        "_esc",
        "_failures",
        "_intr_echo",
        "_job",
        "_job_started",
        "_last_iface",
        "_last_login",
        "_line",
        "_mode",
        "_neigh",
        "_net",
        "_obuf",
        "_pending",
        "_rows",
        "_secret_cb",
        "_shells",
        "_sigint",
        "_status",
        "_stop_list",
        "_vars",
        "_write",
        "closed",
    )

    def __init__(self, config: GuestConfig, network: GuestNetwork, write: Writer | None = None) -> None:
        self._cfg = config
        self._net = network
        self._write = write
        self._obuf = bytearray()
        self._pending = bytearray()  # type-ahead the kernel holds until a reader asks
        self._line = bytearray()
        self._job: asyncio.Task[None] | None = None
        self._job_started = False
        self._sigint = False
        self._intr_echo = False  # a ^C whose echo waits until the job took the signal
        self._esc = 0
        self._echo_on = True
        self._cols, self._rows = 80, 24
        self._mode = _LOGIN
        self._secret_cb: tuple[Callable[[str], None], Callable[[], None]] | None = None
        self._shells: list[_Shell] = []
        self._status = 0
        self._cont = ""
        self._stop_list = False
        self._vars: dict[str, str] = {}
        self._neigh: dict[str, Neighbour] = {}
        self._failures = 0
        self._last_login: float | None = None
        self._last_iface: GuestInterface | None = None
        self._boot = time.monotonic()
        self._boot_wall = time.time()
        self.closed = False
        if config.boot_banner:
            self._out(fedora.ISSUE)
        self._out(f"{config.hostname} login: ")
        self._flush()

    # ------------------------------------------------------------------ public API

    @property
    def logged_in(self) -> bool:
        return self._mode == _SHELL or bool(self._shells)

    def clock(self) -> float:
        """The guest's wall clock in Unix seconds: the host's wall time when this guest came up, plus
        the guest seconds since then. Guest time runs ``1 / time_scale`` times faster than real time
        (every guest sleep is scaled down), so its clock stays consistent with the intervals it prints."""
        return self._boot_wall + (time.monotonic() - self._boot) / max(self._cfg.time_scale, 1e-9)

    @property
    def busy(self) -> bool:
        """A program is running (typed input is being buffered)."""
        return self._job is not None

    def attach(self, write: Writer) -> None:
        """A new console session: output goes to ``write`` from now on (nothing is replayed)."""
        self._write = write

    def detach(self) -> None:
        """The console session ended; the guest keeps running and its output is lost."""
        self._write = None

    async def feed(self, data: bytes) -> None:
        """Bytes typed by the user, in any chunking."""
        if self.closed or not data:
            return
        if self._job is not None:
            self._tty_input(data)
        else:
            used = self._read(data)
            if used < len(data):
                self._tty_input(data[used:])
        self._flush()

    async def wait_idle(self) -> None:
        """Wait until no program runs (type-ahead included). For tests and orderly shutdown."""
        while self._job is not None:
            await asyncio.wait({self._job})

    def close(self) -> None:
        """The VM stopped: cancel what runs, drop the writer."""
        self.closed = True
        self._write = None
        if self._job is not None:
            self._job.cancel()

    # ------------------------------------------------------------------ output

    def _out(self, text: str) -> None:
        """Program output through the tty: ONLCR turns "\\n" into "\\r\\n"."""
        self._obuf += text.replace("\n", "\r\n").encode()

    def _raw(self, data: bytes) -> None:
        self._obuf += data

    def _flush(self) -> None:
        if not self._obuf:
            return
        data = bytes(self._obuf)
        self._obuf.clear()
        write = self._write
        if write is None:
            return
        try:
            write(data)
        except Exception:  # a broken session must not take the guest down
            self._write = None

    # ------------------------------------------------------------------ tty layer

    def _tty_input(self, data: bytes) -> None:
        """Input arriving while a program runs: the canonical line discipline echoes and queues it."""
        echo = self._echo_on
        for b in data:
            if b == 0x03:  # VINTR
                if echo and self._job is not None and not self._sigint:
                    # echoed when the job takes the signal: a program whose loop fell behind real time
                    # first prints what happened before the ^C (see _ack_interrupt)
                    self._intr_echo = True
                elif echo:
                    self._raw(b"^C")
                self._pending.clear()
                self._interrupt()
            elif b in (0x7F, 0x08):  # VERASE
                if self._pending and self._pending[-1] not in (10, 13):
                    del self._pending[-1]
                    while self._pending and 0x80 <= self._pending[-1] < 0xC0:
                        del self._pending[-1]
                    if echo:
                        self._raw(b"\b \b")
            elif b == 0x15:  # VKILL
                while self._pending and self._pending[-1] not in (10, 13):
                    del self._pending[-1]
                    if echo:
                        self._raw(b"\b \b")
            elif b in (10, 13):
                self._pending.append(b)
                if echo:
                    self._raw(b"\r\n")
            elif b == 0x04:  # VEOF
                self._pending.append(b)
            elif b < 0x20 and b != 9:
                self._pending.append(b)
                if echo:
                    self._raw(b"^" + bytes([b + 0x40]))
            else:
                self._pending.append(b)
                if echo:
                    self._raw(bytes([b]))

    def _interrupt(self) -> None:
        """SIGINT to the foreground job: at once, or (for a job created in this very turn) on the
        next loop turn, once it has started and entered its handlers."""
        job = self._job
        if job is not None and not self._sigint:
            self._sigint = True
            if self._job_started:
                job.cancel()
            else:
                asyncio.get_running_loop().call_soon(self._deliver_sigint, job)

    def _ack_interrupt(self) -> None:
        """The foreground job took SIGINT: the ^C typed for it is echoed now."""
        if self._intr_echo:
            self._intr_echo = False
            self._raw(b"^C")

    def _deliver_sigint(self, job: asyncio.Task[None]) -> None:
        if self._job is job and not job.done():
            job.cancel()

    def _read(self, data: bytes | bytearray) -> int:
        """Hand bytes to whoever reads the tty now; stop when a program starts. Return bytes used."""
        i = 0
        n = len(data)
        while i < n and self._job is None and not self.closed:
            b = data[i]
            i += 1
            if self._esc:
                self._escape(b)
            elif self._mode == _SHELL:
                self._readline(b)
            elif self._mode == _LOGIN:
                self._getty(b)
            else:
                self._secret(b)
        return i

    def _escape(self, b: int) -> None:
        """Swallow an escape sequence (arrow keys and the like)."""
        if self._esc == 1:
            self._esc = 2 if b == 0x5B else 3 if b == 0x4F else 0
        elif self._esc == 3 or 0x40 <= b <= 0x7E:
            self._esc = 0

    def _erase(self) -> None:
        if not self._line:
            return
        del self._line[-1]
        while self._line and 0x80 <= self._line[-1] < 0xC0:
            del self._line[-1]
        if self._echo_on:
            self._raw(b"\b \b")

    def _edit(self, b: int) -> bool:
        """Line editing shared by agetty and readline; True when the byte was handled."""
        if b in (0x7F, 0x08):
            self._erase()
        elif b == 0x15:
            while self._line:
                self._erase()
        elif b == 0x17:
            while self._line and self._line[-1] == 0x20:
                self._erase()
            while self._line and self._line[-1] != 0x20:
                self._erase()
        elif b == 0x1B:
            self._esc = 1
        elif b < 0x20 or b == 0x7F:
            pass  # other control characters: ignored (tab completion is not emulated)
        else:
            self._line.append(b)
            if self._echo_on:
                self._raw(bytes([b]))
        return True

    # ------------------------------------------------------------------ agetty / login

    def _login_prompt(self, banner: bool = False) -> None:
        self._mode = _LOGIN
        self._line.clear()
        if banner and self._cfg.boot_banner:
            self._out(fedora.ISSUE)
        self._out(f"{self._cfg.hostname} login: ")

    def _getty(self, b: int) -> None:
        if b in (10, 13):
            name = self._line.decode("utf-8", "replace").strip()
            self._line.clear()
            self._raw(b"\r\n")
            if not name:
                self._out(f"{self._cfg.hostname} login: ")
                return
            self._out("Password: ")
            self._ask_secret(lambda pw: self._check_login(name, pw), lambda: self._login_prompt())
        elif b == 0x03:
            self._line.clear()
            self._raw(b"^C\r\n")
            self._out(f"{self._cfg.hostname} login: ")
        elif b == 0x04:
            pass
        else:
            self._edit(b)

    def _ask_secret(self, done: Callable[[str], None], interrupted: Callable[[], None]) -> None:
        self._mode = _SECRET
        self._line.clear()
        self._secret_cb = (done, interrupted)

    def _secret(self, b: int) -> None:
        assert self._secret_cb is not None
        done, interrupted = self._secret_cb
        if b in (10, 13):
            secret = self._line.decode("utf-8", "replace")
            self._line.clear()
            self._secret_cb = None
            self._raw(b"\r\n")
            done(secret)
        elif b == 0x03:
            self._line.clear()
            self._secret_cb = None
            self._raw(b"^C\r\n")
            interrupted()
        elif b in (0x7F, 0x08):
            if self._line:
                del self._line[-1]
        elif b == 0x15:
            self._line.clear()
        elif b >= 0x20:
            self._line.append(b)

    def _check_login(self, name: str, password: str) -> None:
        if name == self._cfg.username and password == self._cfg.password:
            self._failures = 0
            if self._last_login is not None:
                stamp = time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(self._last_login))
                self._out(f"Last login: {stamp} on {fedora.TTY}\n")
            self._last_login = time.time()
            self._shells = [_Shell(name, True, f"/home/{name}")]
            self._mode = _SHELL
            self._status = 0
            self._prompt()
            return
        self._failures += 1
        self._mode = _LOGIN  # login sleeps; what is typed meanwhile waits in the tty
        self._start(self._login_failed())

    async def _login_failed(self) -> None:
        try:
            await asyncio.sleep(_FAIL_DELAY * self._cfg.time_scale)
        except asyncio.CancelledError:
            if self.closed:
                raise
            self._raw(b"\r\n")
            self._failures = 0
            self._login_prompt(banner=True)
            return
        if self._failures >= _LOGIN_RETRIES:
            self._failures = 0
            self._out("Login incorrect\n")
            self._login_prompt(banner=True)
        else:
            self._out("Login incorrect\n\n")
            self._login_prompt()

    # ------------------------------------------------------------------ bash / readline

    @property
    def _sh(self) -> _Shell:
        return self._shells[-1]

    def _prompt(self) -> None:
        if self._mode != _SHELL or not self._shells:
            return
        if self._cont:
            self._out("> ")
            return
        sh = self._sh
        where = "~" if sh.cwd == sh.home else (sh.cwd.rstrip("/").rsplit("/", 1)[-1] or "/")
        self._out(f"[{sh.user}@{self._cfg.hostname} {where}]{'#' if sh.root else '$'} ")

    def _bash(self) -> str:
        return "-bash" if self._sh.login else "bash"

    def _readline(self, b: int) -> None:
        if b in (10, 13):
            if self._echo_on:
                self._raw(b"\r\n")
            line = self._line.decode("utf-8", "replace")
            self._line.clear()
            self._submit(line)
        elif b == 0x03:
            self._line.clear()
            self._cont = ""
            self._raw(b"^C\r\n" if self._echo_on else b"\r\n")
            self._status = 130
            self._prompt()
        elif b == 0x04:
            if not self._line and not self._cont:
                self._exit_shell(self._status)
                self._stop_list = False
                self._prompt()
        elif b == 0x0C:
            self._out(_CLEAR)
            self._prompt()
            if self._echo_on:
                self._raw(bytes(self._line))
        else:
            self._edit(b)

    def _env(self) -> dict[str, str]:
        sh = self._sh
        env = {
            "?": str(self._status),
            "$": str(1000 + len(self._shells) * 97),
            "#": "0",
            "0": self._bash(),
            "-": "himBHs",
            "!": "",
            "HOSTNAME": self._cfg.hostname,
            "USER": sh.user,
            "LOGNAME": sh.user,
            "HOME": sh.home,
            "PWD": sh.cwd,
            "SHELL": "/bin/bash",
            "TERM": "vt220",
            "UID": "0" if sh.root else "1000",
            "EUID": "0" if sh.root else "1000",
            "LINES": str(self._rows),
            "COLUMNS": str(self._cols),
            "PATH": "/root/.local/bin:/root/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
            if sh.root
            else f"/home/{sh.user}/.local/bin:/home/{sh.user}/bin:/usr/local/bin:/usr/bin",
        }
        env.update(self._vars)
        return env

    def _submit(self, line: str) -> None:
        if self._cont:
            line = self._cont + "\n" + line
            self._cont = ""
        try:
            commands = parse(line, self._env())  # syntax is checked before anything runs
        except Incomplete:
            self._cont = line
            self._prompt()
            return
        except ShellSyntaxError as exc:
            self._out(f"{self._bash()}: syntax error near unexpected token `{exc.token}'\n")
            self._status = 2
            self._prompt()
            return
        except Unsupported as exc:
            self._out(f"{self._bash()}: {exc}: not supported on this console\n")
            self._status = 2
            self._prompt()
            return
        if commands:
            self._run_list(split_list(line), 0)
        else:
            self._prompt()

    def _skip(self, connector: str) -> bool:
        return (connector == "&&" and self._status != 0) or (connector == "||" and self._status == 0)

    def _run_text(self, text: str) -> CommandResult:
        """Expand and run one simple command of a list, now (so it sees the current $?)."""
        commands = parse(text, self._env())
        return self._run(commands[0]) if commands else 0

    def _run_list(self, commands: list[tuple[str, str]], i: int) -> None:
        while i < len(commands):
            connector, text = commands[i]
            i += 1
            if self._skip(connector):
                continue
            result = self._run_text(text)
            if result is None:
                return  # the command took over the terminal (a password prompt)
            if not isinstance(result, int):
                self._start(self._run_list_async(result, commands, i))
                return
            self._status = result
            if self._stop_list:
                break
        self._stop_list = False
        self._prompt()

    async def _run_list_async(self, first: Coroutine[Any, Any, int], commands: list[tuple[str, str]], i: int) -> None:
        pending: Coroutine[Any, Any, int] | None = first
        killed = False
        while True:
            if pending is not None:
                try:
                    self._status = await pending
                except asyncio.CancelledError:
                    if self.closed:
                        raise
                    task = asyncio.current_task()
                    if task is not None:
                        task.uncancel()
                    self._status = 130
                    killed = True
                    break
                finally:
                    pending = None
                    self._ack_interrupt()
                self._sigint = False
            if self._stop_list or i >= len(commands):
                break
            connector, text = commands[i]
            i += 1
            if self._skip(connector):
                continue
            result = self._run_text(text)
            if result is None:
                return
            if isinstance(result, int):
                self._status = result
            else:
                pending = result
        self._stop_list = False
        if killed:
            self._out("\n")  # bash starts a fresh line after a job killed by SIGINT
        self._prompt()

    def _run(self, cmd: Command, *, as_root: bool = False) -> CommandResult:
        if not cmd.argv:
            self._vars.update(cmd.assignments)
            return 0
        proc = _Proc(self, cmd.stdout, cmd.stderr, as_root or self._sh.root)
        name = cmd.argv[0]
        handler = _COMMANDS.get(name)
        if handler is None:
            if "/" in name:
                proc.err(f"{self._bash()}: {name}: No such file or directory\n")
            else:
                proc.err(f"{self._bash()}: {name}: command not found\n")
            return 127
        if cmd.stdin_file is not None and cmd.stdin_file != "/dev/null":
            proc.err(f"{self._bash()}: {cmd.stdin_file}: No such file or directory\n")
            return 1
        return handler(self, proc, cmd.argv)

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        self._sigint = False
        self._job_started = False
        self._job = asyncio.get_running_loop().create_task(self._job_main(coro))

    async def _job_main(self, coro: Coroutine[Any, Any, None]) -> None:
        self._job_started = True
        try:
            await coro
        except asyncio.CancelledError:
            if self.closed:
                raise
        except Exception as exc:  # a bug in a command must not wedge the console
            self._out(f"{self._bash() if self._shells else 'bash'}: internal error: {exc!r}\n")
            self._prompt()
        finally:
            self._ack_interrupt()
            self._job = None
            self._sigint = False
        if self.closed:
            return
        # Whatever was typed meanwhile is read now (readline echoes it again, as bash does).
        pending = self._pending
        self._pending = bytearray()
        used = self._read(pending)
        if used < len(pending):
            self._pending = pending[used:] + self._pending
        self._flush()

    def _exit_shell(self, status: int) -> None:
        sh = self._shells.pop()
        self._stop_list = True
        self._out("logout\n" if sh.login else "exit\n")
        if self._shells:
            self._status = status
            return
        # The login shell ended: systemd starts a new agetty, which resets the tty.
        self._echo_on = True
        self._cols, self._rows = 80, 24
        self._vars.clear()
        self._cont = ""
        self._status = 0
        self._login_prompt(banner=True)

    def _push_shell(self, user: str, login: bool) -> None:
        cwd = ("/root" if user == "root" else f"/home/{user}") if login else self._sh.cwd
        self._shells.append(_Shell(user, login, cwd))
        self._status = 0

    # ------------------------------------------------------------------ network services

    def _iface(self) -> GuestInterface | None:
        iface = self._net.interface()
        if iface is not None:
            self._last_iface = iface
        return iface

    def _gateway(self) -> str | None:
        iface = self._net.interface()
        if iface is not None and iface.gateway:
            return iface.gateway
        return self._net.default_gateway()

    def _echo(self, target: str, at: float | None = None) -> float | None:
        """One echo; `at` is the loop time the program scheduled the send for (a network that offers
        ``echo_at`` judges the packet by it rather than by when the loop ran the send)."""
        echo_at = getattr(self._net, "echo_at", None)
        rtt = echo_at(target, at) if echo_at is not None and at is not None else self._net.echo(target)
        if rtt is not None:
            self._learn(target, "REACHABLE")
        return rtt

    def _learn(self, ip: str, state: str) -> None:
        iface = self._net.interface()
        if iface is None:
            return
        on_link = any(ip_in(ip, a) for a in iface.ipv4())
        gw = self._gateway()
        if not on_link and gw is not None:
            ip, state = gw, "REACHABLE"
        if not on_link and gw is None:
            return
        self._neigh[ip] = Neighbour(ip, state, None if state == "FAILED" else ovn_mac(ip))
        if len(self._neigh) > 64:
            self._neigh.pop(next(iter(self._neigh)))

    def _resolves(self, target: str) -> bool:
        known = self._neigh.get(target)
        if known is not None and known.state == "REACHABLE":
            return True
        probe = getattr(self._net, "resolves", None)
        ok = bool(probe(target)) if probe is not None else any(self._net.echo(target) is not None for _ in "12")
        self._learn(target, "REACHABLE" if ok else "FAILED")
        return ok

    def _ip_view(self, root: bool) -> IpView:
        iface = self._iface()
        known = iface or self._last_iface
        mac = known.mac if known is not None else _mac_for(self._cfg.hostname)
        lease_left = _LEASE - int(time.monotonic() - self._boot) % (_LEASE // 2)
        neighbours = list(self._neigh.values())
        gw = self._gateway() if iface is not None else None
        if gw is not None and gw not in self._neigh:
            neighbours.insert(0, Neighbour(gw, "STALE", ovn_mac(gw)))
        return IpView(
            iface=iface,
            mac=mac,
            ifname=known.name if known is not None else "eth0",
            mtu=known.mtu if known is not None else 1400,
            lease_left=lease_left,
            neighbours=neighbours,
            gateway=gw,
            uid=0 if root else 1000,
        )


def ip_in(ip: str, net: ipaddress.IPv4Interface) -> bool:
    try:
        return ipaddress.ip_address(ip) in net.network
    except ValueError:
        return False


def _mac_for(name: str) -> str:
    h = 0
    for ch in name.encode():
        h = (h * 131 + ch) & 0xFFFFFFFF
    return "02:00:" + ":".join(f"{(h >> s) & 0xFF:02x}" for s in (24, 16, 8, 0))


# ---------------------------------------------------------------------- commands


def _cmd_echo(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    args = argv[1:]
    newline = True
    escapes = False
    while args and len(args[0]) > 1 and args[0][0] == "-" and set(args[0][1:]) <= set("neE"):
        flags = args.pop(0)[1:]
        newline = newline and "n" not in flags
        for f in flags:
            if f in "eE":
                escapes = f == "e"
    text = " ".join(args)
    if escapes:
        text = (
            text.replace("\\\\", "\0")
            .replace("\\n", "\n")
            .replace("\\t", "\t")
            .replace("\\r", "\r")
            .replace("\\a", "\a")
            .replace("\0", "\\")
        )
    p.out(text + ("\n" if newline else ""))
    return 0


def _cmd_true(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    return 0


def _cmd_false(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    return 1


def _cmd_hostname(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    args = argv[1:]
    if not args or args in (["-s"], ["-f"], ["--short"], ["--fqdn"]):
        p.out(t._cfg.hostname + "\n")
        return 0
    if args in (["-I"], ["--all-ip-addresses"], ["-i"], ["--ip-address"]):
        iface = t._iface()
        addrs = [str(a.ip) for a in iface.ipv4()] if iface else []
        if args[0] in ("-i", "--ip-address"):
            p.out(" ".join(addrs or ["127.0.0.1"]) + "\n")
        else:
            p.out("".join(a + " " for a in addrs) + "\n")
        return 0
    if not p.root:
        p.err("hostname: you must be root to change the host name\n")
        return 1
    t._cfg.hostname = args[-1].split(".")[0]
    return 0


def _cmd_whoami(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    p.out(("root" if p.root else t._sh.user) + "\n")
    return 0


def _cmd_id(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    if p.root:
        ident = "uid=0(root) gid=0(root) groups=0(root)"
    else:
        u = t._sh.user
        ident = f"uid=1000({u}) gid=1000({u}) groups=1000({u}),4(adm),10(wheel),190(systemd-journal)"
    if len(argv) > 1 and argv[1] == "-u":
        p.out(("0" if p.root else "1000") + "\n")
        return 0
    if len(argv) > 1 and argv[1] in ("-un", "-nu"):
        p.out(("root" if p.root else t._sh.user) + "\n")
        return 0
    p.out(f"{ident} context={fedora.SELINUX_CONTEXT}\n")
    return 0


def _cmd_uname(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    fields = {
        "s": "Linux",
        "n": t._cfg.hostname,
        "r": fedora.KERNEL_RELEASE,
        "v": fedora.KERNEL_VERSION,
        "m": "x86_64",
        "p": "unknown",
        "i": "unknown",
        "o": "GNU/Linux",
    }
    wanted: list[str] = []
    for arg in argv[1:]:
        if arg in ("-a", "--all"):
            wanted = ["s", "n", "r", "v", "m", "o"]
            break
        if not arg.startswith("-") or not set(arg[1:]) <= set(fields):
            p.err(f"uname: invalid option -- '{arg.lstrip('-')[:1]}'\nTry 'uname --help' for more information.\n")
            return 1
        wanted.extend(arg[1:])
    order = [k for k in "snrvmpio" if k in wanted] or ["s"]
    p.out(" ".join(fields[k] for k in order) + "\n")
    return 0


_FILES = {
    "/etc/os-release": fedora.OS_RELEASE,
    "/usr/lib/os-release": fedora.OS_RELEASE,
    "/etc/fedora-release": "Fedora release 41 (Forty One)\n",
    "/etc/redhat-release": "Fedora release 41 (Forty One)\n",
    "/etc/system-release": "Fedora release 41 (Forty One)\n",
}


def _cmd_cat(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    status = 0
    for path in argv[1:]:
        if path == "/etc/hostname":
            p.out(t._cfg.hostname + "\n")
        elif path in _FILES:
            p.out(_FILES[path])
        elif path == "/proc/sys/kernel/hostname":
            p.out(t._cfg.hostname + "\n")
        else:
            p.err(f"cat: {path}: No such file or directory\n")
            status = 1
    return status


def _cmd_stty(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    args = argv[1:]
    if not args:
        p.out("speed 115200 baud; line = 0;\n" + ("" if t._echo_on else "-echo\n"))
        return 0
    if args == ["size"]:
        p.out(f"{t._rows} {t._cols}\n")
        return 0
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg in ("cols", "columns", "rows"):
            if i >= len(args):
                p.err(f"stty: missing argument to '{arg}'\nTry 'stty --help' for more information.\n")
                return 1
            value = args[i]
            i += 1
            if not value.isdigit():
                p.err(f"stty: invalid integer argument: '{value}'\n")
                return 1
            if arg == "rows":
                t._rows = int(value)
            else:
                t._cols = int(value)
        elif arg == "echo":
            t._echo_on = True
        elif arg == "-echo":
            t._echo_on = False
        elif arg in ("sane", "cooked", "-raw"):
            t._echo_on = True
        elif arg.lstrip("-") in ("icanon", "isig", "icrnl", "onlcr", "opost", "ixon", "echoe", "echok", "echoctl"):
            pass
        elif arg in ("-a", "--all", "-g", "--save"):
            p.out(
                f"speed 115200 baud; rows {t._rows}; columns {t._cols}; line = 0;\n"
                f"{'echo' if t._echo_on else '-echo'} echoe echok -echonl echoctl icanon isig\n"
            )
        else:
            p.err(f"stty: invalid argument '{arg}'\nTry 'stty --help' for more information.\n")
            return 1
    return 0


def _cmd_dmesg(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    args = argv[1:]
    if args and (args[0] in ("-n", "--console-level") or args[0].startswith("-n")):
        level = args[0][2:] if len(args[0]) > 2 and args[0].startswith("-n") else (args[1] if len(args) > 1 else "")
        if not level:
            p.err("dmesg: option requires an argument -- 'n'\nTry 'dmesg --help' for more information.\n")
            return 1
        if not p.root:
            p.err("dmesg: klogctl failed: Operation not permitted\n")
            return 1
        valid = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
        if not (level.isdigit() and 1 <= int(level) <= 8) and level not in valid:
            p.err(f"dmesg: unknown level '{level}'\n")
            return 1
        return 0
    if not p.root:
        p.err("dmesg: read kernel buffer failed: Operation not permitted\n")
        return 1
    p.out(fedora.DMESG.replace("{hostname}", t._cfg.hostname))
    return 0


def _cmd_clear(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    p.out(_CLEAR)
    return 0


def _cmd_pwd(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    p.out(t._sh.cwd + "\n")
    return 0


_DIRS = ("/", "/root", "/home", "/etc", "/tmp", "/usr", "/var", "/proc", "/sys", "/dev", "/boot", "/run")


def _cmd_cd(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    sh = t._sh
    target = argv[1] if len(argv) > 1 else sh.home
    if target == "-":
        target = sh.cwd
    if not target.startswith("/"):
        target = sh.cwd.rstrip("/") + "/" + target
    parts: list[str] = []
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    path = "/" + "/".join(parts)
    if path not in _DIRS and path != sh.home and not path.startswith("/home/"):
        p.err(f"{t._bash()}: cd: {argv[1]}: No such file or directory\n")
        return 1
    if path == "/root" and not p.root:
        p.err(f"{t._bash()}: cd: {argv[1]}: Permission denied\n")
        return 1
    sh.cwd = path
    return 0


def _cmd_ls(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    return 0


def _cmd_date(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    p.out(time.strftime("%a %b %e %H:%M:%S %Z %Y") + "\n")
    return 0


def _cmd_sleep(t: GuestTerminal, p: _Proc, argv: list[str]) -> CommandResult:
    if len(argv) < 2:
        p.err("sleep: missing operand\nTry 'sleep --help' for more information.\n")
        return 1
    total = 0.0
    for arg in argv[1:]:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(arg[-1:])
        number = arg[:-1] if unit else arg
        try:
            total += float(number) * (unit or 1)
        except ValueError:
            p.err(f"sleep: invalid time interval '{arg}'\nTry 'sleep --help' for more information.\n")
            return 1

    async def run() -> int:
        await p.sleep(total)
        return 0

    return run()


def _cmd_ip(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    result = ip_command(argv, t._ip_view(p.root))
    if result.out:
        p.out(result.out)
    if result.err:
        p.err(result.err)
    return result.status


def _cmd_ping(t: GuestTerminal, p: _Proc, argv: list[str]) -> CommandResult:
    try:
        opts = parse_ping(argv, root=p.root)
    except PingExit as exc:
        p.out(exc.out)
        p.err(exc.err)
        return exc.status

    async def run() -> int:
        try:
            return await run_ping(opts, p)
        except PingExit as exc:
            p.err(exc.err)
            return exc.status

    return run()


def _cmd_exit(t: GuestTerminal, p: _Proc, argv: list[str]) -> int:
    status = t._status
    if len(argv) > 1:
        try:
            status = int(argv[1]) & 0xFF
        except ValueError:
            p.err(f"{t._bash()}: exit: {argv[1]}: numeric argument required\n")
            status = 2
    if argv[0] == "logout" and not t._sh.login:
        p.err(f"{t._bash()}: logout: not login shell: use `exit'\n")
        return 1
    t._exit_shell(status)
    return status


def _cmd_sudo(t: GuestTerminal, p: _Proc, argv: list[str]) -> CommandResult:
    args = argv[1:]
    while args and args[0] in ("-E", "-n", "-H", "-k", "-S", "--preserve-env"):
        args.pop(0)
    if not args:
        p.err(
            "usage: sudo -h | -K | -k | -V\nusage: sudo [-AbEHknPS] [-u user] [VAR=value] [-i | -s] [command [arg ...]]\n"
        )
        return 1
    if args[0] == "-i" and len(args) == 1:
        t._push_shell("root", login=True)
        return 0
    if args[0] == "-s" and len(args) == 1:
        t._push_shell("root", login=False)
        return 0
    if args[0] in ("-i", "-s"):
        args = args[1:]
    if args[0] == "su":
        rest = args[1:]
        login = bool(rest) and rest[0] in ("-", "-l", "--login")
        if login:
            rest = rest[1:]
        user = rest[0] if rest else "root"
        if user not in ("root", t._cfg.username):
            p.err(f"su: user {user} does not exist or the user entry does not contain all the required fields\n")
            return 1
        t._push_shell(user, login=login)
        return 0
    if args[0] not in _COMMANDS:
        p.err(f"sudo: {args[0]}: command not found\n")
        return 1
    return t._run(Command(";", args, stdout=p.stdout, stderr=p.stderr), as_root=True)


def _cmd_su(t: GuestTerminal, p: _Proc, argv: list[str]) -> CommandResult:
    rest = argv[1:]
    login = bool(rest) and rest[0] in ("-", "-l", "--login")
    if login:
        rest = rest[1:]
    user = rest[0] if rest else "root"
    if p.root:
        t._push_shell(user, login=login)
        return 0
    p.out("Password: ")

    def done(_secret: str) -> None:
        t._mode = _SHELL
        t._start(failed())

    def interrupted() -> None:
        t._mode = _SHELL
        t._status = 1
        t._prompt()

    async def failed() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(_FAIL_DELAY * t._cfg.time_scale)
        t._out("su: Authentication failure\n")
        t._status = 1
        t._prompt()

    t._ask_secret(done, interrupted)
    return None


_COMMANDS: dict[str, Handler] = {
    "echo": _cmd_echo,
    "true": _cmd_true,
    ":": _cmd_true,
    "false": _cmd_false,
    "hostname": _cmd_hostname,
    "whoami": _cmd_whoami,
    "id": _cmd_id,
    "uname": _cmd_uname,
    "cat": _cmd_cat,
    "stty": _cmd_stty,
    "dmesg": _cmd_dmesg,
    "clear": _cmd_clear,
    "pwd": _cmd_pwd,
    "cd": _cmd_cd,
    "ls": _cmd_ls,
    "date": _cmd_date,
    "sleep": _cmd_sleep,
    "ip": _cmd_ip,
    "ping": _cmd_ping,
    "exit": _cmd_exit,
    "logout": _cmd_exit,
    "sudo": _cmd_sudo,
    "su": _cmd_su,
}
