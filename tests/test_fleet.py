"""Fleet rollouts (issue 20, point 1): one spec, several clusters at once, each its own run.

The report module and the input checks are plain functions, tested here without any cluster. The
end-to-end test is the operator's setup from the README: a Prefect server (PostgreSQL-backed when
UDN_ROLLOUT_TEST_PREFECT_DB names one, as in CI), a process work pool, `prefect deploy` of
rollout-fleet and rollout-cluster from prefect.yaml, two workers, and three simulated clusters in one
kubeconfig, one of which fails its migrations: every cluster gets its network and VMs, each cluster's
run is a flow run of its own that the workers share out, the failing cluster stops nobody and is named
in the fleet's summary, its artifact and its report. The command line's fleet (threads, and subflows
under a Prefect API) is tested in test_cli.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml
from prefect_server import api as _api
from prefect_server import prefect_cmd as _prefect_cmd
from prefect_server import prefect_server as start_prefect_server
from prefect_server import run as _run

from simcluster import ClusterConfig, SimCluster
from tasks.fleet import (
    CLI_FLAGS,
    FleetInputError,
    FleetTarget,
    _PrefixedStream,
    member_parameters,
    outcome_of,
    plan_fleet,
)
from tasks.kube import KubeError
from tasks.model import Check
from tasks.outcome import PreflightFailed, RolloutFailed
from tasks.preflight import PreflightResult
from tasks.reports.fleet import (
    ClusterOutcome,
    artifact_key,
    cluster_dirname,
    cluster_dirnames,
    fleet_exit_code,
    fleet_html,
    fleet_markdown,
    fleet_summary,
    fleet_terminal,
    read_fleet_json,
    write_fleet_reports,
)
from tasks.rollout import RolloutResult
from tasks.spec import RolloutSpec

REPO = Path(__file__).resolve().parent.parent


# ---- helpers shared with test_cli.py ----------------------------------------------------------------


def merge_kubeconfigs(named: Mapping[str, Path], out: Path) -> Path:
    """One kubeconfig with a context per cluster (as `oc login` to several clusters leaves it): each
    simulated cluster's file names its cluster, user and context `simcluster`, so rename them first."""
    doc: dict = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
    for name, path in named.items():
        kc = yaml.safe_load(Path(path).read_text())
        doc["clusters"].append({"name": name, "cluster": kc["clusters"][0]["cluster"]})
        doc["users"].append({"name": f"admin/{name}", "user": kc["users"][0]["user"]})
        doc["contexts"].append(
            {"name": name, "context": {"cluster": name, "user": f"admin/{name}", "namespace": "default"}}
        )
    doc["current-context"] = next(iter(named))
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    out.chmod(0o600)
    return out


def fake_kubeconfig(path: Path, servers: Mapping[str, str]) -> Path:
    """A kubeconfig whose contexts point at the given servers (nothing is contacted by the input checks)."""
    return merge_kubeconfigs_from(
        {
            name: {"clusters": [{"cluster": {"server": url}}], "users": [{"user": {"token": "t"}}]}
            for name, url in servers.items()
        },
        path,
    )


def merge_kubeconfigs_from(docs: Mapping[str, dict], out: Path) -> Path:
    tmp = out.parent / f".{out.name}.parts"
    tmp.mkdir(exist_ok=True)
    paths = {}
    for name, doc in docs.items():
        p = tmp / f"{name}.yaml"
        p.write_text(yaml.safe_dump(doc))
        paths[name] = p
    return merge_kubeconfigs(paths, out)


# ---- the report: pure functions over plain records -----------------------------------------------------


def _outcomes() -> list[ClusterOutcome]:
    return [
        ClusterOutcome(
            "east",
            context="east",
            server="https://east:6443",
            vms=4,
            vms_ready=4,
            probes=16,
            probes_failing=0,
            migrated=1,
            ip_changed=0,
            stale_ip_hazards=0,
            wall_s=12.0,
            reports="/r/run-1/clusters/east/run-1",
        ),
        ClusterOutcome(
            "west",
            exit_code=1,
            vms=4,
            vms_ready=4,
            probes=16,
            probes_failing=2,
            migrated=0,
            ip_changed=0,
            failures=["churn: 1 migration(s) failed", "connectivity: 2 pairs <b>silent</b>"],
            reports="/r/run-1/clusters/west/run-1",
        ),
        ClusterOutcome(
            "north",
            exit_code=3,
            failures=["preflight failed: 1 check(s) failed: CIDR overlap — nothing was changed on the cluster"],
        ),
    ]


def test_exit_code_is_zero_only_when_every_cluster_passed_else_the_highest() -> None:
    ok = ClusterOutcome("a")
    assert fleet_exit_code([ok, ClusterOutcome("b")]) == 0
    assert fleet_exit_code(_outcomes()) == 3
    assert fleet_exit_code([ok, ClusterOutcome("b", exit_code=4), ClusterOutcome("c", exit_code=1)]) == 4
    assert fleet_exit_code([ok, ClusterOutcome("b", exit_code=1)]) == 1
    assert fleet_exit_code([]) == 2


def test_summary_totals_only_what_the_clusters_reached() -> None:
    s = fleet_summary(_outcomes())
    assert (s["clusters"], s["passed"], s["failed"], s["failedClusters"]) == (3, 1, 2, ["west", "north"])
    assert (s["vms"], s["vmsReady"], s["probes"], s["probesPassing"], s["migrated"]) == (8, 8, 32, 30, 1)
    assert fleet_summary([ClusterOutcome("x", exit_code=4)])["vms"] is None


def test_outcome_round_trips_through_dict_table_row_and_fleet_json(tmp_path: Path) -> None:
    for o in _outcomes():
        assert ClusterOutcome.from_dict(o.to_dict()) == o
        assert ClusterOutcome.from_dict(o.table_row()) == o
        assert ClusterOutcome.from_dict(json.loads(json.dumps(o.table_row()))) == o
    written = write_fleet_reports(
        tmp_path / "run-1", "run-1", _outcomes(), {"network": "n", "subnets": ["10.0.0.0/16"]}
    )
    assert sorted(written) == ["fleet.html", "fleet.json", "fleet.md"]
    run_id, back = read_fleet_json(written["fleet.json"])
    assert run_id == "run-1" and back == _outcomes()
    doc = json.loads(written["fleet.json"].read_text())
    assert doc["summary"]["exitCode"] == 3 and doc["clusters"][2]["status"] == "preflight failed, nothing changed"


def test_markdown_html_and_terminal_name_every_cluster_and_each_failure(tmp_path: Path) -> None:
    fleet_dir = Path("/r/run-1")
    md = fleet_markdown("run-1", _outcomes(), fleet_dir, {"network": "udn-x", "subnets": ["10.0.0.0/16"]})
    assert "**Verdict: FAILED** — 1 of 3 clusters passed; failed: west, north. Exit code 3" in md
    assert "| east | passed | 0 | 4/4 | 16/16 | 1 | 0 | [summary](clusters/east/run-1/summary.md) |" in md
    assert "| north | preflight failed, nothing changed | 3 | — | — | — | — | — |" in md
    assert "### west — failed (exit 1)" in md and "- churn: 1 migration(s) failed" in md
    assert "### north — preflight failed, nothing changed (exit 3)" in md and "CIDR overlap" in md
    assert "| subnets | 10.0.0.0/16 |" in md
    assert "## Prefect" not in md  # no flow runs: nothing to say about them

    html = fleet_html("run-1", _outcomes(), fleet_dir)
    assert '<tr class="failed" data-cluster="north">' in html and '<tr class="passed" data-cluster="east">' in html
    assert "&lt;b&gt;silent&lt;/b&gt;" in html and "<b>silent</b>" not in html  # autoescaped
    assert 'href="clusters/west/run-1/summary.md"' in html

    with_prefect = [*_outcomes()]
    with_prefect[0].flow_run, with_prefect[0].worker = "run-1 · rollout · east", "w1"
    md = fleet_markdown("run-1", with_prefect, fleet_dir)
    assert "| east | run-1 · rollout · east | w1 |" in md

    text = fleet_terminal("run-1", _outcomes())
    first, header, *rows = text.splitlines()
    assert first == (
        "fleet run-1: 1 of 3 clusters passed; failed: west (exit 1, failed), north (exit 3, preflight failed, "
        "nothing changed)"
    )
    assert header.split()[:3] == ["CLUSTER", "RESULT", "EXIT"]
    assert [r.split()[0] for r in rows] == ["east", "west", "north"]
    assert "churn: 1 migration(s) failed (+1 more)" in rows[1]

    ok = fleet_markdown("run-2", [ClusterOutcome("a", vms=1, vms_ready=1)], Path("/r/run-2"))
    assert "**Verdict: OK** — 1 of 1 clusters passed. Exit code 0" in ok and "## Failures" not in ok


def test_cluster_directories_and_artifact_keys_are_safe_and_distinct() -> None:
    ocp = "default/api-ocp1-example-com:6443/kube:admin"
    assert cluster_dirname(ocp) == "default-api-ocp1-example-com-6443-kube-admin"
    assert artifact_key(ocp) == "fleet-cluster-default-api-ocp1-example-com-6443-kube-admin"
    assert artifact_key("East.Prod") == "fleet-cluster-east-prod"
    dirs = cluster_dirnames(["a/b", "a:b", "east"])
    assert (
        dirs["east"] == "east"
        and dirs["a/b"] != dirs["a:b"]
        and all(d.startswith("a-b-") for d in (dirs["a/b"], dirs["a:b"]))
    )


def test_outcome_of_a_result_or_of_what_the_run_raised() -> None:
    from tasks.fanout import FanoutResult
    from tasks.model import VMRecord

    rec = VMRecord(namespace="a", name="vm-1", ready=True)
    ok = outcome_of("east", result=RolloutResult(run_id="r", fanout=FanoutResult(records=[rec, rec])), reports="/x")
    assert (ok.exit_code, ok.vms, ok.vms_ready, ok.probes, ok.reports) == (0, 2, 2, None, "/x")

    failed_rollout = RolloutResult(run_id="r", failed_steps=["churn: 1 migration(s) failed"])
    o = outcome_of("west", error=RolloutFailed("churn: 1 migration(s) failed", ["reports: /x"], result=failed_rollout))
    assert (o.exit_code, o.failures) == (1, ["churn: 1 migration(s) failed"])

    pre = PreflightResult(checks=[Check("CIDR overlap", "fail", "10.200.0.0/16 overlaps the clusterNetwork")])
    o = outcome_of("north", error=PreflightFailed(pre.failure_message(), ["reports: /x"], result=pre))
    assert o.exit_code == 3 and o.status == "preflight failed, nothing changed"
    assert o.failures == ["CIDR overlap: 10.200.0.0/16 overlaps the clusterNetwork"]  # the check, not "reports: …"

    o = outcome_of("south", error=KubeError(503, "ServiceUnavailable", "etcd is down"))
    assert (o.exit_code, o.failures) == (4, ["the cluster answered 503 ServiceUnavailable: etcd is down"])
    o = outcome_of("south", error=RuntimeError("boom"))
    assert (o.exit_code, o.failures) == (1, ["RuntimeError: boom"])


# ---- the input checks: before any cluster is contacted ----------------------------------------------------


def test_plan_refuses_bad_input_naming_the_flag_and_the_fix(tmp_path: Path) -> None:
    kc = fake_kubeconfig(
        tmp_path / "kc",
        {"east": "https://10.9.0.1:6443", "west": "https://10.9.0.2:6443", "east-admin": "https://10.9.0.1:6443"},
    )
    fleet_dir = tmp_path / "reports" / "r1"

    def plan(*contexts: str, flags: Mapping[str, str] = CLI_FLAGS):
        targets = [FleetTarget(kubeconfig=str(kc), context=c) for c in contexts]
        return plan_fleet("r1", targets, fleet_dir, labels=[f"--context {c}" for c in contexts], flags=flags)

    with pytest.raises(FleetInputError) as e:
        plan("east", "staging", "west", "west")
    msg = str(e.value)
    assert msg.startswith("bad fleet input, nothing was done on any cluster:")
    assert (
        f"--context staging: no context 'staging' in kubeconfig {kc} (its contexts: east, west, east-admin); use "
        in msg
    )
    assert "or --kubeconfig the file that has it" in msg
    assert "--context west is given twice (also --context west): name each cluster once, drop the repeat" in msg

    with pytest.raises(
        FleetInputError, match=r"--context east-admin and --context east both point at https://10\.9\.0\.1:6443"
    ):
        plan("east", "east-admin")
    with pytest.raises(FleetInputError, match="no clusters given"):
        plan_fleet("r1", [], fleet_dir)
    with pytest.raises(FleetInputError, match=r"fleet\[1\] and fleet\[0\] are both called 'prod'"):
        plan_fleet(
            "r1",
            [
                FleetTarget(kubeconfig=str(kc), context="east", name="prod"),
                FleetTarget(kubeconfig=str(kc), context="west", name="prod"),
            ],
            fleet_dir,
        )
    with pytest.raises(FleetInputError, match=r"fleet\[1\] is given twice \(also fleet\[0\]\)"):
        plan_fleet("r1", [FleetTarget(in_cluster=True), FleetTarget(in_cluster=True)], fleet_dir)

    p = plan("east", "west")
    assert [(m.name, m.server, m.reports_root) for m in p.members] == [
        ("east", "https://10.9.0.1:6443", fleet_dir / "clusters" / "east"),
        ("west", "https://10.9.0.2:6443", fleet_dir / "clusters" / "west"),
    ]
    assert not p.early


def test_a_context_that_cannot_be_loaded_is_that_clusters_failure_not_the_fleets(tmp_path: Path) -> None:
    kc = fake_kubeconfig(tmp_path / "kc", {"east": "https://10.9.0.1:6443", "west": "https://10.9.0.2:6443"})
    doc = yaml.safe_load(kc.read_text())
    doc["clusters"][1]["cluster"]["certificate-authority"] = str(tmp_path / "gone-ca.crt")  # west's CA file is gone
    kc.write_text(yaml.safe_dump(doc))
    p = plan_fleet("r1", [FleetTarget(kubeconfig=str(kc), context=c) for c in ("east", "west")], tmp_path)
    assert list(p.early) == ["west"] and p.early["west"].exit_code == 4
    assert "west" in p.early["west"].failures[0]


def test_member_parameters_are_what_the_rollout_cluster_deployment_takes(tmp_path: Path) -> None:
    from tasks.spec import load_spec

    spec = load_spec(str(REPO / "specs" / "seed-l2.yaml"), ["vms.perNamespace=2"], run_id="r1")
    kc = fake_kubeconfig(tmp_path / "kc", {"east": "https://10.9.0.1:6443"})
    member = plan_fleet("r1", [FleetTarget(kubeconfig=str(kc), context="east")], tmp_path / "r1").members[0]
    params = member_parameters(spec, member, ping=True, churn=False)
    json.dumps(params)  # what the API takes
    assert RolloutSpec.model_validate(params["spec"]) == spec
    assert params["cluster"] == {"kubeconfig": str(kc), "context": "east", "inCluster": False}
    assert (params["cluster_name"], params["reports_dir"], params["churn"]) == (
        "east",
        str(tmp_path / "r1" / "clusters" / "east"),
        False,
    )


def test_output_of_clusters_side_by_side_is_prefixed_per_thread() -> None:
    import io

    inner = io.StringIO()
    local = threading.local()
    stream = _PrefixedStream(inner, local, threading.Lock())

    def cluster(name: str) -> None:
        local.prefix = f"[{name}] "
        stream.write(f"one from {name}\ntwo ")
        stream.write(f"from {name}\n")

    threads = [threading.Thread(target=cluster, args=(n,)) for n in ("east", "west")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stream.write("plain line\n")
    lines = inner.getvalue().splitlines()
    assert sorted(lines) == sorted(
        ["[east] one from east", "[east] two from east", "[west] one from west", "[west] two from west", "plain line"]
    )
    assert not stream.isatty()


# ---- end to end: a process work pool, two workers, three simulated clusters ------------------------------


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`prefect server start` on loopback; PostgreSQL when configured (CI), SQLite otherwise."""
    home = tmp_path_factory.mktemp("prefect-home")
    db = os.environ.get("UDN_ROLLOUT_TEST_PREFECT_DB")
    if os.environ.get("CI") and not db:
        pytest.fail("CI must provide UDN_ROLLOUT_TEST_PREFECT_DB (see .ci/postgres.sh)")
    if db:  # a database of its own (.ci/postgres.sh creates it): test_deployments may run at the same time
        db = f"{db.rsplit('/', 1)[0]}/prefect_fleet_test"
    with start_prefect_server(home, db) as env:
        yield {**env, "UDN_ROLLOUT_REPORTS": str(home / "reports")}


def _forget_artifacts(env: Mapping[str, str], run_id: str) -> None:
    """Delete the artifacts of a run's flow runs: the Prefect database (CI's PostgreSQL) outlives the test."""
    runs = _api(env, "POST", "/flow_runs/filter", {"flow_runs": {"tags": {"all_": [f"run:{run_id}"]}}})
    ids = [r["id"] for r in runs]  # type: ignore[union-attr]
    while ids:  # a page at a time
        page = _api(env, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": ids}}})
        if not page:
            break
        for a in page:  # type: ignore[union-attr]
            _api(env, "DELETE", f"/artifacts/{a['id']}")


@pytest.mark.slow
def test_fleet_through_a_process_pool_and_two_workers(prefect_server: dict[str, str], tmp_path: Path) -> None:
    run_id = f"fleet-{uuid.uuid4().hex[:6]}"
    try:
        _fleet_through_a_process_pool(prefect_server, tmp_path, run_id)
    finally:
        _forget_artifacts(prefect_server, run_id)


def _fleet_through_a_process_pool(env: dict[str, str], tmp_path: Path, run_id: str) -> None:
    pool = f"fleet-test-{uuid.uuid4().hex[:6]}"  # its own pool: no run of another test or an earlier one is in it
    _run([*_prefect_cmd(), "work-pool", "create", pool, "--type", "process"], env)
    project = (
        (REPO / "prefect.yaml").read_text().replace("work_pool: {name: udn-rollout,", f"work_pool: {{name: {pool},")
    )
    assert project.count(pool) >= 6
    (tmp_path / "prefect.yaml").write_text(project)
    _run(
        [
            *_prefect_cmd(),
            "deploy",
            "--prefect-file",
            str(tmp_path / "prefect.yaml"),
            "-n",
            "rollout-fleet",
            "-n",
            "rollout-cluster",
        ],
        env,
    )
    deployments = {d["name"]: d for d in _api(env, "POST", "/deployments/filter", {})}  # type: ignore[union-attr]
    fleet_dep, cluster_dep = deployments["rollout-fleet"], deployments["rollout-cluster"]
    assert fleet_dep["parameters"]["member_deployment"] == "rollout-cluster/rollout-cluster"
    form = fleet_dep["parameter_openapi_schema"]
    assert {"spec", "fleet", "ping", "churn"} <= set(form["properties"]) and "fleet" in form["required"]
    assert {"kubeconfig", "context", "inCluster", "name"} <= set(form["definitions"]["FleetTarget"]["properties"])

    workers: list[subprocess.Popen[bytes]] = []
    logs = []
    with (
        SimCluster(config=ClusterConfig(nodes=2, profile="instant")) as east,
        SimCluster(config=ClusterConfig(nodes=2, profile="instant")) as west,
        SimCluster(config=ClusterConfig(nodes=2, profile="instant"), faults={"migration_failure_rate": 1.0}) as north,
    ):
        kubeconfig = merge_kubeconfigs(
            {"east": east.kubeconfig, "west": west.kubeconfig, "north": north.kubeconfig}, tmp_path / "fleet.kubeconfig"
        )
        try:
            # Two workers; each runs at most two flow runs at once, so the fleet's own run and its three
            # clusters' runs (four in all) need both of them.
            worker_env = {**env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
            for name in ("w1", "w2"):
                log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 (closed below)
                logs.append(log)
                workers.append(
                    subprocess.Popen(
                        [*_prefect_cmd(), "worker", "start", "--pool", pool, "--name", name, "--limit", "2"],
                        env=worker_env,
                        cwd=REPO,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            spec = {
                "runId": run_id,
                "network": {"name": "udn-fleet-test", "topology": "Layer2", "subnets": [{"cidr": "10.232.0.0/16"}]},
                "namespaces": {"names": ["fleet-a"]},
                "vms": {"perNamespace": 2},
                "connectivity": {"pingCount": 1, "pingTimeoutSeconds": 1},
                "churn": {"count": 1},
            }
            fleet = [{"kubeconfig": str(kubeconfig), "context": c} for c in ("east", "west", "north")]
            run = _api(
                env,
                "POST",
                f"/deployments/{fleet_dep['id']}/create_flow_run",
                {"parameters": {"spec": spec, "fleet": fleet}},
            )
            deadline = time.monotonic() + 420
            while True:
                state = _api(env, "GET", f"/flow_runs/{run['id']}")["state"]  # type: ignore[index]
                if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                    break
                assert time.monotonic() < deadline, f"the fleet run did not end: {state}\n" + "\n".join(
                    (tmp_path / f"{n}.log").read_text()[-3000:] for n in ("w1", "w2")
                )
                time.sleep(2)
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                try:
                    w.wait(30)
                except subprocess.TimeoutExpired:
                    w.kill()
            for log in logs:
                log.close()
        worker_logs = "\n".join((tmp_path / f"{n}.log").read_text()[-4000:] for n in ("w1", "w2"))

        # The fleet failed because north did, and says so; east and west were not stopped by it.
        assert state["type"] == "FAILED", (state, worker_logs)
        assert "north (exit 1, failed)" in state["message"] and "2 of 3 clusters passed" in state["message"], state

        # Each cluster's run is its own flow run of rollout-cluster, named and tagged with its cluster,
        # linked under the fleet's run, and carried by one of the two workers — both served.
        members = _api(
            env,
            "POST",
            "/flow_runs/filter",
            {"flow_runs": {"deployment_id": {"any_": [cluster_dep["id"]]}, "tags": {"all_": [f"run:{run_id}"]}}},
        )
        by_cluster = {next(t.split(":", 1)[1] for t in r["tags"] if t.startswith("cluster:")): r for r in members}  # type: ignore[union-attr]
        assert sorted(by_cluster) == ["east", "north", "west"], [r["name"] for r in members]  # type: ignore[union-attr]
        for cluster, r in by_cluster.items():
            assert r["name"] == f"{run_id} · rollout · {cluster}"
            parent = _api(env, "GET", f"/task_runs/{r['parent_task_run_id']}")
            assert parent["flow_run_id"] == run["id"]  # type: ignore[index]
        states = {c: r["state"]["type"] for c, r in by_cluster.items()}
        assert states == {"east": "COMPLETED", "west": "COMPLETED", "north": "FAILED"}, (states, worker_logs)
        served = {c: r["labels"].get("prefect.worker.name") for c, r in by_cluster.items()}
        assert set(served.values()) == {"w1", "w2"}, served

        # Every cluster got its network and its VMs (north too: only its migrations failed).
        from tasks.kube import ClusterTarget, Kube
        from tasks.kube.resources import CUDN, VM

        for cluster, sim in (("east", east), ("west", west), ("north", north)):
            kube = Kube(ClusterTarget(kubeconfig=str(sim.kubeconfig)))
            assert kube.get(CUDN, "udn-fleet-test") is not None, cluster
            vms, _ = kube.list(VM, "fleet-a")
            assert len(vms) == 2, cluster
            kube.close()

    # The fleet's summary: as artifacts of the fleet's run, and as files beside each cluster's reports.
    artifacts = _api(env, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
    by_key = {a["key"]: a for a in artifacts}  # type: ignore[union-attr]
    assert {"fleet", "fleet-clusters"} <= set(by_key), set(by_key)
    assert "**Verdict: FAILED** — 2 of 3 clusters passed; failed: north." in by_key["fleet"]["data"]
    table = by_key["fleet-clusters"]["data"]
    rows = json.loads(table) if isinstance(table, str) else table
    assert {r["cluster"]: (r["exit_code"], r["vms_ready"], r["worker"]) for r in rows} == {
        c: (1 if c == "north" else 0, 2, served[c]) for c in ("east", "west", "north")
    }
    north_row = next(r for r in rows if r["cluster"] == "north")
    assert "migration" in north_row["failures"]
    fleet_dir = Path(env["UDN_ROLLOUT_REPORTS"]) / run_id
    fleet_md = (fleet_dir / "fleet.md").read_text()
    assert "### north — failed (exit 1)" in fleet_md
    for cluster in ("east", "west", "north"):
        assert (fleet_dir / "clusters" / cluster / run_id / "summary.md").is_file(), cluster
    _api(env, "DELETE", f"/work_pools/{pool}")
