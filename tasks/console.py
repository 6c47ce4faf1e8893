"""A client for the KubeVirt serial console: log in to a guest and run commands, with exit codes.

On a primary user-defined network, ssh and port-forward cannot reach a VM (virt-api dials the VM's
isolated address); the serial console goes virt-api → virt-handler → the QEMU serial socket and
needs no network, so it is how the connectivity check gets inside the guests.

Protocol (what ``virtctl console`` speaks):

* ``GET /apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/{name}/console``
  upgraded to a WebSocket with subprotocol ``plain.kubevirt.io``, opened through the API door
  (:meth:`tasks.kube.Kube.websocket`): the kubeconfig's authentication and TLS, the shared rate
  limit and in-flight cap, and retries of 429 (Retry-After honoured), 5xx and refused connections.
* Payloads are raw tty bytes, no channel byte, no base64. Input goes out as BINARY frames only (the
  server drops text frames); binary frames coming in are tty output, other data frames are ignored.
* Before the upgrade the server answers 400 while the VMI is not Running: we retry once per
  ``retry_interval`` (1 s, like virtctl) until ``connect_timeout``. 401/403/404/409 fail at once with
  an error that names the VMI.
* One session per VMI: a second connection makes the server drop the first. :class:`SessionRegistry`
  keeps this process from ever doing that to itself.

Dialogue (the way KubeVirt's own tests drive Fedora guests, re-implemented here):

* :meth:`ConsoleSession.expect` waits for a regular expression in the bytes received since the last
  match and consumes the buffer up to the end of the match.
* :meth:`ConsoleSession.login` sends a newline and answers what comes back: an already logged-in
  prompt ends it; ``<host> login:`` (anchored on the VMI name, its hostname, ``localhost`` or
  ``fedora``, so "Last failed login:" never matches) gets the user; ``Password:`` gets the password;
  ``Login incorrect`` is counted (three strikes and it stops: a wrong password does not get better).
  Then console hygiene: ``stty cols 500 rows 500`` (no line wrapping inside long commands) must
  answer ``echo $?`` with 0, and ``dmesg -n 1`` (kernel messages off the console) is run as
  ``sudo -n dmesg -n 1`` for a non-root user. Unlike KubeVirt's tests we do not ``sudo su``: the
  pings need no root, ``-n`` never waits for a sudo password, and a non-zero status there is logged
  and tolerated, because stray kernel lines can only garble a match, which the retry below absorbs.
  A login that times out (a prompt torn apart by asynchronous output) is retried once from scratch.
* :meth:`ConsoleSession.run`: newline → prompt; the command → the prompt *after the echo of that
  command* (validated send: stale output in the buffer can never satisfy the match); the output is
  what lies between the echo and that prompt; then ``echo $?`` → the status. A timeout or a dropped
  connection is retried once after a full recovery (reconnect if needed, Ctrl-C, log in again).
* After a live migration the server drops the session while the guest stays logged in:
  :meth:`ConsoleSession.reconnect` dials again and finds the prompt.
* The serial console is one shared tty: whoever connects next gets whatever shell is open on it. So
  :meth:`ConsoleSession.close` logs out (``exit`` until the guest shows its login prompt again) before
  it closes the WebSocket.

Secrets: the password is sent in its own frame and is never logged; every transcript excerpt (error
messages included) has it replaced by ``********``. Errors carry the last 500 characters of the
masked transcript.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Protocol

import websocket

from tasks.kube import KubeError

log = logging.getLogger(__name__)

PROTOCOL = "plain.kubevirt.io"
CONSOLE_PATH = "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/console"
MASK = "********"
TAIL_CHARS = 500
CTRL_C = "\x03"
# A Fedora/RHEL bash prompt: "[fedora@vm-a ~]$ ", "[root@vm-a fedora]# ".
DEFAULT_PROMPT = r"\[[^\[\]\r\n]+\][$#] "
LOGOUT_TIMEOUT = 5.0
BUSY_TTY_WAIT = 3.0  # no prompt within this long at login: interrupt whatever holds the tty, once


class ConsoleDoor(Protocol):
    """What the console needs from the API module: a WebSocket to an API path, and whose server it is."""

    server: str

    def websocket(self, path: str, *, subprotocols: list[str], timeout: float) -> websocket.WebSocket: ...


# ---- errors ---------------------------------------------------------------------------------


class ConsoleError(Exception):
    """Anything that went wrong on a console. The message never contains a password."""


class ConsoleTimeout(ConsoleError):
    """An expected answer did not arrive in time."""


class ConsoleClosed(ConsoleError):
    """The server ended the session (a close frame, or dropped without one: another client connected,
    the VM stopped or migrated)."""


class ConsoleConnectError(ConsoleError):
    """The server refused the WebSocket upgrade (``status`` is the HTTP status, 0 for no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ConsoleLoginError(ConsoleError):
    """The guest rejected the credentials."""


class SessionBusy(ConsoleError):
    """Another session of this process holds the console of that VMI."""


# ---- one session per VMI --------------------------------------------------------------------


class SessionRegistry:
    """At most one console session per (cluster, namespace, VMI) in this process.

    KubeVirt closes an existing console session when a new one connects, so two workers of ours on one
    VM would silently kill each other's dialogue. :meth:`claim` hands out a VMI's console to one
    holder; a second claim raises :class:`SessionBusy` at once (``wait=0``), after ``wait`` seconds,
    or blocks until it is free (``wait=None``).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holders: dict[tuple[str, str, str], str] = {}

    def claim(self, key: tuple[str, str, str], wait: float | None = 0.0) -> None:
        deadline = None if wait is None else time.monotonic() + wait
        with self._cond:
            while key in self._holders:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise SessionBusy(
                        f"the console of VMI {key[1]}/{key[2]} is already in use by {self._holders[key]} "
                        "(KubeVirt allows one session per VMI; a second would close the first)"
                    )
                self._cond.wait(left)
            self._holders[key] = threading.current_thread().name

    def release(self, key: tuple[str, str, str]) -> None:
        with self._cond:
            if self._holders.pop(key, None) is not None:
                self._cond.notify_all()

    def active(self) -> list[tuple[str, str, str]]:
        with self._cond:
            return sorted(self._holders)

    @contextlib.contextmanager
    def hold(self, key: tuple[str, str, str], wait: float | None = 0.0) -> Iterator[None]:
        self.claim(key, wait)
        try:
            yield
        finally:
            self.release(key)


REGISTRY = SessionRegistry()


# ---- masking --------------------------------------------------------------------------------


def mask_secrets(text: str, secrets: list[str] | tuple[str, ...]) -> str:
    """Replace every secret in ``text`` by ``********``, and a secret's beginning cut off at the end."""
    for s in secrets:
        if not s:
            continue
        text = text.replace(s, MASK)
        for k in range(min(len(s) - 1, len(text)), 2, -1):  # a prefix (≥ 3 chars) left at the very end
            if text.endswith(s[:k]):
                text = text[:-k] + MASK
                break
    return text


# ---- the session ----------------------------------------------------------------------------


class ConsoleSession:
    """One serial console session to a VMI. Use it from one thread; close it (or use ``with``)."""

    def __init__(
        self,
        kube: ConsoleDoor,
        namespace: str,
        name: str,
        *,
        hostname: str | None = None,
        connect_timeout: float = 120.0,
        retry_interval: float = 1.0,
        step_timeout: float = 10.0,
        prompt: str = DEFAULT_PROMPT,
        registry: SessionRegistry | None = REGISTRY,
        claim_wait: float | None = 0.0,
        transcript_chars: int = 32768,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.hostname = hostname or name.split(".")[0][:63]
        self.connect_timeout = connect_timeout
        self.retry_interval = retry_interval
        self.step_timeout = step_timeout
        self.prompt = prompt
        self._prompt_rx = re.compile(prompt)
        self.registry = registry
        self.claim_wait = claim_wait
        self._ws: websocket.WebSocket | None = None
        self._key: tuple[str, str, str] | None = None
        self._buf = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._transcript: deque[str] = deque()
        self._transcript_len = 0
        self._transcript_limit = transcript_chars
        self._secrets: list[str] = []
        self._credentials: tuple[str, str] | None = None
        self.last_prompt = ""
        self.connect_attempts = 0  # handshakes tried on the last dial (400 retries included)
        self.kernel_quiet = False  # whether `dmesg -n 1` succeeded at the last login

    @property
    def vmi(self) -> str:
        return f"{self.namespace}/{self.name}"

    def __repr__(self) -> str:
        state = "open" if self._ws is not None else "closed"
        return f"ConsoleSession({self.vmi}, {state})"

    def __enter__(self) -> ConsoleSession:
        if self._ws is None:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- connection -------------------------------------------------------------------------
    def connect(self) -> ConsoleSession:
        """Claim the VMI's console in the registry, then open the WebSocket (retrying while 400)."""
        if self.registry is not None and self._key is None:
            key = (self.kube.server, self.namespace, self.name)
            self.registry.claim(key, self.claim_wait)
            self._key = key
        try:
            self._dial()
        except BaseException:
            self._release()
            raise
        return self

    def _dial(self) -> None:
        path = CONSOLE_PATH.format(namespace=self.namespace, name=self.name)
        deadline = time.monotonic() + self.connect_timeout
        self.connect_attempts = 0
        while True:
            self.connect_attempts += 1
            try:
                ws = self.kube.websocket(
                    path, subprotocols=[PROTOCOL], timeout=max(1.0, min(self.step_timeout, self.connect_timeout))
                )
            except KubeError as e:
                last = f"HTTP {e.code} {e.reason}: {e.message}" if e.code else e.message
                if e.code != 400:  # the door already retried what may pass (429, 5xx, refused)
                    hint = {
                        401: " (the credentials in the kubeconfig were not accepted)",
                        403: " (RBAC: needs get on virtualmachineinstances/console in subresources.kubevirt.io)",
                        404: " (no such VirtualMachineInstance: is the VM running?)",
                        409: " (the VMI has failed)",
                    }.get(e.code, "")
                    raise ConsoleConnectError(f"console of VMI {self.vmi}: {last}{hint}", e.code) from None
            else:
                self._ws = ws
                self._buf = ""
                self._decoder.reset()
                log.debug("console %s: connected after %d attempt(s)", self.vmi, self.connect_attempts)
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConsoleConnectError(
                    f"console of VMI {self.vmi}: gave up after {self.connect_timeout:g}s and "
                    f"{self.connect_attempts} attempt(s); last answer: {last}",
                    400,
                )
            time.sleep(min(self.retry_interval, left))

    def reconnect(self, *, login: bool = True) -> None:
        """Dial again (e.g. after a live migration dropped the session); keep this process's claim.

        The guest stays logged in across a reconnect; with ``login`` (and credentials from an earlier
        :meth:`login`) the prompt is verified, logging in again only if the guest asks for it."""
        self._close_socket()
        self._dial()
        if login and self._credentials is not None:
            self.login(*self._credentials)

    def close(self) -> None:
        """Log out, close the WebSocket with a normal close frame and give the VMI back to the registry."""
        try:
            self.logout()
        finally:
            self._close_socket()
            self._release()

    def logout(self, timeout: float = LOGOUT_TIMEOUT) -> bool:
        """Leave the guest at its login prompt, so the next user of this tty must log in.

        ``exit`` until ``<host> login:`` shows (a ``sudo`` or nested shell needs more than one).
        Returns whether the login prompt was seen; a session that never logged in has nothing to do.
        Never raises: a dropped connection leaves nothing open on our side, and the guest logs out a
        shell whose tty hangs up.
        """
        if self._ws is None or self._credentials is None:
            return False
        rx = re.compile(r"exit\r?\n.*?(?:(?P<login>(?<![\w-])\S+ login: )|(?P<prompt>" + self.prompt + "))", re.S)
        try:
            self.send(CTRL_C)  # whatever runs is interrupted; the shell shows a fresh prompt
            self.drain()
            for _ in range(4):  # nested shells: root via sudo, then the user's login shell
                self._buf = ""
                self.send("exit\n")
                if self.expect(rx, timeout).group("login"):
                    self._credentials = None
                    return True
        except ConsoleError as e:
            log.info("console %s: logout did not reach the login prompt: %s", self.vmi, e)
        return False

    def _close_socket(self) -> None:
        ws, self._ws = self._ws, None
        if ws is None:
            return
        try:
            ws.close(timeout=0.5)
        except Exception:
            with contextlib.suppress(Exception):
                ws.shutdown()

    def _release(self) -> None:
        key, self._key = self._key, None
        if key is not None and self.registry is not None:
            self.registry.release(key)

    @property
    def connected(self) -> bool:
        return self._ws is not None

    # ---- bytes in and out ---------------------------------------------------------------------
    def send(self, text: str) -> None:
        """Type ``text`` (one BINARY frame)."""
        if self._ws is None:
            raise ConsoleClosed(f"console of VMI {self.vmi} is not connected")
        try:
            self._ws.send_binary(text.encode())
        except (OSError, websocket.WebSocketException) as e:
            self._close_socket()
            raise ConsoleClosed(
                f"console of VMI {self.vmi}: connection lost while sending ({type(e).__name__})"
            ) from None

    def _send_secret(self, secret: str) -> None:
        if secret and secret not in self._secrets:
            self._secrets.append(secret)
        self.send(secret + "\n")

    def _recv(self, timeout: float) -> None:
        """Read one frame into the buffer, or return when ``timeout`` passes."""
        ws = self._ws
        if ws is None:
            raise ConsoleClosed(f"console of VMI {self.vmi} is not connected")
        ws.settimeout(max(timeout, 0.001))
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            return
        except (OSError, websocket.WebSocketException) as e:
            self._close_socket()
            raise ConsoleClosed(
                f"console of VMI {self.vmi} was dropped by the server ({type(e).__name__}: another client "
                f"connected, or the VM stopped or migrated); last output: {self.tail()!r}"
            ) from None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
            self._close_socket()
            raise ConsoleClosed(f"console of VMI {self.vmi} closed by the server (code {code})")
        if opcode != websocket.ABNF.OPCODE_BINARY:
            return  # like KubeVirt's reader: non-binary data frames carry no tty bytes
        text = self._decoder.decode(data)
        if text:
            self._buf += text
            self._record(text)

    def _record(self, text: str) -> None:
        self._transcript.append(text)
        self._transcript_len += len(text)
        while self._transcript_len > self._transcript_limit and len(self._transcript) > 1:
            self._transcript_len -= len(self._transcript.popleft())

    def transcript(self) -> str:
        """What the guest printed during this session (the last ~32 KiB), secrets masked."""
        return mask_secrets("".join(self._transcript), self._secrets)

    def tail(self, chars: int = TAIL_CHARS) -> str:
        return self.transcript()[-chars:]

    def drain(self, quiet: float = 0.05) -> str:
        """Read until the guest has been quiet for ``quiet`` seconds; return and discard it (masked)."""
        end = time.monotonic() + quiet
        while True:
            before = len(self._buf)
            left = end - time.monotonic()
            if left <= 0:
                break
            self._recv(left)
            if len(self._buf) != before:
                end = time.monotonic() + quiet
        stale, self._buf = self._buf, ""
        return mask_secrets(stale, self._secrets)

    def expect(self, pattern: str | re.Pattern[str], timeout: float) -> re.Match[str]:
        """Wait until ``pattern`` matches the unconsumed output; consume it up to the match's end.

        A string pattern is compiled with DOTALL. Raises :class:`ConsoleTimeout` with the masked tail.
        """
        rx = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, re.S)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self._buf)
            if m is not None:
                self._buf = self._buf[m.end() :]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConsoleTimeout(
                    f"console of VMI {self.vmi}: no match for {rx.pattern!r} within {timeout:g}s; "
                    f"last output: {self.tail()!r}"
                )
            self._recv(left)

    # ---- login --------------------------------------------------------------------------------
    def login(
        self,
        user: str,
        password: str,
        hostname: str | None = None,
        *,
        timeout: float = 120.0,
        max_incorrect: int = 3,
    ) -> None:
        """Log in (or accept an existing login), then set the console up for matching."""
        if password and password not in self._secrets:
            self._secrets.append(password)
        self._credentials = (user, password)
        host = hostname or self.hostname
        try:
            self._login_once(user, password, host, timeout, max_incorrect)
        except ConsoleTimeout as e:
            # The prompt can be torn apart by asynchronous output: start over once, from a clean line.
            log.info("console %s: login did not reach a prompt, retrying once: %s", self.vmi, e)
            self.send(CTRL_C)
            self.drain()
            self._login_once(user, password, host, timeout, max_incorrect)

    def _login_once(self, user: str, password: str, host: str, timeout: float, max_incorrect: int) -> None:
        names = "|".join(re.escape(n) for n in dict.fromkeys((host, self.name, "localhost", "fedora")))
        rx = re.compile(
            rf"(?P<prompt>\[[^@\[\]\r\n]+@(?:{names})(?: [^\[\]\r\n]*)?\][$#] )"
            rf"|(?P<login>(?<![\w-])(?:{names}) login: )"
            r"|(?P<password>Password: ?)"
            r"|(?P<incorrect>Login incorrect)",
            re.S,
        )
        deadline = time.monotonic() + timeout
        self._buf = ""  # only what answers this newline counts
        self.send("\n")
        incorrect = 0
        nudged = False
        while True:
            try:
                wait = deadline - time.monotonic() if nudged else min(BUSY_TTY_WAIT, deadline - time.monotonic())
                m = self.expect(rx, max(0.0, wait))
            except ConsoleTimeout:
                if nudged or time.monotonic() >= deadline:
                    raise
                # No prompt yet: the tty may be held by a command an earlier session left running (a
                # ping whose session dropped). Ctrl-C is harmless at a login or shell prompt.
                nudged = True
                self.send(CTRL_C + "\n")
                continue
            kind = m.lastgroup
            if kind == "prompt":
                self.last_prompt = m.group(0)
                break
            if kind == "login":
                self.send(user + "\n")
            elif kind == "password":
                self._send_secret(password)
            elif kind == "incorrect":
                incorrect += 1
                if incorrect >= max_incorrect:
                    raise ConsoleLoginError(
                        f"console of VMI {self.vmi}: login as {user!r} rejected {incorrect} times "
                        "(check the credentials Secret)"
                    )
        self._hygiene(max(self.step_timeout, deadline - time.monotonic()))

    def _hygiene(self, timeout: float) -> None:
        out, rc = self._run_once("stty cols 500 rows 500", timeout)
        if rc != 0:
            raise ConsoleError(f"console of VMI {self.vmi}: `stty cols 500 rows 500` exited {rc}: {out.strip()!r}")
        cmd = "dmesg -n 1" if self.last_prompt.endswith("# ") else "sudo -n dmesg -n 1"
        out, rc = self._run_once(cmd, timeout)
        self.kernel_quiet = rc == 0
        if rc != 0:
            log.info("console %s: `%s` exited %d (kernel messages stay on): %s", self.vmi, cmd, rc, out.strip())

    # ---- commands -----------------------------------------------------------------------------
    def run(self, command: str, timeout: float = 30.0, *, retry: bool = True) -> tuple[str, int]:
        """Run one command at the prompt; return its output (LF line ends) and exit status.

        On a timeout or a dropped session it recovers (reconnect if needed, Ctrl-C, log in again when
        credentials are known) and tries once more before raising.
        """
        if "\n" in command or "\r" in command:
            raise ValueError("one command line at a time (no newlines)")
        try:
            return self._run_once(command, timeout)
        except (ConsoleTimeout, ConsoleClosed) as e:
            if not retry:
                raise
            log.info("console %s: %r failed (%s); recovering and retrying once", self.vmi, command, e)
            self.recover()
            return self._run_once(command, timeout)

    def start(self, command: str) -> None:
        """Type a command that runs until interrupted (a continuous ping) and return once its echo is
        seen; read what it prints with :meth:`read_output`, end it with :meth:`interrupt`."""
        if "\n" in command or "\r" in command:
            raise ValueError("one command line at a time (no newlines)")
        self._buf = ""
        self.send("\n")
        self.expect(re.compile(r"\r?\n" + self.prompt), self.step_timeout)
        self.send(command + "\n")
        self.expect(re.compile(re.escape(command) + r"\r?\n"), self.step_timeout)

    def read_output(self, timeout: float) -> str:
        """The complete lines a running command printed within ``timeout`` seconds (LF line ends,
        secrets masked); a partial last line stays for the next read."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._recv(left)
        cut = self._buf.rfind("\n") + 1
        done, self._buf = self._buf[:cut], self._buf[cut:]
        return mask_secrets(done.replace("\r\n", "\n"), self._secrets)

    def at_prompt(self) -> bool:
        """Whether the shell prompt is back in the unread output (a started command ended by itself)."""
        return bool(self._prompt_rx.search(self._buf))

    def interrupt(self, timeout: float | None = None) -> tuple[str, int]:
        """Ctrl-C the running command; what it printed until the prompt came back (its statistics, for
        ping) and its exit status."""
        self.send(CTRL_C)
        m = self.expect(re.compile(r"(.*?)(" + self.prompt + ")", re.S), timeout or self.step_timeout)
        output = m.group(1).replace("\r\n", "\n")
        self.last_prompt = m.group(2)
        self.send("echo $?\n")
        rc = self.expect(re.compile(r"echo \$\?\r?\n(\d+)\r?\n(?:.*?)(" + self.prompt + ")", re.S), self.step_timeout)
        return mask_secrets(output, self._secrets), int(rc.group(1))

    def recover(self) -> None:
        """Get back to a clean prompt: reconnect if dropped, interrupt what runs, log in again."""
        if self._ws is None:
            self._dial()
        else:
            self.send(CTRL_C)
            self.drain()
        if self._credentials is not None:
            self.login(*self._credentials)
        else:
            self._buf = ""
            self.send("\n")
            self.last_prompt = self.expect(self._prompt_rx, self.step_timeout).group(0)

    def _run_once(self, command: str, timeout: float) -> tuple[str, int]:
        prompt = self.prompt
        self._buf = ""
        self.send("\n")
        self.expect(re.compile(r"\r?\n" + prompt), self.step_timeout)
        self.send(command + "\n")
        # Validated send: the prompt must come after the echo of this very command.
        m = self.expect(re.compile(re.escape(command) + r"\r?\n(.*?)(" + prompt + ")", re.S), timeout)
        output = m.group(1).replace("\r\n", "\n")
        self.last_prompt = m.group(2)
        self.send("echo $?\n")
        rc = self.expect(re.compile(r"echo \$\?\r?\n(\d+)\r?\n(?:.*?)(" + prompt + ")", re.S), self.step_timeout)
        return output, int(rc.group(1))


__all__ = [
    "CONSOLE_PATH",
    "DEFAULT_PROMPT",
    "PROTOCOL",
    "REGISTRY",
    "ConsoleClosed",
    "ConsoleConnectError",
    "ConsoleDoor",
    "ConsoleError",
    "ConsoleLoginError",
    "ConsoleSession",
    "ConsoleTimeout",
    "SessionBusy",
    "SessionRegistry",
    "mask_secrets",
]
