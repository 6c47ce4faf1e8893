"""The churn flow on the simulated cluster (issue 7): on Layer3 every VM that changed node changed IP,
on Layer2 none did; an injected migration failure is reported and leaves the VM on its source with its
IP; a stale-IP hazard is detected once a moved VM's old Layer3 address is handed to another VM;
capacity.md has a row per node; migrations stay within the KubeVirt CR's limits."""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.churn import churn
from flows.fanout import fanout
from flows.provision import provision
from simcluster import ClusterConfig, SimCluster
from tasks import reports
from tasks.churn import diff
from tasks.kube import ClusterParams, Kube, WatchEvent, connect
from tasks.kube.resources import VM, VMI, VMIM
from tasks.migrate import migration_limits, snapshot
from tasks.model import VMSnapshot
from tasks.outcome import ChurnFailed
from tasks.render import render_vms
from tasks.spec import RUN_LABEL, RolloutSpec, load_spec

VMI_API = VMI
NODES = 3
PER_CLUSTER = 2  # the KubeVirt CR's parallelMigrationsPerCluster (OpenShift's default is 5)
HOST_SUBNET = 28  # 12 usable addresses per node: an old address is handed out again quickly
USABLE_PER_NODE = 2 ** (32 - HOST_SUBNET) - 4  # .0, broadcast, gateway .1, management .2


@dataclass
class Run:
    spec_file: str
    overrides: list[str]
    run_id: str
    reports: Path

    def spec(self, *extra: str) -> RolloutSpec:
        return load_spec(self.spec_file, [*self.overrides, *extra], run_id=self.run_id)


@dataclass
class Env:
    sim: SimCluster
    cluster: ClusterParams
    kube: Kube
    l3: Run
    l2: Run


@pytest.fixture(scope="module")
def env(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A Layer3 run and a Layer2 run of six VMs each, side by side on one three-node cluster."""
    root = tmp_path_factory.mktemp("churn-reports")
    config = ClusterConfig(nodes=NODES, profile="fast", parallel_migrations_per_cluster=PER_CLUSTER)
    with pytest.MonkeyPatch.context() as mp, SimCluster(config=config) as sim:
        mp.setenv("UDN_ROLLOUT_REPORTS", str(root))
        tag = uuid.uuid4().hex[:6]
        common = ["vms.perNamespace=3", "connectivity.pingCount=2", "connectivity.pingTimeoutSeconds=1"]
        l3 = Run(
            "specs/seed-l3.yaml",
            [f"namespaces.names={{l3-{tag}-a,l3-{tag}-b}}", f"network.subnets[0].hostSubnet={HOST_SUBNET}", *common],
            f"l3-{tag}",
            root / f"l3-{tag}",
        )
        l2 = Run(
            "specs/seed-l2.yaml",
            [f"namespaces.names={{l2-{tag}-a,l2-{tag}-b}}", *common],
            f"l2-{tag}",
            root / f"l2-{tag}",
        )
        cluster = ClusterParams(kubeconfig=str(sim.kubeconfig))
        for run in (l3, l2):
            spec = run.spec()
            provision(spec, cluster)
            fanout(spec, cluster)
        yield Env(sim, cluster, connect(cluster, l3.spec().api), l3, l2)


class MigrationWatch:
    """Follows the run's migrations by watch, independently of the flow: how many were unfinished at
    once (cluster-wide and leaving one node)."""

    def __init__(self, kube: Kube, run_id: str) -> None:
        self.phase: dict[str, str] = {}
        self.source: dict[str, str] = {}
        self.peak = 0
        self.peak_per_node = 0
        self.lock = threading.Lock()
        self.informer = kube.informer(VMIM, label_selector=f"{RUN_LABEL}={run_id}", on_event=self.on_event)
        assert self.informer.synced.wait(30)

    def on_event(self, ev: WatchEvent) -> None:
        if ev.type in ("RELISTED", "DELETED"):
            return
        name = ev.object["metadata"]["name"]
        st = ev.object.get("status") or {}
        with self.lock:
            self.phase[name] = st.get("phase") or "Pending"
            src = (st.get("migrationState") or {}).get("sourceNode")
            if src:
                self.source[name] = src
            live = [n for n, p in self.phase.items() if p not in ("Succeeded", "Failed")]
            self.peak = max(self.peak, len(live))
            per_node: dict[str, int] = {}
            for n in live:
                if n in self.source:
                    per_node[self.source[n]] = per_node.get(self.source[n], 0) + 1
            self.peak_per_node = max([self.peak_per_node, *per_node.values()])

    def stop(self) -> None:
        self.informer.stop()


def test_layer3_moved_vms_change_ip_within_limits_and_capacity(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UDN_ROLLOUT_REPORTS", str(env.l3.reports.parent))
    spec = env.l3.spec("churn.fraction=1")
    assert migration_limits(env.kube) == (PER_CLUSTER, 1)
    watch = MigrationWatch(env.kube, spec.run_id)
    try:
        result = churn(spec, env.cluster)
    finally:
        watch.stop()

    assert len(result.rows) == 6 and all(m.phase == "Succeeded" for m in result.migrations)
    moved = [r for r in result.rows if r.node_changed]
    assert len(moved) == 6
    assert all(r.ip_changed for r in moved), [(r.vm, r.ip_before, r.ip_after) for r in moved]
    assert all(r.ip_after.startswith("192.168.") and r.ip_after != r.ip_before for r in moved)
    assert result.summary["ip_changed_pct_of_moved"] == 100.0
    # What the guests saw (upstream: no DHCP for VMs on Layer3, no VM migration handling): the guest
    # holds no address before or after, so nothing answers at the new VMI address — and the re-probes
    # expected exactly that (they follow what the guest holds); the old address is silent too.
    assert all(r.guest_ip_before == "" and r.guest_ip_after == "" for r in moved)
    assert all(r.reachable_after == "no" and "no IPv4 address" in r.cause for r in moved), moved[0].cause
    assert result.reprobes and all(p.passed for p in result.reprobes)
    assert not result.summary["ok"] and "did not answer at their VMI address" in result.summary["problems"][0]

    # Within the KubeVirt CR's limits: never more than parallelMigrationsPerCluster unfinished, never
    # more than one leaving a node (as the flow saw it and as a separate watch saw it).
    figures = json.loads((env.l3.reports / "run.json").read_text())["figures"]["churn"]
    assert 1 <= figures["peak_in_flight"] <= PER_CLUSTER
    assert len(watch.phase) == 6
    assert 1 <= watch.peak <= PER_CLUSTER
    assert watch.peak_per_node <= 1

    rows = reports.read_churn_csv(env.l3.reports / "churn.csv")
    assert [(r.vm, r.ip_after) for r in rows] == [(r.vm, r.ip_after) for r in result.rows]
    assert (env.l3.reports / "churn.html").read_text().count("<tr") >= 6
    assert "Layer3" in (env.l3.reports / "churn.md").read_text()
    # capacity.md: a row per node subnet with its size and the run's VMs on it now.
    capacity = (env.l3.reports / "capacity.md").read_text()
    assert f"| hostSubnet | {HOST_SUBNET} |" in capacity
    on_node = {f"worker-{i}": 0 for i in range(NODES)}
    for s in snapshot(env.kube, spec):
        on_node[s.node] += 1
    for i, (node, count) in enumerate(sorted(on_node.items())):
        # the node's real subnet from k8s.ovn.org/node-subnets (carved in node order from the CIDR)
        subnet = f"192.168.{i}.0/{HOST_SUBNET}"
        assert (
            f"| {node} | yes | {subnet} | {USABLE_PER_NODE} | {count} | 0 | {USABLE_PER_NODE - count} | ok |"
            in capacity
        )


def test_layer2_no_vm_changes_ip(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UDN_ROLLOUT_REPORTS", str(env.l2.reports.parent))
    result = churn(env.l2.spec("churn.fraction=1"), env.cluster)
    assert len(result.rows) == 6
    assert all(r.node_changed and not r.ip_changed for r in result.rows)
    assert all(r.ip_before == r.ip_after and r.ip_after.startswith("10.200.") for r in result.rows)
    assert result.summary["ip_changed"] == 0 and result.summary["ok"]
    assert result.reprobes and all(p.passed for p in result.reprobes)
    # Layer2 with persistent IPs: the guest holds the same address before and after, and answers there.
    assert all(r.guest_ip_before == r.ip_before == r.guest_ip_after for r in result.rows)
    assert all(r.reachable_after == "yes" and not r.cause for r in result.rows)
    rows = reports.read_churn_csv(env.l2.reports / "churn.csv")
    assert all(r.ip_before == r.ip_after for r in rows)
    assert (env.l2.reports / "churn.html").exists()
    assert "pool" in (env.l2.reports / "capacity.md").read_text().lower()


def test_injected_migration_failure_is_reported_and_vm_stays(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UDN_ROLLOUT_REPORTS", str(env.l2.reports.parent))
    spec = env.l2.spec("churn.count=2")
    before = {(s.namespace, s.name): s for s in snapshot(env.kube, spec)}
    env.sim.set_faults(migration_failure_rate=1.0)
    try:
        with pytest.raises(ChurnFailed, match="2 migration"):
            churn(spec, env.cluster, reprobe=False)
    finally:
        env.sim.set_faults(migration_failure_rate=0.0)

    rows = reports.read_churn_csv(env.l2.reports / "churn.csv")
    assert len(rows) == 2
    after = {(s.namespace, s.name): s for s in snapshot(env.kube, spec)}
    for r in rows:
        assert r.migration_phase == "Failed"
        assert "simulated failure" in r.failure_reason
        key = (r.namespace, r.vm)
        # Still running on its source node with its address.
        assert not r.node_changed and not r.ip_changed
        assert after[key].phase == "Running"
        assert (after[key].node, after[key].ip) == (before[key].node, before[key].ip)
    md = (env.l2.reports / "churn.md").read_text()
    assert "simulated failure" in md and "2 migration(s) failed" in md


def test_stale_ip_hazard_when_old_address_is_reused(env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Migrate one Layer3 VM off its node, then start VMs on that node until its subnet is full: one of
    them gets the moved VM's old address, and the churn diff names it."""
    monkeypatch.setenv("UDN_ROLLOUT_REPORTS", str(env.l3.reports.parent))
    spec = env.l3.spec("churn.count=1")
    result = churn(spec, env.cluster, reprobe=False)
    (row,) = result.rows
    assert row.node_changed and row.ip_changed and not row.stale_ip_hazard
    node_a, old_ip = row.node_before, row.ip_before

    # Fill node A's /28: every free address goes to a new VM of the run pinned to A.
    used = sum(1 for s in snapshot(env.kube, spec) if s.node == node_a)
    template = render_vms(spec)[0]
    ns = template["metadata"]["namespace"]
    names = []
    for i in range(USABLE_PER_NODE - used):
        vm = copy.deepcopy(template)
        vm["metadata"]["name"] = f"filler-{i}"
        vm["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node_a}
        env.kube.create(vm)
        names.append(vm["metadata"]["name"])

    def running() -> list[VMSnapshot]:
        snap = [s for s in snapshot(env.kube, spec) if s.name in names]
        return snap if len(snap) == len(names) and all(s.phase == "Running" and s.ip for s in snap) else []

    deadline = time.monotonic() + 30
    while not running():
        assert time.monotonic() < deadline, "filler VMs did not start"
        time.sleep(0.1)
    holders = [s for s in running() if s.ip == old_ip]
    assert len(holders) == 1 and holders[0].node == node_a

    # The churn diff over a fresh snapshot now names the holder of the old address.
    before = [VMSnapshot(row.namespace, row.vm, row.node_before, row.ip_before, phase="Running")]
    rows = diff(before, snapshot(env.kube, spec), result.migrations, [(row.namespace, row.vm)])
    (again,) = rows
    assert again.stale_ip_hazard
    assert again.old_ip_holder == f"{ns}/{holders[0].name}"
    summary = reports.churn_summary(rows, "Layer3")
    assert summary["stale_ip_hazards"] == 1 and not summary["ok"]
    assert any("stale-IP hazard" in p for p in summary["problems"])
    reports.write_run_reports(tmp_path, reports.RunParts(run_id=spec.run_id, churn_rows=rows, churn_topology="Layer3"))
    assert f"{ns}/{holders[0].name}" in (tmp_path / "churn.md").read_text()

    for name in names:
        env.kube.delete(VM, name, ns)
