"""The emulated Fedora guest behind a VM's serial console (simcluster.console)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any

from simcluster.console import GuestConfig, GuestInterface, GuestTerminal

HOST = "vm1"
OWN_IP = "10.128.0.5"
PEER = "10.128.0.6"  # on-link, answers
REMOTE = "10.128.1.7"  # another node's subnet (via the gateway), answers
DEAD_REMOTE = "10.128.1.99"  # off-link, silent: plain timeouts
DEAD_LOCAL = "10.128.0.99"  # on-link, nobody holds it: no ARP answer
PROMPT = r"(\$ |\# )"  # KubeVirt's PromptExpression
USER_PROMPT = re.escape(f"[fedora@{HOST} ~]$ ")
ROOT_PROMPT = re.escape(f"[root@{HOST} fedora]# ")


class FakeNet:
    """A GuestNetwork whose replies are scripted per target (a list is consumed one echo at a time)."""

    def __init__(self, *, with_resolves: bool = True) -> None:
        self.iface: GuestInterface | None = GuestInterface(
            mac="02:ba:fa:00:00:0a", addresses=[(OWN_IP, 24)], mtu=1400, gateway="10.128.0.1"
        )
        self.replies: dict[str, float | list[float | None] | None] = {
            PEER: [0.412, 0.388, 0.501],
            REMOTE: 1.234,
            "10.128.0.1": 0.2,
        }
        self.sent: list[str] = []
        if with_resolves:
            self.resolves = lambda target: target in (PEER, "10.128.0.1")

    def interface(self) -> GuestInterface | None:
        return self.iface

    def default_gateway(self) -> str | None:
        return "10.128.0.1"

    def echo(self, target: str) -> float | None:
        self.sent.append(target)
        reply = self.replies.get(target)
        if isinstance(reply, list):
            return reply.pop(0) if reply else None
        return reply


class Console:
    """What a console client sees: collects output and waits for regexes, like goexpect."""

    def __init__(self, net: FakeNet | None = None, term: GuestTerminal | None = None, **config: Any) -> None:
        self.net = net or FakeNet()
        self.buf = bytearray()
        self.writes: list[bytes] = []
        self.pos = 0
        self.changed = asyncio.Event()
        config.setdefault("time_scale", 0.001)
        if term is None:
            term = GuestTerminal(GuestConfig(HOST, **config), self.net, self.write)
        else:
            term.attach(self.write)  # a new console session on the same serial port
        self.term = term

    def write(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        self.writes.append(data)
        self.buf += data
        self.changed.set()

    @property
    def text(self) -> str:
        return self.buf.decode("utf-8", "replace")

    async def send(self, text: str | bytes) -> None:
        await self.term.feed(text.encode() if isinstance(text, str) else text)

    async def expect(self, pattern: str, timeout: float = 3.0) -> re.Match[str]:
        anchored = pattern.startswith("^")  # "^": right where the last match ended
        rx = re.compile(pattern.removeprefix("^"), re.S)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            m = rx.match(self.text, self.pos) if anchored else rx.search(self.text, self.pos)
            if m:
                self.pos = m.end()
                return m
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no match for {pattern!r} in {self.text[self.pos :]!r}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                pass

    async def login(self) -> None:
        await self.send("\n")
        await self.expect(f"{HOST} login: ")
        await self.send("fedora\n")
        await self.expect("Password:")
        await self.send("fedora\n")
        await self.expect(USER_PROMPT)

    async def run(self, command: str) -> tuple[str, int]:
        """Send a command, return its output (without the echo) and the status `echo $?` prints."""
        await self.send(command + "\n")
        m = await self.expect(re.escape(command) + r"\r\n(.*?)\[[a-z]+@vm1 [^\]]+\][$#] ")
        output = m.group(1)
        await self.send("echo $?\n")
        status = await self.expect(r"echo \$\?\r\n(\d+)\r\n.*?" + PROMPT)
        return output, int(status.group(1))


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


# ---------------------------------------------------------------------- login


def test_boot_banner_and_first_prompt() -> None:
    async def body() -> None:
        c = Console()
        assert c.text == (
            "\r\nFedora Linux 41 (Cloud Edition)\r\n"
            "Kernel 6.11.4-301.fc41.x86_64 on an x86_64 (ttyS0)\r\n\r\n"
            f"{HOST} login: "
        )
        await c.send("\n")
        assert c.text.endswith(f"login: \r\n{HOST} login: ")

    run(body)


def test_no_banner_when_disabled() -> None:
    async def body() -> None:
        c = Console(boot_banner=False)
        assert c.text == f"{HOST} login: "

    run(body)


def test_login_the_way_kubevirt_does() -> None:
    """LoginToFedora: Enter, login/Password cases, sudo su, configureConsole with echo $? checks."""

    async def body() -> None:
        c = Console()
        await c.send("\n")
        await c.expect(f"(localhost|fedora|{HOST}|{HOST}) login: ")
        await c.send("fedora\n")
        await c.expect("Password:")
        await c.send("fedora\n")
        await c.expect(rf"\[fedora@(localhost|fedora|{HOST}) ~\]\$ ")
        assert "fedora\r\nPassword: \r\n" in c.text  # the password is not echoed
        await c.send("sudo su\n")
        await c.expect(re.escape("sudo su") + r"(.*)" + PROMPT)
        assert c.text.endswith(f"[root@{HOST} fedora]# ")
        for command in ("stty cols 500 rows 500", "dmesg -n 1"):
            await c.send(command + "\n")
            await c.expect(re.escape(command) + r"(.*)" + PROMPT)
            await c.send("echo $?\n")
            await c.expect(re.escape("echo $?") + r"(.*)[\r\n]0\r\n(.*)" + PROMPT)
        assert c.term.logged_in

    run(body)


def test_wrong_password_then_right_one() -> None:
    async def body() -> None:
        c = Console()
        await c.send("\nfedora\n")
        await c.expect("Password: ")
        started = time.monotonic()
        await c.send("wrong\n")
        await c.expect(f"\r\nLogin incorrect\r\n\r\n{HOST} login: ")
        assert time.monotonic() - started < 1  # the 2 s fail delay is scaled
        assert "wrong" not in c.text
        await c.send("fedora\n")
        await c.expect("Password: ")
        await c.send("fedora\n")
        await c.expect(USER_PROMPT)

    run(body)


def test_three_failures_restart_getty_with_banner() -> None:
    async def body() -> None:
        c = Console()
        for _ in range(3):
            await c.send("fedora\n")
            await c.expect("Password: ")
            await c.send("nope\n")
            await c.expect("Login incorrect")
        await c.expect(r"\(ttyS0\)\r\n\r\nvm1 login: $")

    run(body)


def test_exit_sudo_shell_then_logout_and_ctrl_d() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        await c.send("sudo -i\n")
        await c.expect(re.escape(f"[root@{HOST} ~]# "))
        _, status = await c.run("whoami")
        assert status == 0
        await c.send("exit\n")
        await c.expect("exit\r\nlogout\r\n" + USER_PROMPT)
        await c.send("sudo su\n")
        await c.expect(ROOT_PROMPT)
        await c.send("exit\n")
        await c.expect("exit\r\nexit\r\n" + USER_PROMPT)
        await c.send("exit\n")
        await c.expect("exit\r\nlogout\r\n\r\nFedora Linux 41.*\r\nvm1 login: $")
        assert not c.term.logged_in
        await c.login()
        await c.send(b"\x04")
        await c.expect("logout\r\n\r\nFedora Linux 41.*vm1 login: $")

    run(body)


def test_reattach_keeps_the_session() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        c.term.detach()
        await c.send("echo while-detached\n")  # output of a session nobody watches is lost
        second = Console(c.net, term=c.term)
        await second.send("\n")
        await second.expect(rf"^\r\n\[fedora@(localhost|fedora|{HOST}) ~\]\$ $")
        assert "while-detached" not in second.text

    run(body)


# ---------------------------------------------------------------------- shell


def test_command_not_found_is_127() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        out, status = await c.run("nosuchcmd --flag")
        assert out == "-bash: nosuchcmd: command not found\r\n"
        assert status == 127
        await c.send("sudo su\n")
        await c.expect(ROOT_PROMPT)
        out, status = await c.run("nosuchcmd")
        assert (out, status) == ("bash: nosuchcmd: command not found\r\n", 127)

    run(body)


def test_echo_expansion_quotes_and_lists() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        out, _ = await c.run("echo \"$HOSTNAME\" '$HOSTNAME' a\\ b ${USER}")
        assert out == f"{HOST} $HOSTNAME a b fedora\r\n"
        out, status = await c.run("false; echo $?")
        assert (out, status) == ("1\r\n", 0)
        out, _ = await c.run("true && echo yes || echo no")
        assert out == "yes\r\n"
        out, _ = await c.run("false && echo yes || echo no")
        assert out == "no\r\n"
        _, status = await c.run("false")
        assert status == 1
        out, _ = await c.run("hostname")
        assert out == f"{HOST}\r\n"
        out, _ = await c.run("echo -n x")
        assert out == "x"
        out, _ = await c.run("uname -a")
        assert out.startswith(f"Linux {HOST} 6.11.4-301.fc41.x86_64 #1 SMP")
        out, _ = await c.run("cat /etc/os-release")
        assert 'PRETTY_NAME="Fedora Linux 41 (Cloud Edition)"\r\n' in out
        out, _ = await c.run("id")
        assert out.startswith("uid=1000(fedora) gid=1000(fedora) groups=1000(fedora),4(adm),10(wheel)")
        out, status = await c.run("dmesg -n 1")
        assert (out, status) == ("dmesg: klogctl failed: Operation not permitted\r\n", 1)
        out, status = await c.run("ls 2>/dev/null; nosuch 2>/dev/null")
        assert (out, status) == ("", 127)

    run(body)


def test_quote_continuation_and_syntax_error() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        await c.send("echo 'a\n")
        await c.expect("\r\n> $")
        await c.send("b'\n")
        await c.expect("b'\r\na\r\nb\r\n" + USER_PROMPT)
        out, status = await c.run("&& echo x")
        assert out == "-bash: syntax error near unexpected token `&&'\r\n"
        assert status == 2

    run(body)


def test_backspace_ctrl_c_and_empty_line() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        await c.send("echx\x7fo hi\n")
        await c.expect("echx\b \bo hi\r\nhi\r\n" + USER_PROMPT)
        await c.send("\n")
        await c.expect("^\r\n" + USER_PROMPT + "$")
        await c.send("half-typed\x03")
        await c.expect("half-typed\\^C\r\n" + USER_PROMPT)
        await c.send("echo $?\n")
        await c.expect("130\r\n")

    run(body)


def test_stty_echo_toggle() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        await c.send("stty -echo\n")
        await c.expect(USER_PROMPT)
        await c.send("echo hidden\n")
        await c.expect("^hidden\r\n" + USER_PROMPT + "$")
        await c.send("stty echo\n")
        await c.expect("^" + USER_PROMPT + "$")
        await c.send("echo shown\n")
        await c.expect("^echo shown\r\nshown\r\n")

    run(body)


def test_type_ahead_is_echoed_by_the_tty_then_read_by_bash() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        mark = len(c.text)
        await c.send("sleep 2\necho typed\n")
        assert c.term.busy
        assert c.text[mark:] == "sleep 2\r\necho typed\r\n"  # kernel echo while sleep runs
        await c.term.wait_idle()
        assert c.text[mark:] == (
            f"sleep 2\r\necho typed\r\n{USER_PROMPT_TEXT}echo typed\r\ntyped\r\n{USER_PROMPT_TEXT}"
        )

    run(body)


USER_PROMPT_TEXT = f"[fedora@{HOST} ~]$ "


def test_byte_at_a_time_matches_chunked_input() -> None:
    script = "\nfedora\nfedora\nsudo su\nstty cols 500 rows 500\necho $?\nip -4 a show eth0\nping -c 2 10.128.1.7\n"

    async def transcript(byte_at_a_time: bool) -> str:
        c = Console()
        data = script.encode()
        if byte_at_a_time:
            for i in range(len(data)):
                await c.send(data[i : i + 1])
                await c.term.wait_idle()
        else:
            await c.send(data)
        await c.expect(r"rtt min/avg/max/mdev = .*? ms\r\n" + ROOT_PROMPT)
        await c.term.wait_idle()
        return c.text

    async def body() -> None:
        one = await transcript(True)
        many = await transcript(False)
        assert one == many
        assert "inet 10.128.0.5/24 brd 10.128.0.255 scope global dynamic noprefixroute eth0" in one

    run(body)


def test_ctrl_c_interrupts_sleep_and_the_rest_of_the_list() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        await c.send("sleep 100; echo after\n")
        await asyncio.sleep(0.01)
        await c.send(b"\x03")
        await c.expect(r"\^C\r\n" + USER_PROMPT)
        await c.term.wait_idle()
        assert "after" not in c.text.split("sleep 100; echo after")[-1]
        _, status = await c.run("true")
        await c.send("sleep 1\x03echo $?\n")  # ^C flushes what was typed ahead
        await c.expect(r"\^C\r\n" + USER_PROMPT + r"echo \$\?\r\n130\r\n")
        assert status == 0

    run(body)


# ---------------------------------------------------------------------- ip


def test_ip_addr_text_and_json() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        out, status = await c.run("ip -4 a show eth0")
        assert status == 0
        lines = out.split("\r\n")
        assert lines[0] == (
            "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1400 qdisc fq_codel state UP group default qlen 1000"
        )
        assert lines[1] == "    inet 10.128.0.5/24 brd 10.128.0.255 scope global dynamic noprefixroute eth0"
        assert re.fullmatch(r"       valid_lft \d+sec preferred_lft \d+sec", lines[2])
        out, _ = await c.run("ip a")
        assert "    link/ether 02:ba:fa:00:00:0a brd ff:ff:ff:ff:ff:ff\r\n" in out
        assert "    inet6 fe80::ba:faff:fe00:a/64 scope link noprefixroute \r\n" in out
        assert out.startswith("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN")
        for command in ("ip -j addr", "ip -j a show"):
            out, status = await c.run(command)
            assert status == 0
            data = json.loads(out)
            eth0 = next(link for link in data if link["ifname"] == "eth0")
            assert eth0["address"] == "02:ba:fa:00:00:0a"
            assert eth0["mtu"] == 1400
            inet = [a for a in eth0["addr_info"] if a["family"] == "inet"]
            assert inet[0]["local"] == OWN_IP and inet[0]["prefixlen"] == 24
            assert inet[0]["dynamic"] is True and inet[0]["label"] == "eth0"
        out, _ = await c.run("ip -4 addr")
        assert "link/" not in out and "inet6" not in out and "inet 127.0.0.1/8 scope host lo" in out

    run(body)


def test_ip_route_neigh_and_errors() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        out, _ = await c.run("ip route")
        assert out == (
            "default via 10.128.0.1 dev eth0 proto dhcp src 10.128.0.5 metric 100 \r\n"
            "10.128.0.0/24 dev eth0 proto kernel scope link src 10.128.0.5 metric 100 \r\n"
        )
        out, _ = await c.run("ip -j route")
        routes = json.loads(out)
        assert routes[0] == {
            "dst": "default",
            "gateway": "10.128.0.1",
            "dev": "eth0",
            "protocol": "dhcp",
            "prefsrc": OWN_IP,
            "metric": 100,
            "flags": [],
        }
        await c.run(f"ping -c 1 {PEER}")
        out, _ = await c.run("ip neigh")
        assert f"{PEER} dev eth0 lladdr 0a:58:0a:80:00:06 REACHABLE\r\n" in out
        out, status = await c.run("ip a show eth7")
        assert (out, status) == ('Device "eth7" does not exist.\r\n', 1)
        out, status = await c.run("ip bogus")
        assert (out, status) == ('Object "bogus" is unknown, try "ip help".\r\n', 1)

    run(body)


def test_no_address_yet() -> None:
    async def body() -> None:
        net = FakeNet()
        net.iface = None
        c = Console(net)
        await c.login()
        out, status = await c.run(f"ping -c 1 {PEER}")
        assert (out, status) == ("ping: connect: Network is unreachable\r\n", 2)
        out, _ = await c.run("ip -4 a")
        assert "eth0" not in out
        out, _ = await c.run("ip -j a")
        assert [a["family"] for a in json.loads(out)[1]["addr_info"]] == ["inet6"]
        net.iface = FakeNet().iface  # DHCP answered: the live view changes
        out, status = await c.run(f"ping -c 1 {REMOTE}")
        assert status == 0

    run(body)


# ---------------------------------------------------------------------- ping


def test_ping_success_exact_output() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        out, status = await c.run(f"ping -c 3 {PEER}")
        assert out == (
            f"PING {PEER} ({PEER}) 56(84) bytes of data.\r\n"
            f"64 bytes from {PEER}: icmp_seq=1 ttl=64 time=0.412 ms\r\n"
            f"64 bytes from {PEER}: icmp_seq=2 ttl=64 time=0.388 ms\r\n"
            f"64 bytes from {PEER}: icmp_seq=3 ttl=64 time=0.501 ms\r\n"
            "\r\n"
            f"--- {PEER} ping statistics ---\r\n"
            "3 packets transmitted, 3 received, 0% packet loss, time 2002ms\r\n"
            "rtt min/avg/max/mdev = 0.388/0.433/0.501/0.054 ms\r\n"
        )
        assert status == 0

    run(body)


def test_ping_total_loss_off_link() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        out, status = await c.run(f"ping -c 3 -W 1 {DEAD_REMOTE}")
        assert out == (
            f"PING {DEAD_REMOTE} ({DEAD_REMOTE}) 56(84) bytes of data.\r\n"
            "\r\n"
            f"--- {DEAD_REMOTE} ping statistics ---\r\n"
            "3 packets transmitted, 0 received, 100% packet loss, time 2002ms\r\n"
            "\r\n"
        )
        assert status == 1

    run(body)


def test_ping_partial_loss() -> None:
    async def body() -> None:
        net = FakeNet()
        net.replies[REMOTE] = [1.234, None, 11.5]
        c = Console(net)
        await c.login()
        out, status = await c.run(f"ping -c 3 {REMOTE}")
        assert "icmp_seq=2" not in out
        assert f"64 bytes from {REMOTE}: icmp_seq=1 ttl=63 time=1.23 ms\r\n" in out
        assert f"64 bytes from {REMOTE}: icmp_seq=3 ttl=63 time=11.5 ms\r\n" in out
        assert out.endswith(
            "3 packets transmitted, 2 received, 33.3333% packet loss, time 2002ms\r\n"
            "rtt min/avg/max/mdev = 1.234/6.367/11.500/5.133 ms\r\n"
        )
        assert status == 0

    run(body)


def test_ping_deadline_with_too_few_replies_fails() -> None:
    async def body() -> None:
        net = FakeNet()
        net.replies[REMOTE] = [1.0, None, None, 1.0, None, None, None, None, None, None]
        c = Console(net)
        await c.login()
        out, status = await c.run(f"ping -c 5 -w 10 {REMOTE}")
        assert "10 packets transmitted, 2 received, 80% packet loss, time 9009ms" in out
        assert status == 1

    run(body)


def test_ping_unreachable_on_link_host() -> None:
    async def body() -> None:
        for with_resolves in (True, False):
            c = Console(FakeNet(with_resolves=with_resolves))
            await c.login()
            out, status = await c.run(f"ping -c 3 {DEAD_LOCAL}")
            assert out == (
                f"PING {DEAD_LOCAL} ({DEAD_LOCAL}) 56(84) bytes of data.\r\n"
                f"From {OWN_IP} icmp_seq=1 Destination Host Unreachable\r\n"
                f"From {OWN_IP} icmp_seq=2 Destination Host Unreachable\r\n"
                f"From {OWN_IP} icmp_seq=3 Destination Host Unreachable\r\n"
                "\r\n"
                f"--- {DEAD_LOCAL} ping statistics ---\r\n"
                "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2002ms\r\n"
                "pipe 3\r\n"
            )
            assert status == 1

    run(body)


def test_ping_quiet() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        out, status = await c.run(f"ping -q -c 2 {REMOTE}")
        assert out == (
            f"PING {REMOTE} ({REMOTE}) 56(84) bytes of data.\r\n"
            "\r\n"
            f"--- {REMOTE} ping statistics ---\r\n"
            "2 packets transmitted, 2 received, 0% packet loss, time 1001ms\r\n"
            "rtt min/avg/max/mdev = 1.234/1.234/1.234/0.000 ms\r\n"
        )
        assert status == 0

    run(body)


def test_ping_usage_errors() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        out, status = await c.run(f"ping -z {PEER}")
        assert out.startswith("ping: invalid option -- 'z'\r\n\r\nUsage\r\n  ping [options] <destination>\r\n")
        assert status == 2
        out, status = await c.run("ping -c")
        assert out.startswith("ping: option requires an argument -- 'c'\r\n")
        assert status == 2
        out, status = await c.run("ping")
        assert (out, status) == ("ping: usage error: Destination address required\r\n", 1)
        out, status = await c.run(f"ping -c 0 {PEER}")
        assert out == "ping: invalid argument: '0': out of range: 1 <= value <= 9223372036854775807\r\n"
        assert status == 1
        out, status = await c.run(f"ping -W abc {PEER}")
        assert (out, status) == ("ping: bad linger time: abc\r\n", 2)
        out, status = await c.run(f"ping -i 0.001 -c 1 {PEER}")
        assert out == "ping: cannot flood, minimal interval for user must be >= 2 ms, use -i 0.002 (or higher)\r\n"
        assert status == 2
        out, status = await c.run("ping -c 1 no-such-host")
        assert (out, status) == ("ping: no-such-host: Name or service not known\r\n", 2)

    run(body)


def test_ping_root_may_use_short_intervals_and_timing_is_scaled() -> None:
    async def body() -> None:
        c = Console(time_scale=0.01)
        await c.login()
        await c.send("sudo su\n")
        await c.expect(ROOT_PROMPT)
        started = time.monotonic()
        out, status = await c.run(f"ping -c 3 -i 0.5 {REMOTE}")
        elapsed = time.monotonic() - started
        assert "3 packets transmitted, 3 received, 0% packet loss, time 1002ms" in out
        assert status == 0
        assert 0.009 <= elapsed < 1.0  # 1 guest second at time_scale 0.01
        out, status = await c.run(f"ping -c 2 -i 0.001 {REMOTE}")
        assert status == 0

    run(body)


def test_ctrl_c_during_ping_prints_the_summary() -> None:
    async def body() -> None:
        net = FakeNet()
        net.replies[PEER] = 0.3
        c = Console(net)
        await c.login()
        await c.send(f"ping {PEER}\n")
        await c.expect("icmp_seq=3 ")
        await c.send(b"\x03")
        m = await c.expect(
            r"\^C\r\n--- 10\.128\.0\.6 ping statistics ---\r\n(\d+) packets transmitted, (\d+) received, "
            r".*?\r\nrtt min/avg/max/mdev = 0\.300/0\.300/0\.300/0\.000 ms\r\n" + USER_PROMPT
        )
        assert int(m.group(1)) >= 3 and int(m.group(2)) >= 3
        await c.send("echo $?\n")
        await c.expect(r"echo \$\?\r\n0\r\n")

    run(body)


# ---------------------------------------------------------------------- scale


def test_many_guests_share_one_loop() -> None:
    async def guest(i: int) -> int:
        c = Console()
        await c.login()
        await c.send("sudo su\n")
        await c.expect(ROOT_PROMPT)
        _, status = await c.run(f"ping -c 3 -i 0.2 {REMOTE}")
        return status

    async def body() -> None:
        started = time.monotonic()
        statuses = await asyncio.gather(*(guest(i) for i in range(500)))
        assert statuses == [0] * 500
        assert time.monotonic() - started < 5

    run(body)


def test_output_chunks_are_bytes_per_terminal_write() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        c.writes.clear()
        await c.run(f"ping -c 2 {REMOTE}")
        assert all(isinstance(w, bytes) and w for w in c.writes)
        # one write per reply line as ping prints them, not one per character
        assert any(w.startswith(b"64 bytes from") for w in c.writes)
        assert b"\n" not in re.sub(rb"\r\n", b"", b"".join(c.writes))

    run(body)


def test_ping_deadline_without_count() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        out, status = await c.run(f"ping -w 3 {DEAD_REMOTE}")
        assert out.endswith(
            f"--- {DEAD_REMOTE} ping statistics ---\r\n"
            "3 packets transmitted, 0 received, 100% packet loss, time 2002ms\r\n\r\n"
        )
        assert status == 1

    run(body)


def test_close_cancels_the_running_program() -> None:
    async def body() -> None:
        c = Console()
        await c.login()
        await c.send(f"ping {REMOTE}\n")
        await c.expect("icmp_seq=1 ")
        c.term.close()
        await c.term.wait_idle()
        size = len(c.buf)
        await c.send("echo more\n")
        await asyncio.sleep(0.01)
        assert len(c.buf) == size
        assert not c.term.busy

    run(body)
