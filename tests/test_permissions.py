"""Permissions (issue 9, item 5): with a restricted policy in the simulated cluster (RBAC reduced to
allow rules, answered by SelfSubjectAccessReview and enforced on every request), preflight names each
missing permission exactly — verb, resource, subresource and API group — the run exits 3, and
nothing is created. The same spec passes once everything is allowed again."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.preflight import preflight
from simcluster import ClusterConfig, SimCluster
from tasks.kube import ClusterParams, ClusterTarget, Kube, KubeError
from tasks.kube.resources import CUDN, NAD, NAMESPACE, SECRET, VM
from tasks.outcome import PreflightFailed
from tasks.preflight import required_permissions
from tasks.spec import RolloutSpec, load_spec
from udn_rollout import cli

pytestmark = pytest.mark.usefixtures("prefect_harness")

SPECS = Path(__file__).resolve().parent.parent / "specs"
INVENTORY_KINDS = [NAMESPACE, SECRET, CUDN, NAD, VM]
ALL_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
GROUPS = [
    "",
    "apiextensions.k8s.io",
    "authorization.k8s.io",
    "config.openshift.io",
    "k8s.ovn.org",
    "k8s.cni.cncf.io",
    "kubevirt.io",
    "subresources.kubevirt.io",
    "coordination.k8s.io",
]


def all_but_many(denied: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Allow rules for every (verb, group, resource) except the denied triples: per group, each verb is
    granted on '*' unless a triple denies it, then on the group's other known resources only."""
    known = {
        "k8s.ovn.org": ["clusteruserdefinednetworks", "userdefinednetworks"],
        "subresources.kubevirt.io": [
            "virtualmachineinstances/console",
            "virtualmachines/migrate",
            "virtualmachines/start",
            "virtualmachines/stop",
            "virtualmachines/restart",
        ],
        "": ["namespaces", "nodes", "events", "configmaps", "secrets", "pods"],
    }
    rules: list[dict[str, Any]] = []
    for group in GROUPS:
        for verb in ALL_VERBS:
            blocked = {r for v, g, r in denied if v == verb and g == group}
            if not blocked:
                rules.append({"verbs": [verb], "apiGroups": [group]})
            else:
                allowed = [r for r in known[group] if r not in blocked]
                rules.append({"verbs": [verb], "apiGroups": [group], "resources": allowed})
    return rules


# (id, denied (verb, group, resource[/subresource]), the labels preflight must name, exactly)
POLICIES: list[tuple[str, list[tuple[str, str, str]], list[str]]] = [
    (
        "no-create-cudn-no-console",
        [
            ("create", "k8s.ovn.org", "clusteruserdefinednetworks"),
            ("get", "subresources.kubevirt.io", "virtualmachineinstances/console"),
        ],
        [
            "create clusteruserdefinednetworks.k8s.ovn.org",
            "get virtualmachineinstances/console.subresources.kubevirt.io",
        ],
    ),
    ("no-create-namespaces", [("create", "", "namespaces")], ["create namespaces"]),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimCluster]:
    with SimCluster(config=ClusterConfig(nodes=2, profile="fast")) as sim:
        yield sim


@pytest.fixture
def restricted(cluster: SimCluster) -> Iterator[SimCluster]:
    """The cluster; allow-all again afterwards, whatever the test did."""
    try:
        yield cluster
    finally:
        cluster.set_policy(allow_all=True)


@pytest.fixture(scope="module")
def kube(cluster: SimCluster) -> Iterator[Kube]:
    k = Kube(ClusterTarget(kubeconfig=str(cluster.kubeconfig)), qps=0, retries=0)
    yield k
    k.close()


def make_spec(tmp_path: Path) -> tuple[RolloutSpec, Path]:
    uid = uuid.uuid4().hex[:6]
    spec = load_spec(
        SPECS / "seed-l2.yaml",
        [f"network.name=perm-{uid}", f"namespaces.names={{perm-{uid}-a,perm-{uid}-b}}", "vms.perNamespace=1"],
        run_id=f"perm-{uid}",
    )
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
    return spec, path


def inventory(kube: Kube) -> dict[tuple[str, str, str], str]:
    out = {}
    for r in INVENTORY_KINDS:
        kind = r.kind
        items, _ = kube.list(r)
        for o in items:
            md = o["metadata"]
            body = {k: v for k, v in o.items() if k not in ("metadata", "status")}
            out[(kind, md.get("namespace", ""), md["name"])] = json.dumps([md.get("labels"), body], sort_keys=True)
    return out


def missing_labels(detail: str) -> list[str]:
    """'missing: a (why); b (why)' → ['a', 'b']."""
    assert detail.startswith("missing: "), detail
    return [re.sub(r" \(.*\)$", "", entry) for entry in detail.removeprefix("missing: ").split("; ")]


@pytest.mark.parametrize(("denied", "expected"), [p[1:] for p in POLICIES], ids=[p[0] for p in POLICIES])
def test_preflight_names_each_missing_permission(
    denied: list[tuple[str, str, str]],
    expected: list[str],
    restricted: SimCluster,
    kube: Kube,
    tmp_path: Path,
    reports_root: Path,
) -> None:
    spec, _ = make_spec(tmp_path)
    restricted.set_policy(rules=all_but_many(denied))
    before = inventory(kube)
    with pytest.raises(PreflightFailed) as info:
        preflight(spec, ClusterParams(kubeconfig=str(restricted.kubeconfig)))
    assert inventory(kube) == before
    failed = [c for c in info.value.checks if c.status == "fail"]
    assert [c.name for c in failed] == ["permissions"], [(c.name, c.detail) for c in failed]
    check = failed[0]
    assert sorted(missing_labels(check.detail)) == sorted(expected)
    for p in required_permissions(spec):  # each named with why it is needed
        if p.label in expected:
            assert f"{p.label} ({p.why})" in check.detail
    assert "ClusterRole" in check.fix and "rerun" in check.fix
    report = (reports_root / spec.run_id / "preflight.md").read_text()
    for label in expected:
        assert label in report


@pytest.mark.parametrize(("denied", "expected"), [p[1:] for p in POLICIES], ids=[p[0] for p in POLICIES])
def test_restricted_rollout_exits_3_and_creates_nothing(
    denied: list[tuple[str, str, str]],
    expected: list[str],
    restricted: SimCluster,
    kube: Kube,
    tmp_path: Path,
    reports_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    spec, path = make_spec(tmp_path)
    restricted.set_policy(rules=all_but_many(denied))
    before = inventory(kube)
    code = cli.main(["rollout", "-f", str(path), "--kubeconfig", str(restricted.kubeconfig)])
    captured = capsys.readouterr()
    assert code == cli.EXIT_PREFLIGHT, captured.err
    assert "permissions" in captured.err and "nothing was changed on the cluster" in captured.err
    table = re.sub(r"\s+", " ", captured.out)
    for label in expected:
        assert label in table
    assert inventory(kube) == before
    for ns in spec.namespace_names():
        assert kube.get(NAMESPACE, ns) is None
    assert kube.get(CUDN, spec.network.name) is None

    # The same spec passes preflight once everything is allowed: the policy alone made it fail.
    restricted.set_policy(allow_all=True)
    assert cli.main(["preflight", "-f", str(path), "--kubeconfig", str(restricted.kubeconfig)]) == cli.EXIT_OK
    capsys.readouterr()


def test_the_policy_is_enforced_not_just_reported(restricted: SimCluster, kube: Kube) -> None:
    """What SelfSubjectAccessReview denies, the API refuses with 403 and the real Forbidden message."""
    restricted.set_policy(rules=all_but_many([("create", "", "namespaces")]))
    assert kube.can_i("create", "", "namespaces") is False
    assert kube.can_i("create", "k8s.ovn.org", "clusteruserdefinednetworks") is True
    assert kube.can_i("list", "", "namespaces") is True
    name = f"perm-{uuid.uuid4().hex[:6]}"
    with pytest.raises(KubeError) as info:
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    assert info.value.code == 403
    assert 'cannot create resource "namespaces" in API group "" at the cluster scope' in info.value.message
    assert kube.get(NAMESPACE, name) is None

    restricted.set_policy(rules=all_but_many([("get", "subresources.kubevirt.io", "virtualmachineinstances/console")]))
    assert kube.can_i("get", "subresources.kubevirt.io", "virtualmachineinstances", subresource="console") is False
    assert kube.can_i("get", "kubevirt.io", "virtualmachineinstances") is True

    restricted.set_policy(allow_all=True)
    assert kube.can_i("create", "", "namespaces") is True
