"""Serial consoles of the simulated cluster, through the API only: the `virtualmachineinstances/console`
WebSocket (`plain.kubevirt.io`, binary frames, one session per VMI, 404/400/409 before the upgrade),
the Fedora login from the VM's cloud-init Secret, and pings answered by the network model (same
primary network, address held by a running VM, packet loss between nodes)."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.error
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import websocket
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from simcluster import SimCluster

T = TypeVar("T")

PROTOCOL = "plain.kubevirt.io"
PRIMARY_LABEL = "k8s.ovn.org/primary-user-defined-network"
PASSWORD = "s3cret"
USERDATA = f"#cloud-config\npassword: {PASSWORD}\nchpasswd: {{ expire: False }}\n"
PROMPT = r"(\$ |\# )"  # KubeVirt's PromptExpression
CIDR = "10.200.0.0/16"  # Layer2: OVN-K serves VMs DHCP only there (Layer3 guests get no address; see test_sim_fidelity)


def wait_for(fn: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except ApiException as e:
            last = e
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
        time.sleep(0.02)


# ---- a tiny console client (what `virtctl console` plus KubeVirt's expecter do) -----------------
@dataclass
class Endpoint:
    """Where and how to reach the cluster's WebSocket subresources."""

    url: str  # wss://host:port
    token: str
    ca_file: str

    def console_path(self, namespace: str, name: str) -> str:
        return f"/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/console"


class ConsoleError(AssertionError):
    pass


class ConsoleClosed(ConsoleError):
    """The server closed the session with a close frame (code given)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"console closed by the server with code {code}")
        self.code = code


class Console:
    """One serial console session: binary frames out, tty bytes in, goexpect-style matching."""

    def __init__(
        self,
        ep: Endpoint,
        namespace: str,
        name: str,
        *,
        timeout: float = 10.0,
        subprotocols: list[str] | None = None,
    ) -> None:
        self.name = name
        self.ws = websocket.create_connection(
            ep.url + ep.console_path(namespace, name),
            header=[f"Authorization: Bearer {ep.token}"],
            subprotocols=[PROTOCOL] if subprotocols is None else subprotocols,
            sslopt={"ca_certs": ep.ca_file},
            timeout=timeout,
        )
        self.buf = ""

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.ws.close(timeout=0.5)
        except Exception:
            self.ws.shutdown()

    def send(self, text: str) -> None:
        self.ws.send_binary(text.encode())

    def _recv(self, timeout: float) -> None:
        self.ws.settimeout(max(timeout, 0.01))
        opcode, data = self.ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ConsoleClosed(int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005)
        if opcode != websocket.ABNF.OPCODE_BINARY:
            raise ConsoleError(f"non-binary frame from the console: opcode {opcode}")
        self.buf += data.decode("utf-8", "replace")

    def expect(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait for `pattern` in the output; consume everything up to the end of the match."""
        rx = re.compile(pattern, re.S)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end() :]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConsoleError(f"timed out waiting for {pattern!r}; output so far: {self.buf[-500:]!r}")
            try:
                self._recv(left)
            except websocket.WebSocketTimeoutException:
                continue

    def login(self, user: str = "fedora", password: str = PASSWORD, hostname: str | None = None) -> None:
        """KubeVirt's LoginToFedora: a newline, then login/password until the prompt."""
        host = re.escape(hostname or self.name)
        prompt = rf"\[{re.escape(user)}@{host} [^\]]*\]\$ |\[root@{host} [^\]]*\]\# "
        self.buf = ""  # only what answers this newline counts (stale prompts would misalign the dialogue)
        self.send("\n")
        for _ in range(10):
            m = self.expect(rf"({host} login: |Password:|Login incorrect|{prompt})")
            got = m.group(1)
            if got.endswith("login: "):
                self.send(user + "\n")
            elif got == "Password:":
                self.send(password + "\n")
            elif got == "Login incorrect":
                continue
            else:
                return
        raise ConsoleError("login did not reach a prompt")

    def dropped(self, timeout: float = 10.0) -> bool:
        """Wait for the session to end; True when it ended without a close frame (gorilla's 1006,
        which virtctl explains with "another user connected" or "the target VM was powered off")."""
        try:
            self.expect(r"(?!x)x", timeout)  # matches nothing: read until the connection ends
        except ConsoleClosed:
            return False
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            return True
        raise ConsoleError("the session is still open")

    def run(self, command: str, timeout: float = 10.0) -> tuple[str, int]:
        """Run one command at the prompt: (its output, its exit status from `echo $?`)."""
        self.send(command + "\n")
        m = self.expect(re.escape(command) + r"\r\n(.*?)" + r"\[[^\]\r\n]*\][$#] ", timeout)
        output = m.group(1)
        self.send("echo $?\n")
        rc = self.expect(r"echo \$\?\r\n(\d+)\r\n.*?" + PROMPT, timeout)
        return output, int(rc.group(1))


# ---- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def endpoint(sim: SimCluster, tmp_path_factory: pytest.TempPathFactory) -> Endpoint:
    kc = yaml.safe_load(sim.kubeconfig.read_text())
    cluster = kc["clusters"][0]["cluster"]
    ca = Path(tmp_path_factory.mktemp("console-ca")) / "ca.crt"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    return Endpoint(cluster["server"].replace("https://", "wss://"), kc["users"][0]["user"]["token"], str(ca))


@pytest.fixture(scope="module")
def crd(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def vm_manifest(name: str, secret: str, node: str | None = None, run_strategy: str = "Always") -> dict[str, Any]:
    template: dict[str, Any] = {
        "metadata": {"labels": {"kubevirt.io/vm": name}},
        "spec": {
            "domain": {
                "devices": {
                    "disks": [
                        {"name": "containerdisk", "disk": {"bus": "virtio"}},
                        {"name": "cloudinitdisk", "disk": {"bus": "virtio"}},
                    ],
                    "interfaces": [{"name": "primary", "binding": {"name": "l2bridge"}}],
                },
                "resources": {"requests": {"memory": "1024Mi"}},
            },
            "networks": [{"name": "primary", "pod": {}}],
            "terminationGracePeriodSeconds": 5,
            "volumes": [
                {"name": "containerdisk", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}},
                {"name": "cloudinitdisk", "cloudInitNoCloud": {"secretRef": {"name": secret}}},
            ],
        },
    }
    if node:
        template["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {"runStrategy": run_strategy, "template": template},
    }


@dataclass
class Env:
    namespace: str
    secret: str
    ips: dict[str, str]  # vm name → its address
    nodes: dict[str, str]  # vm name → its node


def vmi_status(crd: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    try:
        obj = crd.get_namespaced_custom_object("kubevirt.io", "v1", ns, "virtualmachineinstances", name)
    except ApiException as e:
        if e.status == 404:
            return {}
        raise
    return obj.get("status") or {}


def running_ip(crd: client.CustomObjectsApi, ns: str, name: str) -> str | None:
    st = vmi_status(crd, ns, name)
    ifaces = st.get("interfaces") or []
    if st.get("phase") == "Running" and ifaces and ifaces[0].get("ipAddress"):
        return str(ifaces[0]["ipAddress"])
    return None


def create_vms(crd: client.CustomObjectsApi, ns: str, manifests: list[dict[str, Any]]) -> dict[str, str]:
    for m in manifests:
        crd.create_namespaced_custom_object("kubevirt.io", "v1", ns, "virtualmachines", m)
    names = [m["metadata"]["name"] for m in manifests]
    return {n: wait_for(lambda n=n: running_ip(crd, ns, n), 20, f"VMI {n} Running with an IP") for n in names}


@pytest.fixture(scope="module")
def env(core: client.CoreV1Api, crd: client.CustomObjectsApi) -> Iterator[Env]:
    tag = uuid.uuid4().hex[:6]
    ns, cudn, secret = f"console-{tag}", f"console-{tag}", "vm-credentials"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels={PRIMARY_LABEL: "", "console-test": tag}))
    )
    crd.create_cluster_custom_object(
        "k8s.ovn.org",
        "v1",
        "clusteruserdefinednetworks",
        {
            "apiVersion": "k8s.ovn.org/v1",
            "kind": "ClusterUserDefinedNetwork",
            "metadata": {"name": cudn},
            "spec": {
                "namespaceSelector": {"matchLabels": {"console-test": tag}},
                "network": {
                    "topology": "Layer2",
                    "layer2": {"role": "Primary", "subnets": [CIDR], "ipam": {"lifecycle": "Persistent"}},
                },
            },
        },
    )
    wait_for(
        lambda: crd.list_namespaced_custom_object("k8s.cni.cncf.io", "v1", ns, "network-attachment-definitions")[
            "items"
        ],
        10,
        "the CUDN's NAD",
    )
    core.create_namespaced_secret(
        ns,
        client.V1Secret(metadata=client.V1ObjectMeta(name=secret), string_data={"userdata": USERDATA}),
    )
    ips = create_vms(crd, ns, [vm_manifest("vm-a", secret, "worker-0"), vm_manifest("vm-b", secret, "worker-1")])
    nodes = {n: vmi_status(crd, ns, n)["nodeName"] for n in ips}
    yield Env(ns, secret, ips, nodes)
    core.delete_namespace(ns)
    try:
        crd.delete_cluster_custom_object("k8s.ovn.org", "v1", "clusteruserdefinednetworks", cudn)
    except ApiException as e:
        if e.status != 404:
            raise


def handshake_status(ep: Endpoint, ns: str, name: str) -> tuple[int, str]:
    """The HTTP status and body a WebSocket handshake gets when the server refuses to upgrade."""
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        Console(ep, ns, name, timeout=5)
    return exc.value.status_code, (exc.value.resp_body or b"").decode()


# ---- tests ----------------------------------------------------------------------------------------
def test_vms_are_pinned_to_different_nodes(env: Env) -> None:
    assert env.nodes == {"vm-a": "worker-0", "vm-b": "worker-1"}
    assert env.ips["vm-a"].startswith("10.200.") and env.ips["vm-b"].startswith("10.200.")


def test_login_and_ping_peer(env: Env, endpoint: Endpoint) -> None:
    with Console(endpoint, env.namespace, "vm-a") as con:
        assert con.ws.subprotocol == PROTOCOL
        con.login()
        out, rc = con.run("hostname")
        assert (out.strip(), rc) == ("vm-a", 0)
        out, rc = con.run("ip -4 addr show eth0")
        assert f"inet {env.ips['vm-a']}/16" in out and rc == 0
        out, rc = con.run(f"ping -c 3 -W 2 -q {env.ips['vm-b']}")
        assert "3 packets transmitted, 3 received, 0% packet loss" in out, out
        assert rc == 0


def test_ping_to_unheld_address_fails(env: Env, endpoint: Endpoint) -> None:
    own = env.ips["vm-a"].split(".")
    nobody = ".".join([*own[:3], "250"])  # on-link, held by no VM
    elsewhere = "10.201.250.77"  # off-link: routed via the gateway, nobody answers
    with Console(endpoint, env.namespace, "vm-a") as con:
        con.login()
        for target in (nobody, elsewhere):
            out, rc = con.run(f"ping -c 2 -W 1 -q {target}")
            assert "2 packets transmitted, 0 received" in out and "100% packet loss" in out, out
            assert rc == 1
        gateway = ".".join([*own[:3], "1"])
        out, rc = con.run(f"ping -c 1 -W 1 -q {gateway}")
        assert "1 received, 0% packet loss" in out and rc == 0


def test_packet_loss_knob_between_nodes(sim: SimCluster, env: Env, endpoint: Endpoint) -> None:
    with Console(endpoint, env.namespace, "vm-a") as con:
        con.login()
        sim.set_faults(packet_loss={"worker-0|worker-1": 1.0})
        try:
            out, rc = con.run(f"ping -c 3 -W 1 -q {env.ips['vm-b']}")
            assert "3 packets transmitted, 0 received, 100% packet loss" in out, out
            assert rc == 1
        finally:
            sim.set_faults(packet_loss={})
        out, rc = con.run(f"ping -c 2 -W 1 -q {env.ips['vm-b']}")
        assert "0% packet loss" in out and rc == 0


def test_wrong_password_then_right(env: Env, endpoint: Endpoint) -> None:
    with Console(endpoint, env.namespace, "vm-b") as con:
        con.send("\n")
        got = con.expect(r"(vm-b login: |" + PROMPT + ")").group(1)
        if got != "vm-b login: ":  # logged in by an earlier test: log out to get agetty back
            con.send("exit\n")
            con.expect(r"vm-b login: ")
        con.send("fedora\n")
        con.expect("Password: ")
        con.send("wrong\n")
        con.expect(r"Login incorrect\r\n.*vm-b login: ")
        con.send("fedora\n")
        con.expect("Password: ")
        con.send(PASSWORD + "\n")
        con.expect(re.escape("[fedora@vm-b ~]$ "))
        out, rc = con.run(f"ping -c 1 -W 1 -q {env.ips['vm-a']}")
        assert "0% packet loss" in out and rc == 0


def test_text_frames_are_dropped(env: Env, endpoint: Endpoint) -> None:
    with Console(endpoint, env.namespace, "vm-a") as con:
        con.login()
        con.ws.send("hostname\n")  # a TEXT frame: KubeVirt's reader skips it
        out, rc = con.run("echo binary-only")
        assert out.strip() == "binary-only" and rc == 0
        assert "hostname" not in out


def test_session_survives_reconnect_and_second_connection_closes_first(env: Env, endpoint: Endpoint) -> None:
    first = Console(endpoint, env.namespace, "vm-a")
    first.login()
    first.close()
    first = Console(endpoint, env.namespace, "vm-a")
    first.send("\n")
    first.expect(re.escape("[fedora@vm-a ~]$ "))  # still logged in, like a serial port
    with Console(endpoint, env.namespace, "vm-a") as second:
        # the first session is dropped without a close frame (virtctl: "another user connected")
        assert first.dropped(5)
        out, rc = second.run("hostname")
        assert out.strip() == "vm-a" and rc == 0


def test_client_without_subprotocol_is_served_without_one(env: Env, endpoint: Endpoint) -> None:
    """virt-api's upgrader lists only plain.kubevirt.io but does not refuse a client that offers none."""
    with Console(endpoint, env.namespace, "vm-a", subprotocols=[]) as con:
        assert con.ws.subprotocol is None
        assert con.run("true")[1] == 0


def test_status_codes_before_the_upgrade(sim: SimCluster, env: Env, endpoint: Endpoint, http: Any) -> None:
    ns = env.namespace
    # 404: no such VMI (virt-api's own NotFound, singular resource)
    code, body = handshake_status(endpoint, ns, "nope")
    assert code == 404 and json.loads(body)["reason"] == "NotFound"
    status, obj = http.call("GET", endpoint.console_path(ns, "nope"))
    assert status == 404 and obj["reason"] == "NotFound"
    assert obj["message"] == 'virtualmachineinstance.kubevirt.io "nope" not found'

    # 400 until Running: a VM no node can host stays in Scheduling
    vm = vm_manifest("vm-pending", env.secret)
    vm["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "no-such-node"}
    http.call("POST", f"/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachines", vm)
    wait_for(
        lambda: http.call("GET", f"/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/vm-pending")[0] == 200
    )
    status, obj = http.call("GET", endpoint.console_path(ns, "vm-pending"))
    assert (status, obj["reason"], obj["message"]) == (400, "BadRequest", "VMI is not running")
    code, _ = handshake_status(endpoint, ns, "vm-pending")
    assert code == 400

    # 409: a VMI that failed to start (a bare VMI is not restarted by a VM)
    vmi = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": {"name": "vmi-failed"}}
    vmi["spec"] = vm_manifest("x", env.secret)["spec"]["template"]["spec"]
    sim.set_faults(vmi_start_failure_rate=1.0)
    try:
        http.call("POST", f"/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances", vmi)
        wait_for(
            lambda: (
                http.call("GET", f"/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/vmi-failed")[1]
                .get("status", {})
                .get("phase")
                == "Failed"
            ),
            what="VMI Failed",
        )
    finally:
        sim.set_faults(vmi_start_failure_rate=0.0)
    status, obj = http.call("GET", endpoint.console_path(ns, "vmi-failed"))
    assert (status, obj["reason"]) == (409, "Conflict")
    assert obj["message"] == (
        'Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "vmi-failed": VMI is in failed status'
    )

    # a plain GET (no upgrade) on a running VMI: the WebSocket upgrader's own 400
    with pytest.raises(urllib.error.HTTPError) as exc:
        http.open("GET", endpoint.console_path(ns, "vm-a"), accept="*/*")
    assert exc.value.code == 400


def test_console_closes_when_the_vm_stops(env: Env, endpoint: Endpoint, crd: client.CustomObjectsApi) -> None:
    ns = env.namespace
    create_vms(crd, ns, [vm_manifest("vm-stop", env.secret)])
    con = Console(endpoint, ns, "vm-stop")
    con.login()
    crd.patch_namespaced_custom_object(
        "kubevirt.io", "v1", ns, "virtualmachines", "vm-stop", {"spec": {"runStrategy": "Halted"}}
    )
    assert con.dropped(10)
    con.close()
    wait_for(lambda: not vmi_status(crd, ns, "vm-stop"), 10, "VMI gone")
    code, body = handshake_status(endpoint, ns, "vm-stop")
    assert code == 404, body
    # started again: a new VMI (new uid), a freshly booted guest at the login prompt
    crd.patch_namespaced_custom_object(
        "kubevirt.io", "v1", ns, "virtualmachines", "vm-stop", {"spec": {"runStrategy": "Always"}}
    )
    wait_for(lambda: running_ip(crd, ns, "vm-stop"), 20, "vm-stop Running again")
    with Console(endpoint, ns, "vm-stop") as again:
        again.send("\n")
        again.expect("vm-stop login: ")


def test_64_console_sessions_at_once(env: Env, endpoint: Endpoint, crd: client.CustomObjectsApi) -> None:
    ns = env.namespace
    names = [f"vm-many-{i:02d}" for i in range(64)]
    ips = create_vms(crd, ns, [vm_manifest(n, env.secret) for n in names])
    peer = env.ips["vm-a"]
    errors: list[str] = []
    barrier = threading.Barrier(len(names))

    def session(name: str) -> None:
        try:
            with Console(endpoint, ns, name, timeout=20) as con:
                barrier.wait(20)  # all 64 connected at the same time
                con.login()
                out, rc = con.run(f"ping -c 2 -W 1 -q {peer}", timeout=20)
                if rc != 0 or "0% packet loss" not in out:
                    errors.append(f"{name}: rc={rc} {out!r}")
                out, rc = con.run("hostname")
                if out.strip() != name:
                    errors.append(f"{name}: hostname {out!r}")
        except Exception as e:
            errors.append(f"{name}: {type(e).__name__}: {e}")

    start = time.monotonic()
    threads = [threading.Thread(target=session, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - start
    assert not errors, errors[:5]
    assert len(set(ips.values())) == 64
    print(f"64 console sessions (login, ping, hostname) in {elapsed:.2f}s: {64 / elapsed:.1f} sessions/s")


def test_console_follows_a_live_migration(
    env: Env, endpoint: Endpoint, crd: client.CustomObjectsApi, http: Any
) -> None:
    """Layer2 with persistent IPs: the migrated VM keeps its address; the session of the source
    launcher ends, the guest stays logged in, and its address answers again from the target node.
    (Layer3, where the target pod's address changes and the guest does not follow: test_sim_fidelity.)"""
    ns = env.namespace
    old_ip = create_vms(crd, ns, [vm_manifest("vm-mig", env.secret)])["vm-mig"]
    source = vmi_status(crd, ns, "vm-mig")["nodeName"]
    mig = Console(endpoint, ns, "vm-mig")
    mig.login()
    with Console(endpoint, ns, "vm-b") as peer:
        peer.login()
        out, rc = peer.run(f"ping -c 1 -W 1 -q {old_ip}")
        assert rc == 0, out
        status, _ = http.call(
            "PUT", f"/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachines/vm-mig/migrate", {}
        )
        assert status == 202
        wait_for(
            lambda: (vmi_status(crd, ns, "vm-mig").get("migrationState") or {}).get("completed"),
            20,
            "vm-mig's migration",
        )
        new_ip = running_ip(crd, ns, "vm-mig")
        assert new_ip == old_ip
        assert vmi_status(crd, ns, "vm-mig")["nodeName"] != source
        assert mig.dropped(5)  # the source's serial socket went away with the source launcher
        out, rc = peer.run(f"ping -c 2 -W 1 -q {new_ip}")
        assert "0% packet loss" in out and rc == 0
    with Console(endpoint, ns, "vm-mig") as again:
        again.send("\n")
        again.expect(re.escape("[fedora@vm-mig ~]$ "))  # the guest's memory (and login) moved with it
        out, rc = again.run("ip -4 addr show eth0")
        assert f"inet {new_ip}/16" in out
        out, rc = again.run(f"ping -c 1 -W 1 -q {env.ips['vm-b']}")
        assert rc == 0, out


def test_inline_cloud_init_user_and_hostname(env: Env, endpoint: Endpoint, crd: client.CustomObjectsApi) -> None:
    """userDataBase64 with `user:` and a chpasswd list; spec.hostname names the login prompt."""
    ns = env.namespace
    userdata = "#cloud-config\nuser: cloud\nchpasswd:\n  list: |\n    cloud:hunter2\n  expire: False\n"
    vm = vm_manifest("vm-inline", env.secret)
    spec = vm["spec"]["template"]["spec"]
    spec["hostname"] = "custom-host"
    spec["volumes"][1] = {
        "name": "cloudinitdisk",
        "cloudInitNoCloud": {"userDataBase64": base64.b64encode(userdata.encode()).decode()},
    }
    create_vms(crd, ns, [vm])
    with Console(endpoint, ns, "vm-inline") as con:
        con.send("\n")
        con.expect("custom-host login: ")
        con.send("fedora\n")
        con.expect("Password: ")
        con.send("fedora\n")
        con.expect("Login incorrect\r\n.*custom-host login: ")
        con.login("cloud", "hunter2", hostname="custom-host")
        out, rc = con.run("hostname")
        assert (out.strip(), rc) == ("custom-host", 0)
