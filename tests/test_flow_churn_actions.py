"""Churn that administrators live through (issue 17): a restart (virtctl stop/start, the old node cordoned
meanwhile) and a rolling drain (cordon, eviction → KubeVirt's live migration, uncordon), on Layer2 and on a
Layer3 guest that configures its address statically, each ending with per-move rows — node, VMI address, guest
address, downtime as a peer's `ping -D` saw it — that agree with an independent look at the cluster and the
guests' consoles; cordons are lifted, and a cordon an interrupted churn left behind is lifted by teardown."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.churn import churn
from flows.fanout import fanout
from flows.provision import provision
from flows.teardown import teardown
from simcluster import ClusterConfig, SimCluster
from tasks.connectivity import look, run_credentials
from tasks.console import ConsoleSession
from tasks.cordon import CORDONED_BY_ANNOTATION, cordon
from tasks.kube import ClusterParams, Kube, connect
from tasks.kube.resources import NODE, VMI
from tasks.migrate import ChurnResult
from tasks.model import ChurnRow
from tasks.probeplan import VMEndpoint
from tasks.spec import RolloutSpec, load_spec

NODES = 4


@dataclass
class Env:
    sim: SimCluster
    cluster: ClusterParams
    kube: Kube
    tag: str
    root: Path

    def spec(self, topology: str, *sets: str) -> RolloutSpec:
        base = "specs/seed-l2.yaml" if topology == "Layer2" else "specs/seed-l3.yaml"
        short = "l2" if topology == "Layer2" else "l3"
        run = f"{short}-{self.tag}"
        return load_spec(
            base,
            [
                f"namespaces.names={{{run}-a,{run}-b}}",
                "vms.perNamespace=4",
                "connectivity.pingCount=1",
                "connectivity.pingTimeoutSeconds=1",
                *sets,
            ],
            run_id=run,
        )


@pytest.fixture(scope="module")
def env(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One four-node cluster, a Layer2 run and a Layer3 run of eight VMs each; the Layer3 guests configure the
    address their VMI reports at each boot (the named option; by default they would hold none)."""
    root = tmp_path_factory.mktemp("churn-actions")
    config = ClusterConfig(nodes=NODES, profile="fast", options={"layer3GuestAddressing": "static"})
    with pytest.MonkeyPatch.context() as mp, SimCluster(config=config) as sim:
        mp.setenv("UDN_ROLLOUT_REPORTS", str(root))
        cluster = ClusterParams(kubeconfig=str(sim.kubeconfig))
        e = Env(sim, cluster, connect(cluster, load_spec("specs/seed-l2.yaml").api), uuid.uuid4().hex[:5], root)
        for topology in ("Layer2", "Layer3"):
            spec = e.spec(topology)
            provision(spec, cluster)
            fanout(spec, cluster)
        yield e
        e.kube.close()


def independent_look(env: Env, spec: RolloutSpec, rows: list[ChurnRow]) -> None:
    """Each moved VM's last row against the cluster now (VMI node and address) and its guest's console now."""
    last: dict[tuple[str, str], ChurnRow] = {}
    for r in rows:
        last[(r.namespace, r.vm)] = r
    user, password = run_credentials(env.kube, spec)
    for (ns, name), r in last.items():
        vmi = env.kube.get(VMI, name, ns) or {}
        st = vmi.get("status") or {}
        ip = (st.get("interfaces") or [{}])[0].get("ipAddress", "")
        assert (r.node_after, r.ip_after) == (st.get("nodeName"), ip), (r, st)
        with ConsoleSession(env.kube, ns, name) as session:
            session.login(user, password)
            view = look(session, VMEndpoint(ns, name, r.node_after, ip))
        assert view.looked and " ".join(view.guest_ips) == r.guest_ip_after, (r, view)


def no_cordons_left(env: Env) -> None:
    nodes, _ = env.kube.list(NODE)
    assert all(not (n.get("spec") or {}).get("unschedulable") for n in nodes)
    assert all(CORDONED_BY_ANNOTATION not in (n["metadata"].get("annotations") or {}) for n in nodes)


@pytest.mark.parametrize("topology", ["Layer2", "Layer3"])
def test_restart_lands_elsewhere_and_reports_what_the_guest_saw(env: Env, topology: str) -> None:
    spec = env.spec(topology, "churn.action=restart", "churn.count=2", "churn.replyWaitSeconds=20")
    result: ChurnResult = churn(spec, env.cluster)
    assert result.action == "restart" and len(result.rows) == 2
    for r in result.rows:
        assert (r.action, r.via, r.migration_phase) == ("restart", "stop/start", "Succeeded")
        assert r.node_changed, r  # the old node was cordoned while it came back
        if topology == "Layer2":  # persistent IPs: same address, the guest answers there again
            assert not r.ip_changed and r.guest_ip_after == r.ip_after
            assert r.first_reply_ip == r.ip_after and r.downtime_ms is not None and r.downtime_ms > 0
        else:  # a new pod on a new node subnet; the guest configured the new address at boot
            assert r.ip_changed and r.guest_ip_after == r.ip_after
            assert r.first_reply_ip == r.ip_after and r.downtime_ms is not None
        assert r.packets_lost is not None and r.packets_lost > 0  # a restart is never free
        assert r.downtime_peer and r.downtime_peer != f"{r.namespace}/{r.vm}"
    assert any("cordoned while their VMs restarted" in n for n in result.notes)
    independent_look(env, spec, result.rows)
    no_cordons_left(env)
    md = (env.root / spec.run_id / "churn.md").read_text()
    assert "# Churn: restart (stop/start)" in md and "## Downtime per move" in md


@pytest.mark.parametrize("topology", ["Layer2", "Layer3"])
def test_drain_moves_every_vm_off_the_node_by_eviction_and_live_migration(env: Env, topology: str) -> None:
    spec = env.spec(topology, "churn.action=drain", "churn.nodes=1", "churn.replyWaitSeconds=20")
    before = {(v["metadata"]["namespace"], v["metadata"]["name"]): v["status"]["nodeName"]
              for v in env.kube.list(VMI, label_selector=spec.scope().selector)[0]
              if (v.get("status") or {}).get("nodeName")}  # fmt: skip
    result: ChurnResult = churn(spec, env.cluster)
    (drain,) = result.drains
    on_node = sorted(k for k, n in before.items() if n == drain.node and not k[0].endswith("canary"))
    assert sorted((r.namespace, r.vm) for r in result.rows) == on_node
    assert drain.vms == len(on_node) == drain.moved and drain.failed == 0 and drain.cordoned_by_us
    for r in result.rows:
        assert (r.action, r.drain_node, r.node_before, r.migration_phase) == (
            "drain",
            drain.node,
            drain.node,
            "Succeeded",
        )
        assert r.node_after != drain.node and r.via.startswith("eviction → ")
        if topology == "Layer2":  # live migration keeps address and MAC: a short blip, then replies again
            assert not r.ip_changed and r.first_reply_ip == r.ip_before
            assert r.downtime_ms is not None and 0 < r.downtime_ms < 5000
        else:  # the target pod has a target-node address; the migrated guest keeps its old one: silence
            assert r.ip_changed and r.downtime_ms is None and r.reachable_after == "no"
    independent_look(env, spec, result.rows)
    no_cordons_left(env)
    html = (env.root / spec.run_id / "churn.html").read_text()
    assert 'id="drains"' in html and drain.node in html


def test_teardown_lifts_a_cordon_an_interrupted_churn_left(env: Env) -> None:
    spec = env.spec("Layer2", "churn.action=drain", "churn.nodes=all")
    node = "worker-0"
    assert cordon(env.kube, node, spec.run_id)  # as if the drain had been killed while holding it
    plan = teardown(spec, env.cluster, dry_run=True)
    assert f"cordon of Node {node} (uncordon)" in plan.plan.lines()
    result = teardown(spec, env.cluster)
    assert f"cordon of Node {node}" in result.deleted
    no_cordons_left(env)
