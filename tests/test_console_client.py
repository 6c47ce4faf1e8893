"""The console client (tasks.console) against the simulated cluster's serial consoles, through the API:
login, commands and exit codes, retry while 400, 404 fails fast, masking, one session per VMI,
recovery from a missed prompt and from a live migration."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from simcluster import ClusterConfig, SimCluster
from tasks.console import (
    MASK,
    PROTOCOL,
    ConsoleClosed,
    ConsoleConnectError,
    ConsoleError,
    ConsoleLoginError,
    ConsoleSession,
    ConsoleTimeout,
    SessionBusy,
    SessionRegistry,
    mask_secrets,
)
from tasks.kube import ClusterTarget, Kube
from tasks.kube.resources import NAD, NODE, VM_ACTIONS, VMI

T = TypeVar("T")
PRIMARY_LABEL = "k8s.ovn.org/primary-user-defined-network"
PASSWORD = "Tr1cky-pa55"
USERDATA = f"#cloud-config\npassword: {PASSWORD}\nchpasswd: {{ expire: False }}\n"
SUBNET = "10.210.0.0/16"


def wait_for(fn: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def vm_manifest(ns: str, name: str, secret: str, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "domain": {
            "devices": {
                "interfaces": [{"name": "primary", "binding": {"name": "l2bridge"}}],
                "disks": [{"name": "cloudinitdisk", "disk": {"bus": "virtio"}}],
            },
            "resources": {"requests": {"memory": "1Gi"}},
        },
        "networks": [{"name": "primary", "pod": {}}],
        "volumes": [{"name": "cloudinitdisk", "cloudInitNoCloud": {"secretRef": {"name": secret}}}],
    }
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"runStrategy": "Always", "template": {"spec": spec}},
    }


def vmi_status(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    vmi = kube.get(VMI, name, ns)
    return (vmi or {}).get("status") or {}


def running(kube: Kube, ns: str, name: str) -> tuple[str, str] | None:
    st = vmi_status(kube, ns, name)
    ifaces = st.get("interfaces") or []
    if st.get("phase") == "Running" and ifaces and ifaces[0].get("ipAddress"):
        return ifaces[0]["ipAddress"], st["nodeName"]
    return None


@dataclass
class Env:
    sim: SimCluster
    kube: Kube
    ns: str
    secret: str


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with SimCluster(config=ClusterConfig(nodes=3, profile="fast")) as sim:
        kube = Kube(ClusterTarget(kubeconfig=str(sim.kubeconfig)))
        tag = uuid.uuid4().hex[:6]
        ns, secret = f"cons-{tag}", "vm-credentials"
        kube.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {PRIMARY_LABEL: "", "t": tag}}}
        )
        kube.create(
            {
                "apiVersion": "k8s.ovn.org/v1",
                "kind": "ClusterUserDefinedNetwork",
                "metadata": {"name": f"cons-{tag}"},
                "spec": {
                    "namespaceSelector": {"matchLabels": {"t": tag}},
                    "network": {
                        "topology": "Layer2",
                        # persistent IPs: a VM keeps its address (and MAC) when it migrates
                        "layer2": {"role": "Primary", "subnets": [SUBNET], "ipam": {"lifecycle": "Persistent"}},
                    },
                },
            }
        )
        wait_for(lambda: kube.list(NAD, ns)[0], what="NAD")
        kube.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret, "namespace": ns},
                "stringData": {"userdata": USERDATA},
            }
        )
        for name, node in (("vm-a", "worker-0"), ("vm-b", "worker-1"), ("vm-c", "worker-0"), ("vm-mig", None)):
            kube.create(vm_manifest(ns, name, secret, node))
        for name in ("vm-a", "vm-b", "vm-c", "vm-mig"):
            wait_for(lambda name=name: running(kube, ns, name), 20, f"{name} Running")
        yield Env(sim, kube, ns, secret)
        kube.close()


def session(env: Env, name: str, **kw: Any) -> ConsoleSession:
    kw.setdefault("registry", SessionRegistry())
    kw.setdefault("retry_interval", 0.05)
    kw.setdefault("connect_timeout", 10)
    return ConsoleSession(env.kube, env.ns, name, **kw)


def test_login_run_and_exit_codes(env: Env) -> None:
    with session(env, "vm-a") as con:
        assert con._ws is not None and con._ws.subprotocol == PROTOCOL
        con.login("fedora", PASSWORD)
        assert con.last_prompt == "[fedora@vm-a ~]$ " and con.kernel_quiet
        assert con.run("hostname") == ("vm-a\n", 0)
        assert con.run("true") == ("", 0)
        assert con.run("false") == ("", 1)
        out, rc = con.run("nosuchcommand --flag")
        assert rc == 127 and "command not found" in out
        out, rc = con.run("ip -4 addr show eth0")
        assert rc == 0 and re.search(r"inet 10\.210\.\d+\.\d+/16", out) and "\r" not in out
        out, rc = con.run("echo one; echo two")
        assert (out, rc) == ("one\ntwo\n", 0)
        text = con.transcript()
        assert "stty cols 500 rows 500" in text and "dmesg -n 1" in text and PASSWORD not in text


def test_closing_logs_out_so_the_next_session_must_log_in(env: Env) -> None:
    """The serial console is one shared tty: a session that closed without logging out would hand the
    next person the guest user's shell with no password asked. close() logs out first."""
    with session(env, "vm-c") as con:
        con.login("fedora", PASSWORD)
        con.run("sudo -n true")
    with session(env, "vm-c") as again:
        again.send("\n")
        again.expect(r"(?<![\w-])vm-c login: ", 10)  # a login prompt, not a shell
        again.login("fedora", PASSWORD)
        assert "Password:" in again.transcript()  # it had to log in again
        assert again.run("whoami") == ("fedora\n", 0)


def test_reconnect_keeps_the_login_it_did_not_close(env: Env) -> None:
    """Dropped under us (a migration, another client) is not closed by us: the guest stays logged in."""
    with session(env, "vm-c") as con:
        con.login("fedora", PASSWORD)
        con.reconnect()
        assert con.transcript().count("Password:") == 1
        assert con.run("whoami") == ("fedora\n", 0)


def test_connect_retries_while_the_vmi_is_not_running(env: Env) -> None:
    """A VM pinned to a NotReady node stays Scheduling (400 "VMI is not running") until the node recovers."""
    kube, ns = env.kube, env.ns
    env.sim.set_faults(not_ready_nodes=["worker-2"])
    try:
        wait_for(
            lambda: any(
                c["type"] == "Ready" and c["status"] != "True"
                for c in kube.get(NODE, "worker-2")["status"]["conditions"]
            ),
            what="worker-2 NotReady",
        )
        kube.create(vm_manifest(ns, "vm-late", env.secret, "worker-2"))
        wait_for(lambda: vmi_status(kube, ns, "vm-late").get("phase"), what="vm-late's VMI")
        con = session(env, "vm-late", retry_interval=0.05, connect_timeout=15)
        got: list[Any] = []
        t = threading.Thread(target=lambda: got.append(_connect(con)))
        t.start()
        time.sleep(0.5)
        assert not got and t.is_alive()  # still knocking: 400 while Scheduling
    finally:
        env.sim.set_faults(not_ready_nodes=[])
    t.join(15)
    assert got == [None], got
    try:
        assert con.connect_attempts >= 5
        con.login("fedora", PASSWORD)
        assert con.run("hostname") == ("vm-late\n", 0)
    finally:
        con.close()


def _connect(con: ConsoleSession) -> Exception | None:
    try:
        con.connect()
    except Exception as e:
        return e
    return None


def test_gives_up_on_400_at_the_deadline(env: Env) -> None:
    kube, ns = env.kube, env.ns
    vm = vm_manifest(ns, "vm-nowhere", env.secret)
    vm["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "no-such-node"}
    kube.create(vm)
    wait_for(lambda: vmi_status(kube, ns, "vm-nowhere").get("phase"), what="vm-nowhere's VMI")
    con = session(env, "vm-nowhere", retry_interval=0.1, connect_timeout=0.5)
    with pytest.raises(ConsoleConnectError) as exc:
        con.connect()
    assert exc.value.status == 400 and con.connect_attempts >= 3
    assert f"VMI {ns}/vm-nowhere" in str(exc.value) and "VMI is not running" in str(exc.value)
    assert con.registry is not None and con.registry.active() == []


def test_404_fails_fast_naming_the_vmi(env: Env) -> None:
    con = session(env, "nope", connect_timeout=30, retry_interval=1.0)
    start = time.monotonic()
    with pytest.raises(ConsoleConnectError) as exc:
        con.connect()
    assert time.monotonic() - start < 1.0 and con.connect_attempts == 1
    assert exc.value.status == 404
    msg = str(exc.value)
    assert f"console of VMI {env.ns}/nope" in msg and 'virtualmachineinstance.kubevirt.io "nope" not found' in msg


def test_wrong_password_is_reported_without_it(env: Env) -> None:
    wrong = "Wr0ng-secret-value"
    with session(env, "vm-b") as con:
        con.send("\n")
        if con.expect(r"(vm-b login: |\$ )", 5).group(1) == "$ ":
            con.send("exit\n")  # logged in by an earlier test: back to agetty
        with pytest.raises(ConsoleLoginError) as exc:
            con.login("fedora", wrong)
        assert wrong not in str(exc.value) and "rejected 3 times" in str(exc.value)
        assert wrong not in con.transcript()
        con.login("fedora", PASSWORD)
        assert con.run("hostname")[1] == 0


def test_password_never_in_a_console_error(env: Env) -> None:
    with session(env, "vm-a") as con:
        con.login("fedora", PASSWORD)
        con.send(f"echo {PASSWORD}\n")  # the shell echoes it back twice
        with pytest.raises(ConsoleTimeout) as exc:
            con.expect("this never appears", 0.3)
        msg = str(exc.value)
        assert PASSWORD not in msg and f"echo {MASK}" in msg and "last output" in msg
        assert PASSWORD not in con.transcript()
        con.send("echo ")
        con.send(PASSWORD[:5])  # half a password at the very end of the transcript is masked too
        with pytest.raises(ConsoleTimeout) as exc:
            con.expect("this never appears", 0.2)
        assert PASSWORD[:5] not in str(exc.value)
        con.send("\x03")


def test_mask_secrets() -> None:
    assert mask_secrets("a s3cret b s3cret", ["s3cret"]) == f"a {MASK} b {MASK}"
    assert mask_secrets("tail s3c", ["s3cret"]) == f"tail {MASK}"
    assert mask_secrets("ends in s", ["s3cret"]) == "ends in s"  # two chars or fewer: left alone
    assert mask_secrets("x", ["", "y"]) == "x"


def test_registry_allows_one_session_per_vmi(env: Env) -> None:
    reg = SessionRegistry()
    first = session(env, "vm-a", registry=reg).connect()
    try:
        with pytest.raises(SessionBusy, match=f"VMI {env.ns}/vm-a is already in use"):
            session(env, "vm-a", registry=reg).connect()
        start = time.monotonic()
        with pytest.raises(SessionBusy):
            session(env, "vm-a", registry=reg, claim_wait=0.3).connect()
        assert time.monotonic() - start >= 0.3
        other = session(env, "vm-b", registry=reg).connect()  # another VMI is fine
        other.close()
        # a waiting claimant gets the console once the holder closes
        waiter = session(env, "vm-a", registry=reg, claim_wait=None)
        done: list[Any] = []
        t = threading.Thread(target=lambda: done.append(_connect(waiter)))
        t.start()
        time.sleep(0.2)
        assert not done
        first.login("fedora", PASSWORD)  # the first session is still alive: nobody kicked it out
        assert first.run("true") == ("", 0)
    finally:
        first.close()
    t.join(5)
    assert done == [None]
    waiter.login("fedora", PASSWORD)
    assert waiter.run("hostname") == ("vm-a\n", 0)
    waiter.close()
    assert reg.active() == []


def test_run_recovers_from_a_missed_prompt(env: Env) -> None:
    with session(env, "vm-b", step_timeout=0.5) as con:
        con.login("fedora", PASSWORD)
        con.send("sleep 1000\n")  # the guest is busy: the next newline gets no prompt
        out, rc = con.run("hostname", timeout=2)  # first try times out; Ctrl-C, login, second try works
        assert (out, rc) == ("vm-b\n", 0)
        with pytest.raises(ConsoleTimeout, match="no match"):
            con.run("sleep 1000", timeout=0.3)  # a command that never ends fails after one retry
        con.recover()
        assert con.run("true") == ("", 0)


def test_session_survives_a_live_migration(env: Env) -> None:
    kube, ns = env.kube, env.ns
    before = running(kube, ns, "vm-mig")
    assert before is not None
    con = session(env, "vm-mig")
    with con:
        con.login("fedora", PASSWORD)
        status = kube.action(VM_ACTIONS, "vm-mig", ns, "migrate")
        assert status == 202
        after = wait_for(
            lambda: (r := running(kube, ns, "vm-mig")) and r[1] != before[1] and r, 20, "vm-mig on another node"
        )
        assert after[0] == before[0]  # Layer2 with persistent IPs keeps the address
        with pytest.raises(ConsoleClosed):
            con.expect("never", 5)  # the source launcher's serial socket went away
        assert not con.connected
        con.reconnect()  # the guest is still logged in: no password needed
        assert con.transcript().count("Password:") == 1
        assert con.run("hostname") == ("vm-mig\n", 0)
        # and run() itself recovers when the session drops under it
        con._close_socket()
        assert con.run("hostname") == ("vm-mig\n", 0)


def test_errors_are_console_errors() -> None:
    for cls in (ConsoleTimeout, ConsoleClosed, ConsoleConnectError, ConsoleLoginError, SessionBusy):
        assert issubclass(cls, ConsoleError)
    with pytest.raises(ValueError, match="no newlines"):
        ConsoleSession(object(), "ns", "vm").run("a\nb")  # type: ignore[arg-type]
