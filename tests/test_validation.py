"""Unit tests of simcluster.validation: exact upstream messages, fields and Status bodies.

Every expected string is what a real OpenShift 4.19 cluster (Kubernetes 1.32, CNO release-4.19
CRDs, KubeVirt 1.5) prints, so a client matching on them behaves the same against the simulator.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simcluster.validation import (
    KINDS,
    AdmissionDenied,
    FieldError,
    admit,
    admit_migration,
    binding_plugin_error,
    invalid_status,
    validate,
)
from simcluster.validation.cidr import parse_cidr
from simcluster.validation.names import is_dns1123_label

CUDN = "clusteruserdefinednetworks.k8s.ovn.org"
UDN = "userdefinednetworks.k8s.ovn.org"
VM = "virtualmachines.kubevirt.io"
VMI = "virtualmachineinstances.kubevirt.io"
VMIM = "virtualmachineinstancemigrations.kubevirt.io"
SKIPPED = (
    '<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; '
    "correct the existing errors to complete validation"
)
LABEL_RE_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_RE_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


# --- builders (pure) ---------------------------------------------------------------------------
def seed_l3_cudn() -> dict[str, Any]:
    """The seed runbook's Layer3 CUDN."""
    return {
        "apiVersion": "k8s.ovn.org/v1",
        "kind": "ClusterUserDefinedNetwork",
        "metadata": {"name": "udn-cluster-primary-l3"},
        "spec": {
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "In",
                        "values": ["namespace-7", "namespace-8"],
                    }
                ]
            },
            "network": {
                "topology": "Layer3",
                "layer3": {"role": "Primary", "subnets": [{"cidr": "192.168.0.0/16", "hostSubnet": 24}]},
            },
        },
    }


def l2_persistent_cudn() -> dict[str, Any]:
    obj = seed_l3_cudn()
    obj["metadata"]["name"] = "udn-cluster-primary-l2"
    obj["spec"]["network"] = {
        "topology": "Layer2",
        "layer2": {"role": "Primary", "subnets": ["10.100.0.0/16"], "ipam": {"lifecycle": "Persistent"}},
    }
    return obj


def udn_l3() -> dict[str, Any]:
    return {
        "apiVersion": "k8s.ovn.org/v1",
        "kind": "UserDefinedNetwork",
        "metadata": {"name": "udn-l3", "namespace": "namespace-7"},
        "spec": {"topology": "Layer3", "layer3": {"role": "Primary", "subnets": [{"cidr": "10.20.0.0/16"}]}},
    }


CLOUD_INIT = "#cloud-config\npassword: fedora\nchpasswd: { expire: False }\n"


def fedora_vmi_spec() -> dict[str, Any]:
    return {
        "domain": {
            "resources": {"requests": {"memory": "1024Mi"}},
            "devices": {
                "disks": [
                    {"name": "containerdisk", "disk": {"bus": "virtio"}},
                    {"name": "cloudinitdisk", "disk": {"bus": "virtio"}},
                ],
                "interfaces": [{"name": "net1", "binding": {"name": "l2bridge"}}],
                "rng": {},
            },
        },
        "terminationGracePeriodSeconds": 5,
        "networks": [{"name": "net1", "pod": {}}],
        "volumes": [
            {"name": "containerdisk", "containerDisk": {"image": "quay.io/containerdisks/fedora:latest"}},
            {"name": "cloudinitdisk", "cloudInitNoCloud": {"userData": CLOUD_INIT}},
        ],
    }


def fedora_vm() -> dict[str, Any]:
    """A primary-UDN Fedora VM with the l2bridge binding."""
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "rhel8-vm-0", "namespace": "namespace-7"},
        "spec": {"runStrategy": "Always", "template": {"metadata": {}, "spec": fedora_vmi_spec()}},
    }


def fedora_vmi() -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "rhel8-vm-0", "namespace": "namespace-7"},
        "spec": fedora_vmi_spec(),
    }


def namespace(name: str = "namespace-7", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def changed(base: Callable[[], dict[str, Any]], mutate: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    obj = base()
    mutate(obj)
    return obj


def net(o: dict[str, Any]) -> dict[str, Any]:
    return o["spec"]["network"]


def l3(o: dict[str, Any]) -> dict[str, Any]:
    return o["spec"]["network"]["layer3"]


def l2(o: dict[str, Any]) -> dict[str, Any]:
    return o["spec"]["network"]["layer2"]


def tmpl(o: dict[str, Any]) -> dict[str, Any]:
    return o["spec"]["template"]["spec"]


def rendered(resource: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return [e.render() for e in validate(resource, obj, old)]


# --- valid objects -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("resource", "builder"),
    [
        pytest.param(CUDN, seed_l3_cudn, id="seed-layer3-cudn"),
        pytest.param(CUDN, l2_persistent_cudn, id="layer2-persistent-cudn"),
        pytest.param(UDN, udn_l3, id="layer3-udn"),
        pytest.param(VM, fedora_vm, id="fedora-vm-l2bridge"),
        pytest.param(VMI, fedora_vmi, id="fedora-vmi"),
        pytest.param("namespaces", namespace, id="namespace"),
    ],
)
def test_valid_objects_pass(resource: str, builder: Callable[[], dict[str, Any]]) -> None:
    obj = builder()
    assert validate(resource, obj) == []
    admit(resource, obj, None, "CREATE")


def test_valid_updates_pass() -> None:
    """Only namespaceSelector and metadata may change on a 4.19 CUDN."""
    old = seed_l3_cudn()
    new = copy.deepcopy(old)
    new["spec"]["namespaceSelector"] = {"matchLabels": {"udn": "yes"}}
    new["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "udn-rollout"}
    assert validate(CUDN, new, old) == []
    ns = namespace(labels={"k8s.ovn.org/primary-user-defined-network": ""})
    ns2 = copy.deepcopy(ns)
    ns2["metadata"]["labels"]["team"] = "a"
    admit("namespaces", ns2, ns, "UPDATE")


def test_dual_stack_layer3_and_layer2_pass() -> None:
    dual = changed(
        seed_l3_cudn,
        lambda o: l3(o).update(
            mtu=1400, subnets=[{"cidr": "10.0.0.0/16", "hostSubnet": 24}, {"cidr": "fd00::/48", "hostSubnet": 64}]
        ),
    )
    assert validate(CUDN, dual) == []
    dual2 = changed(l2_persistent_cudn, lambda o: l2(o).update(subnets=["10.0.0.0/16", "fd00::/64"]))
    assert validate(CUDN, dual2) == []


# --- invalid CUDN / UDN / metadata --------------------------------------------------------------
INVALID_CASES = [
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: net(o).update(topology="Layer9")),
        None,
        [
            'spec.network.topology: Unsupported value: "Layer9": supported values: "Layer2", "Layer3", "Localnet"',
            SKIPPED,
        ],
        id="topology-enum",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: net(o).update(topology="Layer2")),
        None,
        [
            'spec.network: Invalid value: "object": spec.layer3 is required when topology is Layer3 and '
            "forbidden otherwise",
            'spec.network: Invalid value: "object": spec.layer2 is required when topology is Layer2 and '
            "forbidden otherwise",
        ],
        id="topology-layer2-with-layer3-block",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: net(o).update(topology="Localnet")),
        None,
        [
            'spec.network: Invalid value: "object": spec.layer3 is required when topology is Layer3 and '
            "forbidden otherwise",
            'spec.network: Invalid value: "object": spec.localnet is required when topology is Localnet and '
            "forbidden otherwise",
        ],
        id="topology-localnet-without-localnet",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: l3(o).pop("role")),
        None,
        ["spec.network.layer3.role: Required value", SKIPPED],
        id="layer3-role-required",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: l3(o).update(role="Tertiary")),
        None,
        [
            'spec.network.layer3.role: Unsupported value: "Tertiary": supported values: "Primary", "Secondary"',
            SKIPPED,
        ],
        id="layer3-role-enum",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: o["spec"].pop("namespaceSelector")),
        None,
        ["spec.namespaceSelector: Required value", SKIPPED],
        id="namespace-selector-required",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: l3(o).update(mtu=500)),
        None,
        [
            "spec.network.layer3.mtu: Invalid value: 500: spec.network.layer3.mtu in body should be greater "
            "than or equal to 576"
        ],
        id="mtu-minimum",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: l3(o).update(mtu=65537)),
        None,
        [
            "spec.network.layer3.mtu: Invalid value: 65537: spec.network.layer3.mtu in body should be less "
            "than or equal to 65536"
        ],
        id="mtu-maximum",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: l3(o).update(mtu="1400")),
        None,
        [
            'spec.network.layer3.mtu: Invalid value: "string": spec.network.layer3.mtu in body must be of type '
            'integer: "string"',
            SKIPPED,
        ],
        id="mtu-type",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: l3(o)["subnets"][0].update(hostSubnet=128)),
        None,
        [
            "spec.network.layer3.subnets[0].hostSubnet: Invalid value: 128: "
            "spec.network.layer3.subnets[0].hostSubnet in body should be less than or equal to 127",
            'spec.network.layer3.subnets[0]: Invalid value: "object": HostSubnet must < 32 for ipv4 CIDR',
        ],
        id="hostsubnet-maximum-and-ipv4",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: l3(o)["subnets"][0].update(hostSubnet=16)),
        None,
        ['spec.network.layer3.subnets[0]: Invalid value: "object": HostSubnet must be smaller than CIDR subnet'],
        id="hostsubnet-not-smaller",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: l3(o)["subnets"][0].update(hostSubnet=32)),
        None,
        ['spec.network.layer3.subnets[0]: Invalid value: "object": HostSubnet must < 32 for ipv4 CIDR'],
        id="hostsubnet-32-ipv4",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: l3(o)["subnets"][0].update(cidr="192.168.0.0/33")),
        None,
        ['spec.network.layer3.subnets[0].cidr: Invalid value: "string": CIDR is invalid'],
        id="cidr-invalid",
    ),
    pytest.param(
        CUDN,
        changed(
            seed_l3_cudn, lambda o: l3(o)["subnets"][0].update(cidr="ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/64")
        ),
        None,
        ["spec.network.layer3.subnets[0].cidr: Too long: may not be more than 43 bytes", SKIPPED],
        id="cidr-max-length",
    ),
    pytest.param(
        CUDN,
        changed(
            seed_l3_cudn,
            lambda o: l3(o).update(subnets=[{"cidr": "10.0.0.0/16"}, {"cidr": "fd00::/48"}, {"cidr": "10.1.0.0/16"}]),
        ),
        None,
        ["spec.network.layer3.subnets: Too many: 3: must have at most 2 items", SKIPPED],
        id="layer3-subnets-max-items",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: l3(o).update(subnets=[])),
        None,
        [
            "spec.network.layer3.subnets: Invalid value: 0: spec.network.layer3.subnets in body should have at "
            "least 1 items"
        ],
        id="layer3-subnets-min-items",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: l3(o).update(subnets=[{"cidr": "10.0.0.0/16"}, {"cidr": "10.1.0.0/16"}])),
        None,
        [
            'spec.network.layer3.subnets: Invalid value: "array": When 2 CIDRs are set, they must be from '
            "different IP families"
        ],
        id="layer3-two-ipv4-subnets",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: l3(o).update(role="Secondary", joinSubnets=["100.70.0.0/16"])),
        None,
        ['spec.network.layer3: Invalid value: "object": JoinSubnets is only supported for Primary network'],
        id="layer3-joinsubnets-secondary",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: l3(o).update(joinSubnets=["100.70.0.0/16", "100.71.0.0/16"])),
        None,
        [
            'spec.network.layer3.joinSubnets: Invalid value: "array": When 2 CIDRs are set, they must be from '
            "different IP families"
        ],
        id="layer3-joinsubnets-same-family",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: l3(o).update(mtu=1200, subnets=[{"cidr": "fd00::/48", "hostSubnet": 64}])),
        None,
        [
            'spec.network.layer3: Invalid value: "object": MTU should be greater than or equal to 1280 when '
            "IPv6 subnet is used"
        ],
        id="layer3-mtu-ipv6",
    ),
    pytest.param(
        CUDN,
        changed(l2_persistent_cudn, lambda o: l2(o).pop("subnets")),
        None,
        ['spec.network.layer2: Invalid value: "object": Subnets is required with ipam.mode is Enabled or unset'],
        id="layer2-subnets-required",
    ),
    pytest.param(
        CUDN,
        changed(
            l2_persistent_cudn,
            lambda o: l2(o).update(role="Secondary", ipam={"mode": "Disabled"}, subnets=["10.1.0.0/16"]),
        ),
        None,
        ['spec.network.layer2: Invalid value: "object": Subnets must be unset when ipam.mode is Disabled'],
        id="layer2-subnets-with-ipam-disabled",
    ),
    pytest.param(
        CUDN,
        changed(l2_persistent_cudn, lambda o: (l2(o).pop("subnets"), l2(o).update(ipam={"mode": "Disabled"}))),
        None,
        ['spec.network.layer2: Invalid value: "object": Disabled ipam.mode is only supported for Secondary network'],
        id="layer2-ipam-disabled-primary",
    ),
    pytest.param(
        CUDN,
        changed(
            l2_persistent_cudn,
            lambda o: (
                l2(o).pop("subnets"),
                l2(o).update(role="Secondary", ipam={"mode": "Disabled", "lifecycle": "Persistent"}),
            ),
        ),
        None,
        [
            'spec.network.layer2.ipam: Invalid value: "object": lifecycle Persistent is only supported when '
            "ipam.mode is Enabled"
        ],
        id="layer2-persistent-needs-enabled",
    ),
    pytest.param(
        CUDN,
        changed(l2_persistent_cudn, lambda o: l2(o).update(ipam={})),
        None,
        [
            "spec.network.layer2.ipam: Invalid value: 0: spec.network.layer2.ipam in body should have at least "
            "1 properties"
        ],
        id="layer2-ipam-min-properties",
    ),
    pytest.param(
        CUDN,
        changed(l2_persistent_cudn, lambda o: l2(o).update(ipam={"lifecycle": "Forever"})),
        None,
        [
            'spec.network.layer2.ipam.lifecycle: Unsupported value: "Forever": supported values: "Persistent"',
            SKIPPED,
        ],
        id="layer2-lifecycle-enum",
    ),
    pytest.param(
        CUDN,
        changed(l2_persistent_cudn, lambda o: l2(o).update(subnets=["10.100.0.0/16", "10.101.0.0/16"])),
        None,
        [
            'spec.network.layer2.subnets: Invalid value: "array": When 2 CIDRs are set, they must be from '
            "different IP families"
        ],
        id="layer2-two-ipv4-subnets",
    ),
    pytest.param(
        CUDN,
        changed(l2_persistent_cudn, lambda o: l2(o).update(subnets=["10.100.0.0"])),
        None,
        ['spec.network.layer2.subnets[0]: Invalid value: "string": CIDR is invalid'],
        id="layer2-cidr-invalid",
    ),
    pytest.param(
        CUDN,
        changed(
            seed_l3_cudn,
            lambda o: o["spec"].update(
                network={"topology": "Localnet", "localnet": {"role": "Primary", "physicalNetworkName": "phys:1"}}
            ),
        ),
        None,
        ['spec.network.localnet.role: Unsupported value: "Primary": supported values: "Secondary"', SKIPPED],
        id="localnet-role-enum",
    ),
    pytest.param(
        CUDN,
        changed(
            seed_l3_cudn,
            lambda o: o["spec"].update(
                network={
                    "topology": "Localnet",
                    "localnet": {"role": "Secondary", "physicalNetworkName": "phys:1", "subnets": ["10.9.0.0/24"]},
                }
            ),
        ),
        None,
        [
            'spec.network.localnet.physicalNetworkName: Invalid value: "string": physicalNetworkName cannot '
            "contain `,` or `:` characters"
        ],
        id="localnet-physnet-chars",
    ),
    pytest.param(
        CUDN,
        changed(l2_persistent_cudn, lambda o: l2(o).update(subnets=["10.100.0.0/16"], mtu=1400)),
        l2_persistent_cudn(),
        ['spec.network: Invalid value: "object": Network spec is immutable'],
        id="network-spec-immutable",
    ),
    pytest.param(
        UDN,
        changed(udn_l3, lambda o: o["spec"]["layer3"].update(mtu=1200, subnets=[{"cidr": "fd00::/48"}])),
        None,
        ['spec.layer3: Invalid value: "object": MTU should be greater than or equal to 1280 when IPv6 subent is used'],
        id="udn-mtu-ipv6-typo",
    ),
    pytest.param(
        UDN,
        changed(udn_l3, lambda o: o["spec"].update(topology="Localnet")),
        None,
        ['spec.topology: Unsupported value: "Localnet": supported values: "Layer2", "Layer3"', SKIPPED],
        id="udn-topology-enum",
    ),
    pytest.param(
        UDN,
        changed(udn_l3, lambda o: o["spec"]["layer3"].update(role="Secondary")),
        udn_l3(),
        ['spec: Invalid value: "object": Spec is immutable'],
        id="udn-spec-immutable",
    ),
    pytest.param(
        UDN,
        changed(udn_l3, lambda o: o["metadata"].pop("namespace")),
        None,
        ["metadata.namespace: Required value", SKIPPED],
        id="udn-namespace-required",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: o["metadata"].update(name="Udn_Net")),
        None,
        [f'metadata.name: Invalid value: "Udn_Net": {SUBDOMAIN_RE_MSG}'],
        id="name-not-subdomain",
    ),
    pytest.param(
        CUDN,
        changed(seed_l3_cudn, lambda o: o["metadata"].pop("name")),
        None,
        ["metadata.name: Required value: name or generateName is required", SKIPPED],
        id="name-required",
    ),
    pytest.param(
        "namespaces",
        namespace("Namespace-7"),
        None,
        [f'metadata.name: Invalid value: "Namespace-7": {LABEL_RE_MSG}'],
        id="namespace-name-not-label",
    ),
    pytest.param(
        "namespaces",
        namespace("a" * 64),
        None,
        [f'metadata.name: Invalid value: "{"a" * 64}": must be no more than 63 characters'],
        id="namespace-name-too-long",
    ),
    pytest.param(
        "namespaces",
        namespace("ns", {"bad key!": "x"}),
        None,
        [
            'metadata.labels: Invalid value: "bad key!": name part must consist of alphanumeric characters, '
            "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or "
            "'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        ],
        id="label-key",
    ),
    pytest.param(
        "configmaps",
        {"metadata": {"name": "cm", "namespace": "ns", "labels": {"udn-rollout.io/run": "-bad"}}},
        None,
        [
            'metadata.labels: Invalid value: "-bad": a valid label must be an empty string or consist of '
            "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character "
            "(e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
            "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        ],
        id="label-value",
    ),
    pytest.param(
        VM,
        changed(fedora_vm, lambda o: tmpl(o).pop("domain")),
        None,
        ["spec.template.spec.domain: Required value"],
        id="vm-crd-domain-required-no-cel-note",
    ),
    pytest.param(
        VM,
        changed(fedora_vm, lambda o: tmpl(o)["domain"]["devices"]["interfaces"][0]["binding"].pop("name")),
        None,
        ["spec.template.spec.domain.devices.interfaces[0].binding.name: Required value"],
        id="vm-crd-binding-name-required",
    ),
]


@pytest.mark.parametrize(("resource", "obj", "old", "expected"), INVALID_CASES)
def test_invalid_objects(resource: str, obj: dict, old: dict | None, expected: list[str]) -> None:
    assert rendered(resource, obj, old) == expected


# --- KubeVirt webhooks -------------------------------------------------------------------------
BIG = "#cloud-config\n" + "x" * 2048
WEBHOOK_CASES = [
    pytest.param(
        VM,
        changed(fedora_vm, lambda o: o["spec"].update(running=True)),
        "CREATE",
        "virtualmachine-validator.kubevirt.io",
        [
            (
                "FieldValueInvalid",
                "Running and RunStrategy are mutually exclusive. Note that Running is deprecated, please use "
                "RunStrategy instead",
                "spec.running",
            )
        ],
        id="vm-running-and-runstrategy",
    ),
    pytest.param(
        VM,
        changed(fedora_vm, lambda o: o["spec"].pop("runStrategy")),
        "UPDATE",
        "virtualmachine-validator.kubevirt.io",
        [("FieldValueInvalid", "RunStrategy must be specified", "spec.running")],
        id="vm-no-runstrategy",
    ),
    pytest.param(
        VM,
        changed(fedora_vm, lambda o: o["spec"].update(runStrategy="Sometimes")),
        "CREATE",
        "virtualmachine-validator.kubevirt.io",
        [("FieldValueInvalid", "Invalid RunStrategy (Sometimes)", "spec.runStrategy")],
        id="vm-runstrategy-value",
    ),
    pytest.param(
        VM,
        changed(fedora_vm, lambda o: tmpl(o)["volumes"][1]["cloudInitNoCloud"].update(userData=BIG)),
        "CREATE",
        "virtualmachine-validator.kubevirt.io",
        [
            (
                "FieldValueInvalid",
                "spec.template.spec.volumes[1].cloudInitNoCloud userdata exceeds 2048 byte limit. Should use "
                "UserDataSecretRef for larger data.",
                "spec.template.spec.volumes[1].cloudInitNoCloud",
            )
        ],
        id="vm-userdata-too-big",
    ),
    pytest.param(
        VM,
        changed(fedora_vm, lambda o: tmpl(o)["volumes"][1]["cloudInitNoCloud"].update(networkData=BIG)),
        "CREATE",
        "virtualmachine-validator.kubevirt.io",
        [
            (
                "FieldValueInvalid",
                "spec.template.spec.volumes[1].cloudInitNoCloud networkdata exceeds 2048 byte limit. Should use "
                "NetworkDataSecretRef for larger data.",
                "spec.template.spec.volumes[1].cloudInitNoCloud",
            )
        ],
        id="vm-networkdata-too-big",
    ),
    pytest.param(
        VM,
        changed(fedora_vm, lambda o: tmpl(o)["domain"]["devices"]["interfaces"][0].update(name="net2")),
        "CREATE",
        "virtualmachine-validator.kubevirt.io",
        [
            (
                "FieldValueRequired",
                "spec.template.spec.networks[0].name 'net1' not found.",
                "spec.template.spec.networks[0].name",
            ),
            (
                "FieldValueInvalid",
                "spec.template.spec.domain.devices.interfaces[0].name 'net2' not found.",
                "spec.template.spec.domain.devices.interfaces[0].name",
            ),
        ],
        id="vm-interface-network-mismatch",
    ),
    pytest.param(
        VM,
        changed(
            fedora_vm,
            lambda o: (
                tmpl(o)["networks"].append({"name": "net2", "pod": {}}),
                tmpl(o)["domain"]["devices"]["interfaces"].append({"name": "net2", "binding": {"name": "l2bridge"}}),
            ),
        ),
        "CREATE",
        "virtualmachine-validator.kubevirt.io",
        [
            (
                "FieldValueDuplicate",
                "more than one interface is connected to a pod network in spec.template.spec.interfaces",
                "spec.template.spec.interfaces",
            )
        ],
        id="vm-two-pod-networks",
    ),
    pytest.param(
        VM,
        changed(fedora_vm, lambda o: tmpl(o)["domain"]["devices"]["interfaces"][0].update(bridge={})),
        "CREATE",
        "virtualmachine-validator.kubevirt.io",
        [
            (
                "FieldValueInvalid",
                "logical net1 interface cannot have both binding plugin and interface binding method",
                "spec.template.spec.domain.devices.interfaces[0].binding",
            )
        ],
        id="vm-binding-and-bridge",
    ),
    pytest.param(
        VMI,
        changed(fedora_vmi, lambda o: o["spec"]["domain"].pop("resources")),
        "CREATE",
        "virtualmachineinstances-create-validator.kubevirt.io",
        [
            (
                "FieldValueRequired",
                "no memory requested, at least one of 'spec.domain.memory.guest', "
                "'spec.domain.memory.hugepages.size' or 'spec.domain.resources.requests.memory' must be set",
                "",
            )
        ],
        id="vmi-memory-mandatory",
    ),
    pytest.param(
        VMI,
        changed(fedora_vmi, lambda o: o["spec"]["domain"]["devices"]["disks"].pop()),
        "CREATE",
        "virtualmachineinstances-create-validator.kubevirt.io",
        [
            (
                "FieldValueInvalid",
                "spec.domain.volumes[1].name 'cloudinitdisk' not found.",
                "spec.domain.volumes[1].name",
            )
        ],
        id="vmi-volume-without-disk",
    ),
    pytest.param(
        VMIM,
        {"metadata": {"name": "m", "namespace": "namespace-7"}, "spec": {}},
        "CREATE",
        "migration-create-validator.kubevirt.io",
        [("FieldValueRequired", "vmiName is missing", "spec.vmiName")],
        id="vmim-vmi-name-required",
    ),
]


@pytest.mark.parametrize(("resource", "obj", "operation", "webhook", "causes"), WEBHOOK_CASES)
def test_kubevirt_webhook_denials(
    resource: str, obj: dict, operation: str, webhook: str, causes: list[tuple[str, str, str]]
) -> None:
    assert validate(resource, obj) == []  # schema-valid: the webhook is what refuses
    with pytest.raises(AdmissionDenied) as info:
        admit(resource, obj, copy.deepcopy(obj) if operation == "UPDATE" else None, operation)
    denied = info.value
    assert denied.code == 422
    assert denied.message == f'admission webhook "{webhook}" denied the request: ' + ", ".join(c[1] for c in causes)
    body = denied.status()
    assert body["reason"] == "Invalid"
    got = [(c.get("reason", ""), c.get("message", ""), c.get("field", "")) for c in body["details"]["causes"]]
    assert got == causes


def test_vm_without_memory_is_admitted_but_its_vmi_is_not() -> None:
    """Upstream: memory is checked by the VMI create webhook only."""
    vm = changed(fedora_vm, lambda o: tmpl(o)["domain"].pop("resources"))
    admit(VM, vm, None, "CREATE")
    vmi = changed(fedora_vmi, lambda o: o["spec"]["domain"].pop("resources"))
    with pytest.raises(AdmissionDenied):
        admit(VMI, vmi, None, "CREATE")
    for memory in ({"guest": "1Gi"}, {"hugepages": {"pageSize": "2Mi"}}):
        ok = changed(
            fedora_vmi, lambda o, m=memory: (o["spec"]["domain"].pop("resources"), o["spec"]["domain"].update(memory=m))
        )
        admit(VMI, ok, None, "CREATE")


def test_vmi_spec_update_restricted() -> None:
    old = fedora_vmi()
    new = changed(fedora_vmi, lambda o: o["spec"].update(terminationGracePeriodSeconds=30))
    with pytest.raises(AdmissionDenied) as info:
        admit(VMI, new, old, "UPDATE")
    assert info.value.status()["details"]["causes"] == [
        {"reason": "FieldValueNotSupported", "message": "update of VMI object is restricted"}
    ]
    relabelled = changed(fedora_vmi, lambda o: o["metadata"].update(labels={"a": "b"}))
    admit(VMI, relabelled, old, "UPDATE")


def test_webhook_truncates_to_ten_causes() -> None:
    vm = fedora_vm()
    tmpl(vm)["networks"] += [{"name": f"extra{i}", "pod": {}} for i in range(11)]
    with pytest.raises(AdmissionDenied) as info:
        admit(VM, vm, None, "CREATE")
    # 12 causes: one duplicate pod network and eleven networks without an interface.
    assert info.value.message.endswith(", and 2 more validation errors")
    assert len(info.value.status()["details"]["causes"]) == 10


# --- namespace label policy ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("old_labels", "new_labels"),
    [
        pytest.param({}, {"k8s.ovn.org/primary-user-defined-network": ""}, id="added"),
        pytest.param({"k8s.ovn.org/primary-user-defined-network": ""}, {}, id="removed"),
    ],
)
def test_namespace_label_policy(old_labels: dict[str, str], new_labels: dict[str, str]) -> None:
    inner = (
        "ValidatingAdmissionPolicy 'user-defined-networks-namespace-label' with binding "
        "'user-defined-networks-namespace-label-binding' denied request: The "
        "'k8s.ovn.org/primary-user-defined-network' label cannot be added/removed after the namespace was created"
    )
    with pytest.raises(AdmissionDenied) as info:
        admit("namespaces", namespace(labels=new_labels), namespace(labels=old_labels), "UPDATE")
    assert info.value.message == f'namespaces "namespace-7" is forbidden: {inner}'
    assert info.value.status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'namespaces "namespace-7" is forbidden: {inner}',
        "reason": "Invalid",
        "details": {"name": "namespace-7", "kind": "namespaces", "causes": [{"message": inner}]},
        "code": 422,
    }


def test_namespace_label_at_creation_is_allowed() -> None:
    admit("namespaces", namespace(labels={"k8s.ovn.org/primary-user-defined-network": ""}), None, "CREATE")


# --- migrations and binding plugins -------------------------------------------------------------
def test_admit_migration_store_checks() -> None:
    vmim = {"metadata": {"name": "m", "namespace": "ns"}, "spec": {"vmiName": "vm1"}}
    prefix = 'admission webhook "migration-create-validator.kubevirt.io" denied the request: '
    with pytest.raises(AdmissionDenied) as info:
        admit_migration(vmim, None, [])
    assert info.value.message == prefix + 'the VMI "ns/vm1" does not exist'
    assert info.value.status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": prefix + 'the VMI "ns/vm1" does not exist',
        "code": 400,
    }
    running = {"status": {"phase": "Running"}}
    inflight = {
        "metadata": {"uid": "u-1", "labels": {"kubevirt.io/vmi-name": "vm1"}},
        "spec": {"vmiName": "vm1"},
        "status": {"phase": "Running"},
    }
    with pytest.raises(AdmissionDenied) as info:
        admit_migration(vmim, running, [inflight])
    assert info.value.message == prefix + (
        "in-flight migration detected. Active migration job (u-1) is currently already in progress for VMI vm1."
    )
    done = copy.deepcopy(inflight)
    done["status"]["phase"] = "Succeeded"
    admit_migration(vmim, running, [done])
    stuck = {
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "LiveMigratable", "status": "False", "reason": "InterfaceNotLiveMigratable", "message": "m"}
            ],
        }
    }
    with pytest.raises(AdmissionDenied) as info:
        admit_migration(vmim, stuck, [])
    assert info.value.message == prefix + "Cannot migrate VMI, Reason: InterfaceNotLiveMigratable, Message: m"


def test_binding_plugin_registration() -> None:
    spec = fedora_vmi_spec()
    assert binding_plugin_error(spec) is None
    spec["domain"]["devices"]["interfaces"][0]["binding"]["name"] = "passt"
    assert binding_plugin_error(spec) == "unable to find the network binding plugin 'passt' in Kubevirt configuration"
    assert binding_plugin_error(spec, {"l2bridge", "passt"}) is None


# --- rendering and Status bodies ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "text"),
    [
        pytest.param(FieldError("spec.x", "FieldValueRequired", ""), "spec.x: Required value", id="required"),
        pytest.param(
            FieldError("spec.x", "FieldValueTooMany", "must have at most 2 items", 3),
            "spec.x: Too many: 3: must have at most 2 items",
            id="too-many",
        ),
        pytest.param(
            FieldError("spec.x", "FieldValueTooLong", "may not be more than 43 bytes", "abc"),
            "spec.x: Too long: may not be more than 43 bytes",
            id="too-long-hides-value",
        ),
        pytest.param(
            FieldError("spec.x", "FieldValueForbidden", "not allowed", "v"),
            "spec.x: Forbidden: not allowed",
            id="forbidden",
        ),
        pytest.param(
            FieldError("spec.x", "FieldValueInvalid", "bad", 'a"b\n'),
            'spec.x: Invalid value: "a\\"b\\n": bad',
            id="go-quoting",
        ),
        pytest.param(
            FieldError("spec.x", "FieldValueInvalid", "bad", True), "spec.x: Invalid value: true: bad", id="bool"
        ),
        pytest.param(
            FieldError("spec.x", "FieldValueDuplicate", "", "a"), 'spec.x: Duplicate value: "a"', id="duplicate"
        ),
    ],
)
def test_render(error: FieldError, text: str) -> None:
    assert error.render() == text


def test_invalid_status_custom_kind_with_dedup() -> None:
    obj = changed(seed_l3_cudn, lambda o: net(o).update(topology="Layer9"))
    kind, group = KINDS[CUDN]
    body = invalid_status(kind, group, "udn-cluster-primary-l3", validate(CUDN, obj))
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'ClusterUserDefinedNetwork.k8s.ovn.org "udn-cluster-primary-l3" is invalid: '
        '[spec.network.topology: Unsupported value: "Layer9": supported values: "Layer2", "Layer3", '
        f'"Localnet", {SKIPPED}]',
        "reason": "Invalid",
        "details": {
            "name": "udn-cluster-primary-l3",
            "group": "k8s.ovn.org",
            "kind": "ClusterUserDefinedNetwork",
            "causes": [
                {
                    "reason": "FieldValueNotSupported",
                    "message": 'Unsupported value: "Layer9": supported values: "Layer2", "Layer3", "Localnet"',
                    "field": "spec.network.topology",
                },
                {
                    "reason": "FieldValueInvalid",
                    "message": 'Invalid value: "null": some validation rules were not checked because the object '
                    "was invalid; correct the existing errors to complete validation",
                    "field": "<nil>",
                },
            ],
        },
        "code": 422,
    }
    twice = [FieldError("a", "FieldValueRequired", "")] * 2
    assert invalid_status("X", "g", "n", twice)["message"] == 'X.g "n" is invalid: a: Required value'
    assert len(invalid_status("X", "g", "n", twice)["details"]["causes"]) == 2


def test_invalid_status_core_kind() -> None:
    errs = validate("namespaces", namespace("Bad"))
    body = invalid_status("Namespace", "", "Bad", errs)
    assert body["message"] == f'Namespace "Bad" is invalid: metadata.name: Invalid value: "Bad": {LABEL_RE_MSG}'
    assert body["details"] == {
        "name": "Bad",
        "kind": "Namespace",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": f'Invalid value: "Bad": {LABEL_RE_MSG}',
                "field": "metadata.name",
            }
        ],
    }


# --- properties and performance -----------------------------------------------------------------
@given(st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z"))
def test_generated_dns_labels_are_valid(name: str) -> None:
    assert is_dns1123_label(name) == []
    assert validate("namespaces", namespace(name)) == []


@given(st.ip_addresses(), st.integers(min_value=0, max_value=128))
def test_cidr_parser_matches_prefix_rules(addr: Any, bits: int) -> None:
    parsed = parse_cidr(f"{addr}/{bits}")
    mapped = getattr(addr, "ipv4_mapped", None) is not None
    assert (parsed is not None) == (bits <= addr.max_prefixlen and not mapped)
    if parsed is not None:
        assert parsed.family == addr.version and parsed.prefix == bits


def test_cidr_parser_rejects_what_go_netip_rejects() -> None:
    for bad in ("10.0.0.0/024", "010.0.0.0/8", "fe80::1%eth0/64", "::ffff:10.0.0.0/104", "10.0.0.0", "10.0.0.0/+8"):
        assert parse_cidr(bad) is None, bad
    assert parse_cidr("10.0.0.1/8") is not None  # host bits are fine for CEL isCIDR


@pytest.mark.parametrize(("resource", "builder"), [(CUDN, seed_l3_cudn), (VM, fedora_vm)], ids=["cudn", "vm"])
def test_validate_is_fast(resource: str, builder: Callable[[], dict[str, Any]]) -> None:
    obj = builder()
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        validate(resource, obj)
        admit(resource, obj, None, "CREATE")
    assert (time.perf_counter() - start) / n < 0.001
