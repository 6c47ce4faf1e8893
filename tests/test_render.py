"""Rendering: object shapes, order, YAML files an admin can apply, and stamping equal to full renders."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pytest
import yaml

from tasks.render import (
    PASSWORD_PLACEHOLDER,
    _env,
    _Stamp,
    _vm_context,
    generate_password,
    render_cudn,
    render_namespace,
    render_objects,
    render_secret,
    render_vm,
    render_yaml,
    write_manifests,
)
from tasks.spec import PRIMARY_UDN_LABEL, RUN_LABEL, SPEC_HASH_ANNOTATION, VM_INDEX_LABEL, load_spec
from tasks.templates import manifests_dir

SPECS = Path(__file__).resolve().parent.parent / "specs"
RUN_LABELS = {"app.kubernetes.io/managed-by": "udn-rollout", RUN_LABEL: "seed-l3"}


@pytest.fixture
def l3():
    return load_spec(SPECS / "seed-l3.yaml")


@pytest.fixture
def l2():
    return load_spec(SPECS / "seed-l2.yaml")


def kinds(objects):
    return [o["kind"] for o in objects]


def test_templates_exist():
    names = {p.name for p in manifests_dir().glob("*.yaml.j2")}
    assert {"namespace.yaml.j2", "credentials-secret.yaml.j2", "cudn.yaml.j2", "virtualmachine.yaml.j2"} <= names


def test_strict_undefined():
    with pytest.raises(jinja2.UndefinedError):
        _env().get_template("namespace.yaml.j2").render(name="x")


def test_namespace_labelled_at_creation(l3):
    ns = render_namespace(l3, "namespace-7")
    assert (ns["apiVersion"], ns["kind"], ns["metadata"]["name"]) == ("v1", "Namespace", "namespace-7")
    assert ns["metadata"]["labels"] == {PRIMARY_UDN_LABEL: "", **RUN_LABELS}


def test_cudn_layer3(l3):
    cudn = render_cudn(l3)
    assert (cudn["apiVersion"], cudn["kind"]) == ("k8s.ovn.org/v1", "ClusterUserDefinedNetwork")
    assert cudn["metadata"] == {"name": "udn-cluster-primary-l3", "labels": RUN_LABELS}
    assert cudn["spec"]["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["namespace-7", "namespace-8"]}
        ]
    }
    assert cudn["spec"]["network"] == {
        "topology": "Layer3",
        "layer3": {"role": "Primary", "subnets": [{"cidr": "192.168.0.0/16", "hostSubnet": 24}]},
    }


def test_cudn_layer2_persistent(l2):
    network = render_cudn(l2)["spec"]["network"]
    assert network == {
        "topology": "Layer2",
        "layer2": {"role": "Primary", "subnets": ["10.200.0.0/16"], "ipam": {"lifecycle": "Persistent"}},
    }


def test_cudn_layer2_options():
    spec = load_spec(
        SPECS / "seed-l2.yaml",
        [
            "network.persistentIPs=false",
            "network.mtu=1400",
            "network.subnets[1].cidr=fd00:10::/64",
            "network.joinSubnets={100.99.0.0/16}",
        ],
    )
    layer2 = render_cudn(spec)["spec"]["network"]["layer2"]
    assert layer2 == {
        "role": "Primary",
        "subnets": ["10.200.0.0/16", "fd00:10::/64"],
        "mtu": 1400,
        "joinSubnets": ["100.99.0.0/16"],
    }


def test_cudn_layer3_dual_stack_mtu():
    spec = load_spec(SPECS / "seed-l3.yaml", ["network.subnets[1].cidr=fd00:10::/48", "network.mtu=1400"])
    layer3 = render_cudn(spec)["spec"]["network"]["layer3"]
    assert layer3["subnets"][1] == {"cidr": "fd00:10::/48", "hostSubnet": 64}
    assert layer3["mtu"] == 1400


def test_secret_holds_cloud_config_with_password(l3):
    password = 'p@ss: "word" # not-a-comment'
    secret = render_secret(l3, "namespace-8", password)
    assert (secret["kind"], secret["type"]) == ("Secret", "Opaque")
    assert secret["metadata"] == {
        "name": "udn-rollout-seed-l3-credentials",
        "namespace": "namespace-8",
        "labels": RUN_LABELS,
    }
    userdata = secret["stringData"]["userdata"]
    assert userdata.startswith("#cloud-config\n")
    assert yaml.safe_load(userdata) == {"password": password, "chpasswd": {"expire": False}}


def test_secret_rejects_empty_or_multiline_password(l3):
    for bad in ("", "a\nb"):
        with pytest.raises(ValueError, match="one non-empty line"):
            render_secret(l3, "namespace-7", bad)


def test_vm_shape(l3):
    vm = render_vm(l3, "namespace-7", "rhel8-vm-1", 1)
    assert (vm["apiVersion"], vm["kind"]) == ("kubevirt.io/v1", "VirtualMachine")
    meta = vm["metadata"]
    assert (meta["name"], meta["namespace"]) == ("rhel8-vm-1", "namespace-7")
    assert meta["labels"] == {**RUN_LABELS, VM_INDEX_LABEL: "1"}
    assert meta["annotations"] == {SPEC_HASH_ANNOTATION: l3.spec_hash()}
    spec = vm["spec"]
    assert spec["runStrategy"] == "Always" and "running" not in spec
    template = spec["template"]
    assert template["metadata"]["labels"] == {**RUN_LABELS, VM_INDEX_LABEL: "1", "kubevirt.io/vm": "rhel8-vm-1"}
    pod = template["spec"]
    assert "nodeSelector" not in pod
    assert pod["domain"]["cpu"] == {"cores": 1}
    assert pod["domain"]["resources"] == {"requests": {"memory": "1Gi"}}
    devices = pod["domain"]["devices"]
    assert devices["interfaces"] == [{"name": "primary", "binding": {"name": "l2bridge"}}]
    assert "bridge" not in devices["interfaces"][0] and "masquerade" not in devices["interfaces"][0]
    assert devices["disks"] == [
        {"name": "containerdisk", "disk": {"bus": "virtio"}},
        {"name": "cloudinitdisk", "disk": {"bus": "virtio"}},
    ]
    assert devices["rng"] == {}
    assert pod["networks"] == [{"name": "primary", "pod": {}}]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["containerdisk"]["containerDisk"] == {"image": "quay.io/containerdisks/fedora:latest"}
    cloud_init = volumes["cloudinitdisk"]["cloudInitNoCloud"]
    assert cloud_init["secretRef"] == {"name": "udn-rollout-seed-l3-credentials"}
    assert "userData" not in cloud_init and "userDataBase64" not in cloud_init
    assert yaml.safe_load(cloud_init["networkData"]) == {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}
    assert isinstance(pod["terminationGracePeriodSeconds"], int)


def test_vm_options_node_selector_dual_stack_and_own_secret():
    spec = load_spec(
        SPECS / "seed-l2.yaml",
        [
            r"vms.nodeSelector.node-role\.kubernetes\.io/worker=",
            "network.subnets[1].cidr=fd00:10::/64",
            "vms.credentialsSecret=my-creds,vms.cpu=4,vms.memory=4Gi,vms.runStrategy=Halted",
        ],
    )
    vm = render_vm(spec, "namespace-17", "rhel8-vm-1", 1)
    pod = vm["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/worker": ""}
    assert vm["spec"]["runStrategy"] == "Halted"
    assert pod["domain"]["cpu"] == {"cores": 4}
    assert pod["domain"]["resources"]["requests"]["memory"] == "4Gi"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["cloudinitdisk"]["cloudInitNoCloud"]["secretRef"] == {"name": "my-creds"}
    eth0 = yaml.safe_load(volumes["cloudinitdisk"]["cloudInitNoCloud"]["networkData"])["ethernets"]["eth0"]
    assert eth0["dhcp6"] is True and eth0["ipv6-address-generation"] == "eui64"
    # with a referenced Secret, none is rendered
    assert "Secret" not in kinds(render_objects(spec))


def test_password_never_in_vms_or_namespaces(l3):
    password = generate_password()
    objects = render_objects(l3, password=password)
    for obj in objects:
        if obj["kind"] != "Secret":
            assert password not in json.dumps(obj)
    assert sum(password in json.dumps(o) for o in objects) == 2


def test_objects_in_creation_order(l3):
    objects = render_objects(l3, password="pw")
    assert kinds(objects) == ["Namespace"] * 2 + ["Secret"] * 2 + ["ClusterUserDefinedNetwork"] + ["VirtualMachine"] * 2
    assert [o["metadata"]["namespace"] for o in objects[-2:]] == ["namespace-7", "namespace-8"]
    every_label = [o["metadata"]["labels"] for o in objects]
    assert all(labels[RUN_LABEL] == "seed-l3" for labels in every_label)


def test_placeholder_password_when_none_given(l3):
    secrets = [o for o in render_objects(l3) if o["kind"] == "Secret"]
    assert all(PASSWORD_PLACEHOLDER in s["stringData"]["userdata"] for s in secrets)


def test_stamped_objects_equal_full_renders():
    spec = load_spec(SPECS / "scale-l2.yaml", ["namespaces.count=3", "vms.perNamespace=4"])
    objects = render_objects(spec, password="pw")
    namespaces = spec.namespace_names()
    expected = [render_namespace(spec, ns) for ns in namespaces]
    expected += [render_secret(spec, ns, "pw") for ns in namespaces]
    expected.append(render_cudn(spec))
    expected += [render_vm(spec, ns, name, i) for ns, name, i in spec.vm_refs()]
    assert objects == expected


def test_stamp_falls_back_for_names_that_need_quoting(l3):
    stamp = _Stamp.build("virtualmachine.yaml.j2", _vm_context(l3, "zzudnns0", "zzudnname0", "zzudnindex0"))
    odd = {"zzudnns0": "ns", "zzudnname0": 'we"ird', "zzudnindex0": "1"}
    real = {"namespace": "ns", "name": 'we"ird', "index": "1"}
    assert stamp.obj(odd, real)["metadata"]["name"] == 'we"ird'
    assert 'we\\"ird' in stamp.text(odd, real)


def test_yaml_stream_round_trips_to_objects(l3):
    stream = render_yaml(l3, password="pw")
    assert list(yaml.safe_load_all(stream)) == render_objects(l3, password="pw")
    assert write_manifests(l3, None, password="pw") == stream


def test_write_manifests_files(tmp_path, l3):
    paths = write_manifests(l3, tmp_path)
    assert [p.name for p in paths] == [
        "00-namespaces.yaml",
        "10-credentials.yaml",
        "20-cudn.yaml",
        "30-vms-namespace-7.yaml",
        "30-vms-namespace-8.yaml",
    ]
    creds = (tmp_path / "10-credentials.yaml").read_text()
    assert f"Replace every {PASSWORD_PLACEHOLDER}" in creds
    assert (tmp_path / "10-credentials.yaml").stat().st_mode & 0o077 == 0
    docs = [d for p in sorted(tmp_path.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    assert docs == render_objects(l3)
    for path in paths:
        assert path.read_text().startswith("# ")


def test_write_manifests_generated_password_and_stale_files(tmp_path):
    spec = load_spec(SPECS / "seed-l2.yaml")
    (tmp_path / "30-vms-old-namespace.yaml").write_text("stale")
    (tmp_path / "notes.txt").write_text("mine")
    write_manifests(spec, tmp_path, password_placeholder=False)
    creds = (tmp_path / "10-credentials.yaml").read_text()
    assert PASSWORD_PLACEHOLDER not in creds and "keep this file private" in creds
    assert not (tmp_path / "30-vms-old-namespace.yaml").exists()
    assert (tmp_path / "notes.txt").exists()
    own = load_spec(SPECS / "seed-l2.yaml", ["vms.credentialsSecret=mine", "vms.perNamespace=0"])
    names = [p.name for p in write_manifests(own, tmp_path)]
    assert names == ["00-namespaces.yaml", "20-cudn.yaml"]
    assert sorted(p.name for p in tmp_path.glob("*.yaml")) == names


def test_rendering_is_deterministic(l3):
    assert render_yaml(l3, password="x") == render_yaml(load_spec(SPECS / "seed-l3.yaml"), password="x")
    assert render_objects(l3, password="x") == render_objects(l3, password="x")


def test_ten_thousand_vms_render_correctly():
    spec = load_spec(SPECS / "scale-l2.yaml", ["namespaces.count=100", "vms.perNamespace=100"])
    objects = render_objects(spec, password="pw")
    vms = [o for o in objects if o["kind"] == "VirtualMachine"]
    assert len(vms) == 10_000
    keys = {(v["metadata"]["namespace"], v["metadata"]["name"]) for v in vms}
    assert len(keys) == 10_000
    last = vms[-1]
    assert last["metadata"]["labels"][VM_INDEX_LABEL] == "100"
    assert last["spec"]["template"]["metadata"]["labels"]["kubevirt.io/vm"] == last["metadata"]["name"]
    assert len(render_cudn(spec)["spec"]["namespaceSelector"]["matchExpressions"][0]["values"]) == 100
