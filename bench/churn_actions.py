"""Churn that administrators live through (issue 17): a rolling drain of 10 nodes × 100 VMs on each
topology, and 1,000 restarts, with the downtime of every move measured by a peer's `ping -D`.

    uv run python -m bench.churn_actions [--quick]     # or: uv run python -m bench churn-actions

One isolated simulated cluster (fast profile, 10 nodes; Layer3 guests configure their VMI's address at boot —
the `layer3GuestAddressing=static` option — so that a Layer3 guest has an address to lose). Per topology the
tool provisions and fans out 1,000 VMs (setup, timed apart), then runs the churn step as the command line
does (`tasks.migrate.run_churn`, downtime on, no re-probe): `churn.action=drain, churn.nodes=all` (every
node cordoned, the run's VMs evicted, KubeVirt's evacuation migrations within the CR's limits, uncordoned,
one node after the other), then on Layer2 `churn.action=restart` of every VM (stop/start, each node
cordoned while its VMs come back). Figures: wall time, moves, per-node drain time, downtime P50/P95/max and
moves with no reply after. Checks: every move succeeded; on Layer2 no address changed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

from bench.common import (
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
from tasks.migrate import run_churn
from tasks.spec import ChurnSpec, RolloutSpec

NODES = 10


def churn(kube: Any, spec: RolloutSpec, pid: int | None, **churn_spec: Any) -> dict[str, Any]:
    spec = spec.model_copy(update={"churn": ChurnSpec(**churn_spec)})
    with metered(pid) as m:
        result = run_churn(kube, spec, reprobe=False)
    rows = result.rows
    failed = [r for r in rows if r.migration_phase != "Succeeded"]
    assert not failed, f"{len(failed)} of {len(rows)} moves failed; first: {failed[0]}"
    if spec.network.topology == "Layer2":
        assert not any(r.ip_changed for r in rows), "a Layer2 VM changed address"
    dt = [r.downtime_ms for r in rows if r.downtime_ms is not None]
    q = statistics.quantiles(dt, n=100, method="inclusive") if len(dt) > 1 else [dt[0]] * 99 if dt else []
    drains = [d.duration_s for d in result.drains]
    return {
        "action": result.action,
        "vms": len({(r.namespace, r.vm) for r in rows}),
        "moves": len(rows),
        "seconds": rnd(m.wall, 1),
        "movesPerSecond": rnd(len(rows) / m.wall, 1),
        "ipChanged": sum(r.ip_changed for r in rows),
        "downtimeMeasured": len(dt),
        "downtimeP50Ms": rnd(q[49], 0) if q else None,
        "downtimeP95Ms": rnd(q[94], 0) if q else None,
        "downtimeMaxMs": rnd(max(dt), 0) if dt else None,
        "noReplyAfter": sum(1 for r in rows if r.downtime_ms is None and r.last_reply_before),
        "silentBefore": sum(1 for r in rows if "before the move" in r.downtime_note),
        "drainSecondsPerNode": {"p50": rnd(statistics.median(drains), 1), "max": rnd(max(drains), 1)}
        if drains
        else None,
        "peakRssMiB": rnd(m.peak_rss_mib, 0),
        "clientCpuSeconds": rnd(m.client_cpu, 1),
        "serverCpuSeconds": rnd(m.server_cpu, 1),
    }


def run(quick: bool = False) -> dict[str, Any]:
    nodes, per_node = (3, 4) if quick else (NODES, 100)
    vms = nodes * per_node
    restarts = 10 if quick else 1000  # of a separate Layer2 run with 10 % more VMs, which stay put and ping
    cluster = start_cluster(nodes, vms_per_node=250, profile="fast", options={"layer3GuestAddressing": "static"})
    out: dict[str, Any] = {"scenario": "churn-actions", "nodes": nodes, "vms": vms, "loadAverage1m": load_average()}
    pid = server_pid(cluster)
    try:
        for i, topology in enumerate(("Layer2", "Layer3")):
            spec = make_spec(
                f"acts-{topology.lower()}",
                namespaces=max(1, vms // 50),
                per_namespace=min(50, vms),
                topology=topology,
                cidr=f"10.{140 + i}.0.0/16",
                host_subnet=22,
                qps=0,
            )
            provision_run(cluster, spec)
            with make_kube(cluster) as kube:
                fo = fanout(kube, spec)
                assert fo.ready == vms, f"{fo.ready} of {vms} VMs ready"
                res = {"drain": churn(kube, spec, pid, action="drain", nodes="all", timeout_seconds=3600)}
                print(f"  {topology} drain: {json.dumps(res['drain'])}", flush=True)
            out[topology] = res
            teardown_namespaces(cluster, spec)
        fleet = restarts + max(2, restarts // 10)
        spec = make_spec("acts-restart", namespaces=max(1, fleet // 50), per_namespace=min(50, fleet),
                         topology="Layer2", cidr="10.142.0.0/16", qps=0)  # fmt: skip
        provision_run(cluster, spec)
        with make_kube(cluster) as kube:
            fo = fanout(kube, spec)
            assert fo.ready == spec.total_vms(), f"{fo.ready} of {spec.total_vms()} VMs ready"
            out["Layer2"]["restart"] = churn(kube, spec, pid, action="restart", count=restarts, timeout_seconds=3600)
            print(f"  Layer2 restart: {json.dumps(out['Layer2']['restart'])}", flush=True)
        teardown_namespaces(cluster, spec)
    finally:
        cluster.stop()
    out["loadAverage1mAfter"] = load_average()
    figures = []
    for topology in ("Layer2", "Layer3"):
        d = out[topology]["drain"]
        figures.append(
            figure(
                f"churn-actions: rolling drain of {nodes} nodes × {per_node} VMs ({topology})",
                d["seconds"],
                "s",
                f"{d['moves']} moves of {d['vms']} VMs, drain per node P50 {d['drainSecondsPerNode']['p50']} s; "
                f"downtime P50/P95/max {d['downtimeP50Ms']}/{d['downtimeP95Ms']}/{d['downtimeMaxMs']} ms over "
                f"{d['downtimeMeasured']} moves, {d['noReplyAfter']} with no reply after, {d['silentBefore']} silent "
                f"before (moved earlier); {d['ipChanged']} IPs changed",
            )
        )
    r = out["Layer2"]["restart"]
    figures.append(
        figure(
            f"churn-actions: {r['moves']} restarts (Layer2)",
            r["seconds"],
            "s",
            f"{r['movesPerSecond']} restarts/s, each node cordoned while its VMs came back; downtime P50/P95/max "
            f"{r['downtimeP50Ms']}/{r['downtimeP95Ms']}/{r['downtimeMaxMs']} ms over {r['downtimeMeasured']} restarts",
        )
    )
    out["figures"] = figures
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.churn_actions")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    res = run(a.quick)
    for f in res["figures"]:
        print(f"{f['name']}: {f['value']} {f['unit']}  ({f['note']})")
    json.dump(res, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
