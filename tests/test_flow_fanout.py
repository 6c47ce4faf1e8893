"""The fan-out flow (issue 5) on a simulated cluster: a paced fleet with latency quantiles, the same
under 429s, 5xx and cut watches, VMs that cannot start reported with their reason, resume that adopts
this run's VMs (and only those). A fan-out killed mid-way with SIGKILL and completed by a rerun is in
tests/test_crash_resume.py (seeds 12 and 15 kill the rollout during its fan-out)."""

from __future__ import annotations

import csv
import itertools
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.fanout import fanout
from simcluster import ClusterConfig, SimCluster
from tasks.fanout import FanoutResult, not_ready_reason
from tasks.kube import ClusterParams, ClusterTarget, Kube, shared_kube
from tasks.kube.resources import VM, VMI, Resource
from tasks.outcome import FanoutFailed
from tasks.provision import run_provision
from tasks.render import render_vms
from tasks.spec import RUN_LABEL, RolloutSpec, load_spec

pytestmark = pytest.mark.usefixtures("prefect_harness")

SPECS = Path(__file__).resolve().parent.parent / "specs"
NODES = 4

_octets = itertools.count(140)


# ---- fixtures and helpers ------------------------------------------------------------------------
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


def make_spec(namespaces: int, per_namespace: int, *sets: str, base: str = "seed-l2.yaml") -> RolloutSpec:
    """A spec unique to one test (run id, network, namespaces, CIDR) on the seed's shape."""
    uid = uuid.uuid4().hex[:6]
    names = ",".join(f"f-{uid}-{i}" for i in range(namespaces))
    return load_spec(
        SPECS / base,
        [
            f"network.name=net-{uid}",
            f"network.subnets[0].cidr=10.{next(_octets)}.0.0/16",
            "namespaces.names={" + names + "}",
            f"vms.perNamespace={per_namespace}",
            *sets,
        ],
        run_id=f"fan-{uid}",
    )


def provisioned(kube: Kube, *args: Any, **kwargs: Any) -> RolloutSpec:
    """A spec whose namespaces and network exist (provisioned with the plain functions, no Prefect)."""
    spec = make_spec(*args, **kwargs)
    run_provision(kube, spec, network_timeout=30)
    return spec


def flow_kube(params: ClusterParams, spec: RolloutSpec) -> Kube:
    """The process-wide client the flow uses for this spec (same target and limits)."""
    a = spec.api
    return shared_kube(params.target(), qps=a.qps, burst=a.burst, max_in_flight=a.max_in_flight)


def run_vms(kube: Kube, spec: RolloutSpec, api: Resource = VM) -> list[dict[str, Any]]:
    items, _ = kube.list(api, label_selector=f"{RUN_LABEL}={spec.run_id}")
    return items


def keys(objs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs)


def expected_keys(spec: RolloutSpec) -> list[tuple[str, str]]:
    return sorted((r.namespace, r.name) for r in spec.vm_refs())


def read_inventory(reports: Path, spec: RolloutSpec) -> list[dict[str, str]]:
    with (reports / spec.run_id / "inventory.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def assert_all_ready(kube: Kube, spec: RolloutSpec) -> None:
    vms = run_vms(kube, spec)
    assert keys(vms) == expected_keys(spec), "VMs of the run differ from the plan"
    assert all((v.get("status") or {}).get("ready") for v in vms)
    vmis = run_vms(kube, spec, VMI)
    assert keys(vmis) == expected_keys(spec)
    ips = [v["status"]["interfaces"][0]["ipAddress"] for v in vmis]
    assert len(set(ips)) == len(ips), "two VMs share an IP"


# ---- the fleet -----------------------------------------------------------------------------------
def test_fanout_fleet_ready_paced_with_quantiles(kube: Kube, params: ClusterParams, reports_root: Path) -> None:
    qps, burst, in_flight = 20, 5, 4
    spec = provisioned(kube, 4, 10, f"api.qps={qps}", f"api.burst={burst}", f"api.maxInFlight={in_flight}")
    client = flow_kube(params, spec)
    waited_before = client.stats.limiter_wait_seconds

    result: FanoutResult = fanout(spec, params)

    assert result.ok() and not result.errors
    assert result.created == 40 and result.adopted == 0
    assert_all_ready(kube, spec)
    # Paced: the bucket holds `burst` tokens and refills at `qps`, so 40 creates cannot beat
    # (40 - burst) / qps seconds; no more than `maxInFlight` requests were ever open at once.
    assert result.create_s >= (40 - burst) / qps
    assert result.create_rate_per_s <= qps + burst / result.create_s
    assert client.stats.limiter_wait_seconds > waited_before
    assert 1 <= client.stats.in_flight_peak <= in_flight

    records = {(r.namespace, r.name): r for r in result.records}
    assert sorted(records) == expected_keys(spec)
    for r in records.values():
        assert r.ready and r.node and r.ip and r.phase == "Running" and not r.reason
        assert r.created is not None and r.scheduled is not None and r.running is not None
        assert r.ready_at is not None
        assert r.created <= r.scheduled <= r.running <= r.ready_at
    assert len({r.ip for r in records.values()}) == 40
    assert {r.node for r in records.values()} == {f"worker-{i}" for i in range(NODES)}

    rows = read_inventory(reports_root, spec)
    assert len(rows) == 40
    assert sorted((row["namespace"], row["name"]) for row in rows) == expected_keys(spec)
    for row in rows:
        assert row["node"] and row["ip"] and row["phase"] == "Running" and row["ready"] == "True"
        for column in ("created", "scheduled", "running", "ready_at"):
            assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", row[column]), (column, row[column])
        assert 0 <= float(row["scheduled_ms"]) <= float(row["running_ms"]) <= float(row["ready_ms"])
    assert len({row["ip"] for row in rows}) == 40

    md = (reports_root / spec.run_id / "provisioning.md").read_text()
    header = next(line for line in md.splitlines() if "P50" in line)
    assert "P95" in header and "P99" in header
    for metric in ("VMIScheduled", "VMIRunning", "VMReady"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {metric}"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) >= 4 and all(re.match(r"^\d", c) for c in cells[1:4]), row


def test_fanout_survives_429_5xx_and_watch_cuts(
    cluster: SimCluster, kube: Kube, params: ClusterParams, reports_root: Path
) -> None:
    spec = provisioned(kube, 4, 10, "api.qps=20", "api.burst=5", "api.maxInFlight=8")
    client = flow_kube(params, spec)
    before = client.stats.snapshot()
    counted = cluster.admin("GET", "/simcluster/v1/faults")["counters"]
    # Seeded so the first 20 resource requests already draw four 429s and three 5xx.
    cluster.set_faults(rate_429=0.1, rate_5xx=0.05, watch_cut_seconds=1, retry_after_seconds=0, seed=1)
    try:
        result = fanout(spec, params)
        counters = cluster.admin("GET", "/simcluster/v1/faults")["counters"]
    finally:
        cluster.set_faults(rate_429=0.0, rate_5xx=0.0, watch_cut_seconds=0.0, retry_after_seconds=1)
    after = client.stats.snapshot()

    assert result.ok() and not result.errors
    assert result.created + result.adopted == 40
    assert_all_ready(kube, spec)  # every VM exactly once: nothing duplicated by retried creates
    assert counters.get("429", 0) > counted.get("429", 0) and counters.get("5xx", 0) > counted.get("5xx", 0)
    assert after["throttled"] > before["throttled"]
    assert after["server_errors"] > before["server_errors"]
    assert after["retries"] > before["retries"]
    assert after["watch_resumes"] + after["watch_relists"] > before["watch_resumes"] + before["watch_relists"]
    assert len(read_inventory(reports_root, spec)) == 40


# ---- VMs that cannot start -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sets", "faults", "timeout", "ready", "reason"),
    [
        pytest.param(
            ["vms.nodeSelector.disktype=nvme"],
            {},
            3,
            0,
            r"Unschedulable: 0/4 nodes are available: 4 node\(s\) didn't match Pod's node affinity/selector",
            id="no-matching-node",
        ),
        pytest.param(
            # Layer3 /29 node subnets hold 4 VMs each: 20 VMs spread over 4 nodes leave one per node out.
            ["network.topology=Layer3", "network.subnets[0].hostSubnet=29", "network.persistentIPs=null"],
            {},
            3,
            16,
            r"subnet address pool exhausted",
            id="node-subnet-full",
        ),
        # Crash-looping VMs restart after 0.2, 0.4, 0.8, 1.6, 3.2 s (the fast profile's back-off). At
        # the deadline a VM is either Failed or in a fresh attempt; either way the report must give the
        # failure's cause (a loaded machine once caught two VMs mid-restart as "phase Scheduling").
        pytest.param(
            [],
            {"vmi_start_failure_rate": 1.0},
            5,
            0,
            r"Failed: VirtualMachineFailed: .*simulated start failure",
            id="start-failure",
        ),
    ],
)
def test_fanout_reports_vms_that_cannot_start(
    sets: list[str],
    faults: dict[str, float],
    timeout: int,
    ready: int,
    reason: str,
    cluster: SimCluster,
    kube: Kube,
    params: ClusterParams,
    reports_root: Path,
) -> None:
    spec = provisioned(kube, 2, 10, f"fanout.readyTimeoutSeconds={timeout}", *sets)
    if faults:
        cluster.set_faults(**faults)
    try:
        with pytest.raises(FanoutFailed, match=f"{20 - ready} of 20 VMs are not Ready"):
            fanout(spec, params)
    finally:
        if faults:
            cluster.set_faults(**dict.fromkeys(faults, 0.0))
    rows = read_inventory(reports_root, spec)
    assert len(rows) == 20
    assert sum(row["ready"] == "True" for row in rows) == ready
    bad = [row for row in rows if row["ready"] != "True"]
    assert len(bad) == 20 - ready
    for row in bad:
        assert row["phase"], row
        assert re.search(reason, row["reason"]), row
        assert row["created"], row  # it was created; it just did not come up
    md = (reports_root / spec.run_id / "provisioning.md").read_text()
    assert f"## Not ready ({20 - ready})" in md
    assert re.search(reason, md)


def test_not_ready_reason_keeps_a_crash_looping_vms_cause_between_attempts() -> None:
    """Pure: KubeVirt replaces a failed VMI; the fresh attempt's status carries no cause of its own."""
    failed = {
        "status": {
            "phase": "Failed",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "VirtualMachineFailed", "message": "pod failed: boom"}
            ],
        }
    }
    vm = {"status": {"printableStatus": "Starting", "startFailure": {"consecutiveFailCount": 3}}}
    cause = "Failed: VirtualMachineFailed: pod failed: boom"
    assert not_ready_reason(vm, failed, None) == cause
    fresh = {"status": {"phase": "Scheduling"}}
    assert not_ready_reason(vm, fresh, None, cause, 2) == (
        f"{cause} (3 failed starts; restarting: phase Scheduling, VM status Starting)"
    )
    # without the VM's count, the failed VMIs this run saw; without a VMI, say so
    bare_vm = {"status": {"printableStatus": "Starting"}}
    assert not_ready_reason(bare_vm, None, None, cause, 1) == (
        f"{cause} (1 failed start; restarting: no VirtualMachineInstance, VM status Starting)"
    )
    # a VM that never failed keeps the plain account
    assert not_ready_reason(bare_vm, fresh, None) == "phase Scheduling (VM status Starting)"
    assert not_ready_reason(None, None, None) == "the VirtualMachine does not exist"


# ---- resume --------------------------------------------------------------------------------------
def test_fanout_resume_adopts_existing_vms_of_the_run(kube: Kube, params: ClusterParams, reports_root: Path) -> None:
    spec = provisioned(kube, 2, 5)
    objs = render_vms(spec)
    early = [o for o in objs if int(o["metadata"]["name"].rsplit("-", 1)[1]) <= 3]
    for obj in early:
        kube.create(obj)
    uids = {(o["metadata"]["namespace"], o["metadata"]["name"]): o["metadata"]["uid"] for o in run_vms(kube, spec)}
    assert len(uids) == 6

    result = fanout(spec, params)

    assert result.ok()
    assert result.adopted == 6 and result.created == 4
    assert_all_ready(kube, spec)
    for vm in run_vms(kube, spec):  # the adopted VMs are the same objects, not recreated ones
        key = (vm["metadata"]["namespace"], vm["metadata"]["name"])
        if key in uids:
            assert vm["metadata"]["uid"] == uids[key]
    rows = {(r["namespace"], r["name"]): r for r in read_inventory(reports_root, spec)}
    assert sorted(k for k, r in rows.items() if r["adopted"] == "True") == sorted(uids)


def test_fanout_foreign_vm_with_same_name_is_an_error(kube: Kube, params: ClusterParams, reports_root: Path) -> None:
    spec = provisioned(kube, 2, 3)
    foreign = render_vms(spec)[-1]
    foreign["metadata"]["labels"] = {"app": "someone-else"}
    foreign["spec"]["template"]["metadata"]["labels"] = {"app": "someone-else"}
    kube.create(foreign)
    ns, name = foreign["metadata"]["namespace"], foreign["metadata"]["name"]

    with pytest.raises(FanoutFailed, match="1 of 6 VMs are not Ready"):
        fanout(spec, params)

    live = kube.get(VM, name, ns)
    assert live is not None and RUN_LABEL not in live["metadata"]["labels"], "the foreign VM was taken over"
    others = [k for k in expected_keys(spec) if k != (ns, name)]
    assert keys(run_vms(kube, spec)) == others
    rows = {(r["namespace"], r["name"]): r for r in read_inventory(reports_root, spec)}
    assert rows[(ns, name)]["ready"] == "False" and rows[(ns, name)]["adopted"] == "False"
    assert "exists that this run did not create" in rows[(ns, name)]["reason"]
    assert all(rows[k]["ready"] == "True" for k in others)
