"""Faults (issue 9, item 1): a whole rollout — provision, fan-out, ping matrix, churn — against a
simulated cluster that answers 10 % of requests with 429, 5 % with 5xx, cuts every watch stream
after 1 s, fails 5 % of VM starts, and loses a node (NotReady) while the fleet is coming up. The
rollout completes (the VMs of the lost node restart elsewhere) or names every VM that failed and why;
nothing is duplicated; the faults demonstrably happened and the client demonstrably retried."""

from __future__ import annotations

import csv
import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from run_census import CUDN, NAD, NS, SECRET, VM, VMI, VMIM, by_run, keys

from flows.rollout import RolloutResult, rollout
from simcluster import ClusterConfig, SimCluster
from tasks.kube import ClusterParams, ClusterTarget, Kube, shared_kube
from tasks.kube.resources import EVENT
from tasks.outcome import RolloutFailed
from tasks.spec import RolloutSpec, load_spec

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SPECS = Path(__file__).resolve().parent.parent / "specs"
NODES = 4
LOST_NODE = "worker-2"
NAMESPACES, PER_NAMESPACE = 4, 10
FAULTS: dict[str, Any] = {
    "rate_429": 0.10,
    "rate_5xx": 0.05,
    "watch_cut_seconds": 1.0,  # the issue says 5 s; 1 s makes the cuts bite within a run of seconds
    "vmi_start_failure_rate": 0.05,
    "retry_after_seconds": 1,
}
CALM: dict[str, Any] = {
    "rate_429": 0.0,
    "rate_5xx": 0.0,
    "watch_cut_seconds": 0.0,
    "vmi_start_failure_rate": 0.0,
    "not_ready_nodes": [],
}


_octets = itertools.count(60)


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimCluster]:
    # Isolated: the cluster gets its own process (and GIL), like a real API server beside the tool.
    with SimCluster(config=ClusterConfig(nodes=NODES, profile="fast"), isolated=True) as sim:
        yield sim


@pytest.fixture(scope="module")
def observer(cluster: SimCluster) -> Kube:
    """The test's own client (it meets the same faults; its retries ride them out)."""
    return Kube(ClusterTarget(kubeconfig=str(cluster.kubeconfig)), qps=0, retries=20)


def make_spec(topology: str) -> RolloutSpec:
    uid = uuid.uuid4().hex[:6]
    base = "seed-l2.yaml" if topology == "Layer2" else "seed-l3.yaml"
    names = ",".join(f"flt-{uid}-{i}" for i in range(NAMESPACES))
    cidr = f"10.{next(_octets)}.0.0/16"
    return load_spec(
        SPECS / base,
        [
            f"network.name=net-flt-{uid}",
            f"network.subnets[0].cidr={cidr}",
            "namespaces.names={" + names + "}",
            f"vms.perNamespace={PER_NAMESPACE}",
            # paced, so the fan-out lasts seconds and the node is lost in the middle of it
            "api.qps=10",
            "api.burst=5",
            "api.maxInFlight=16",
            "fanout.readyTimeoutSeconds=90",
            "connectivity.mode=sampled",
            "connectivity.peersPerVm=2",
            "connectivity.pingCount=1",
            "connectivity.pingTimeoutSeconds=1",
            "churn.count=6",
            "churn.timeoutSeconds=90",
        ],
        run_id=f"flt-{uid}",
    )


@dataclass
class NodeLoss:
    """Takes LOST_NODE NotReady once VMIs of the run run on it, and brings it back a few seconds later."""

    cluster: SimCluster
    kube: Kube
    spec: RolloutSpec
    down_for: float = 4.0
    victims: dict[tuple[str, str], str] = field(default_factory=dict)  # VMI running there → its uid
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self._run, name="node-loss", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                planned = {(r.namespace, r.name) for r in self.spec.vm_refs()}  # not the isolation canary
                running = [
                    v
                    for v in by_run(self.kube, VMI, self.spec)
                    if (v["metadata"]["namespace"], v["metadata"]["name"]) in planned
                    and (v.get("status") or {}).get("nodeName") == LOST_NODE
                    and (v.get("status") or {}).get("phase") == "Running"
                ]
                if running:  # fan-out under way, and the node holds some of the fleet
                    self.victims = {
                        (v["metadata"]["namespace"], v["metadata"]["name"]): v["metadata"]["uid"] for v in running
                    }
                    self.cluster.set_faults(not_ready_nodes=[LOST_NODE])
                    self._stop.wait(self.down_for)
                    return
                self._stop.wait(0.05)
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            self.cluster.set_faults(not_ready_nodes=[])


def inventory(reports: Path, spec: RolloutSpec) -> dict[tuple[str, str], dict[str, str]]:
    with (reports / spec.run_id / "inventory.csv").open(newline="") as fh:
        return {(r["namespace"], r["name"]): r for r in csv.DictReader(fh)}


@pytest.mark.parametrize("topology", ["Layer2", "Layer3"])
def test_rollout_survives_api_faults_start_failures_and_a_lost_node(
    topology: str, cluster: SimCluster, observer: Kube, reports_root: Path
) -> None:
    spec = make_spec(topology)
    params = ClusterParams(kubeconfig=str(cluster.kubeconfig))
    a = spec.api
    client = shared_kube(params.target(), qps=a.qps, burst=a.burst, max_in_flight=a.max_in_flight)
    stats_before = client.stats.snapshot()
    counters_before = dict(cluster.admin("GET", "/simcluster/v1/faults")["counters"])

    cluster.set_faults(**FAULTS)
    loss = NodeLoss(cluster, observer, spec)
    thread = loss.start()
    result: RolloutResult | None = None
    failure: RolloutFailed | None = None
    started = time.monotonic()
    try:
        try:
            result = rollout(spec, params)
        except RolloutFailed as e:
            failure = e
        counters = dict(cluster.admin("GET", "/simcluster/v1/faults")["counters"])
    finally:
        loss.stop()
        thread.join(30)
        cluster.set_faults(**CALM)
    wall = time.monotonic() - started
    stats = client.stats.snapshot()
    assert loss.error is None, loss.error
    assert loss.victims, f"{LOST_NODE} never ran a VM of the run: the node loss did not bite"

    # ---- the faults happened, and the tool rode them out ------------------------------------------
    delta = {k: counters.get(k, 0) - counters_before.get(k, 0) for k in ("429", "5xx")}
    assert delta["429"] > 0 and delta["5xx"] > 0, delta
    grew = {
        k: stats[k] - stats_before[k]
        for k in ("throttled", "server_errors", "retries", "watch_resumes", "watch_relists")
    }
    assert grew["throttled"] > 0 and grew["server_errors"] > 0, grew
    assert grew["retries"] >= grew["throttled"] + grew["server_errors"], grew
    assert grew["watch_resumes"] + grew["watch_relists"] > 0, grew

    # ---- no duplicates: every kind listed by the run's label equals the plan ----------------------
    planned_vms = sorted((r.namespace, r.name) for r in spec.vm_refs())
    assert len(planned_vms) == NAMESPACES * PER_NAMESPACE
    assert keys(by_run(observer, VM, spec)) == planned_vms
    assert keys(by_run(observer, VMI, spec)) == planned_vms  # one VMI per VM, restarts included
    assert sorted(n["metadata"]["name"] for n in by_run(observer, NS, spec)) == sorted(spec.namespace_names())
    assert [c["metadata"]["name"] for c in by_run(observer, CUDN, spec)] == [spec.network.name]
    secrets = keys(by_run(observer, SECRET, spec))
    assert secrets == sorted((ns, spec.credentials_secret_name()) for ns in spec.namespace_names())
    nads = [n for ns in spec.namespace_names() for n in observer.list(NAD, namespace=ns)[0]]
    assert keys(nads) == sorted((ns, spec.network.name) for ns in spec.namespace_names())
    vmims = by_run(observer, VMIM, spec)
    churned = result.churn if result is not None else None
    if churned is not None:
        started_migrations = sorted(m.migration for m in churned.migrations if m.migration)
        assert sorted(m["metadata"]["name"] for m in vmims) == started_migrations
    assert len({keys([m])[0] for m in vmims}) == len(vmims)
    per_vm = [m["spec"]["vmiName"] for m in vmims]
    assert len(set(per_vm)) == len(per_vm), "a VM was migrated twice by one churn"

    # ---- every VM is Ready, or listed with the reason it is not ------------------------------------
    rows = inventory(reports_root, spec)
    assert sorted(rows) == planned_vms
    vms = {keys([v])[0]: v for v in by_run(observer, VM, spec)}
    not_ready = {k for k, row in rows.items() if row["ready"] != "True"}
    for k in not_ready:
        assert rows[k]["reason"].strip(), f"{k} is not Ready and the inventory does not say why"
    provisioning = (reports_root / spec.run_id / "provisioning.md").read_text()
    if not_ready:
        assert failure is not None and f"{len(not_ready)} of {len(planned_vms)} VMs are not Ready" in str(failure)
        assert f"## Not ready ({len(not_ready)})" in provisioning
        if "see `inventory.csv`" not in provisioning:  # the table is cut after its first rows
            for ns, name in not_ready:
                assert f"| {ns} | {name} |" in provisioning
    else:
        assert "## Not ready (0)" in provisioning and "Every VM is ready." in provisioning
        assert all((v.get("status") or {}).get("ready") for v in vms.values())

    # The lost node's VMs were restarted: a new VMI (new uid), Running on another node.
    vmis = {keys([v])[0]: v for v in by_run(observer, VMI, spec)}
    moved = 0
    for k, uid in loss.victims.items():
        now = vmis[k]
        if now["metadata"]["uid"] != uid:
            moved += 1
            st = now.get("status") or {}
            if rows[k]["ready"] == "True":
                assert st.get("phase") == "Running", (k, st.get("phase"))
    assert moved == len(loss.victims), "VMs of the NotReady node kept their VMI"

    # Connectivity: passed, or each failing probe is in connectivity.csv with what it got instead.
    if failure is not None and "probes did not match" in str(failure):
        with (reports_root / spec.run_id / "connectivity.csv").open(newline="") as fh:
            failing = [r for r in csv.DictReader(fh) if r["passed"] != "True"]
        assert failing and f"{len(failing)} of " in str(failure)
        assert all(r["outcome"] and r["outcome"] != r["expect"] for r in failing), failing
        assert all(r["cause"] for r in failing), failing  # each says why, in words

    # Churn: completed, or each failed migration named with its reason in churn.md.
    churn_md = reports_root / spec.run_id / "churn.md"
    if churned is not None and any(m.phase != "Succeeded" for m in churned.migrations):
        text = churn_md.read_text()
        for m in churned.migrations:
            if m.phase != "Succeeded":
                assert m.vm in text and m.failure_reason

    survived = delta["429"] + delta["5xx"]
    events = [e for ns in spec.namespace_names() for e in observer.list(EVENT, namespace=ns)[0]]
    start_failures = sum(1 for e in events if e.get("reason") == "VirtualMachineFailed")
    node_failures = sum(1 for e in events if e.get("reason") == "NodeUnresponsive")
    assert node_failures >= len(loss.victims)
    print(
        f"\n{topology}: rollout {'completed' if failure is None else 'reported: ' + str(failure)} in {wall:.0f}s; "
        f"survived {delta['429']} x 429 + {delta['5xx']} x 5xx = {survived} API faults, "
        f"{grew['watch_resumes']} watch resumes + {grew['watch_relists']} relists, {grew['retries']} retries, "
        f"{len(loss.victims)} VMs lost with {LOST_NODE} (restarted elsewhere), "
        f"{node_failures} VMI failures from the lost node, {start_failures} injected VM start failures; "
        f"not ready at the end: {len(not_ready)}"
    )
