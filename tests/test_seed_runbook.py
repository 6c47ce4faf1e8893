"""The seed's runbook, step by step, on the simulated cluster, as an administrator does it by hand: two
labelled namespaces, a ClusterUserDefinedNetwork, one VM in each, console login and ping, then
`virtctl migrate` and a look at the addresses, as the cluster reports them and as the guests see them.

Layer3 asserts what upstream implies (simcluster/FIDELITY.md): OVN-Kubernetes answers VM DHCP only on
Layer2 primary networks, so the Layer3 guests hold no IPv4 address and cannot ping; the launcher
pods get addresses from their node's subnet, and the migrated VM's target pod another one, which the
guest never learns. Layer2 asserts what OVN-K's e2e "should keep ip" asserts: the VMI's addresses
survive the migration, the guest holds them, and the gateway's neighbour entry carries the MAC derived
from the gateway's address.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterator

import pytest
from test_sim_fidelity import Cluster, iface, ovn_mac, udn_status, wait_for

from simcluster import ClusterConfig, SimCluster


@pytest.fixture(scope="module")
def cl() -> Iterator[Cluster]:
    with SimCluster(config=ClusterConfig(nodes=3, profile="fast")) as sim:
        yield Cluster(sim)


def _namespaces_and_network(cl: Cluster, topology: str, suffix: str) -> tuple[str, str, str, str]:
    from kubernetes import client

    ns7, ns8 = f"namespace-7-{suffix}", f"namespace-8-{suffix}"
    for ns in (ns7, ns8):  # 1-2. namespaces labelled at creation
        cl.core.create_namespace(
            client.V1Namespace(
                metadata=client.V1ObjectMeta(name=ns, labels={"k8s.ovn.org/primary-user-defined-network": ""})
            )
        )
    name = f"udn-cluster-primary-{topology.lower()}-{suffix}"  # 3. the ClusterUserDefinedNetwork
    cidr = "192.168.0.0/16" if topology == "Layer3" else "10.123.0.0/16"
    network = (
        {"topology": "Layer3", "layer3": {"role": "Primary", "subnets": [{"cidr": cidr, "hostSubnet": 24}]}}
        if topology == "Layer3"
        else {
            "topology": "Layer2",
            "layer2": {"role": "Primary", "subnets": [cidr], "ipam": {"lifecycle": "Persistent"}},
        }
    )
    cl.crd.create_cluster_custom_object(
        "k8s.ovn.org",
        "v1",
        "clusteruserdefinednetworks",
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
        },
    )

    def created() -> bool:
        obj = cl.crd.get_cluster_custom_object("k8s.ovn.org", "v1", "clusteruserdefinednetworks", name)
        return any(
            c["type"] == "NetworkCreated" and c["status"] == "True"
            for c in (obj.get("status") or {}).get("conditions", [])
        )

    wait_for(created, what="NetworkCreated")
    for ns in (ns7, ns8):
        assert cl.crd.get_namespaced_custom_object("k8s.cni.cncf.io", "v1", ns, "network-attachment-definitions", name)
        cl.nets[ns] = f"cluster_udn_{name}"
    return ns7, ns8, name, cidr


def _node_subnet(cl: Cluster, node: str, network: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    ann = json.loads(cl.core.read_node(node).metadata.annotations["k8s.ovn.org/node-subnets"])
    value = ann[network]
    return ipaddress.ip_network(value[0] if isinstance(value, list) else value)


def test_seed_runbook_layer3(cl: Cluster) -> None:
    ns7, ns8, name, _ = _namespaces_and_network(cl, "Layer3", uuid.uuid4().hex[:5])
    network = f"cluster_udn_{name}"
    # 4. one VM in each namespace: Running; each launcher pod has an address from its node's subnet
    cl.vm(ns7, "rhel8-vm7")
    cl.vm(ns8, "rhel8-vm8")
    vm7, vm8 = cl.running(ns7, "rhel8-vm7", agent=True), cl.running(ns8, "rhel8-vm8", agent=True)
    pod_ip: dict[str, str] = {}
    for ns, vm, vmi in ((ns7, "rhel8-vm7", vm7), (ns8, "rhel8-vm8", vm8)):
        pod_ip[vm] = udn_status(cl.active_pod(ns, vm))["ips"][0]
        assert ipaddress.ip_address(pod_ip[vm]) in _node_subnet(cl, vmi["status"]["nodeName"], network)
        # the VMI status (`oc get vmi`, IP column) shows the pod's address: KubeVirt's pod interface
        # cache; KubeVirt 1.5 keeps it although the guest agent reports only a link-local address
        assert iface(vmi)["ipAddress"] == pod_ip[vm]
    # 5. console login and ping: the guests got no address (nothing answers DHCP on Layer3)
    with cl.console(ns7, "rhel8-vm7") as con:
        assert con.addresses() == []
        out, rc = con.run(f"ping -c 3 -W 2 -q {pod_ip['rhel8-vm8']}")
        assert (out, rc) == ("ping: connect: Network is unreachable\n", 2)
    # 6. virtctl migrate rhel8-vm8: another node, and its target pod another address and MAC
    old_node, old_ip, old_mac = vm8["status"]["nodeName"], pod_ip["rhel8-vm8"], iface(vm8)["mac"]
    moved = cl.migrate(ns8, "rhel8-vm8")
    assert moved["status"]["nodeName"] != old_node
    new_ip = udn_status(cl.active_pod(ns8, "rhel8-vm8"))["ips"][0]
    assert new_ip != old_ip and iface(moved)["ipAddress"] == new_ip  # as the seed saw: the IP changed
    assert ipaddress.ip_address(new_ip) in _node_subnet(cl, moved["status"]["nodeName"], network)
    assert iface(moved)["mac"] == old_mac != ovn_mac(new_ip)  # the guest keeps its MAC
    with cl.console(ns8, "rhel8-vm8") as con:
        assert con.addresses() == []
    with cl.console(ns7, "rhel8-vm7") as con:
        out, rc = con.run(f"ping -c 1 -W 1 -q {new_ip}")
        assert rc == 2, out


def test_seed_runbook_layer2(cl: Cluster) -> None:
    ns7, ns8, _, cidr = _namespaces_and_network(cl, "Layer2", uuid.uuid4().hex[:5])
    cl.vm(ns7, "rhel8-vm7")
    cl.vm(ns8, "rhel8-vm8")
    vm7, vm8 = cl.running(ns7, "rhel8-vm7", agent=True), cl.running(ns8, "rhel8-vm8", agent=True)
    ip7, ip8 = iface(vm7)["ipAddress"], iface(vm8)["ipAddress"]
    for ip in (ip7, ip8):
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
    # 5. console login and ping, both ways; the guests hold the VMI's (non-link-local) addresses
    with cl.console(ns7, "rhel8-vm7") as con:
        assert con.addresses() == [ip7]
        out, rc = con.run(f"ping -c 3 -W 2 -q {ip8}")
        assert rc == 0 and " 0% packet loss" in out
    with cl.console(ns8, "rhel8-vm8") as con:
        assert con.addresses() == [ip8]
        out, rc = con.run(f"ping -c 3 -W 2 -q {ip7}")
        assert rc == 0
    # 6. virtctl migrate rhel8-vm8: other node, same addresses, the guest still holds them
    old_node = vm8["status"]["nodeName"]
    moved = cl.migrate(ns8, "rhel8-vm8")
    assert moved["status"]["nodeName"] != old_node
    assert iface(moved)["ipAddresses"] == iface(vm8)["ipAddresses"] and iface(moved)["mac"] == iface(vm8)["mac"]
    gateway = str(next(ipaddress.ip_network(cidr).hosts()))
    with cl.console(ns8, "rhel8-vm8") as con:
        assert con.addresses() == [ip8]
        out, rc = con.run(f"ip neigh get {gateway} dev eth0")
        assert rc == 0 and f"lladdr {ovn_mac(gateway)}" in out
    with cl.console(ns7, "rhel8-vm7") as con:
        out, rc = con.run(f"ping -c 3 -W 2 -q {ip8}")
        assert rc == 0, out
