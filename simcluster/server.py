"""Running the simulated cluster: in-process (`with SimCluster(nodes=3) as c:`), in a child process
(`SimCluster(..., isolated=True)`, so a benchmark's client and server do not share one GIL), or as a
long-lived server (`udn-rollout sim serve`). Clients only ever get a kubeconfig."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from simcluster import tls
from simcluster.api import ApiServer, ServerOptions
from simcluster.controllers import Runtime, controller_classes
from simcluster.faults import Faults
from simcluster.policy import Policy
from simcluster.seed import KUBE_VERSION, ClusterConfig, seed
from simcluster.store import Store

log = logging.getLogger("simcluster")


#: How the isolated child gets its bearer token: by environment, not argv (visible in `ps`).
TOKEN_ENV = "SIMCLUSTER_TOKEN"


class ClusterRuntime:
    """The parts of one running cluster, all living on one asyncio loop."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        token: str | None,
        faults: Faults,
        policy: Policy,
        state_file: Path | None,
        history: int = 100_000,
    ) -> None:
        self.config = config
        self.state_file = state_file
        self.store = Store(history=history)
        if state_file and state_file.exists():
            self.store.restore(state_file.read_bytes())
            log.info("restored %s objects from %s", self.store.resource_version, state_file)
        else:
            seed(self.store, config)
        self.faults = faults
        self.api = ApiServer(
            self.store,
            ServerOptions(token=token, version=KUBE_VERSION, hidden_kinds=config.hidden_kinds()),
            policy,
            faults,
        )
        self._saved_rv = -1
        self._register_admin()

    def start_controllers(self, loop: asyncio.AbstractEventLoop) -> Runtime:
        import random

        rt = Runtime(self.store, self.api, self.config, self.faults, loop, random.Random(self.config.seed))
        for cls in controller_classes():
            ctrl = cls(rt)
            rt.controllers[ctrl.name] = ctrl
        for ctrl in rt.controllers.values():
            ctrl.start()
        self.runtime = rt
        return rt

    def save(self) -> None:
        if self.state_file and self.store.resource_version != self._saved_rv:
            tmp = self.state_file.with_suffix(self.state_file.suffix + ".tmp")
            tmp.write_bytes(self.store.snapshot())
            os.replace(tmp, self.state_file)
            self._saved_rv = self.store.resource_version

    async def autosave(self, interval: float = 5.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.save()
            except OSError:
                log.exception("could not save state to %s", self.state_file)

    def _register_admin(self) -> None:
        import orjson

        def js(obj: Any, status: int = 200) -> web.Response:
            return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")

        async def get_faults(_: web.Request) -> web.Response:
            return js(self.faults.to_dict())

        async def put_faults(request: web.Request) -> web.Response:
            self.faults.update(await request.json())
            return js(self.faults.to_dict())

        async def get_policy(_: web.Request) -> web.Response:
            return js(self.api.policy.to_dict())

        async def put_policy(request: web.Request) -> web.Response:
            self.api.policy.update(await request.json())
            return js(self.api.policy.to_dict())

        async def compact(_: web.Request) -> web.Response:
            self.store.compact()
            return js({"compactedResourceVersion": self.store.resource_version})

        async def stats(_: web.Request) -> web.Response:
            from simcluster import kinds

            return js(
                {
                    "resourceVersion": self.store.resource_version,
                    "requestsServed": self.api.requests_served,
                    "openWatches": self.api.open_watches,
                    "objects": {rt.key: self.store.count(rt) for rt in kinds.ALL},
                    "config": asdict(self.config),
                }
            )

        async def save(_: web.Request) -> web.Response:
            self.save()
            return js({"saved": str(self.state_file) if self.state_file else None})

        routes = self.api.admin_routes
        routes[("GET", "/simcluster/v1/faults")] = get_faults
        routes[("PUT", "/simcluster/v1/faults")] = put_faults
        routes[("GET", "/simcluster/v1/policy")] = get_policy
        routes[("PUT", "/simcluster/v1/policy")] = put_policy
        routes[("POST", "/simcluster/v1/compact")] = compact
        routes[("GET", "/simcluster/v1/stats")] = stats
        routes[("POST", "/simcluster/v1/save")] = save


async def _start_site(
    runtime: ClusterRuntime, host: str, port: int, ssl_ctx: ssl.SSLContext | None
) -> tuple[web.AppRunner, int]:
    # handler_cancellation: a client that hangs up cancels its request, as kube-apiserver's request
    # context is cancelled. Without it a watch whose selector matches nothing never writes, so never
    # learns its client left, and keeps filtering every event until its timeout (5–10 minutes).
    runner = web.AppRunner(
        runtime.api.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_ctx, backlog=1024, reuse_address=True)
    await site.start()
    server: Any = site._server
    assert server is not None and server.sockets
    bound = server.sockets[0].getsockname()[1]
    return runner, bound


class SimCluster:
    """An OpenShift-like API server on loopback, with OVN-K and KubeVirt behaviour behind it.

    ``with SimCluster(nodes=3) as cluster: ... cluster.kubeconfig`` — point any client at it.
    """

    def __init__(
        self,
        nodes: int = 3,
        *,
        config: ClusterConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_enabled: bool = True,
        workdir: Path | str | None = None,
        kubeconfig: Path | str | None = None,
        state_file: Path | str | None = None,
        faults: Faults | dict[str, Any] | None = None,
        policy: Policy | None = None,
        isolated: bool = False,
        history: int = 100_000,
        options: dict[str, str] | None = None,
    ) -> None:
        self.config = config or ClusterConfig(nodes=nodes)
        if options:
            self.config.options = {**self.config.options, **options}
            self.config.__post_init__()
        self.host = host
        self.port = port
        self.tls_enabled = tls_enabled
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="simcluster-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.kubeconfig = Path(kubeconfig) if kubeconfig else self.workdir / "kubeconfig"
        self.state_file = Path(state_file) if state_file else None
        self.faults = faults if isinstance(faults, Faults) else Faults(**(faults or {}))
        self.policy = policy or Policy()
        self.isolated = isolated
        self.history = history
        self.token = tls.new_token()
        self.url = ""
        self.ca_pem: bytes | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.runtime: ClusterRuntime | None = None

    # ---- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> SimCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> SimCluster:
        if self.isolated:
            return self._start_process(timeout)
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._thread_main, args=(ready, failure), name="simcluster", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the simulated cluster did not start in time")
        if failure:
            raise RuntimeError("the simulated cluster failed to start") from failure[0]
        return self

    def _thread_main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as e:  # reported to the starting thread
            failure.append(e)
            ready.set()
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event | None) -> None:
        self._stop = asyncio.Event()
        ssl_ctx = None
        if self.tls_enabled:
            creds = tls.generate_credentials(self.host)
            self.ca_pem = creds.ca_pem
            ssl_ctx = tls.server_ssl_context(creds, self.workdir)
        runtime = ClusterRuntime(
            self.config,
            token=self.token,
            faults=self.faults,
            policy=self.policy,
            state_file=self.state_file,
            history=self.history,
        )
        self.runtime = runtime
        runner, port = await _start_site(runtime, self.host, self.port, ssl_ctx)
        self.port = port
        scheme = "https" if self.tls_enabled else "http"
        self.url = f"{scheme}://{self.host}:{port}"
        tls.write_kubeconfig(self.kubeconfig, self.url, self.token, self.ca_pem)
        runtime.start_controllers(asyncio.get_running_loop())
        saver = asyncio.create_task(runtime.autosave()) if self.state_file else None
        if ready is not None:
            ready.set()
        try:
            await self._stop.wait()
        finally:
            if saver:
                saver.cancel()
            for ctrl in runtime.runtime.controllers.values():
                ctrl.stop()
            await asyncio.sleep(0)
            await runtime.api.close()
            await runner.cleanup()
            runtime.save()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
        if self._loop is not None and self._stop is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _start_process(self, timeout: float) -> SimCluster:
        ready_file = self.workdir / "ready.json"
        ready_file.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "simcluster",
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--kubeconfig",
            str(self.kubeconfig),
            "--ready-file",
            str(ready_file),
            "--config-json",
            json.dumps(asdict(self.config)),
            "--faults-json",
            json.dumps(self.faults.to_dict()),
            "--history",
            str(self.history),
            "--parent-pid",
            str(os.getpid()),
        ]
        if not self.tls_enabled:
            cmd.append("--insecure-http")
        if self.state_file:
            cmd += ["--state", str(self.state_file)]
        # The bearer token goes by environment, never on the command line, where `ps` shows it to everyone.
        env = {**os.environ, TOKEN_ENV: self.token}
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=None, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready_file.exists():
                info = json.loads(ready_file.read_text())
                self.url, self.port = info["url"], info["port"]
                return self
            if self._proc.poll() is not None:
                raise RuntimeError(f"the simulated cluster process exited with code {self._proc.returncode}")
            time.sleep(0.05)
        raise TimeoutError("the simulated cluster process did not start in time")

    # ---- admin ---------------------------------------------------------------------------
    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call an admin endpoint (`/simcluster/v1/...`) over HTTP, as any external tool would."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        ctx = None
        if self.url.startswith("https"):
            ctx = ssl.create_default_context()
            if self.ca_pem is None:
                self.ca_pem = _ca_from_kubeconfig(self.kubeconfig)
            ctx.load_verify_locations(cadata=self.ca_pem.decode())
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def set_faults(self, **knobs: Any) -> dict[str, Any]:
        return self.admin("PUT", "/simcluster/v1/faults", knobs)

    def set_policy(self, rules: list[dict[str, Any]] | None = None, allow_all: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"allowAll": allow_all}
        if rules is not None:
            body["rules"] = rules
        return self.admin("PUT", "/simcluster/v1/policy", body)

    def stats(self) -> dict[str, Any]:
        return self.admin("GET", "/simcluster/v1/stats")


def _ca_from_kubeconfig(path: Path) -> bytes:
    import base64

    import yaml

    doc = yaml.safe_load(path.read_text())
    return base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    """An isolated cluster must not outlive the process that started it (killed tests, benches)."""
    while not stop.is_set():
        await asyncio.sleep(1.0)
        if os.getppid() != pid:
            stop.set()


def _tune_gc() -> None:
    """The store holds every object as plain JSON dicts (no reference cycles); CPython's default
    collector rescans them every few hundred allocations, which cost the server about a fifth of its
    CPU under a VM fan-out (bench/). Collect less often; freeze what start-up created."""
    gc.set_threshold(100_000, 50, 100)
    gc.freeze()


def serve_forever(
    config: ClusterConfig,
    *,
    host: str,
    port: int,
    kubeconfig: Path,
    state_file: Path | None,
    tls_enabled: bool,
    faults: Faults,
    token: str | None = None,
    ready_file: Path | None = None,
    history: int = 100_000,
    announce: bool = True,
    parent_pid: int | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or, for an isolated cluster, until its parent process is gone);
    state is saved on the way out when a state file is given."""
    _tune_gc()
    workdir = kubeconfig.parent
    cluster = SimCluster(
        config=config,
        host=host,
        port=port,
        tls_enabled=tls_enabled,
        workdir=workdir,
        kubeconfig=kubeconfig,
        state_file=state_file,
        faults=faults,
    )
    if token:
        cluster.token = token

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        serving = asyncio.create_task(cluster._serve(None))
        while not cluster.url:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.02)
        if ready_file:
            ready_file.write_text(json.dumps({"url": cluster.url, "port": cluster.port}))
        if announce:
            print(f"simulated cluster serving at {cluster.url} ({len(config.names())} nodes)", flush=True)
            print(f"kubeconfig: {kubeconfig}", flush=True)
            print(f"try: KUBECONFIG={kubeconfig} kubectl get nodes", flush=True)
        watcher = asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid else None
        await stop.wait()
        if watcher is not None:
            watcher.cancel()
        assert cluster._stop is not None
        cluster._stop.set()
        await serving

    asyncio.run(main())
