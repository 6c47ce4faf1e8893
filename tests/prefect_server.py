"""A real `prefect server start` on loopback for tests that need separate processes to share one
Prefect API (deployments and workers; killed CLI runs that should not each start an ephemeral one)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_cmd() -> list[str]:
    exe = shutil.which("prefect", path=str(Path(sys.executable).parent)) or shutil.which("prefect")
    assert exe, "the prefect CLI is not installed in the environment"
    return [exe]


@contextlib.contextmanager
def prefect_server(home: Path, db_url: str | None = None, timeout: float = 180) -> Iterator[dict[str, str]]:
    """Start a Prefect server (SQLite in `home`, or `db_url`); yields the environment pointing at it."""
    port = free_port()
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
        }
    )
    if db_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = db_url
    log_path = home / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*prefect_cmd(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.5)
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"prefect server did not start: {log_path.read_text()[-3000:]}")
            yield env
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def run(cmd: list[str], env: Mapping[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run a command against the server from the repository (keys starting with ``_`` are the test's own)."""
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


def api(env: Mapping[str, str], method: str, path: str, body: object | None = None) -> object:
    """One call to the server's REST API, its JSON answer."""
    req = urllib.request.Request(
        env["PREFECT_API_URL"] + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")
