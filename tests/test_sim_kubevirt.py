"""The simulated cluster's KubeVirt, IPAM and live-migration behaviour, seen only through the API."""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config, dynamic

from simcluster import ClusterConfig, SimCluster

PRIMARY = "k8s.ovn.org/primary-user-defined-network"


class Cluster:
    """Small helpers over the official client for building networks and VMs."""

    def __init__(self, sim: SimCluster) -> None:
        self.sim = sim
        api = config.new_client_from_config(str(sim.kubeconfig))
        self.core = client.CoreV1Api(api)
        self.dyn = dynamic.DynamicClient(api)
        self.cudns = self.dyn.resources.get(api_version="k8s.ovn.org/v1", kind="ClusterUserDefinedNetwork")
        self.vms = self.dyn.resources.get(api_version="kubevirt.io/v1", kind="VirtualMachine")
        self.vmis = self.dyn.resources.get(api_version="kubevirt.io/v1", kind="VirtualMachineInstance")
        self.vmims = self.dyn.resources.get(api_version="kubevirt.io/v1", kind="VirtualMachineInstanceMigration")
        self.claims = self.dyn.resources.get(api_version="k8s.cni.cncf.io/v1alpha1", kind="IPAMClaim")
        self.kv = self.dyn.resources.get(api_version="kubevirt.io/v1", kind="KubeVirt")

    def namespaces(self, count: int, labelled: bool = True) -> list[str]:
        suffix = uuid.uuid4().hex[:6]
        names = [f"ns-{suffix}-{i}" for i in range(count)]
        for n in names:
            labels = {PRIMARY: ""} if labelled else {}
            self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=n, labels=labels)))
        return names

    def network(
        self,
        namespaces: list[str],
        topology: str = "Layer3",
        cidr: str = "192.168.0.0/16",
        host_subnet: int = 24,
        persistent: bool = True,
    ) -> str:
        name = f"net-{uuid.uuid4().hex[:6]}"
        if topology == "Layer3":
            net = {
                "topology": "Layer3",
                "layer3": {"role": "Primary", "subnets": [{"cidr": cidr, "hostSubnet": host_subnet}]},
            }
        else:
            layer2: dict[str, Any] = {"role": "Primary", "subnets": [cidr]}
            if persistent:
                layer2["ipam"] = {"lifecycle": "Persistent"}
            net = {"topology": "Layer2", "layer2": layer2}
        self.cudns.create(
            body={
                "apiVersion": "k8s.ovn.org/v1",
                "kind": "ClusterUserDefinedNetwork",
                "metadata": {"name": name},
                "spec": {
                    "namespaceSelector": {
                        "matchExpressions": [
                            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}
                        ]
                    },
                    "network": net,
                },
            }
        )
        wait(lambda: _cond(self.cudns.get(name=name).to_dict(), "NetworkCreated") == "True", what="NetworkCreated")
        return name

    def vm(
        self,
        ns: str,
        name: str,
        run_strategy: str = "Always",
        node: str | None = None,
        binding: dict[str, Any] | None = None,
    ) -> None:
        spec: dict[str, Any] = {
            "domain": {
                "devices": {"interfaces": [{"name": "primary", **(binding or {"binding": {"name": "l2bridge"}})}]},
                "resources": {"requests": {"memory": "1Gi"}},
            },
            "networks": [{"name": "primary", "pod": {}}],
        }
        if node:
            spec["nodeSelector"] = {"kubernetes.io/hostname": node}
        self.vms.create(
            namespace=ns,
            body={
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachine",
                "metadata": {"name": name},
                "spec": {
                    "runStrategy": run_strategy,
                    "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
                },
            },
        )

    def vmi(self, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return self.vmis.get(namespace=ns, name=name).to_dict()
        except Exception:
            return None

    def running(self, ns: str, name: str, timeout: float = 10) -> dict[str, Any]:
        wait(
            lambda: (self.vmi(ns, name) or {}).get("status", {}).get("phase") == "Running",
            timeout,
            f"{ns}/{name} Running",
        )
        vmi = self.vmi(ns, name)
        assert vmi is not None
        return vmi

    def migrate(self, ns: str, vm: str) -> int:
        """`virtctl migrate`: PUT the migrate subresource."""
        api = self.dyn.client
        method, url, headers, body, _ = api.param_serialize(
            "PUT",
            f"/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachines/{vm}/migrate",
            header_params={"Content-Type": "application/json"},
            body={},
            auth_settings=["BearerToken"],
        )
        return api.call_api(method, url, headers, body).status


def wait(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _cond(obj: dict[str, Any], type_: str) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c.get("status")
    return None


def ip_of(vmi: dict[str, Any]) -> str:
    return vmi["status"]["interfaces"][0]["ipAddress"]


@pytest.fixture(scope="module")
def cl() -> Iterator[Cluster]:
    with SimCluster(config=ClusterConfig(nodes=4, profile="fast")) as sim:
        yield Cluster(sim)


# ---- VM → VMI ------------------------------------------------------------------------------------
def test_vm_becomes_running_vmi_with_phases_and_status(cl: Cluster) -> None:
    (ns,) = cl.namespaces(1)
    cl.network([ns], cidr="10.40.0.0/16")
    cl.vm(ns, "vm-a")
    vmi = cl.running(ns, "vm-a")
    st = vmi["status"]
    phases = [p["phase"] for p in st["phaseTransitionTimestamps"]]
    assert phases == ["Pending", "Scheduling", "Scheduled", "Running"]
    iface = st["interfaces"][0]
    assert iface["name"] == "primary" and iface["podInterfaceName"] == "ovn-udn1"
    assert iface["ipAddresses"] == [iface["ipAddress"]] and iface["mac"].startswith("0a:58:")
    assert ipaddress.ip_address(iface["ipAddress"]) in ipaddress.ip_network("10.40.0.0/16")
    assert iface["ipAddress"].endswith(".3")  # first VM in a fresh node subnet
    assert _cond(vmi, "Ready") == "True" and _cond(vmi, "LiveMigratable") == "True"
    owner = vmi["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("VirtualMachine", "vm-a", True)
    wait(
        lambda: (
            (cl.vms.get(namespace=ns, name="vm-a").to_dict().get("status") or {}).get("printableStatus") == "Running"
        )
    )
    vm = cl.vms.get(namespace=ns, name="vm-a").to_dict()
    assert vm["status"]["ready"] is True and vm["status"]["created"] is True


def test_run_strategies_halted_manual_and_stop_start(cl: Cluster) -> None:
    (ns,) = cl.namespaces(1)
    cl.network([ns], cidr="10.41.0.0/16")
    cl.vm(ns, "halted", run_strategy="Halted")
    cl.vm(ns, "manual", run_strategy="Manual")
    time.sleep(0.3)
    assert cl.vmi(ns, "halted") is None and cl.vmi(ns, "manual") is None
    wait(
        lambda: (
            (cl.vms.get(namespace=ns, name="halted").to_dict().get("status") or {}).get("printableStatus") == "Stopped"
        )
    )
    cl.vms.patch(
        namespace=ns,
        name="halted",
        body={"spec": {"runStrategy": "Always"}},
        content_type="application/merge-patch+json",
    )
    ip_first = ip_of(cl.running(ns, "halted"))
    cl.vms.patch(
        namespace=ns,
        name="halted",
        body={"spec": {"runStrategy": "Halted"}},
        content_type="application/merge-patch+json",
    )
    wait(lambda: cl.vmi(ns, "halted") is None, what="VMI stopped")
    cl.vms.patch(
        namespace=ns,
        name="halted",
        body={"spec": {"runStrategy": "Always"}},
        content_type="application/merge-patch+json",
    )
    ip_second = ip_of(cl.running(ns, "halted"))
    assert ip_first != ip_second  # Layer3: a restarted VM takes the next free address (no immediate reuse)


def test_deleting_a_vm_removes_its_vmi_and_frees_capacity(cl: Cluster) -> None:
    (ns,) = cl.namespaces(1)
    cl.network([ns], cidr="10.42.0.0/16")
    cl.vm(ns, "gone")
    cl.running(ns, "gone")
    cl.vms.delete(namespace=ns, name="gone")
    wait(lambda: cl.vmi(ns, "gone") is None, what="VMI deleted")
    wait(lambda: not [v for v in cl.vms.get(namespace=ns).items], what="VM deleted")


def test_namespace_without_primary_udn_gets_default_network_address(cl: Cluster) -> None:
    (ns,) = cl.namespaces(1, labelled=False)
    cl.vm(ns, "plain")
    iface = cl.running(ns, "plain")["status"]["interfaces"][0]
    assert ipaddress.ip_address(iface["ipAddress"]) in ipaddress.ip_network("10.128.0.0/14")
    assert iface["podInterfaceName"] == "eth0"


def test_layer3_node_subnets_are_annotated_in_order(cl: Cluster) -> None:
    (ns,) = cl.namespaces(1)
    net = cl.network([ns], cidr="172.20.0.0/16", host_subnet=24)
    key = f"cluster_udn_{net}"
    subnets = []
    for node in cl.core.list_node().items:
        ann = json.loads(node.metadata.annotations["k8s.ovn.org/node-subnets"])
        subnets.append(ann[key][0])
    assert sorted(subnets, key=lambda s: ipaddress.ip_network(s)) == [f"172.20.{i}.0/24" for i in range(4)]


def test_more_nodes_than_node_subnets_fails_allocation(cl: Cluster) -> None:
    (ns,) = cl.namespaces(1)
    name = cl.network([ns], cidr="10.10.100.0/24", host_subnet=25)  # 2 node subnets for 4 nodes
    wait(lambda: _cond(cl.cudns.get(name=name).to_dict(), "NetworkAllocationSucceeded") == "False")
    cond = next(
        c
        for c in cl.cudns.get(name=name).to_dict()["status"]["conditions"]
        if c["type"] == "NetworkAllocationSucceeded"
    )
    assert cond["reason"] == "InternalError"
    assert cond["message"].startswith("Network allocation failed for at least one node: worker-")
    events = cl.core.list_event_for_all_namespaces(field_selector=f"involvedObject.name={name}").items
    assert any(e.reason == "NetworkAllocationFailed" and "Error occurred for node worker-" in e.message for e in events)


def test_full_node_subnet_blocks_the_vm_with_a_clear_reason(cl: Cluster) -> None:
    (ns,) = cl.namespaces(1)
    node = "worker-2"
    cl.network([ns], cidr="10.60.0.0/26", host_subnet=29)  # /29: .3 .4 .5 .6 usable per node
    for i in range(4):
        cl.vm(ns, f"fill-{i}", node=node)
    for i in range(4):
        cl.running(ns, f"fill-{i}")
    cl.vm(ns, "one-too-many", node=node)
    wait(lambda: "exhausted" in json.dumps((cl.vmi(ns, "one-too-many") or {}).get("status", {})), what="blocked reason")
    vmi = cl.vmi(ns, "one-too-many")
    assert vmi is not None and vmi["status"]["phase"] != "Running"
    ready = next(c for c in vmi["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "FailedCreatePodSandBox" and "subnet address pool exhausted" in ready["message"]
    cl.vms.delete(namespace=ns, name="fill-0")  # an address frees up: the blocked VM starts
    cl.running(ns, "one-too-many", timeout=15)


def test_layer2_persistent_ip_survives_restart_via_ipamclaim(cl: Cluster) -> None:
    (ns,) = cl.namespaces(1)
    cl.network([ns], topology="Layer2", cidr="10.70.0.0/24", persistent=True)
    cl.vm(ns, "keep")
    ip = ip_of(cl.running(ns, "keep"))
    assert ip == "10.70.0.3"
    claim = cl.claims.get(namespace=ns, name="keep.primary").to_dict()
    assert claim["spec"]["network"].startswith("cluster_udn_") and claim["status"]["ips"] == ["10.70.0.3/24"]
    assert claim["metadata"]["ownerReferences"][0]["kind"] == "VirtualMachine"
    cl.vm(ns, "other")
    cl.running(ns, "other")
    cl.vms.patch(
        namespace=ns, name="keep", body={"spec": {"runStrategy": "Halted"}}, content_type="application/merge-patch+json"
    )
    wait(lambda: cl.vmi(ns, "keep") is None)
    cl.vms.patch(
        namespace=ns, name="keep", body={"spec": {"runStrategy": "Always"}}, content_type="application/merge-patch+json"
    )
    assert ip_of(cl.running(ns, "keep")) == ip
    cl.vms.delete(namespace=ns, name="keep")
    wait(
        lambda: not [c for c in cl.claims.get(namespace=ns).items if c.metadata.name == "keep.primary"],
        what="claim released with the VM",
    )


def test_unschedulable_vm_reports_error_unschedulable(cl: Cluster) -> None:
    (ns,) = cl.namespaces(1)
    cl.network([ns], cidr="10.43.0.0/16")
    cl.vm(ns, "nowhere", node="no-such-node")
    wait(
        lambda: (
            (cl.vms.get(namespace=ns, name="nowhere").to_dict().get("status") or {}).get("printableStatus")
            == "ErrorUnschedulable"
        )
    )
    vmi = cl.vmi(ns, "nowhere")
    assert vmi is not None
    cond = next(c for c in vmi["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["reason"] == "Unschedulable" and "didn't match Pod's node affinity/selector" in cond["message"]


# ---- live migration ------------------------------------------------------------------------------
@pytest.mark.parametrize("topology", ["Layer3", "Layer2"])
def test_live_migration_moves_node_and_ip_only_on_layer3(cl: Cluster, topology: str) -> None:
    (ns,) = cl.namespaces(1)
    cidr = "10.80.0.0/16" if topology == "Layer3" else "10.81.0.0/16"
    cl.network([ns], topology=topology, cidr=cidr)
    cl.vm(ns, "mover")
    before = cl.running(ns, "mover")
    assert cl.migrate(ns, "mover") == 202
    wait(
        lambda: any(m.status and m.status.phase == "Succeeded" for m in cl.vmims.get(namespace=ns).items),
        what="migration Succeeded",
    )
    mig = cl.vmims.get(namespace=ns).items[0].to_dict()
    assert mig["metadata"]["generateName"] == "kubevirt-migrate-vm-"
    assert mig["metadata"]["labels"]["kubevirt.io/vmi-name"] == "mover"
    phases = [p["phase"] for p in mig["status"]["phaseTransitionTimestamps"]]
    assert phases == ["Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running", "Succeeded"]
    after = cl.vmi(ns, "mover")
    assert after is not None
    state = after["status"]["migrationState"]
    assert state["completed"] is True and state["sourceNode"] == before["status"]["nodeName"]
    assert after["status"]["nodeName"] == state["targetNode"] != state["sourceNode"]
    if topology == "Layer3":
        assert ip_of(after) != ip_of(before)
        assert ip_of(after).endswith(".3")  # first address of the target node's subnet
    else:
        assert ip_of(after) == ip_of(before)


def test_migration_admission_rejections(cl: Cluster) -> None:
    (ns,) = cl.namespaces(1)
    cl.network([ns], cidr="10.82.0.0/16")
    body = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {"generateName": "m-"},
        "spec": {"vmiName": "missing"},
    }
    with pytest.raises(Exception) as e:
        cl.vmims.create(namespace=ns, body=body)
    assert "does not exist" in str(getattr(e.value, "body", e.value))
    cl.vm(ns, "bridge", binding={"bridge": {}})
    vmi = cl.running(ns, "bridge")
    assert _cond(vmi, "LiveMigratable") == "False"
    with pytest.raises(Exception) as e:
        cl.vmims.create(namespace=ns, body={**body, "spec": {"vmiName": "bridge"}})
    assert "InterfaceNotLiveMigratable" in str(getattr(e.value, "body", e.value))
    cl.vm(ns, "halted", run_strategy="Halted")
    assert cl.migrate(ns, "halted") == 409  # virt-api: the VM is not running


def test_migrations_respect_cluster_and_per_node_limits(cl: Cluster) -> None:
    (ns,) = cl.namespaces(1)
    cl.network([ns], topology="Layer2", cidr="10.83.0.0/16")
    kv = cl.kv.get(namespace="openshift-cnv").items[0]
    cl.kv.patch(
        namespace="openshift-cnv",
        name=kv.metadata.name,
        content_type="application/merge-patch+json",
        body={
            "spec": {
                "configuration": {
                    "migrations": {"parallelMigrationsPerCluster": 2, "parallelOutboundMigrationsPerNode": 1}
                }
            }
        },
    )
    try:
        for i in range(6):
            cl.vm(ns, f"m{i}")
        for i in range(6):
            cl.running(ns, f"m{i}")
        peak_cluster = 0
        peak_node: dict[str, int] = {}
        for i in range(6):
            cl.migrate(ns, f"m{i}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            migs = cl.vmims.get(namespace=ns).items
            active = [m for m in migs if m.status and m.status.phase not in ("Pending", "Succeeded", "Failed")]
            peak_cluster = max(peak_cluster, len(active))
            per_node: dict[str, int] = {}
            for m in active:
                src = (m.to_dict()["status"].get("migrationState") or {}).get("sourceNode", "?")
                per_node[src] = per_node.get(src, 0) + 1
            for k, v in per_node.items():
                peak_node[k] = max(peak_node.get(k, 0), v)
            if len(migs) == 6 and all(m.status and m.status.phase == "Succeeded" for m in migs):
                break
            time.sleep(0.005)
        assert all(m.status.phase == "Succeeded" for m in cl.vmims.get(namespace=ns).items)
        assert 1 <= peak_cluster <= 2
        assert all(v <= 1 for v in peak_node.values())
    finally:
        cl.kv.patch(
            namespace="openshift-cnv",
            name=kv.metadata.name,
            content_type="application/merge-patch+json",
            body={
                "spec": {
                    "configuration": {
                        "migrations": {"parallelMigrationsPerCluster": 5, "parallelOutboundMigrationsPerNode": 1}
                    }
                }
            },
        )


# ---- fault knobs ---------------------------------------------------------------------------------
def test_injected_migration_failure_keeps_the_vm_on_its_source(cl: Cluster) -> None:
    (ns,) = cl.namespaces(1)
    cl.network([ns], cidr="10.84.0.0/16")
    cl.vm(ns, "stay")
    before = cl.running(ns, "stay")
    cl.sim.set_faults(migration_failure_rate=1.0)
    try:
        cl.migrate(ns, "stay")
        wait(lambda: any(m.status and m.status.phase == "Failed" for m in cl.vmims.get(namespace=ns).items))
    finally:
        cl.sim.set_faults(migration_failure_rate=0.0)
    after = cl.vmi(ns, "stay")
    assert after is not None
    assert after["status"]["nodeName"] == before["status"]["nodeName"] and ip_of(after) == ip_of(before)
    state = after["status"]["migrationState"]
    assert state["failed"] is True and "simulated failure" in state["failureReason"]


def test_injected_start_failures_crash_loop_then_recover(cl: Cluster) -> None:
    (ns,) = cl.namespaces(1)
    cl.network([ns], cidr="10.85.0.0/16")
    cl.sim.set_faults(vmi_start_failure_rate=1.0)
    try:
        cl.vm(ns, "flaky")
        wait(
            lambda: (
                (cl.vms.get(namespace=ns, name="flaky").to_dict().get("status") or {}).get("startFailure") is not None
            ),
            what="a start failure recorded",
        )
    finally:
        cl.sim.set_faults(vmi_start_failure_rate=0.0)
    cl.running(ns, "flaky", timeout=15)


def test_node_not_ready_fails_its_vms_and_they_restart_elsewhere(cl: Cluster) -> None:
    (ns,) = cl.namespaces(1)
    cl.network([ns], topology="Layer2", cidr="10.86.0.0/16")
    cl.vm(ns, "victim", node=None)
    node = cl.running(ns, "victim")["status"]["nodeName"]
    cl.sim.set_faults(not_ready_nodes=[node])
    try:
        wait(
            lambda: next(c.status for c in cl.core.read_node(node).status.conditions if c.type == "Ready") != "True",
            what="node NotReady",
        )
        wait(
            lambda: (
                ((cl.vmi(ns, "victim") or {}).get("status") or {}).get("nodeName") not in (None, node)
                and cl.vmi(ns, "victim")["status"]["phase"] == "Running"
            ),
            timeout=15,
            what="restarted elsewhere",
        )
    finally:
        cl.sim.set_faults(not_ready_nodes=[])
    wait(lambda: next(c.status for c in cl.core.read_node(node).status.conditions if c.type == "Ready") == "True")


def test_many_vms_get_unique_addresses_from_their_node_subnets(cl: Cluster) -> None:
    nss = cl.namespaces(4)
    net = "cluster_udn_" + cl.network(nss, cidr="10.90.0.0/16", host_subnet=24)
    for ns in nss:
        for i in range(25):
            cl.vm(ns, f"vm-{i}")
    wait(
        lambda: (
            sum(
                1
                for v in cl.vmis.get().items
                if v.metadata.namespace in nss and v.status and v.status.phase == "Running"
            )
            == 100
        ),
        timeout=30,
        what="100 VMIs Running",
    )
    vmis = [v.to_dict() for v in cl.vmis.get().items if v.metadata.namespace in nss]
    ips = [ip_of(v) for v in vmis]
    assert len(set(ips)) == 100
    subnets = {
        n.metadata.name: json.loads(n.metadata.annotations["k8s.ovn.org/node-subnets"])
        for n in cl.core.list_node().items
    }
    for v in vmis:
        node_subnet = ipaddress.ip_network(subnets[v["status"]["nodeName"]][net][0])
        assert ipaddress.ip_address(ip_of(v)) in node_subnet
