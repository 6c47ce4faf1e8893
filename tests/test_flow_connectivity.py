"""The connectivity flow on the simulated cluster (issue 6): a small fleet pinged as a full mesh, the
isolation canary created, kept silent and removed, packet loss between two nodes showing up in exactly
those node × node cells, and an answered isolation probe (a leak) reported as a failure."""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.connectivity import connectivity
from flows.fanout import fanout
from flows.provision import provision
from simcluster import ClusterConfig, SimCluster
from tasks import reports
from tasks.connectivity import credentials_from_secret, run_probes
from tasks.connectivity import endpoints as _endpoints
from tasks.kube import ClusterParams, Kube, connect
from tasks.kube.resources import NAMESPACE, VMI, Resource
from tasks.outcome import ConnectivityFailed
from tasks.probeplan import Probe, Target, VMEndpoint, group_by_source, plan_probes
from tasks.scope import canary_namespace
from tasks.spec import RolloutSpec, load_spec

NS_API = NAMESPACE
VMI_API = VMI


def endpoints(kube: Kube, spec: RolloutSpec) -> list[VMEndpoint]:
    return _endpoints(kube, spec)[0]


@dataclass
class Fleet:
    sim: SimCluster
    spec: RolloutSpec
    cluster: ClusterParams
    kube: Kube
    reports: Path


@pytest.fixture(scope="module")
def fleet(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Six Layer2 VMs (two namespaces × three) on a three-node simulated cluster, made by the flows."""
    root = tmp_path_factory.mktemp("conn-reports")
    with pytest.MonkeyPatch.context() as mp, SimCluster(config=ClusterConfig(nodes=3, profile="fast")) as sim:
        mp.setenv("UDN_ROLLOUT_REPORTS", str(root))
        tag = uuid.uuid4().hex[:6]
        spec = load_spec(
            "specs/seed-l2.yaml",
            [
                f"namespaces.names={{conn-{tag}-a,conn-{tag}-b}}",
                "vms.perNamespace=3",
                "connectivity.pingCount=2",
                "connectivity.pingTimeoutSeconds=1",
            ],
            run_id=f"conn-{tag}",
        )
        cluster = ClusterParams(kubeconfig=str(sim.kubeconfig))
        provision(spec, cluster)
        fanout(spec, cluster)
        yield Fleet(sim, spec, cluster, connect(cluster, spec.api), root / spec.run_id)


def wait_gone(kube: Kube, api: Resource, name: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kube.get(api, name) is None:
            return True
        time.sleep(0.1)
    return False


def test_full_mesh_all_reachable_canary_silent_and_removed(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UDN_ROLLOUT_REPORTS", str(fleet.reports.parent))
    eps = endpoints(fleet.kube, fleet.spec)
    n = len(eps)
    assert n == 6
    assert len({e.node for e in eps}) >= 2, "the fleet should span nodes"

    result = connectivity(fleet.spec, fleet.cluster)

    mesh = [r for r in result.results if r.kind == "mesh"]
    iso = [r for r in result.results if r.kind == "isolation"]
    assert len(mesh) == n * (n - 1)
    assert all(r.passed and r.outcome == "reply" and r.received > 0 for r in mesh)
    assert {(r.src_vm, r.src_namespace, r.dst_ip) for r in mesh} == {
        (s.name, s.namespace, d.ip) for s in eps for d in eps if s != d
    }
    assert result.coverage["mode"] == "full"
    assert result.summary["verdict"] == "PASS"

    # The canary: a VM in the run's canary namespace on the default network, probed by every VM.
    canary_ns = canary_namespace(fleet.spec.run_id)
    assert len(iso) == n
    assert {r.dst_namespace for r in iso} == {canary_ns}
    assert all(r.expect == "silent" and r.received == 0 and r.passed for r in iso)
    assert len({r.dst_ip for r in iso}) == 1 and iso[0].dst_ip not in {e.ip for e in eps}
    assert ipaddress.ip_address(iso[0].dst_ip) in ipaddress.ip_network("10.128.0.0/14")  # the default network
    verdicts = reports.isolation_verdicts(result.results)
    assert list(verdicts["verdict"]) == [reports.SILENT]
    # … and removed afterwards.
    assert wait_gone(fleet.kube, NS_API, canary_ns), f"canary namespace {canary_ns} still there"
    assert fleet.kube.list(VMI, namespace=canary_ns)[0] == []

    # Reports: a row per probe, the heatmap page.
    rows = reports.read_probes_csv(fleet.reports / "connectivity.csv")
    assert len(rows) == n * (n - 1) + n
    assert sum(r.kind == "mesh" for r in rows) == n * (n - 1)
    html = (fleet.reports / "connectivity.html").read_text()
    assert 'id="hm-node"' in html and 'id="hm-namespace"' in html
    assert reports.loss_colour(0) in html  # green cells
    md = (fleet.reports / "connectivity.md").read_text()
    assert reports.SILENT in md and "PASS" in md


def test_packet_loss_between_two_nodes_shows_in_exactly_those_cells(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UDN_ROLLOUT_REPORTS", str(fleet.reports.parent))
    eps = endpoints(fleet.kube, fleet.spec)
    nodes = sorted({e.node for e in eps})
    assert len(nodes) >= 2
    a, b = nodes[0], nodes[1]
    fleet.sim.set_faults(packet_loss={f"{a}|{b}": 1.0})
    try:
        with pytest.raises(ConnectivityFailed, match="did not match"):
            connectivity(fleet.spec, fleet.cluster)
    finally:
        fleet.sim.set_faults(packet_loss={})

    rows = reports.read_probes_csv(fleet.reports / "connectivity.csv")
    loss = reports.matrix(rows, by="node", value="loss")
    assert sorted(loss.index) == nodes
    for s in nodes:
        for d in nodes:
            if {s, d} == {a, b}:
                assert loss.at[s, d] == 100.0, (s, d)
            elif not (s == d and sum(e.node == s for e in eps) < 2):
                assert loss.at[s, d] == 0.0, (s, d)
    failing = reports.failing_pairs(rows)
    assert len(failing) and {frozenset((r.src_node, r.dst_node)) for r in failing.itertuples()} == {frozenset((a, b))}
    # Isolation still holds, and the namespace matrix shows the loss too.
    assert list(reports.isolation_verdicts(rows)["verdict"]) == [reports.SILENT]
    assert (reports.matrix(rows, by="namespace").to_numpy() > 0).any()
    assert "FAIL" in (fleet.reports / "connectivity.md").read_text()


def test_answered_isolation_probe_is_a_leak(fleet: Fleet, tmp_path: Path) -> None:
    """A "must stay silent" target that is in fact on the fleet's primary network answers: a LEAK."""
    eps = endpoints(fleet.kube, fleet.spec)
    by_key = {e.key: e for e in eps}
    src, leaker = eps[0], eps[-1]
    spec = fleet.spec
    creds = credentials_from_secret(fleet.kube, spec.namespace_names()[0], spec.credentials_secret_name())
    plan = plan_probes([src, leaker], mode="full")
    plan.probes.append(Probe(src, Target(leaker.ip, "pretend canary (really on the UDN)"), "isolation", "silent"))
    results = run_probes(fleet.kube, group_by_source(plan), by_key, creds, ping_count=2, ping_timeout=1)

    leak = [r for r in results if r.kind == "isolation"]
    assert len(leak) == 1 and leak[0].received > 0 and not leak[0].passed
    verdicts = reports.isolation_verdicts(results)
    assert list(verdicts["verdict"]) == [reports.LEAK]
    assert f"{src.namespace}/{src.name}" in verdicts.iloc[0]["answered_sources"]
    summary = reports.connectivity_summary(results)
    assert summary["isolation_leaks"] == 1 and summary["mesh_failed"] == 0 and summary["verdict"] == "FAIL"
    reports.write_run_reports(tmp_path, reports.RunParts(run_id="leak", probes=results))
    md = (tmp_path / "connectivity.md").read_text()
    assert reports.LEAK in md and "FAIL" in md
    assert reports.LEAK in (tmp_path / "connectivity.html").read_text()


def test_flow_fails_when_the_canary_answers(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The flow end to end with a canary that (wrongly) shares the fleet's network: ConnectivityFailed."""
    import tasks.connectivity as mod

    monkeypatch.setenv("UDN_ROLLOUT_REPORTS", str(fleet.reports.parent))
    eps = endpoints(fleet.kube, fleet.spec)
    leaker: VMEndpoint = eps[-1]
    monkeypatch.setattr(
        mod, "start_canary", lambda kube, spec: Target(leaker.ip, "leaky canary", leaker.namespace, leaker.node)
    )
    with pytest.raises(ConnectivityFailed):
        connectivity(fleet.spec, fleet.cluster)
    rows = reports.read_probes_csv(fleet.reports / "connectivity.csv")
    assert all(r.passed for r in rows if r.kind == "mesh")
    verdicts = reports.isolation_verdicts(rows)
    assert list(verdicts["verdict"]) == [reports.LEAK]
    run = (fleet.reports / "run.json").read_text()
    assert '"verdict": "FAIL"' in run
