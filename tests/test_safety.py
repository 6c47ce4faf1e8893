"""Safe on a real cluster (issue 16): nothing written before every check that can fail has passed, nothing
touched that is not the run's, nothing left open — each point through the command line and the API, as an
administrator would meet it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from simcluster import ClusterConfig, SimCluster
from tasks.console import ConsoleSession
from tasks.kube import ClusterParams, ClusterTarget, Kube, KubeError
from tasks.kube.resources import CUDN, LEASE, NAMESPACE, VM
from tasks.lock import LOCK_LABEL, NAMESPACES_ANNOTATION, NETWORK_ANNOTATION, RUN_ANNOTATION, lease_name
from tasks.render import render_vm
from tasks.spec import RolloutSpec, load_spec
from udn_rollout import cli
from udn_rollout.rbac import rbac_objects

pytestmark = pytest.mark.usefixtures("reports_root")

SPECS = Path(__file__).resolve().parent.parent / "specs"
_octet = iter(range(150, 200))


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimCluster]:
    # Isolated: the server is a child process, as `sim serve` would be, and its command line is visible.
    with SimCluster(config=ClusterConfig(nodes=3, profile="instant"), isolated=True) as sim:
        yield sim


@pytest.fixture(scope="module")
def kube(cluster: SimCluster) -> Iterator[Kube]:
    k = Kube(ClusterTarget(kubeconfig=str(cluster.kubeconfig)), qps=0)
    yield k
    k.close()


def spec_file(tmp: Path, run_id: str, namespaces: list[str], network: str | None = None, **sets: Any) -> Path:
    doc = yaml.safe_load((SPECS / "seed-l2.yaml").read_text())
    doc["runId"] = run_id
    doc["network"]["name"] = network or f"net-{run_id}"
    doc["network"]["subnets"] = [{"cidr": f"10.{next(_octet)}.0.0/16"}]
    doc["namespaces"] = {"names": namespaces}
    doc["vms"]["perNamespace"] = 1
    doc["connectivity"] = {"pingCount": 1, "pingTimeoutSeconds": 1}
    doc["churn"] = {"count": 1}
    for key, value in sets.items():
        doc[key] = value
    path = tmp / f"{run_id}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def cli_env(cluster: SimCluster, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(KUBECONFIG=str(cluster.kubeconfig), UDN_ROLLOUT_REPORTS=str(tmp / "reports"), COLUMNS="300")
    return env


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "udn_rollout.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def labelled(kube: Kube, run_id: str) -> dict[str, list[str]]:
    sel = f"udn-rollout.io/run={run_id}"
    out = {}
    for r in (NAMESPACE, CUDN, VM):
        items, _ = kube.list(r, label_selector=sel)
        out[r.kind] = sorted(i["metadata"]["name"] for i in items)
    return out


# ---- 3: a lock in the cluster -----------------------------------------------------------------------------
def test_two_racing_rollouts_on_one_namespace_exactly_one_writes(
    cluster: SimCluster, kube: Kube, tmp_path: Path
) -> None:
    """Two networks, one shared namespace, no Prefect server: one run writes, the other ends at preflight
    (exit 3) naming the holder, and leaves nothing of its own."""
    uid = uuid.uuid4().hex[:6]
    shared = f"race-{uid}-shared"
    a = spec_file(tmp_path, f"race-a-{uid}", [shared, f"race-{uid}-a"])
    b = spec_file(tmp_path, f"race-b-{uid}", [shared, f"race-{uid}-b"])
    env = cli_env(cluster, tmp_path)
    procs = [run_cli(["provision", "-f", str(p)], env) for p in (a, b)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, cli.EXIT_PREFLIGHT], "\n\n".join(
        f"exit {c}:\n{o}" for c, o in zip(codes, outs, strict=True)
    )
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    loser_id = (f"race-a-{uid}", f"race-b-{uid}")[loser]
    winner_id = (f"race-a-{uid}", f"race-b-{uid}")[winner]
    assert "nothing was changed" in outs[loser] or "nothing was written" in outs[loser], outs[loser]
    assert winner_id in outs[loser] or shared in outs[loser], outs[loser]  # the holder, or the namespace it took
    assert labelled(kube, loser_id) == {"Namespace": [], "ClusterUserDefinedNetwork": [], "VirtualMachine": []}
    assert kube.get(NAMESPACE, f"race-{uid}-{'ab'[loser]}") is None
    # the winner's lease was released when its run ended
    leases, _ = kube.list(LEASE, "default", label_selector=f"{LOCK_LABEL}=true")
    assert not [x for x in leases if x["metadata"]["annotations"][RUN_ANNOTATION] in (winner_id, loser_id)]


def test_a_run_that_lost_the_race_after_its_preflight_stops_before_writing(kube: Kube, tmp_path: Path) -> None:
    """The window the racing test can miss: run B's preflight passed, then run A provisioned the shared
    namespace and ended (its lock released) before B took the lock. B re-reads what another run can change
    once it holds the lock and stops as a failed preflight, writing nothing."""
    from flows.provision import provision
    from tasks.outcome import PreflightFailed

    uid = uuid.uuid4().hex[:6]
    shared = f"late-{uid}-shared"
    a = load_spec(spec_file(tmp_path, f"late-a-{uid}", [shared]))
    b = load_spec(spec_file(tmp_path, f"late-b-{uid}", [shared, f"late-{uid}-b"]))
    target = ClusterParams(kubeconfig=str(kube.target.kubeconfig))
    provision(a, target, reports_dir=str(tmp_path / "reports"))  # A: preflight, lock, write, unlock
    with pytest.raises(PreflightFailed) as e:  # B, as if its preflight had passed before A wrote
        provision(b, target, skip_preflight=True, reports_dir=str(tmp_path / "reports"))
    assert e.value.exit_code == cli.EXIT_PREFLIGHT
    assert shared in str(e.value) and "nothing was changed" in str(e.value)
    assert labelled(kube, f"late-b-{uid}") == {"Namespace": [], "ClusterUserDefinedNetwork": [], "VirtualMachine": []}
    assert kube.get(NAMESPACE, f"late-{uid}-b") is None
    leases, _ = kube.list(LEASE, "default", label_selector=f"{LOCK_LABEL}=true")
    assert not [x for x in leases if x["metadata"]["annotations"][RUN_ANNOTATION] == f"late-b-{uid}"]


def _lease(kube: Kube, spec: RolloutSpec, run_id: str, renewed: datetime, host: str, pid: int) -> None:
    stamp = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kube.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": lease_name(spec.network.name),
                "namespace": "default",
                "labels": {LOCK_LABEL: "true", "app.kubernetes.io/managed-by": "udn-rollout"},
                "annotations": {
                    RUN_ANNOTATION: run_id,
                    NETWORK_ANNOTATION: spec.network.name,
                    NAMESPACES_ANNOTATION: ",".join(spec.namespace_names()),
                },
            },
            "spec": {
                "holderIdentity": f"{run_id}@{host}:{pid}",
                "leaseDurationSeconds": 30,
                "acquireTime": stamp,
                "renewTime": stamp,
            },
        }
    )


def test_a_lease_whose_holder_stopped_renewing_is_taken_over_with_a_warning(
    cluster: SimCluster, kube: Kube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uid = uuid.uuid4().hex[:6]
    path = spec_file(tmp_path, f"stale-{uid}", [f"stale-{uid}-a"])
    spec = load_spec(path)
    _lease(kube, spec, f"gone-{uid}", datetime.now(UTC) - timedelta(minutes=5), "elsewhere.example", 4242)
    assert cli.main(["provision", "-f", str(path), "--kubeconfig", str(cluster.kubeconfig)]) == cli.EXIT_OK
    said = capsys.readouterr()
    text = said.out + said.err
    assert f"run gone-{uid} (host elsewhere.example, pid 4242)" in text and "stopped renewing" in text
    assert "warning: taking over" in text
    assert kube.get(LEASE, lease_name(spec.network.name), "default") is None  # released at the end


def test_a_live_lease_of_another_run_stops_the_run_before_any_write(
    cluster: SimCluster, kube: Kube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uid = uuid.uuid4().hex[:6]
    path = spec_file(tmp_path, f"busy-{uid}", [f"busy-{uid}-a"])
    spec = load_spec(path)
    _lease(kube, spec, f"other-{uid}", datetime.now(UTC), socket.gethostname(), os.getpid())
    try:
        code = cli.main(["rollout", "-f", str(path), "--kubeconfig", str(cluster.kubeconfig)])
        said = capsys.readouterr()
        assert code == cli.EXIT_PREFLIGHT, said.out + said.err
        assert f"run other-{uid}" in said.out + said.err
        assert labelled(kube, f"busy-{uid}") == {"Namespace": [], "ClusterUserDefinedNetwork": [], "VirtualMachine": []}
    finally:
        kube.delete(LEASE, lease_name(spec.network.name), "default")


# ---- 4, 5, 6: ownership scope, consoles, churn ---------------------------------------------------------
def test_ping_churn_and_teardown_touch_only_the_runs_objects_and_leave_consoles_logged_out(
    cluster: SimCluster, kube: Kube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uid = uuid.uuid4().hex[:6]
    path = spec_file(tmp_path, f"own-{uid}", [f"own-{uid}-a", f"own-{uid}-b"])
    spec = load_spec(path)
    args = ["-f", str(path), "--kubeconfig", str(cluster.kubeconfig)]
    assert cli.main(["provision", *args]) == cli.EXIT_OK
    assert cli.main(["fanout", *args]) == cli.EXIT_OK
    # A VM made by hand, in a namespace the run does not own, copying the run's labels.
    stranger_ns = f"stranger-{uid}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": stranger_ns}})
    copy = render_vm(spec, stranger_ns, "copycat", 1)
    copy["spec"]["runStrategy"] = "Halted"
    kube.create(copy)
    # And the isolation canary of an earlier connectivity run of this run id, still there (a crash).
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": f"own-{uid}-canary", "labels": {**spec.labels(), "udn-rollout.io/role": "canary"}},
        }
    )
    capsys.readouterr()

    assert cli.main(["ping", *args]) == cli.EXIT_OK
    said = capsys.readouterr().out
    assert "copycat" not in said.split("skipped")[0]  # never probed
    # every console the ping run opened was logged out: the next user meets a login prompt
    for ns in spec.namespace_names():
        with ConsoleSession(kube, ns, spec.vm_names()[0]) as con:
            con.send("\n")
            con.expect(rf"(?<![\w-]){spec.vm_names()[0]} login: ", 10)

    assert cli.main(["churn", *args, "--set", "churn.count=2"]) == cli.EXIT_OK
    churned = capsys.readouterr().out
    assert "2 VMs selected" in churned and "copycat" not in churned and "canary" not in churned

    assert cli.main(["teardown", *args]) == cli.EXIT_OK
    gone = capsys.readouterr().out
    assert f"VirtualMachine {stranger_ns}/copycat (labelled with run own-{uid} but outside its namespaces)" in gone
    assert kube.get(VM, "copycat", stranger_ns) is not None  # left alone
    assert kube.get(NAMESPACE, f"own-{uid}-canary") is None or kube.get(NAMESPACE, f"own-{uid}-canary")["metadata"].get(
        "deletionTimestamp"
    )  # the run's leftover canary namespace went with the run
    kube.delete(NAMESPACE, stranger_ns)


# ---- 7: credentials refused, fast ----------------------------------------------------------------------
def test_refused_credentials_are_reported_in_under_two_seconds_with_the_fix(
    cluster: SimCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = yaml.safe_load(cluster.kubeconfig.read_text())
    doc["users"][0]["user"]["token"] = "expired-token"
    bad = tmp_path / "bad.kubeconfig"
    bad.write_text(yaml.safe_dump(doc))
    path = spec_file(tmp_path, f"auth-{uuid.uuid4().hex[:6]}", ["auth-a"])
    started = time.monotonic()
    code = cli.main(["preflight", "-f", str(path), "--kubeconfig", str(bad)])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == cli.EXIT_CLUSTER
    assert "did not accept the credentials" in err and "oc login" in err and "--context" in err
    assert elapsed < 2.0, elapsed


# ---- 8: no secret on a command line ---------------------------------------------------------------------
def test_the_simulated_clusters_token_is_not_on_any_command_line(cluster: SimCluster) -> None:
    assert cluster._proc is not None
    pids = [cluster._proc.pid]
    children = Path(f"/proc/{cluster._proc.pid}/task/{cluster._proc.pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for pid in pids:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert "simcluster" in cmdline or pid != cluster._proc.pid
        assert cluster.token not in cmdline, cmdline
        assert "--token" not in cmdline


# ---- 2: the simulated cluster honours dryRun=All as the API server does ----------------------------------
def test_dry_run_validates_and_admits_but_stores_nothing_and_sends_no_event(kube: Kube) -> None:
    name = f"dry-{uuid.uuid4().hex[:6]}"
    _, rv = kube.list(NAMESPACE)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    out = kube.create(ns, dry_run=True)
    assert out["metadata"]["name"] == name
    assert kube.get(NAMESPACE, name) is None
    events = list(kube.watch(NAMESPACE, resource_version=rv, field_selector=f"metadata.name={name}", timeout=1))
    assert events == []
    with pytest.raises(KubeError) as e:  # still validated
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Not_A_Name"}}, dry_run=True)
    assert e.value.code == 422


# ---- 10: the RBAC kit ---------------------------------------------------------------------------------------
def test_rbac_grants_exactly_what_a_run_needs(cluster: SimCluster, kube: Kube, tmp_path: Path) -> None:
    """The ClusterRole and Role `udn-rollout rbac` prints, as the cluster's policy: a whole rollout and its
    teardown succeed with them, and preflight finds every verb it checks."""
    uid = uuid.uuid4().hex[:6]
    path = spec_file(tmp_path, f"rbac-{uid}", [f"rbac-{uid}-a"])
    spec = load_spec(path)
    rules: list[dict[str, Any]] = []
    for obj in rbac_objects(spec, user="alice"):
        if obj["kind"] == "ClusterRole":
            rules += obj["rules"]
        elif obj["kind"] == "Role":
            rules += [{**r, "namespaces": [obj["metadata"]["namespace"]]} for r in obj["rules"]]
    # what the simulated API server itself needs to answer: access reviews (system:basic-user in RBAC)
    rules.append(
        {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews"]}
    )
    cluster.set_policy(rules=rules)
    try:
        args = ["-f", str(path), "--kubeconfig", str(cluster.kubeconfig)]
        assert cli.main(["rollout", *args]) == cli.EXIT_OK
        assert cli.main(["teardown", *args]) == cli.EXIT_OK
    finally:
        cluster.set_policy(allow_all=True)
    assert labelled(kube, f"rbac-{uid}")["VirtualMachine"] == []


def test_rbac_command_prints_bindings_for_a_service_account(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rbac", "-f", str(SPECS / "seed-l2.yaml"), "--service-account", "udn-rollout/runner"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]
    assert docs[1]["subjects"] == [{"kind": "ServiceAccount", "name": "runner", "namespace": "udn-rollout"}]
    assert docs[2]["metadata"]["namespace"] == "default"  # the lock's Lease
    assert cli.main(["rbac", "-f", str(SPECS / "seed-l2.yaml"), "--service-account", "no-slash"]) == cli.EXIT_USAGE


def test_the_wheel_carries_its_templates_and_the_image_recipe_is_referenced() -> None:
    root = Path(__file__).resolve().parent.parent
    pyproject = (root / "pyproject.toml").read_text()
    assert '"manifests", "reports"' in pyproject  # the template packages go into the wheel
    assert "Containerfile" in (root / "prefect.yaml").read_text()
    assert "uv build --wheel" in (root / "Containerfile").read_text()
    assert "bash .ci/wheel.sh" in (root / ".ci" / "run").read_text()
