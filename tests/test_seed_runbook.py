"""The seed's runbook, step by step, on the simulated cluster — as an administrator does it by hand:
two labelled namespaces, a ClusterUserDefinedNetwork, one VM in each, console login and ping, then
`virtctl migrate` and a look at the IPs. Layer3 moves the address into the target node's subnet;
Layer2 keeps it."""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from simcluster import ClusterConfig, SimCluster
from tasks.console import ConsoleSession
from tasks.kube import ClusterTarget, Kube

PASSWORD = "runbook-pw"


@pytest.fixture(scope="module")
def kube() -> Iterator[Kube]:
    with SimCluster(config=ClusterConfig(nodes=3, profile="fast")) as sim:
        yield Kube(ClusterTarget(kubeconfig=str(sim.kubeconfig)), qps=0)


def _wait(fn: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = fn()
        if out:
            return out
        time.sleep(0.05)
    raise AssertionError("timed out")


def _vm(ns: str, name: str) -> dict[str, Any]:
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
                            "interfaces": [{"name": "primary", "binding": {"name": "l2bridge"}}],
                            "disks": [{"name": "cloudinitdisk", "disk": {"bus": "virtio"}}],
                        },
                        "resources": {"requests": {"memory": "1Gi"}},
                    },
                    "networks": [{"name": "primary", "pod": {}}],
                    "volumes": [
                        {
                            "name": "cloudinitdisk",
                            "cloudInitNoCloud": {
                                "userData": f"#cloud-config\npassword: {PASSWORD}\nchpasswd: {{ expire: False }}\n"
                            },
                        }
                    ],
                }
            },
        },
    }


def _running(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        vmi = kube.get("kubevirt.io/v1", "VirtualMachineInstance", name, ns)
        st = (vmi or {}).get("status") or {}
        return vmi if st.get("phase") == "Running" and (st.get("interfaces") or [{}])[0].get("ipAddress") else None

    return _wait(ready)


def _ip(vmi: dict[str, Any]) -> str:
    return vmi["status"]["interfaces"][0]["ipAddress"]


def _node_subnet(kube: Kube, node: str, network: str) -> ipaddress.IPv4Network:
    ann = json.loads(kube.get("v1", "Node", node)["metadata"]["annotations"]["k8s.ovn.org/node-subnets"])
    return ipaddress.ip_network(ann[network][0])


def _ping(kube: Kube, ns: str, vm: str, target: str) -> tuple[str, int]:
    with ConsoleSession(kube, ns, vm, connect_timeout=30) as session:
        session.login("fedora", PASSWORD)
        return session.run(f"ping -c 3 -W 2 -q {target}")


@pytest.mark.parametrize("topology", ["Layer3", "Layer2"])
def test_seed_runbook(kube: Kube, topology: str) -> None:
    suffix = uuid.uuid4().hex[:5]
    ns7, ns8 = f"namespace-7-{suffix}", f"namespace-8-{suffix}"
    # 1-2. namespaces labelled at creation
    for ns in (ns7, ns8):
        kube.create(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"k8s.ovn.org/primary-user-defined-network": ""}},
            }
        )
    # 3. the ClusterUserDefinedNetwork
    name = f"udn-cluster-primary-{topology.lower()}-{suffix}"
    cidr = "192.168.0.0/16" if topology == "Layer3" else "10.123.0.0/16"
    network = (
        {"topology": "Layer3", "layer3": {"role": "Primary", "subnets": [{"cidr": cidr, "hostSubnet": 24}]}}
        if topology == "Layer3"
        else {
            "topology": "Layer2",
            "layer2": {"role": "Primary", "subnets": [cidr], "ipam": {"lifecycle": "Persistent"}},
        }
    )
    kube.create(
        {
            "apiVersion": "k8s.ovn.org/v1",
            "kind": "ClusterUserDefinedNetwork",
            "metadata": {"name": name},
            "spec": {
                "namespaceSelector": {
                    "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns7, ns8]}]
                },
                "network": network,
            },
        }
    )
    cudn = kube.wait_for(
        "k8s.ovn.org/v1",
        "ClusterUserDefinedNetwork",
        name,
        condition=lambda o: any(
            c["type"] == "NetworkCreated" and c["status"] == "True"
            for c in ((o or {}).get("status") or {}).get("conditions") or []
        ),
        timeout=10,
    )
    assert cudn is not None
    for ns in (ns7, ns8):
        assert kube.get("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition", name, ns) is not None
    # 4. one VM in each namespace, both Running with addresses from the right subnets
    kube.create(_vm(ns7, "rhel8-vm7"))
    kube.create(_vm(ns8, "rhel8-vm8"))
    vm7, vm8 = _running(kube, ns7, "rhel8-vm7"), _running(kube, ns8, "rhel8-vm8")
    net_name = f"cluster_udn_{name}"
    for vmi in (vm7, vm8):
        if topology == "Layer3":
            assert ipaddress.ip_address(_ip(vmi)) in _node_subnet(kube, vmi["status"]["nodeName"], net_name)
        else:
            assert ipaddress.ip_address(_ip(vmi)) in ipaddress.ip_network(cidr)
    # 5. console login and ping between them
    out, code = _ping(kube, ns7, "rhel8-vm7", _ip(vm8))
    assert code == 0 and " 0% packet loss" in out
    out, code = _ping(kube, ns8, "rhel8-vm8", _ip(vm7))
    assert code == 0
    # 6. virtctl migrate rhel8-vm8, then compare node and IP
    old_ip, old_node = _ip(vm8), vm8["status"]["nodeName"]
    status = kube.put_subresource(
        f"/apis/subresources.kubevirt.io/v1/namespaces/{ns8}/virtualmachines/rhel8-vm8/migrate", {}
    )
    assert status == 202
    moved = _wait(
        lambda: (
            (v := kube.get("kubevirt.io/v1", "VirtualMachineInstance", "rhel8-vm8", ns8))
            and ((v.get("status") or {}).get("migrationState") or {}).get("completed")
            and v
        )
    )
    assert moved["status"]["nodeName"] != old_node
    new_ip = _ip(moved)
    if topology == "Layer3":
        assert new_ip != old_ip
        assert ipaddress.ip_address(new_ip) in _node_subnet(kube, moved["status"]["nodeName"], net_name)
        out, code = _ping(kube, ns7, "rhel8-vm7", new_ip)
        assert code == 0, out
        out, code = _ping(kube, ns7, "rhel8-vm7", old_ip)
        assert code != 0 and "100% packet loss" in out
    else:
        assert new_ip == old_ip
        out, code = _ping(kube, ns7, "rhel8-vm7", new_ip)
        assert code == 0, out
