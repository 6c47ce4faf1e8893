"""The Prefect deployments end to end, as an operator uses them: a Prefect server (PostgreSQL-backed,
as in production, when UDN_ROLLOUT_TEST_PREFECT_DB names one), `prefect deploy --all` from
prefect.yaml, a run of rollout-on-demand triggered through the API as the UI's Run button does, a
process worker that picks it up, and the run's artifacts read back through the API."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect_server import api as _api
from prefect_server import prefect_cmd as _prefect_cmd
from prefect_server import prefect_server as start_prefect_server
from prefect_server import run as _run

from simcluster import ClusterConfig, SimCluster

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`prefect server start` on loopback; PostgreSQL when configured (CI), SQLite otherwise."""
    home = tmp_path_factory.mktemp("prefect-home")
    db = os.environ.get("UDN_ROLLOUT_TEST_PREFECT_DB")
    if os.environ.get("CI") and not db:
        pytest.fail("CI must provide UDN_ROLLOUT_TEST_PREFECT_DB (see .ci/postgres.sh)")
    with start_prefect_server(home, db) as env:
        yield {**env, "UDN_ROLLOUT_REPORTS": str(home / "reports"), "_backend": "postgresql" if db else "sqlite"}


def test_deploy_trigger_and_worker_run(prefect_server: dict[str, str], tmp_path: Path) -> None:
    env = prefect_server
    _run([*_prefect_cmd(), "work-pool", "create", "udn-rollout", "--type", "process", "--overwrite"], env)
    _run([*_prefect_cmd(), "deploy", "--all"], env)

    deployments = _api(env, "POST", "/deployments/filter", {})
    by_name = {d["name"]: d for d in deployments}
    assert {"rollout-scheduled", "rollout-on-demand", "churn-report", "teardown"} <= set(by_name)
    on_demand = by_name["rollout-on-demand"]
    schema = on_demand["parameter_openapi_schema"]
    assert set(schema["properties"]) >= {"spec", "cluster"}
    spec_def = schema["definitions"]["RolloutSpec"]
    assert {"network", "namespaces", "vms", "fanout", "connectivity", "churn"} <= set(spec_def["properties"])
    assert schema["definitions"]["NetworkSpec"]["properties"]["topology"]["enum"] == ["Layer3", "Layer2"]
    scheduled = by_name["rollout-scheduled"]
    assert scheduled["schedules"] and scheduled["schedules"][0]["schedule"]["cron"] == "0 2 * * *"

    run_id = f"deploy-{uuid.uuid4().hex[:6]}"  # a database kept between local runs holds older runs
    with SimCluster(config=ClusterConfig(nodes=3, profile="fast"), isolated=True, workdir=tmp_path) as sim:
        spec = {
            "runId": run_id,
            "network": {"name": "udn-deploy-test", "topology": "Layer2", "subnets": [{"cidr": "10.231.0.0/16"}]},
            "namespaces": {"names": ["deploy-a", "deploy-b"]},
            "vms": {"perNamespace": 2},
            "churn": {"count": 1},
        }
        run = _api(
            env,
            "POST",
            f"/deployments/{on_demand['id']}/create_flow_run",
            {"parameters": {"spec": spec, "cluster": {"kubeconfig": str(sim.kubeconfig)}}},
        )
        _run([*_prefect_cmd(), "worker", "start", "--pool", "udn-rollout", "--run-once"], env, timeout=400)
        state = _api(env, "GET", f"/flow_runs/{run['id']}")["state"]
        assert state["type"] == "COMPLETED", state
        # This run's artifacts only: the deployment's flow run and its steps' subflows (tagged with the run id).
        steps = _api(env, "POST", "/flow_runs/filter", {"flow_runs": {"tags": {"all_": [f"run:{run_id}"]}}})
        assert len(steps) >= 5, [r["name"] for r in steps]
        ids = [run["id"], *(r["id"] for r in steps)]
        artifacts = _api(env, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": ids}}})
        by_key = {a["key"]: a for a in artifacts if a.get("key")}
        assert {"preflight", "vm-inventory", "vm-latency", "connectivity", "churn"} <= set(by_key), set(by_key)
        inventory = by_key["vm-inventory"]
        rows = json.loads(inventory["data"]) if isinstance(inventory["data"], str) else inventory["data"]
        assert len(rows) == 4 and all(r["ready"] in (True, "True", "true") for r in rows)


def test_two_scheduled_runs_are_two_rows_of_history(prefect_server: dict[str, str], tmp_path: Path) -> None:
    """The scheduled deployment records every run into the run history with no extra step: two runs of it
    against one cluster are two rows of `udn-rollout history` and two points on each chart."""
    env = prefect_server
    _run([*_prefect_cmd(), "work-pool", "create", "udn-rollout", "--type", "process", "--overwrite"], env)
    _run([*_prefect_cmd(), "deploy", "-n", "rollout-scheduled"], env)
    scheduled = next(d for d in _api(env, "POST", "/deployments/filter", {}) if d["name"] == "rollout-scheduled")  # type: ignore[union-attr]
    network = f"udn-nightly-{uuid.uuid4().hex[:6]}"
    spec_file = tmp_path / "nightly.yaml"  # specs/scheduled.yaml's shape (no runId: a fresh one per run), smaller
    spec_file.write_text(
        json.dumps(
            {
                "network": {"name": network, "topology": "Layer2", "subnets": [{"cidr": "10.233.0.0/16"}]},
                "namespaces": {"prefix": network.removeprefix("udn-"), "count": 2},
                "vms": {"perNamespace": 2},
                "connectivity": {"pingCount": 1},
                "churn": {"count": 1},
            }
        )
    )
    reports = Path(env["UDN_ROLLOUT_REPORTS"])
    with SimCluster(config=ClusterConfig(nodes=3, profile="fast"), isolated=True, workdir=tmp_path) as sim:
        for _ in range(2):
            run = _api(
                env,
                "POST",
                f"/deployments/{scheduled['id']}/create_flow_run",
                {"parameters": {"spec_file": str(spec_file), "cluster": {"kubeconfig": str(sim.kubeconfig)}}},
            )
            _run([*_prefect_cmd(), "worker", "start", "--pool", "udn-rollout", "--run-once"], env, timeout=400)
            state = _api(env, "GET", f"/flow_runs/{run['id']}")["state"]  # type: ignore[index]
            assert state["type"] == "COMPLETED", state
            time.sleep(1)  # run ids are <network>-<yyyymmdd-hhmmss>
    cli = str(Path(sys.executable).parent / "udn-rollout")
    rows = json.loads(_run([cli, "history", "--reports-dir", str(reports), "--network", network, "--json"], env).stdout)
    assert len(rows) == 2, rows
    assert all(r["run_id"].startswith(f"{network}-") for r in rows) and rows[0]["run_id"] != rows[1]["run_id"], rows
    assert all(r["vms"] == 4 for r in rows), rows
    page = tmp_path / "history.html"
    _run([cli, "history", "--reports-dir", str(reports), "--network", network, "--html", str(page)], env)
    html = page.read_text()

    def chart(fid: str) -> str:  # Layer2: churn bars and the one address pool (no per-node subnets)
        return html.split(f'id="{fid}"', 1)[1].split("</figure>", 1)[0]

    assert chart("churn-0").count('<rect class="bar"') == 2 * 3  # moves, IP changes, hazards per run
    assert chart("total-0").count("</title></circle>") == 2  # free addresses: a point per run
