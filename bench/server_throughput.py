"""How fast the simulated cluster's API server is on this machine, measured with the official client.

    uv run python -m bench.server_throughput [--objects 20000] [--threads 8] [--vms 2000] [--out FILE]

The server runs in a child process (``SimCluster(isolated=True)``) so client and server do not share
one GIL. The client is the official ``kubernetes`` package with one shared ApiClient whose urllib3
pool holds at least one connection per thread. Hot loops ask for raw responses
(``_preload_content=False``) so the figures are the server's and the wire's, not the Python client's
model deserialisation; one typed list is timed too, to show what that costs.

Phases, in order (the store keeps everything, so the last phases run against 20,000+ objects):
create ConfigMaps, create VirtualMachines, full list, paginated list, GET latency, live watch while
creating, watch replay from an old resourceVersion, and a final health check.

Results are printed as a table and written as JSON to ``bench/results/server-<yyyymmdd-hhmmss>.json``
and ``bench/results/latest-server.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes import client, config

from simcluster import SimCluster

RESULTS = Path(__file__).parent / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- measuring -----------------------------------------------------------------------------
def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process, from /proc (0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Phase:
    name: str
    count: int = 0
    unit: str = ""
    wall: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.wall if self.wall else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "unit": self.unit,
            "seconds": round(self.wall, 4),
            "perSecond": round(self.rate, 1),
            "serverCpuSeconds": round(self.server_cpu, 3),
            "clientCpuSeconds": round(self.client_cpu, 3),
            **self.extra,
        }


class Bench:
    def __init__(self, cluster: SimCluster, threads: int) -> None:
        self.cluster = cluster
        self.threads = threads
        assert cluster._proc is not None, "the benchmark needs an isolated (child process) cluster"
        self.server_pid = cluster._proc.pid
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)
        cfg.connection_pool_maxsize = max(threads, 4) + 2  # the workers plus a watcher
        self.api = client.ApiClient(cfg)
        self.core: Any = client.CoreV1Api(self.api)
        self.custom: Any = client.CustomObjectsApi(self.api)
        self.phases: list[Phase] = []

    @contextmanager
    def phase(self, name: str, unit: str) -> Iterator[Phase]:
        p = Phase(name, unit=unit)
        s0, c0, t0 = _proc_cpu(self.server_pid), _self_cpu(), time.perf_counter()
        yield p
        if not p.wall:  # a phase may set its own window (the live watch does)
            p.wall = time.perf_counter() - t0
        p.server_cpu = _proc_cpu(self.server_pid) - s0
        p.client_cpu = _self_cpu() - c0
        self.phases.append(p)
        print(f"  {name:<28} {p.count:>7} {unit:<8} {p.wall:8.2f} s  {p.rate:10.1f}/s", flush=True)

    def namespace(self, name: str) -> None:
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def resource_version(self) -> str:
        return str(self.cluster.stats()["resourceVersion"])

    # ---- phases ------------------------------------------------------------------------
    def create_many(self, name: str, n: int, make: Callable[[int], None]) -> Phase:
        latencies: list[float] = []
        lock = threading.Lock()

        def work(chunk: range) -> None:
            mine = []
            for i in chunk:
                t = time.perf_counter()
                make(i)
                mine.append(time.perf_counter() - t)
            with lock:
                latencies.extend(mine)

        chunks = [range(k, n, self.threads) for k in range(self.threads)]
        with self.phase(name, "objects") as p, ThreadPoolExecutor(self.threads) as pool:
            for f in [pool.submit(work, c) for c in chunks]:
                f.result()
            p.count = n
        p.extra.update(_percentiles(latencies, "latencyMs"))
        return p

    def create_configmaps(self, ns: str, n: int, prefix: str = "cm") -> Phase:
        data = {"payload": "x" * 200}

        def make(i: int) -> None:
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{prefix}-{i:06d}", "labels": {"bench": "yes", "shard": str(i % 10)}},
                "data": data,
            }
            self.core.create_namespaced_config_map(ns, body, _preload_content=False).release_conn()

        return self.create_many(f"create ConfigMap x{self.threads}", n, make)

    def create_vms(self, ns: str, n: int) -> Phase:
        def make(i: int) -> None:
            self.custom.create_namespaced_custom_object(
                "kubevirt.io", "v1", ns, "virtualmachines", _vm(f"vm-{i:06d}"), _preload_content=False
            ).release_conn()

        return self.create_many(f"create VirtualMachine x{self.threads}", n, make)

    def list_full(self, ns: str, expect: int, repeats: int = 3) -> tuple[Phase, Phase]:
        times: list[float] = []
        size = 0
        with self.phase("list full (raw)", "lists") as p:
            for _ in range(repeats):
                t = time.perf_counter()
                resp = self.core.list_namespaced_config_map(ns, _preload_content=False)
                body = resp.data
                times.append(time.perf_counter() - t)
                size = len(body)
                items = len(json.loads(body)["items"])
                assert items == expect, f"listed {items}, expected {expect}"
            p.count = repeats
        p.extra.update({"items": expect, "bytes": size, "secondsPerList": round(statistics.median(times), 4)})
        with self.phase("list full (typed models)", "lists") as typed:
            t = time.perf_counter()
            n = len(self.core.list_namespaced_config_map(ns).items)
            typed.count = 1
        assert n == expect
        typed.extra.update({"items": n, "secondsPerList": round(time.perf_counter() - t, 4)})
        return p, typed

    def list_paginated(self, ns: str, expect: int, limit: int = 500) -> Phase:
        with self.phase(f"list paginated limit={limit}", "items") as p:
            cont, pages, seen = None, 0, 0
            while True:
                resp = self.core.list_namespaced_config_map(ns, limit=limit, _continue=cont, _preload_content=False)
                doc = json.loads(resp.data)
                pages += 1
                seen += len(doc["items"])
                cont = doc["metadata"].get("continue")
                if not cont:
                    break
            p.count = seen
        assert seen == expect, f"paged {seen}, expected {expect}"
        p.extra.update({"pages": pages, "secondsPerPage": round(p.wall / pages, 5), "secondsPerList": round(p.wall, 4)})
        return p

    def get_latency(self, ns: str, total: int, n: int) -> Phase:
        rnd = random.Random(7)
        latencies = []
        with self.phase("get (1 thread)", "requests") as p:
            for _ in range(n):
                name = f"cm-{rnd.randrange(total):06d}"
                t = time.perf_counter()
                self.core.read_namespaced_config_map(name, ns, _preload_content=False).release_conn()
                latencies.append(time.perf_counter() - t)
            p.count = n
        p.extra.update(_percentiles(latencies, "latencyMs"))
        return p

    def watch_live(self, ns: str, n: int) -> Phase:
        """One watcher on a namespace while the threads create n ConfigMaps in it."""
        rv = self.resource_version()
        resp = self.core.list_namespaced_config_map(
            ns, watch=True, resource_version=rv, timeout_seconds=600, _preload_content=False
        )
        got: dict[str, Any] = {"events": 0, "last": 0.0}
        done = threading.Event()

        def read() -> None:
            for _ in _lines(resp, n):
                got["events"] += 1
                got["last"] = time.perf_counter()
            done.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        with self.phase("watch while creating", "events") as p:
            t0 = time.perf_counter()
            created = self.create_configmaps(ns, n, prefix="live")
            self.phases.remove(created)
            done.wait(120)
            p.count = got["events"]
            # events per second over the whole window: from the first create to the last event received
            p.wall = max(got["last"] - t0, created.wall)
        resp.release_conn()
        p.extra.update(
            {
                "created": n,
                "createPerSecond": round(created.rate, 1),
                "lagAfterLastCreateSeconds": round(max(p.wall - created.wall, 0.0), 4),
            }
        )
        assert got["events"] == n, f"watch delivered {got['events']} of {n} events"
        return p

    def watch_replay(self, ns: str, since: str, expect: int) -> Phase:
        with self.phase(f"watch replay from rv {since}", "events") as p:
            resp = self.core.list_namespaced_config_map(
                ns, watch=True, resource_version=since, timeout_seconds=600, _preload_content=False
            )
            p.count = sum(1 for _ in _lines(resp, expect))
            resp.release_conn()
        assert p.count == expect, f"replay delivered {p.count} of {expect} events"
        return p

    def delete_namespace(self, ns: str, holding: int) -> Phase:
        """Namespace deletion with everything in it: the teardown path (lifecycle controller + GC)."""
        with self.phase(f"delete namespace of {holding}", "objects") as p:
            self.core.delete_namespace(ns, _preload_content=False).release_conn()
            while True:
                try:
                    self.core.read_namespace(ns, _preload_content=False).release_conn()
                except client.ApiException as e:
                    if e.status == 404:
                        break
                    raise
                time.sleep(0.01)
            p.count = holding
        return p


def _lines(resp: Any, stop_after: int) -> Iterator[bytes]:
    """Newline-delimited watch events from a raw response, until `stop_after` of them arrived."""
    buf = b""
    seen = 0
    for chunk in resp.stream(1 << 16, decode_content=False):
        buf += chunk
        *complete, buf = buf.split(b"\n")
        for line in complete:
            if line.strip() and b'"BOOKMARK"' not in line[:40]:
                seen += 1
                yield line
                if seen >= stop_after:
                    return


def _percentiles(values: list[float], key: str) -> dict[str, Any]:
    if not values:
        return {}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {f"{key}P50": round(q[49] * 1000, 3), f"{key}P99": round(q[98] * 1000, 3)}


def _vm(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "labels": {"bench": "yes"}},
        "spec": {
            "runStrategy": "Halted",
            "template": {
                "spec": {
                    "domain": {
                        "resources": {"requests": {"memory": "1Gi"}},
                        "devices": {"interfaces": [{"name": "primary", "binding": {"name": "l2bridge"}}]},
                    },
                    "networks": [{"name": "primary", "pod": {}}],
                }
            },
        },
    }


# ---- report --------------------------------------------------------------------------------
def table(phases: list[Phase]) -> str:
    head = f"{'phase':<30} {'count':>7} {'unit':<8} {'seconds':>8} {'per s':>9} {'srv cpu':>8} {'cli cpu':>8}  notes"
    lines = [head, "-" * len(head)]
    for p in phases:
        notes = []
        for k in ("secondsPerList", "pages", "latencyMsP50", "latencyMsP99", "lagAfterLastCreateSeconds", "bytes"):
            if k in p.extra:
                notes.append(f"{k}={p.extra[k]}")
        lines.append(
            f"{p.name:<30} {p.count:>7} {p.unit:<8} {p.wall:>8.2f} {p.rate:>9.1f} "
            f"{p.server_cpu:>7.1f}s {p.client_cpu:>7.1f}s  {' '.join(notes)}"
        )
    return "\n".join(lines)


def run(objects: int, threads: int, vms: int, gets: int, live: int) -> dict[str, Any]:
    started = dt.datetime.now()
    load_before = os.getloadavg()
    print(f"starting an isolated simulated cluster; {objects} ConfigMaps, {vms} VMs, {threads} threads", flush=True)
    with SimCluster(nodes=3, isolated=True) as cluster:
        b = Bench(cluster, threads)
        b.namespace("bench-cm")
        b.namespace("bench-vm")
        b.namespace("bench-watch")
        rv_before = b.resource_version()
        b.create_configmaps("bench-cm", objects)
        b.create_vms("bench-vm", vms)
        b.list_full("bench-cm", objects)
        b.list_paginated("bench-cm", objects)
        b.get_latency("bench-cm", objects, gets)
        b.watch_live("bench-watch", live)
        b.watch_replay("bench-cm", rv_before, objects)
        version = client.VersionApi(b.api).get_code()
        # still serving after all that: one more list and get answer correctly
        assert len(b.core.list_namespaced_config_map("bench-cm", limit=1).items) == 1
        b.core.read_namespaced_config_map("cm-000000", "bench-cm")
        stats = cluster.stats()
        b.delete_namespace("bench-cm", objects)
        total = sum(stats["objects"].values())
    results = {
        "benchmark": "server_throughput",
        "started": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "kubernetesClient": kubernetes.__version__,
            # other work on the machine skews the wall-clock figures; CPU seconds are steadier
            "loadAverage1mBefore": round(load_before[0], 2),
            "loadAverage1mAfter": round(os.getloadavg()[0], 2),
        },
        "parameters": {"objects": objects, "threads": threads, "vms": vms, "gets": gets, "liveWatch": live},
        "server": {
            "version": version.git_version,
            "objectsHeld": total,
            "resourceVersion": stats["resourceVersion"],
            "requestsServed": stats["requestsServed"],
            "stillServing": True,
        },
        "phases": {p.name: p.as_dict() for p in b.phases},
    }
    print()
    print(table(b.phases))
    print(
        f"\nload average (1 min) before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"server held {total} objects at rv {stats['resourceVersion']} after {stats['requestsServed']} requests")
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.server_throughput", description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=20_000, help="ConfigMaps to create, list and replay (20000)")
    ap.add_argument("--threads", type=int, default=8, help="client threads creating objects (8)")
    ap.add_argument("--vms", type=int, default=2_000, help="VirtualMachines to create (2000)")
    ap.add_argument("--gets", type=int, default=2_000, help="single GETs for the latency figures (2000)")
    ap.add_argument("--live", type=int, default=5_000, help="objects created while one watcher listens (5000)")
    ap.add_argument("--out", type=Path, help="JSON output file (default: bench/results/server-<timestamp>.json)")
    args = ap.parse_args(argv)
    results = run(args.objects, args.threads, args.vms, args.gets, args.live)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out: Path = args.out or RESULTS / f"server-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    out.write_text(text)
    if args.out is None:
        (RESULTS / "latest-server.json").write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
