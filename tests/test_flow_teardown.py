"""The teardown flow after a rollout (issue 10): --dry-run lists what would go and deletes nothing; a
teardown under another run id deletes nothing and names the same-named objects it leaves alone; the
real teardown leaves nothing labelled with the run and touches nothing unlabelled."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from run_census import CUDN, NAD, NS, SECRET, VM, VMI, VMIM

from flows.rollout import rollout
from flows.teardown import teardown
from simcluster import ClusterConfig, SimCluster
from tasks.kube import ClusterParams, Kube, connect
from tasks.kube.resources import CONFIGMAP, IPAMCLAIM, Resource
from tasks.spec import MANAGED_BY_LABEL, MANAGED_BY_VALUE, RUN_LABEL, RolloutSpec, load_spec


@dataclass
class Env:
    sim: SimCluster
    spec: RolloutSpec
    cluster: ClusterParams
    kube: Kube
    other_cudn: str
    lookalike_ns: str
    configmap: str


@pytest.fixture(scope="module")
def env(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A Layer2 rollout (persistent IPs, so IPAMClaims; churn on, so migrations) plus bystanders: an
    unlabelled ConfigMap, an unlabelled namespace named like the run's canary, another run's CUDN."""
    with (
        pytest.MonkeyPatch.context() as mp,
        SimCluster(config=ClusterConfig(nodes=3, profile="fast")) as sim,
    ):
        mp.setenv("UDN_ROLLOUT_REPORTS", str(tmp_path_factory.mktemp("teardown-reports")))
        tag = uuid.uuid4().hex[:6]
        spec = load_spec(
            "specs/seed-l2.yaml",
            [f"namespaces.names={{td-{tag}-a,td-{tag}-b}}", "vms.perNamespace=3", "churn.count=2"],
            run_id=f"td-{tag}",
        )
        cluster = ClusterParams(kubeconfig=str(sim.kubeconfig))
        rollout(spec, cluster, ping=False, churn=True)
        kube = connect(cluster, spec.api)
        env = Env(sim, spec, cluster, kube, f"other-{tag}", f"{spec.run_id}-canary", f"keep-{tag}")
        kube.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": env.configmap, "namespace": "default"}}
        )
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": env.lookalike_ns}})
        kube.create(
            {
                "apiVersion": "k8s.ovn.org/v1",
                "kind": "ClusterUserDefinedNetwork",
                "metadata": {
                    "name": env.other_cudn,
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, RUN_LABEL: f"other-{tag}"},
                },
                "spec": {
                    "namespaceSelector": {"matchLabels": {"nothing": f"other-{tag}"}},
                    "network": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["10.230.0.0/16"]}},
                },
            }
        )
        yield env


def labelled(kube: Kube, run_id: str) -> dict[str, list[str]]:
    """Every object carrying the run's label, by kind."""
    sel = f"{RUN_LABEL}={run_id}"
    out = {}
    for api in (VM, VMI, VMIM, NS, CUDN, NAD, IPAMCLAIM, SECRET):
        items, _ = kube.list(api, label_selector=sel)
        out[api.kind] = sorted(f"{i['metadata'].get('namespace', '')}/{i['metadata']['name']}" for i in items)
    return out


def in_namespaces(kube: Kube, api: Resource, namespaces: list[str]) -> list[dict]:
    items, _ = kube.list(api)
    return [i for i in items if i["metadata"].get("namespace") in namespaces]


def bystanders_intact(env: Env) -> None:
    assert env.kube.get(CONFIGMAP, env.configmap, "default") is not None
    ns = env.kube.get(NS, env.lookalike_ns)
    assert ns is not None and (ns["metadata"].get("deletionTimestamp") is None)
    assert env.kube.get(CUDN, env.other_cudn) is not None


def test_dry_run_lists_and_deletes_nothing(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    before = labelled(env.kube, env.spec.run_id)
    result = teardown(env.spec, env.cluster, dry_run=True)
    out = capsys.readouterr().out

    namespaces = env.spec.namespace_names()
    vms = [f"{ns}/{vm}" for ns in namespaces for vm in env.spec.vm_names()]
    assert result.plan.vms == sorted(vms)
    assert result.plan.namespaces == sorted(namespaces)
    assert result.plan.network == env.spec.network.name
    assert len(result.plan.migrations) == 2
    assert result.deleted == [] and result.plan.left_alone == []
    for vm in vms:
        assert f"would delete VirtualMachine {vm}" in out
    for ns in namespaces:
        assert f"would delete Namespace {ns}" in out
    assert f"would delete ClusterUserDefinedNetwork {env.spec.network.name}" in out
    assert labelled(env.kube, env.spec.run_id) == before
    assert len(before["VirtualMachine"]) == 6 and len(before["VirtualMachineInstance"]) == 6
    bystanders_intact(env)


def test_another_run_id_touches_nothing_and_names_what_it_leaves(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """Same network and namespace names under a different run id: nothing is this run's, so nothing goes,
    and the same-named objects are named as left alone."""
    before = labelled(env.kube, env.spec.run_id)
    intruder = load_spec(
        "specs/seed-l2.yaml",
        [f"namespaces.names={{{','.join(env.spec.namespace_names())}}}"],
        run_id=f"{env.spec.run_id}-x",
    )
    result = teardown(intruder, env.cluster)
    out = capsys.readouterr().out
    assert result.deleted == [] and result.remaining == []
    assert result.plan.lines() == []
    assert any(line.startswith(f"ClusterUserDefinedNetwork {env.spec.network.name}") for line in result.plan.left_alone)
    for ns in env.spec.namespace_names():
        assert any(line.startswith(f"Namespace {ns} ") for line in result.plan.left_alone)
        assert f"left alone: Namespace {ns}" in out
    assert f"left alone: ClusterUserDefinedNetwork {env.spec.network.name}" in out
    assert labelled(env.kube, env.spec.run_id) == before
    bystanders_intact(env)


def test_teardown_leaves_nothing_labelled_and_nothing_else_touched(env: Env) -> None:
    spec, kube = env.spec, env.kube
    namespaces = spec.namespace_names()
    before = labelled(kube, spec.run_id)
    # What the rollout made, so "nothing left" below means something.
    assert len(before["VirtualMachine"]) == 6 and len(before["VirtualMachineInstanceMigration"]) == 2
    assert before["Namespace"] == sorted(f"/{ns}" for ns in namespaces)
    assert before["ClusterUserDefinedNetwork"] == [f"/{spec.network.name}"]
    assert len(before["Secret"]) == 2
    assert len(in_namespaces(kube, NAD, namespaces)) == 2
    assert len(in_namespaces(kube, IPAMCLAIM, namespaces)) == 6

    result = teardown(spec, env.cluster, timeout_seconds=60)

    assert result.remaining == []
    assert f"ClusterUserDefinedNetwork {spec.network.name}" in result.deleted
    assert all(v == [] for v in labelled(kube, spec.run_id).values()), labelled(kube, spec.run_id)
    for api in (VM, VMI, VMIM, NAD, IPAMCLAIM, SECRET):
        assert in_namespaces(kube, api, namespaces) == [], api
    for ns in namespaces:
        assert kube.get(NS, ns) is None
    assert kube.get(CUDN, spec.network.name) is None
    bystanders_intact(env)

    # A second teardown finds nothing and says so.
    again = teardown(spec, env.cluster)
    assert again.plan.lines() == [] and again.deleted == []
