"""The simulated OVN-K user-defined network controller, through the API only: NADs per selected
namespace, finalizers, the NetworkCreated condition with upstream reasons and messages, selector
changes, in-use deletion, and namespaced UserDefinedNetworks."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException

from simcluster import SimCluster

T = TypeVar("T")

PRIMARY_LABEL = "k8s.ovn.org/primary-user-defined-network"
FINALIZER = "k8s.ovn.org/user-defined-network-protection"
SYNC_ERROR = "NetworkAttachmentDefinitionSyncError"
RENDER = "failed to generate NetworkAttachmentDefinition: failed to render CNI network config: "
OVERLAP = "pod or join subnet overlaps with already configured internal subnets: "


# ---- helpers ------------------------------------------------------------------------------------
def wait_for(fn: Callable[[], T | None], timeout: float = 5.0, what: str = "condition") -> T:
    """Poll `fn` until it returns something truthy (ApiException counts as not yet)."""
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


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def res(dyn: dynamic.DynamicClient) -> dict[str, Any]:
    return {
        "cudn": dyn.resources.get(api_version="k8s.ovn.org/v1", kind="ClusterUserDefinedNetwork"),
        "udn": dyn.resources.get(api_version="k8s.ovn.org/v1", kind="UserDefinedNetwork"),
        "nad": dyn.resources.get(api_version="k8s.cni.cncf.io/v1", kind="NetworkAttachmentDefinition"),
        "vmi": dyn.resources.get(api_version="kubevirt.io/v1", kind="VirtualMachineInstance"),
    }


@pytest.fixture
def cleanup(core: client.CoreV1Api, res: dict[str, Any]) -> Iterator[list[tuple[str, str]]]:
    """Objects to delete after the test: ("ns", name) or ("cudn", name)."""
    made: list[tuple[str, str]] = []
    yield made
    for kind, name in reversed(made):
        try:
            if kind == "ns":
                core.delete_namespace(name)
            else:
                res["cudn"].delete(name=name)
        except ApiException as e:
            if e.status != 404:
                raise


def make_ns(core: client.CoreV1Api, cleanup: list, name: str, primary: bool = True, **labels: str) -> str:
    lbl = dict(labels)
    if primary:
        lbl[PRIMARY_LABEL] = ""
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=lbl)))
    cleanup.append(("ns", name))
    return name


def cudn_body(name: str, namespaces: list[str] | None = None, network: dict | None = None, **extra: Any) -> dict:
    selector: dict[str, Any] = (
        {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}]}
        if namespaces is not None
        else extra.pop("selector")
    )
    return {
        "apiVersion": "k8s.ovn.org/v1",
        "kind": "ClusterUserDefinedNetwork",
        "metadata": {"name": name, **extra},
        "spec": {
            "namespaceSelector": selector,
            "network": network
            or {
                "topology": "Layer3",
                "layer3": {"role": "Primary", "subnets": [{"cidr": "192.168.0.0/16", "hostSubnet": 24}]},
            },
        },
    }


def make_cudn(res: dict[str, Any], cleanup: list, body: dict) -> str:
    res["cudn"].create(body=body)
    cleanup.append(("cudn", body["metadata"]["name"]))
    return body["metadata"]["name"]


def condition(res: dict[str, Any], name: str, ns: str | None = None, ctype: str = "NetworkCreated") -> dict | None:
    obj = res["udn"].get(name=name, namespace=ns) if ns else res["cudn"].get(name=name)
    for c in (obj.to_dict().get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return c
    return None


def wait_condition(
    res: dict[str, Any], name: str, status: str, message: str | None = None, ns: str | None = None
) -> dict:
    def check() -> dict | None:
        c = condition(res, name, ns)
        if c and c["status"] == status and (message is None or c["message"] == message):
            return c
        return None

    return wait_for(check, what=f"{name} NetworkCreated={status} {message!r}; have {condition(res, name, ns)!r}")


def get_nad(res: dict[str, Any], ns: str, name: str) -> dict | None:
    try:
        return res["nad"].get(name=name, namespace=ns).to_dict()
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def gone(fn: Callable[[], Any]) -> bool:
    try:
        fn()
    except ApiException as e:
        return e.status == 404
    return False


def created_msg(*namespaces: str) -> str:
    return f"NetworkAttachmentDefinition has been created in following namespaces: [{', '.join(sorted(namespaces))}]"


def bare_vmi(name: str, ns: str) -> dict:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "domain": {
                "resources": {"requests": {"memory": "1024Mi"}},
                "devices": {
                    "disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}}],
                    "interfaces": [{"name": "net1", "binding": {"name": "l2bridge"}}],
                },
            },
            "networks": [{"name": "net1", "pod": {}}],
            "volumes": [{"name": "containerdisk", "containerDisk": {"image": "quay.io/containerdisks/fedora:latest"}}],
        },
    }


def launcher_pod(core: client.CoreV1Api, ns: str, vmi: str) -> str:
    """The name of the VMI's virt-launcher pod once its sandbox (and pod-networks annotation) is up."""

    def found() -> str | None:
        for pod in core.list_namespaced_pod(ns, label_selector="kubevirt.io=virt-launcher").items:
            annotations = pod.metadata.annotations or {}
            if annotations.get("kubevirt.io/domain") == vmi and annotations.get("k8s.ovn.org/pod-networks"):
                return str(pod.metadata.name)
        return None

    return wait_for(found, what=f"{ns}/{vmi}'s launcher pod")


# ---- rendering ----------------------------------------------------------------------------------
def test_layer3_cudn_renders_a_nad_per_selected_namespace(
    core: client.CoreV1Api, res: dict[str, Any], cleanup: list
) -> None:
    tag = uuid.uuid4().hex[:6]
    a, b = make_ns(core, cleanup, f"namespace-7-{tag}"), make_ns(core, cleanup, f"namespace-8-{tag}")
    name = make_cudn(res, cleanup, cudn_body(f"udn-cluster-primary-l3-{tag}", [a, b], labels={"team": "net"}))

    cond = wait_condition(res, name, "True", created_msg(a, b))
    assert cond["reason"] == "NetworkAttachmentDefinitionCreated" and cond["lastTransitionTime"]
    cudn = res["cudn"].get(name=name)
    assert FINALIZER in cudn.metadata.finalizers
    for ns in (a, b):
        nad = get_nad(res, ns, name)
        assert nad is not None
        md = nad["metadata"]
        assert md["finalizers"] == [FINALIZER]
        assert md["labels"] == {"k8s.ovn.org/user-defined-network": "", "team": "net"}
        (ref,) = md["ownerReferences"]
        assert (ref["apiVersion"], ref["kind"], ref["name"], ref["uid"]) == (
            "k8s.ovn.org/v1",
            "ClusterUserDefinedNetwork",
            name,
            cudn.metadata.uid,
        )
        assert ref["controller"] is True and ref["blockOwnerDeletion"] is True
        raw = nad["spec"]["config"]
        assert json.loads(raw) == {
            "cniVersion": "1.0.0",
            "type": "ovn-k8s-cni-overlay",
            "name": f"cluster_udn_{name}",
            "netAttachDefName": f"{ns}/{name}",
            "role": "primary",
            "topology": "layer3",
            "joinSubnet": "100.65.0.0/16,fd99::/64",
            "subnets": "192.168.0.0/16/24",
        }
        assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))  # Go's json.Marshal


def test_layer2_persistent_cudn(core: client.CoreV1Api, res: dict[str, Any], cleanup: list) -> None:
    ns = make_ns(core, cleanup, uniq("l2"))
    net = {
        "topology": "Layer2",
        "layer2": {"role": "Primary", "subnets": ["10.100.0.0/16"], "ipam": {"lifecycle": "Persistent"}, "mtu": 1400},
    }
    name = make_cudn(res, cleanup, cudn_body(uniq("l2net"), [ns], net))
    wait_condition(res, name, "True", created_msg(ns))
    conf = json.loads(get_nad(res, ns, name)["spec"]["config"])
    assert conf["topology"] == "layer2" and conf["subnets"] == "10.100.0.0/16" and conf["mtu"] == 1400
    assert conf["allowPersistentIPs"] is True and conf["transitSubnet"] == "100.88.0.0/16"


# ---- per-namespace errors -----------------------------------------------------------------------
def test_namespace_without_label_gets_no_nad_others_do(
    core: client.CoreV1Api, res: dict[str, Any], cleanup: list
) -> None:
    good = make_ns(core, cleanup, uniq("good"))
    bad = make_ns(core, cleanup, uniq("nolabel"), primary=False)
    name = make_cudn(res, cleanup, cudn_body(uniq("net"), [good, bad]))
    message = (
        f'invalid primary network state for namespace "{bad}": a valid primary user defined network or network '
        'attachment definition custom resource, and required namespace label "k8s.ovn.org/primary-user-defined-network" '
        "must both be present"
    )
    cond = wait_condition(res, name, "False", message)
    assert cond["reason"] == SYNC_ERROR
    assert get_nad(res, good, name) is not None
    assert get_nad(res, bad, name) is None


def test_secondary_network_needs_no_label(core: client.CoreV1Api, res: dict[str, Any], cleanup: list) -> None:
    ns = make_ns(core, cleanup, uniq("sec"), primary=False)
    net = {"topology": "Layer2", "layer2": {"role": "Secondary", "subnets": ["10.50.0.0/24"]}}
    name = make_cudn(res, cleanup, cudn_body(uniq("secnet"), [ns], net))
    wait_condition(res, name, "True", created_msg(ns))
    conf = json.loads(get_nad(res, ns, name)["spec"]["config"])
    assert conf["role"] == "secondary" and "joinSubnet" not in conf


def test_foreign_nad_then_recovers_when_it_goes(core: client.CoreV1Api, res: dict[str, Any], cleanup: list) -> None:
    ns = make_ns(core, cleanup, uniq("foreign"))
    name = uniq("net")
    foreign = {"type": "bridge", "cniVersion": "0.3.1", "name": "mine"}
    res["nad"].create(
        namespace=ns,
        body={
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name},
            "spec": {"config": json.dumps(foreign)},
        },
    )
    make_cudn(res, cleanup, cudn_body(name, [ns]))
    message = f"foreign NetworkAttachmentDefinition with the desired name already exist [{ns}/{name}]"
    assert wait_condition(res, name, "False", message)["reason"] == SYNC_ERROR
    assert json.loads(get_nad(res, ns, name)["spec"]["config"]) == foreign  # left alone

    res["nad"].delete(name=name, namespace=ns)
    wait_condition(res, name, "True", created_msg(ns))
    assert get_nad(res, ns, name)["metadata"]["ownerReferences"][0]["kind"] == "ClusterUserDefinedNetwork"


def test_existing_primary_nad_blocks_a_second_primary(
    core: client.CoreV1Api, res: dict[str, Any], cleanup: list
) -> None:
    ns = make_ns(core, cleanup, uniq("prim"))
    first = make_cudn(res, cleanup, cudn_body(uniq("first"), [ns]))
    wait_condition(res, first, "True", created_msg(ns))
    second = make_cudn(res, cleanup, cudn_body(uniq("second"), [ns]))
    message = f'primary network already exist in namespace "{ns}": "{first}"'
    assert wait_condition(res, second, "False", message)["reason"] == SYNC_ERROR
    assert get_nad(res, ns, second) is None
    # the first network's NAD is untouched and its status still True
    assert condition(res, first)["status"] == "True"


# ---- overlap with the cluster's and OVN-K's own subnets -----------------------------------------
L3_OVERLAPS = [
    ("10.128.0.0/16", 'user defined subnet "10.128.0.0/16" overlaps cluster subnet "10.128.0.0/14"'),
    ("172.30.0.0/16", 'user defined subnet "172.30.0.0/16" overlaps service subnet "172.30.0.0/16"'),
    ("100.64.0.0/16", 'user defined subnet "100.64.0.0/16" overlaps built-in join subnet "100.64.0.0/16"'),
    ("100.65.0.0/16", 'user defined join subnet "100.65.0.0/16" overlaps user defined subnet "100.65.0.0/16"'),
    ("100.88.0.0/16", 'user defined subnet "100.88.0.0/16" overlaps transit switch subnet "100.88.0.0/16"'),
    ("169.254.0.0/16", 'user defined subnet "169.254.0.0/16" overlaps masquerade subnet "169.254.0.0/17"'),
]


@pytest.mark.parametrize(("cidr", "overlap"), L3_OVERLAPS, ids=[c for c, _ in L3_OVERLAPS])
def test_layer3_overlap_is_rejected(
    core: client.CoreV1Api, res: dict[str, Any], cleanup: list, cidr: str, overlap: str
) -> None:
    ns = make_ns(core, cleanup, uniq("ovl"))
    net = {"topology": "Layer3", "layer3": {"role": "Primary", "subnets": [{"cidr": cidr, "hostSubnet": 24}]}}
    name = make_cudn(res, cleanup, cudn_body(uniq("ovl"), [ns], net))
    message = RENDER + "invalid subnet configuration: " + OVERLAP + overlap
    assert wait_condition(res, name, "False", message)["reason"] == SYNC_ERROR
    assert get_nad(res, ns, name) is None


def test_layer2_overlaps(core: client.CoreV1Api, res: dict[str, Any], cleanup: list) -> None:
    """Layer2 may use the transit range (OVN-K moves its own transit subnet); cluster/masquerade still clash."""
    ns = make_ns(core, cleanup, uniq("l2ovl"))
    transit = make_cudn(
        res,
        cleanup,
        cudn_body(
            uniq("l2t"), [ns], {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["100.88.0.0/16"]}}
        ),
    )
    wait_condition(res, transit, "True", created_msg(ns))
    assert json.loads(get_nad(res, ns, transit)["spec"]["config"])["transitSubnet"] == "100.89.0.0/16"

    ns2 = make_ns(core, cleanup, uniq("l2ovl"))
    for cidr, other in (
        ("10.128.0.0/16", 'cluster subnet "10.128.0.0/14"'),
        ("169.254.0.0/17", 'masquerade subnet "169.254.0.0/17"'),
    ):
        net = {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": [cidr]}}
        name = make_cudn(res, cleanup, cudn_body(uniq("l2c"), [ns2], net))
        message = RENDER + OVERLAP + f'user defined subnet "{cidr}" overlaps {other}'
        wait_condition(res, name, "False", message)
        assert get_nad(res, ns2, name) is None


# ---- selection changes --------------------------------------------------------------------------
def test_selector_change_adds_and_removes_nads(core: client.CoreV1Api, res: dict[str, Any], cleanup: list) -> None:
    tag = uuid.uuid4().hex[:6]
    a = make_ns(core, cleanup, f"sel-a-{tag}", **{"udn-test": tag})
    b = make_ns(core, cleanup, f"sel-b-{tag}", **{"udn-test": tag})
    c = make_ns(core, cleanup, f"sel-c-{tag}")
    name = make_cudn(res, cleanup, cudn_body(f"sel-{tag}", selector={"matchLabels": {"udn-test": tag}}))
    wait_condition(res, name, "True", created_msg(a, b))

    only_a = {"matchLabels": {"udn-test": tag, "kubernetes.io/metadata.name": a}}
    res["cudn"].patch(
        name=name, body={"spec": {"namespaceSelector": only_a}}, content_type="application/merge-patch+json"
    )
    wait_condition(res, name, "True", created_msg(a))
    wait_for(lambda: get_nad(res, b, name) is None, what=f"NAD gone from {b}")
    assert get_nad(res, a, name) is not None

    # a namespace relabelled into the selection gets its NAD (other labels than the primary one may change)
    res["cudn"].patch(
        name=name,
        body={"spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": None}}}},
        content_type="application/merge-patch+json",
    )
    wait_condition(res, name, "True", created_msg(a, b))
    core.patch_namespace(c, {"metadata": {"labels": {"udn-test": tag}}})
    wait_condition(res, name, "True", created_msg(a, b, c))
    assert get_nad(res, c, name) is not None
    core.patch_namespace(a, {"metadata": {"labels": {"udn-test": None}}})
    wait_condition(res, name, "True", created_msg(b, c))
    wait_for(lambda: get_nad(res, a, name) is None, what=f"NAD gone from {a}")


def test_namespace_created_later_gets_its_nad(core: client.CoreV1Api, res: dict[str, Any], cleanup: list) -> None:
    tag = uuid.uuid4().hex[:6]
    first = make_ns(core, cleanup, f"late-1-{tag}", **{"late": tag})
    name = make_cudn(res, cleanup, cudn_body(f"late-{tag}", selector={"matchLabels": {"late": tag}}))
    wait_condition(res, name, "True", created_msg(first))
    second = make_ns(core, cleanup, f"late-2-{tag}", **{"late": tag})
    wait_condition(res, name, "True", created_msg(first, second))
    assert get_nad(res, second, name)["metadata"]["finalizers"] == [FINALIZER]


def test_status_keeps_other_conditions_and_transition_time(
    core: client.CoreV1Api, res: dict[str, Any], cleanup: list
) -> None:
    ns = make_ns(core, cleanup, uniq("keep"))
    name = make_cudn(res, cleanup, cudn_body(uniq("keep"), [ns]))
    first = wait_condition(res, name, "True", created_msg(ns))
    other = {
        "type": "NetworkAllocationSucceeded",
        "status": "True",
        "reason": "NetworkAllocationSucceeded",
        "message": "Network allocation succeeded for all synced nodes.",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    cur = res["cudn"].get(name=name).to_dict()
    conds = [c for c in cur["status"]["conditions"] if c["type"] != other["type"]]
    conds = [
        {
            "type": c["type"],
            "status": c["status"],
            "reason": c["reason"],
            "message": c["message"],
            "lastTransitionTime": c["lastTransitionTime"],
        }
        for c in conds
    ]
    res["cudn"].patch(
        name=name,
        body={"status": {"conditions": [*conds, other]}},
        subresource="status",
        content_type="application/merge-patch+json",
    )
    time.sleep(1.05)  # timestamps have second resolution
    # a label change re-renders the NAD labels in place; NetworkCreated stays True with the same transition time
    res["cudn"].patch(
        name=name, body={"metadata": {"labels": {"tier": "gold"}}}, content_type="application/merge-patch+json"
    )
    wait_for(lambda: (get_nad(res, ns, name)["metadata"]["labels"] or {}).get("tier") == "gold", what="NAD label")
    wait_for(lambda: condition(res, name, ctype="NetworkAllocationSucceeded"), what="other condition kept")
    assert condition(res, name)["lastTransitionTime"] == first["lastTransitionTime"]
    # a flip to False moves it
    ns_bad = make_ns(core, cleanup, uniq("keepbad"), primary=False)
    res["cudn"].patch(
        name=name,
        body={
            "spec": {
                "namespaceSelector": {
                    "matchExpressions": [
                        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns, ns_bad]}
                    ]
                }
            }
        },
        content_type="application/merge-patch+json",
    )
    flipped = wait_condition(res, name, "False")
    assert flipped["lastTransitionTime"] != first["lastTransitionTime"]
    assert condition(res, name, ctype="NetworkAllocationSucceeded")["message"] == other["message"]


# ---- deletion -----------------------------------------------------------------------------------
def test_deleting_cudn_removes_nads_then_itself(core: client.CoreV1Api, res: dict[str, Any], cleanup: list) -> None:
    a, b = make_ns(core, cleanup, uniq("del")), make_ns(core, cleanup, uniq("del"))
    name = make_cudn(res, cleanup, cudn_body(uniq("del"), [a, b]))
    wait_condition(res, name, "True", created_msg(a, b))
    res["cudn"].delete(name=name)
    wait_for(lambda: gone(lambda: res["cudn"].get(name=name)), what="CUDN gone")
    assert get_nad(res, a, name) is None and get_nad(res, b, name) is None


def test_deletion_waits_while_a_vm_uses_the_network(core: client.CoreV1Api, res: dict[str, Any], cleanup: list) -> None:
    busy, idle = make_ns(core, cleanup, uniq("busy")), make_ns(core, cleanup, uniq("idle"))
    name = make_cudn(res, cleanup, cudn_body(uniq("inuse"), [busy, idle]))
    wait_condition(res, name, "True", created_msg(busy, idle))
    res["vmi"].create(namespace=busy, body=bare_vmi("rhel8-vm-0", busy))
    pod = launcher_pod(core, busy, "rhel8-vm-0")
    assert pod.startswith("virt-launcher-rhel8-vm-0-")

    res["cudn"].delete(name=name)
    message = (
        f"failed to delete NetworkAttachmentDefinition [{busy}/{name}]: "
        f"network in use by the following pods: [{busy}/{pod}]"
    )
    cond = wait_condition(res, name, "False", message)
    assert cond["reason"] == SYNC_ERROR
    cudn = res["cudn"].get(name=name)
    assert cudn.metadata.deletionTimestamp and FINALIZER in cudn.metadata.finalizers
    assert get_nad(res, busy, name)["metadata"]["finalizers"] == [FINALIZER]
    wait_for(lambda: get_nad(res, idle, name) is None, what="unused NAD released")

    res["vmi"].delete(name="rhel8-vm-0", namespace=busy)
    wait_for(lambda: gone(lambda: res["cudn"].get(name=name)), what="CUDN gone after the VM went")
    assert get_nad(res, busy, name) is None


def test_deleting_a_namespace_releases_its_nad(core: client.CoreV1Api, res: dict[str, Any], cleanup: list) -> None:
    a, b = make_ns(core, cleanup, uniq("nsdel")), make_ns(core, cleanup, uniq("nsdel"))
    name = make_cudn(res, cleanup, cudn_body(uniq("nsdel"), [a, b]))
    wait_condition(res, name, "True", created_msg(a, b))
    core.delete_namespace(b)
    wait_for(lambda: gone(lambda: core.read_namespace(b)), what="namespace gone")
    wait_condition(res, name, "True", created_msg(a))


# ---- namespaced UserDefinedNetwork --------------------------------------------------------------
def udn_body(name: str, network: dict | None = None) -> dict:
    return {
        "apiVersion": "k8s.ovn.org/v1",
        "kind": "UserDefinedNetwork",
        "metadata": {"name": name},
        "spec": network or {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["10.20.0.0/16"]}},
    }


def test_udn_in_a_namespace(core: client.CoreV1Api, res: dict[str, Any], cleanup: list) -> None:
    ns = make_ns(core, cleanup, uniq("udn"))
    res["udn"].create(namespace=ns, body=udn_body("tenant"))
    cond = wait_condition(res, "tenant", "True", "NetworkAttachmentDefinition has been created", ns=ns)
    assert cond["reason"] == "NetworkAttachmentDefinitionCreated"
    udn = res["udn"].get(name="tenant", namespace=ns)
    assert FINALIZER in udn.metadata.finalizers
    nad = get_nad(res, ns, "tenant")
    (ref,) = nad["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"]) == ("UserDefinedNetwork", "tenant", udn.metadata.uid)
    conf = json.loads(nad["spec"]["config"])
    assert conf["name"] == f"{ns}_tenant" and conf["netAttachDefName"] == f"{ns}/tenant"
    assert conf["topology"] == "layer2" and conf["role"] == "primary" and conf["subnets"] == "10.20.0.0/16"

    res["udn"].delete(name="tenant", namespace=ns)
    wait_for(lambda: gone(lambda: res["udn"].get(name="tenant", namespace=ns)), what="UDN gone")
    assert get_nad(res, ns, "tenant") is None


def test_udn_deletion_waits_for_its_vms(core: client.CoreV1Api, res: dict[str, Any], cleanup: list) -> None:
    ns = make_ns(core, cleanup, uniq("udnvm"))
    res["udn"].create(namespace=ns, body=udn_body("tenant"))
    wait_condition(res, "tenant", "True", ns=ns)
    res["vmi"].create(namespace=ns, body=bare_vmi("vm-a", ns))
    pod = launcher_pod(core, ns, "vm-a")
    res["udn"].delete(name="tenant", namespace=ns)
    message = f"failed to delete NetworkAttachmentDefinition [{ns}/tenant]: network in use by the following pods: [{ns}/{pod}]"
    assert wait_condition(res, "tenant", "False", message, ns=ns)["reason"] == "SyncError"
    assert get_nad(res, ns, "tenant") is not None
    res["vmi"].delete(name="vm-a", namespace=ns)
    wait_for(lambda: gone(lambda: res["udn"].get(name="tenant", namespace=ns)), what="UDN gone after the VM went")
    assert get_nad(res, ns, "tenant") is None


def test_udn_errors_use_sync_error(core: client.CoreV1Api, res: dict[str, Any], cleanup: list) -> None:
    ns = make_ns(core, cleanup, uniq("udnbad"), primary=False)
    res["udn"].create(namespace=ns, body=udn_body("tenant"))
    message = (
        f'invalid primary network state for namespace "{ns}": a valid primary user defined network or network '
        'attachment definition custom resource, and required namespace label "k8s.ovn.org/primary-user-defined-network" '
        "must both be present"
    )
    assert wait_condition(res, "tenant", "False", message, ns=ns)["reason"] == "SyncError"

    ns2 = make_ns(core, cleanup, uniq("udnovl"))
    net = {"topology": "Layer3", "layer3": {"role": "Primary", "subnets": [{"cidr": "100.88.0.0/16"}]}}
    res["udn"].create(namespace=ns2, body=udn_body("tenant", net))
    message = (
        RENDER
        + "invalid subnet configuration: "
        + OVERLAP
        + 'user defined subnet "100.88.0.0/16" overlaps transit switch subnet "100.88.0.0/16"'
    )
    assert wait_condition(res, "tenant", "False", message, ns=ns2)["reason"] == "SyncError"


# ---- scale --------------------------------------------------------------------------------------
def test_hundred_namespaces_reconcile_fast(core: client.CoreV1Api, res: dict[str, Any], cleanup: list) -> None:
    tag = uuid.uuid4().hex[:6]
    names = [make_ns(core, cleanup, f"scale-{tag}-{i:03d}", **{"scale": tag}) for i in range(100)]
    start = time.monotonic()
    name = make_cudn(res, cleanup, cudn_body(f"scale-{tag}", selector={"matchLabels": {"scale": tag}}))
    wait_condition(res, name, "True", created_msg(*names))
    assert time.monotonic() - start < 1.0
    nads = res["nad"].get(label_selector="k8s.ovn.org/user-defined-network").items
    assert sum(1 for n in nads if n.metadata.name == name) == 100


# ---- restart from a state file ------------------------------------------------------------------
def test_restored_cluster_still_owns_and_releases_its_nads(tmp_path: Any) -> None:
    """After a restart the controller finds its NADs again from the stored objects (resync), so a
    selector change and the deletion still clean up what the previous run created."""
    state = tmp_path / "state.json"

    def resources(sim: SimCluster) -> tuple[client.CoreV1Api, dict[str, Any]]:
        api = config.new_client_from_config(str(sim.kubeconfig))
        dyn = dynamic.DynamicClient(api)
        return client.CoreV1Api(api), {
            "cudn": dyn.resources.get(api_version="k8s.ovn.org/v1", kind="ClusterUserDefinedNetwork"),
            "udn": dyn.resources.get(api_version="k8s.ovn.org/v1", kind="UserDefinedNetwork"),
            "nad": dyn.resources.get(api_version="k8s.cni.cncf.io/v1", kind="NetworkAttachmentDefinition"),
        }

    with SimCluster(nodes=1, state_file=state) as sim:
        core, res = resources(sim)
        made: list[tuple[str, str]] = []
        a, b = make_ns(core, made, "restore-a"), make_ns(core, made, "restore-b")
        make_cudn(res, made, cudn_body("restored", [a, b]))
        res["udn"].create(
            namespace=a,
            body=udn_body(
                "tenant", {"topology": "Layer2", "layer2": {"role": "Secondary", "subnets": ["10.9.0.0/24"]}}
            ),
        )
        wait_condition(res, "restored", "True", created_msg(a, b))
        wait_condition(res, "tenant", "True", "NetworkAttachmentDefinition has been created", ns=a)

    with SimCluster(nodes=1, state_file=state) as sim:
        core, res = resources(sim)
        assert condition(res, "restored")["message"] == created_msg(a, b)
        res["cudn"].patch(
            name="restored",
            body={
                "spec": {
                    "namespaceSelector": {
                        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [a]}]
                    }
                }
            },
            content_type="application/merge-patch+json",
        )
        wait_condition(res, "restored", "True", created_msg(a))
        wait_for(lambda: get_nad(res, b, "restored") is None, what="NAD gone after restart")
        res["cudn"].delete(name="restored")
        res["udn"].delete(name="tenant", namespace=a)
        wait_for(lambda: gone(lambda: res["cudn"].get(name="restored")), what="CUDN gone after restart")
        wait_for(lambda: gone(lambda: res["udn"].get(name="tenant", namespace=a)), what="UDN gone after restart")
        assert get_nad(res, a, "restored") is None and get_nad(res, a, "tenant") is None
