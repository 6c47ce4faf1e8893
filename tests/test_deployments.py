"""The Prefect deployments end to end, as an operator uses them: a Prefect server (PostgreSQL-backed,
as in production, when UDN_ROLLOUT_TEST_PREFECT_DB names one), `prefect deploy --all` from
prefect.yaml, a run of rollout-on-demand triggered through the API as the UI's Run button does, a
process worker that picks it up, and the run's artifacts read back through the API."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from simcluster import ClusterConfig, SimCluster

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prefect_cmd() -> list[str]:
    exe = shutil.which("prefect", path=str(Path(sys.executable).parent)) or shutil.which("prefect")
    assert exe, "the prefect CLI is not installed in the environment"
    return [exe]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`prefect server start` on loopback; PostgreSQL when configured (CI), SQLite otherwise."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "UDN_ROLLOUT_HOME": str(REPO),
            "UDN_ROLLOUT_REPORTS": str(home / "reports"),
        }
    )
    db = os.environ.get("UDN_ROLLOUT_TEST_PREFECT_DB")
    if os.environ.get("CI") and not db:
        pytest.fail("CI must provide UDN_ROLLOUT_TEST_PREFECT_DB (see .ci/postgres.sh)")
    if db:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = db
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*_prefect_cmd(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise AssertionError(f"prefect server exited: {(home / 'server.log').read_text()[-3000:]}")
    else:
        proc.terminate()
        raise AssertionError(f"prefect server did not start: {(home / 'server.log').read_text()[-3000:]}")
    try:
        yield {**env, "_backend": "postgresql" if db else "sqlite"}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _run(cmd: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd,
        env={k: v for k, v in env.items() if not k.startswith("_")},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _api(env: dict[str, str], method: str, path: str, body: object | None = None) -> object:
    req = urllib.request.Request(
        env["PREFECT_API_URL"] + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def test_deploy_trigger_and_worker_run(prefect_server: dict[str, str], tmp_path: Path) -> None:
    env = prefect_server
    _run([*_prefect_cmd(), "work-pool", "create", "udn-rollout", "--type", "process"], env)
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

    with SimCluster(config=ClusterConfig(nodes=3, profile="fast"), isolated=True, workdir=tmp_path) as sim:
        spec = {
            "runId": "deploy-test",
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
        artifacts = _api(env, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
        subflow_runs = (
            _api(env, "POST", "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run["id"]]}}}) or []
        )
        keys = {a["key"] for a in artifacts}
        for sub in subflow_runs:
            keys |= {
                a["key"]
                for a in _api(env, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [sub["id"]]}}})
            }
        keys |= {a["key"] for a in _api(env, "POST", "/artifacts/filter", {}) if a.get("key")}
        assert {"preflight", "vm-inventory", "vm-latency", "connectivity", "churn"} <= keys, keys
        inventory = next(a for a in _api(env, "POST", "/artifacts/filter", {}) if a.get("key") == "vm-inventory")
        rows = json.loads(inventory["data"]) if isinstance(inventory["data"], str) else inventory["data"]
        assert len(rows) == 4 and all(r["ready"] in (True, "True", "true") for r in rows)
