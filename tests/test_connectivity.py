"""run_probes over the simulated cluster's consoles: a full mesh on a Layer2 network, isolation probes to
a default-network VM, packet loss between two nodes in exactly those cells, console failures as
error results, and credentials from the cloud-init Secret."""

from __future__ import annotations

import base64
import ipaddress
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from simcluster import ClusterConfig, SimCluster
from tasks.connectivity import CredentialsError, credentials_from_secret, ping_command, run_probes
from tasks.console import REGISTRY, ConsoleSession, SessionRegistry
from tasks.kube import ClusterTarget, Kube
from tasks.kube.resources import NAD, VMI
from tasks.probeplan import Target, VMEndpoint, group_by_source, plan_isolation, plan_probes

T = TypeVar("T")
PRIMARY_LABEL = "k8s.ovn.org/primary-user-defined-network"
PASSWORD = "c0nn-Secret!"
USERDATA = f"#cloud-config\npassword: {PASSWORD}\nchpasswd: {{ expire: False }}\n"
SECRET = "vm-credentials"
NODES = ("worker-0", "worker-1", "worker-2")


def wait_for(fn: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def vm_manifest(ns: str, name: str, node: str, iface: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "runStrategy": "Always",
            "template": {
                "spec": {
                    "domain": {
                        "devices": {
                            "interfaces": [{"name": "net", **iface}],
                            "disks": [{"name": "cloudinitdisk", "disk": {"bus": "virtio"}}],
                        },
                        "resources": {"requests": {"memory": "1Gi"}},
                    },
                    "networks": [{"name": "net", "pod": {}}],
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "volumes": [{"name": "cloudinitdisk", "cloudInitNoCloud": {"secretRef": {"name": SECRET}}}],
                }
            },
        },
    }


def endpoint(kube: Kube, ns: str, name: str) -> VMEndpoint | None:
    vmi = kube.get(VMI, name, ns)
    st = (vmi or {}).get("status") or {}
    ifaces = st.get("interfaces") or []
    if st.get("phase") == "Running" and ifaces and ifaces[0].get("ipAddress"):
        return VMEndpoint(ns, name, st["nodeName"], ifaces[0]["ipAddress"])
    return None


@dataclass
class Fleet:
    sim: SimCluster
    kube: Kube
    vms: dict[tuple[str, str], VMEndpoint]  # the six VMs on the UDN
    outsider: VMEndpoint  # a VM on the default network, in a namespace the CUDN does not select


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with SimCluster(config=ClusterConfig(nodes=3, profile="fast")) as sim:
        kube = Kube(ClusterTarget(kubeconfig=str(sim.kubeconfig)))
        tag = uuid.uuid4().hex[:6]
        udn_ns = [f"conn-{tag}-a", f"conn-{tag}-b"]
        plain = f"plain-{tag}"
        for ns in udn_ns:
            kube.create(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": ns, "labels": {PRIMARY_LABEL: "", "t": tag}},
                }
            )
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": plain}})
        kube.create(
            {
                "apiVersion": "k8s.ovn.org/v1",
                "kind": "ClusterUserDefinedNetwork",
                "metadata": {"name": f"conn-{tag}"},
                "spec": {
                    "namespaceSelector": {"matchLabels": {"t": tag}},
                    "network": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["10.220.0.0/16"]}},
                },
            }
        )
        for ns in udn_ns:
            wait_for(lambda ns=ns: kube.list(NAD, ns)[0], what="NAD")
        for ns in [*udn_ns, plain]:
            kube.create(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": SECRET, "namespace": ns},
                    "stringData": {"userdata": USERDATA},
                }
            )
        names = [(ns, f"vm-{ns[-1]}{i}", node) for ns in udn_ns for i, node in enumerate(NODES)]
        for ns, name, node in names:
            kube.create(vm_manifest(ns, name, node, {"binding": {"name": "l2bridge"}}))
        kube.create(vm_manifest(plain, "vm-plain", "worker-2", {"masquerade": {}}))
        vms = {(ns, n): wait_for(lambda ns=ns, n=n: endpoint(kube, ns, n), 20, n) for ns, n, _ in names}
        outsider = wait_for(lambda: endpoint(kube, plain, "vm-plain"), 20, "vm-plain")
        yield Fleet(sim, kube, vms, outsider)
        kube.close()


def mesh(fleet: Fleet, **kw: Any) -> list[Any]:
    plan = plan_probes(list(fleet.vms.values()), mode="full")
    kw.setdefault("retry_interval", 0.05)
    kw.setdefault("connect_timeout", 10)
    return run_probes(fleet.kube, group_by_source(plan), fleet.vms, ("fedora", PASSWORD), **kw)


def test_fleet_is_spread_over_the_nodes(fleet: Fleet) -> None:
    assert sorted(v.node for v in fleet.vms.values()) == sorted(NODES * 2)
    assert all(v.ip.startswith("10.220.") for v in fleet.vms.values())
    assert ipaddress.ip_address(fleet.outsider.ip) in ipaddress.ip_network("10.128.0.0/14")  # the pod network


def test_credentials_from_secret(fleet: Fleet) -> None:
    kube, ns = fleet.kube, fleet.outsider.namespace
    assert credentials_from_secret(kube, ns, SECRET) == ("fedora", PASSWORD)

    def secret(name: str, userdata: str | None) -> str:
        data = {} if userdata is None else {"userdata": base64.b64encode(userdata.encode()).decode()}
        kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "data": data})
        return name

    s = secret("cloud-user", "#cloud-config\nuser: cloud-user\nchpasswd:\n  list: |\n    cloud-user:hunter2\n")
    assert credentials_from_secret(kube, ns, s) == ("cloud-user", "hunter2")
    s = secret("named-user", "#cloud-config\nuser: {name: admin}\npassword: pw-123\n")
    assert credentials_from_secret(kube, ns, s) == ("admin", "pw-123")
    with pytest.raises(CredentialsError, match="not found"):
        credentials_from_secret(kube, ns, "no-such-secret")
    with pytest.raises(CredentialsError, match="no userdata"):
        credentials_from_secret(kube, ns, secret("empty", None))
    with pytest.raises(CredentialsError, match="sets no password"):
        credentials_from_secret(kube, ns, secret("nopw", "#cloud-config\nssh_authorized_keys: [a]\n"))
    with pytest.raises(CredentialsError, match="not a #cloud-config"):
        credentials_from_secret(kube, ns, secret("script", "#!/bin/sh\necho password: x\n"))


def test_ping_command() -> None:
    assert ping_command("10.1.2.3") == "ping -c 3 -W 2 -w 6 -q 10.1.2.3"
    assert ping_command("10.1.2.3", count=5, timeout=1) == "ping -c 5 -W 1 -w 7 -q 10.1.2.3"
    with pytest.raises(ValueError):
        ping_command("10.0.0.1; reboot")


def test_full_mesh_all_reply(fleet: Fleet) -> None:
    seen: list[tuple[int, int]] = []
    results = mesh(fleet, on_progress=lambda done, total: seen.append((done, total)))
    assert len(results) == 30
    bad = [r for r in results if not r.passed]
    assert not bad, bad[:3]
    for r in results:
        assert (r.kind, r.expect, r.outcome, r.exit_code, r.received, r.loss_pct) == (
            "mesh",
            "reply",
            "reply",
            0,
            3,
            0.0,
        )
        assert r.rtt_min_ms is not None and r.rtt_min_ms <= r.rtt_avg_ms <= r.rtt_max_ms  # type: ignore[operator]
        dst = next(v for v in fleet.vms.values() if v.ip == r.dst_ip)
        assert (r.dst_namespace, r.dst_vm, r.dst_node) == (dst.namespace, dst.name, dst.node)
        assert r.src_node == fleet.vms[(r.src_namespace, r.src_vm)].node
    assert {(r.src_namespace, r.dst_namespace) for r in results} == {
        (a, b) for a in {v.namespace for v in fleet.vms.values()} for b in {v.namespace for v in fleet.vms.values()}
    }
    assert seen[-1] == (6, 6) and len(seen) == 6 and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert REGISTRY.active() == []


def test_isolation_probe_to_the_default_network_stays_silent(fleet: Fleet) -> None:
    out = fleet.outsider
    target = Target(out.ip, f"default network {out.namespace}/{out.name}", out.namespace, out.node)
    sources = list(fleet.vms.values())[:2]
    plan = plan_isolation(sources, [target], per_source=1)
    results = run_probes(fleet.kube, group_by_source(plan), fleet.vms, ("fedora", PASSWORD), retry_interval=0.05)
    assert len(results) == 2
    for r in results:
        assert (r.kind, r.expect, r.received) == ("isolation", "silent", 0)
        assert r.outcome in ("timeout", "unreachable") and r.passed, r
        assert (r.dst_ip, r.dst_namespace, r.dst_node, r.dst_vm) == (out.ip, out.namespace, out.node, target.label)
        assert r.exit_code == 1 and r.transmitted >= 3


def test_a_leak_fails_the_isolation_probe(fleet: Fleet) -> None:
    """An address that must stay silent but answers (here: a VM on the same UDN) is a failed probe."""
    a, b = list(fleet.vms.values())[:2]
    plan = plan_isolation([a], [Target(b.ip, "pretend-foreign")])
    (r,) = run_probes(fleet.kube, group_by_source(plan), fleet.vms, ("fedora", PASSWORD), retry_interval=0.05)
    assert r.outcome == "reply" and r.expect == "silent" and not r.passed


def test_packet_loss_between_two_nodes_fails_exactly_those_probes(fleet: Fleet) -> None:
    fleet.sim.set_faults(packet_loss={"worker-0|worker-1": 1.0})
    try:
        results = mesh(fleet)
    finally:
        fleet.sim.set_faults(packet_loss={})
    failing = {(r.src_node, r.dst_node) for r in results if not r.passed}
    assert failing == {("worker-0", "worker-1"), ("worker-1", "worker-0")}
    for r in results:
        lost = {r.src_node, r.dst_node} == {"worker-0", "worker-1"}
        assert r.outcome == ("timeout" if lost else "reply"), r
        assert r.loss_pct == (100.0 if lost else 0.0)
    assert sum(not r.passed for r in results) == 8  # 2 VMs on each node, both directions: 2·2·2
    assert all(r.passed for r in mesh(fleet))  # and back to normal once the knob is reset


def test_console_failures_become_error_results(fleet: Fleet) -> None:
    a, b = list(fleet.vms.values())[:2]
    ghost = VMEndpoint(a.namespace, "vm-ghost", "worker-0", "10.220.9.9")
    plan = plan_probes([a, b, ghost], mode="full")
    results = run_probes(
        fleet.kube,
        group_by_source(plan),
        {**fleet.vms, ghost.key: ghost},
        ("fedora", PASSWORD),
        retry_interval=0.05,
        connect_timeout=5,
    )
    from_ghost = [r for r in results if r.src_vm == "vm-ghost"]
    assert len(from_ghost) == 2
    for r in from_ghost:
        assert r.outcome == "error" and not r.passed and "404" in r.error and f"{a.namespace}/vm-ghost" in r.error
    real = [r for r in results if r.src_vm != "vm-ghost"]
    assert [r.outcome for r in real if r.dst_vm != "vm-ghost"] == ["reply", "reply"]
    # nobody holds that on-link address: ARP fails, "Destination Host Unreachable"
    assert [r.outcome for r in real if r.dst_vm == "vm-ghost"] == ["unreachable", "unreachable"]


def test_wrong_credentials_become_error_results_without_the_password(fleet: Fleet) -> None:
    wrong = "n0t-The-Passw0rd"
    vms = list(fleet.vms.values())[:2]
    for v in vms:  # back to agetty: a logged-in guest would never be asked for the password
        with ConsoleSession(fleet.kube, v.namespace, v.name) as con:
            con.login("fedora", PASSWORD)
            con.send("exit\n")
            con.expect(f"{v.name} login: ", 5)
    plan = plan_probes(vms, mode="full")
    results = run_probes(fleet.kube, group_by_source(plan), fleet.vms, ("fedora", wrong), retry_interval=0.05)
    assert len(results) == 2
    for r in results:
        assert r.outcome == "error" and "rejected" in r.error and wrong not in r.error
    # the guests are back at agetty after three failures: the right password still logs in
    assert all(r.passed for r in run_probes(fleet.kube, group_by_source(plan), fleet.vms, ("fedora", PASSWORD)))


def test_a_held_console_is_waited_for(fleet: Fleet) -> None:
    """A source whose console is held elsewhere in the process waits its turn (never a second session)."""
    reg = SessionRegistry()
    a, b = list(fleet.vms.values())[:2]
    key = (fleet.kube.server, a.namespace, a.name)
    reg.claim(key)
    plan = plan_probes([a, b], mode="full")
    threading.Timer(0.3, reg.release, args=(key,)).start()
    start = time.monotonic()
    results = run_probes(fleet.kube, group_by_source(plan), fleet.vms, ("fedora", PASSWORD), registry=reg)
    assert time.monotonic() - start >= 0.3
    assert all(r.passed for r in results) and reg.active() == []


def test_nothing_to_do() -> None:
    assert run_probes(object(), {}, {}, ("u", "p")) == []  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        run_probes(object(), {}, {}, ("u", "p"), max_sessions=0)  # type: ignore[arg-type]
