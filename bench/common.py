"""What the scenario benchmarks share: measuring (wall, CPU, peak RSS), building a run's spec, and
running the tool's own step functions (``tasks.provision.run_provision``, ``tasks.fanout.run_fanout``,
``tasks.migrate.run_churn``) in-process, exactly as the command line runs them without a Prefect API.

Everything talks to the simulated cluster through its kubeconfig with the tool's own `tasks.kube.Kube`;
only the measuring reads this process's and the server process's counters.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simcluster import ClusterConfig, SimCluster
from tasks.fanout import FanoutResult, run_fanout
from tasks.kube import ClusterTarget, Kube, KubeError
from tasks.kube.resources import CUDN, NAMESPACE
from tasks.orchestration import collect_between_steps, tune_gc
from tasks.provision import run_provision
from tasks.spec import RolloutSpec

CLK_TCK = os.sysconf("SC_CLK_TCK")

# The bench process stands in for the tool's process, so it runs with the tool's process tuning.
tune_gc()


# ---- measuring ----------------------------------------------------------------------------------
def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process used so far, from /proc (0 where it is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def children_cpu() -> float:
    """CPU of children waited for (kubectl runs): RUSAGE_CHILDREN."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _status_kib(field_name: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) so the next reading is the peak of one scenario.

    Linux ≥ 4.0 resets it when "5" is written to /proc/self/clear_refs; False where that is refused.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak RSS since the last reset (VmHWM), else since the process started (ru_maxrss)."""
    kib = _status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024


def rss_mib() -> float:
    return _status_kib("VmRSS") / 1024


@dataclass
class Meter:
    """Wall time, this process's CPU, the server process's CPU and this process's peak RSS over a window."""

    server_pid: int | None = None
    wall: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    peak_rss_mib: float = 0.0
    _t0: float = 0.0
    _c0: float = 0.0
    _s0: float = 0.0

    def start(self) -> Meter:
        collect_between_steps()  # as the flows do when a step starts: the previous scenario's garbage goes
        reset_peak_rss()
        self._t0, self._c0 = time.perf_counter(), self_cpu()
        self._s0 = proc_cpu(self.server_pid) if self.server_pid else 0.0
        return self

    def stop(self) -> Meter:
        self.wall = time.perf_counter() - self._t0
        self.client_cpu = self_cpu() - self._c0
        self.server_cpu = (proc_cpu(self.server_pid) - self._s0) if self.server_pid else 0.0
        self.peak_rss_mib = peak_rss_mib()
        return self


@contextlib.contextmanager
def metered(server_pid: int | None) -> Iterator[Meter]:
    m = Meter(server_pid).start()
    try:
        yield m
    finally:
        m.stop()


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


# ---- the cluster and a run ----------------------------------------------------------------------
def start_cluster(nodes: int, vms_per_node: int = 250, profile: str = "fast", **kw: Any) -> SimCluster:
    """An isolated (child process) simulated cluster: the bench's client does not share its GIL."""
    cfg = ClusterConfig(nodes=nodes, vms_per_node=vms_per_node, profile=profile, seed=7, **kw)
    return SimCluster(config=cfg, isolated=True).start()


def server_pid(cluster: SimCluster) -> int | None:
    return cluster._proc.pid if cluster._proc is not None else None


def make_kube(cluster: SimCluster, *, qps: float = 0, burst: int = 100, max_in_flight: int = 64) -> Kube:
    """The tool's API client for the cluster (qps 0 = unlimited)."""
    return Kube(ClusterTarget(kubeconfig=str(cluster.kubeconfig)), qps=qps, burst=burst, max_in_flight=max_in_flight)


def make_spec(
    run_id: str,
    *,
    namespaces: int,
    per_namespace: int,
    topology: str = "Layer3",
    cidr: str = "10.100.0.0/16",
    host_subnet: int = 24,
    qps: float = 50,
    burst: int = 100,
    max_in_flight: int = 64,
    ready_timeout: int = 1800,
) -> RolloutSpec:
    """A rollout spec as a user writes it (validated by the same model), namespaces `<runId>-<i>`."""
    subnet: dict[str, Any] = {"cidr": cidr}
    network: dict[str, Any] = {"name": f"udn-{run_id}", "topology": topology, "subnets": [subnet]}
    if topology == "Layer3":
        subnet["hostSubnet"] = host_subnet
    else:
        network["persistentIPs"] = True
    return RolloutSpec.model_validate(
        {
            "runId": run_id,
            "network": network,
            "namespaces": {"prefix": run_id, "count": namespaces},
            "vms": {"perNamespace": per_namespace, "namePrefix": "vm"},
            "api": {"qps": qps if qps > 0 else 10_000, "burst": burst, "maxInFlight": max_in_flight},
            "fanout": {"readyTimeoutSeconds": ready_timeout},
        }
    )


def provision_run(cluster: SimCluster, spec: RolloutSpec) -> float:
    """Namespaces + credentials + CUDN, waited until every namespace has its NAD (not timed by callers)."""
    with make_kube(cluster) as kube:
        t0 = time.perf_counter()
        run_provision(kube, spec, network_timeout=300)
        return time.perf_counter() - t0


def fanout(kube: Kube, spec: RolloutSpec) -> FanoutResult:
    """The fan-out step itself (``tasks.fanout.run_fanout``), in-process as the command line runs it
    without a Prefect API: the same batches, worker counts and readiness watch."""
    return run_fanout(kube, spec)


def teardown_namespaces(cluster: SimCluster, spec: RolloutSpec, timeout: float = 900) -> float:
    """Delete the run's namespaces (and its CUDN) and wait until they are gone; returns the seconds."""
    t0 = time.perf_counter()
    with make_kube(cluster) as kube:
        names = spec.namespace_names()
        for ns in names:
            with contextlib.suppress(KubeError):
                kube.delete(NAMESPACE, ns)
        deadline = time.monotonic() + timeout
        left = set(names)
        while left and time.monotonic() < deadline:
            items, _ = kube.list(NAMESPACE, label_selector=spec.scope().selector)
            left = {i["metadata"]["name"] for i in items}
            if left:
                time.sleep(0.2)
        with contextlib.suppress(KubeError):
            kube.delete(CUDN, spec.network.name)
    return time.perf_counter() - t0


def rnd(x: float, nd: int = 2) -> float:
    return round(float(x), nd)


def figure(name: str, value: Any, unit: str = "", note: str = "") -> dict[str, Any]:
    """One row of the summary table."""
    return {"name": name, "value": value, "unit": unit, "note": note}


def background(fn: Any, *args: Any) -> threading.Thread:
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t
