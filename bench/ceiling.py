"""The simulated cluster's ceiling for VM creates, from a minimal client, so the tool's unpaced rate
can be read as a fraction of it.

The minimal client is as cheap as a client gets in Python: asyncio + aiohttp, 64 keep-alive TLS
connections, request bodies serialised before the clock starts, responses read and dropped, no
watches, no bookkeeping. It creates exactly the VMs the tool would (`render_vms(spec)`, running, in
namespaces provisioned beforehand), so the server does the same work per VM — admission, storage,
and the KubeVirt/IPAM controllers starting each VM — and the server process is saturated (its CPU
seconds ≈ the wall seconds; both are recorded). On this 2-core machine the minimal client needs about
a quarter of a core, so the server gets a core of its own: the figure is the server's, not the client's.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from bench.common import metered, rnd, server_pid
from simcluster import SimCluster
from tasks.kube import Kube

CONCURRENCY = 64


def _plural_path(kube: Kube, obj: dict[str, Any]) -> str:
    r = kube.resource(obj["apiVersion"], obj["kind"])
    return r.path(obj["metadata"]["namespace"])


def _credentials(kubeconfig: Path) -> tuple[str, str, str]:
    """Server URL, bearer token and CA (PEM) from a kubeconfig: all a client of the cluster gets."""
    doc = yaml.safe_load(kubeconfig.read_text())
    cluster = doc["clusters"][0]["cluster"]
    return (
        cluster["server"],
        doc["users"][0]["user"]["token"],
        base64.b64decode(cluster["certificate-authority-data"]).decode(),
    )


async def _post_all(
    ca_pem: str, token: str, requests: list[tuple[str, bytes]], concurrency: int
) -> tuple[float, list[float], list[int]]:
    ctx = ssl.create_default_context(cadata=ca_pem)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    done: list[float] = []
    failed: list[int] = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx, limit=concurrency), headers=headers
    ) as session:
        queue = iter(requests)

        async def worker() -> None:
            for url, body in queue:
                async with session.post(url, data=body) as resp:
                    await resp.read()
                    if resp.status != 201:
                        failed.append(resp.status)
                    done.append(time.monotonic())

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.monotonic() - t0, done, failed


def minimal_client_creates(
    cluster: SimCluster, kube: Kube, objs: list[dict[str, Any]], concurrency: int = CONCURRENCY
) -> dict[str, Any]:
    """Create `objs` as fast as the server takes them; creates/s until the last create returned."""
    server, token, ca_pem = _credentials(Path(cluster.kubeconfig))
    requests = [(server + _plural_path(kube, o), orjson.dumps(o)) for o in objs]
    with metered(server_pid(cluster)) as m:
        wall, done, failed = asyncio.run(_post_all(ca_pem, token, requests, concurrency))
    if failed:
        raise RuntimeError(f"minimal client: {len(failed)} creates failed (status {sorted(set(failed))})")
    half = sorted(done)[len(done) // 2 :]
    steady = (len(half) - 1) / (half[-1] - half[0]) if len(half) > 20 and half[-1] > half[0] else None
    return {
        "vms": len(objs),
        "concurrency": concurrency,
        "wallSeconds": rnd(wall, 3),
        "createPerSecond": rnd(len(objs) / wall, 1),
        "steadyCreatePerSecond": rnd(steady, 1) if steady else None,
        "serverCpuSeconds": rnd(m.server_cpu, 3),
        "serverBusy": rnd(m.server_cpu / wall, 3) if wall else None,
        "clientCpuSeconds": rnd(m.client_cpu, 3),
    }
