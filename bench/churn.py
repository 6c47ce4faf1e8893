"""Live-migration churn (issue 7): migrate 20 % of 5,000 VMs, diff before/after, write the reports,
and check that churn.html renders in headless Chromium.

    uv run python -m bench.churn [--quick] [--topologies Layer3,Layer2]   # or: uv run python -m bench churn

Per topology (Layer3 /16 with hostSubnet 22, then Layer2 /16 with persistent IPs) on one isolated
cluster of 20 nodes: provision and fan out the fleet with the tool (setup, timed apart), then two
churn rounds, each choosing a fresh 20 % of the running VMs (`tasks.churn.choose_vms`, seeded):

1. `defaultLimits`: the KubeVirt CR as a new cluster has it — parallelMigrationsPerCluster 5,
   parallelOutboundMigrationsPerNode 1 (this simulated cluster's OpenShift-like default);
2. `raisedLimits`: the bench patches the KubeVirt CR (spec.configuration.migrations) to
   parallelMigrationsPerCluster 50 and parallelOutboundMigrationsPerNode 5, as an administrator would
   for a maintenance window, and restores the defaults afterwards.

Each round runs what the churn flow runs, without Prefect: `tasks.migrate.snapshot` →
`MigrationRunner` (paced by the limits it reads from the CR, followed by one watch) → snapshot →
`tasks.churn.diff`; then (raised round) `write_run_reports` with the churn rows and the capacity
tables as the flow writes them, and `chromium --headless --dump-dom` of churn.html, which must contain
the per-VM table with one row per selected VM. Checks: every migration Succeeded; on Layer3 every VM
that changed node changed address, on Layer2 none changed address.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import (
    fanout_like_flow,
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
from tasks.churn import choose_vms, diff
from tasks.kube import Kube
from tasks.migrate import KUBEVIRT_API, MigrationRunner, migration_limits, snapshot
from tasks.model import StepSummary
from tasks.reports import churn_summary, write_run_reports
from tasks.spec import RolloutSpec

NODES = 20
CHROMIUM = "/usr/bin/chromium"
DEFAULT_LIMITS = (5, 1)
RAISED_LIMITS = (50, 5)


def set_limits(kube: Kube, per_cluster: int, per_node: int) -> None:
    kvs, _ = kube.list(*KUBEVIRT_API)
    kv = kvs[0]
    kube.patch(
        *KUBEVIRT_API,
        kv["metadata"]["name"],
        {
            "spec": {
                "configuration": {
                    "migrations": {
                        "parallelMigrationsPerCluster": per_cluster,
                        "parallelOutboundMigrationsPerNode": per_node,
                    }
                }
            }
        },
        kv["metadata"]["namespace"],
    )
    assert migration_limits(kube) == (per_cluster, per_node)


def churn_round(kube: Kube, spec: RolloutSpec, fraction: float, seed: int, pid: int | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    before = snapshot(kube, spec)
    snap_s = time.perf_counter() - t0
    keys = choose_vms(before, fraction=fraction, seed=seed)
    by_key = {(s.namespace, s.name): s for s in before}
    chosen = [by_key[k] for k in keys]
    runner = MigrationRunner(kube, spec, uuid.uuid4().hex[:8])
    with metered(pid) as m:
        migrations = runner.run(chosen, timeout=3600)
    after = snapshot(kube, spec)
    t0 = time.perf_counter()
    rows = diff(before, after, migrations, keys)
    diff_s = time.perf_counter() - t0
    succeeded = sum(1 for r in migrations if r.phase == "Succeeded")
    assert succeeded == len(keys), f"{len(keys) - succeeded} of {len(keys)} migrations did not succeed"
    moved = sum(r.node_changed for r in rows)
    changed = sum(r.ip_changed for r in rows)
    if spec.network.topology == "Layer3":
        assert all(r.ip_changed for r in rows if r.node_changed), "a Layer3 VM changed node but kept its IP"
    else:
        assert changed == 0, f"{changed} Layer2 VMs changed IP"
    durations = sorted(r.duration_s for r in rows if r.duration_s is not None)
    return {
        "limits": {
            "parallelMigrationsPerCluster": runner.per_cluster,
            "parallelOutboundMigrationsPerNode": runner.per_node,
        },
        "selected": len(keys),
        "succeeded": succeeded,
        "nodeChanged": moved,
        "ipChanged": changed,
        "staleIpHazards": sum(r.stale_ip_hazard for r in rows),
        "peakInFlight": runner.peak_in_flight,
        "migrationWallSeconds": rnd(m.wall, 3),
        "migrationsPerSecond": rnd(len(keys) / m.wall, 1),
        "migrationDurationP50Seconds": rnd(durations[len(durations) // 2], 3) if durations else None,
        "snapshotSeconds": rnd(snap_s, 3),
        "diffSeconds": rnd(diff_s, 4),
        "clientCpuSeconds": rnd(m.client_cpu, 2),
        "serverCpuSeconds": rnd(m.server_cpu, 2),
        "_rows": rows,
        "_after": after,
        "_migrations": migrations,
    }


def reports(kube: Kube, spec: RolloutSpec, rnd_: dict[str, Any], out: Path) -> dict[str, Any]:
    """The churn flow's report step: summary, capacity tables, write_run_reports; then Chromium."""
    from flows.churn import capacity_parts  # imports Prefect (not started); kept out of the timings' way
    from flows.common import spec_summary

    rows, after, migrations = rnd_["_rows"], rnd_["_after"], rnd_["_migrations"]
    t0 = time.perf_counter()
    churn_summary(rows, spec.network.topology)
    cap_rows, cap_summary = capacity_parts(kube, spec, after)
    figures = {"selected": len(rows), "succeeded": rnd_["succeeded"], "peak_in_flight": rnd_["peakInFlight"]}
    files = write_run_reports(
        out,
        run_id=spec.run_id,
        spec_summary=spec_summary(spec),
        figures={"churn": figures},
        churn_rows=rows,
        churn_topology=spec.network.topology,
        capacity_rows=cap_rows,
        capacity_summary=cap_summary,
        steps=[StepSummary("churn", all(m.phase == "Succeeded" for m in migrations), figures, [])],
    )
    report_s = time.perf_counter() - t0
    html = out / "churn.html"
    assert html.exists(), f"no churn.html among {sorted(files)}"
    t0 = time.perf_counter()
    p = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", html.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=300,
    )
    chromium_s = time.perf_counter() - t0
    dom = p.stdout
    vm_rows = dom.count("<tr data-flag=")
    has_table = 'id="vms"' in dom
    ok = p.returncode == 0 and has_table and vm_rows == len(rows)
    assert ok, f"churn.html in Chromium: rc {p.returncode}, vms table {has_table}, {vm_rows}/{len(rows)} rows"
    return {
        "reportSeconds": rnd(report_s, 3),
        "churnHtmlBytes": html.stat().st_size,
        "reportFiles": sorted(files),
        "chromiumRenderedRows": vm_rows,
        "chromiumSeconds": rnd(chromium_s, 2),
        "chromiumOk": ok,
    }


def topology_run(cluster: Any, topology: str, vms: int, index: int, out_root: Path) -> dict[str, Any]:
    spec = make_spec(
        f"churn-{topology.lower()}",
        namespaces=max(1, vms // 50),
        per_namespace=min(50, vms),
        topology=topology,
        cidr=f"10.{110 + index}.0.0/16",
        host_subnet=22,
        qps=0,
    )
    provision_run(cluster, spec)
    kube = make_kube(cluster, qps=0)
    t0 = time.perf_counter()
    fo = fanout_like_flow(kube, spec)
    assert fo.ready == spec.total_vms()
    setup_s = time.perf_counter() - t0
    print(f"  {topology}: {fo.ready} VMs up in {setup_s:.1f} s (setup)", flush=True)
    pid = server_pid(cluster)
    set_limits(kube, *DEFAULT_LIMITS)
    default = churn_round(kube, spec, 0.2, seed=1, pid=pid)
    print(
        f"  {topology}: {default['selected']} migrations at limits {DEFAULT_LIMITS}: {default['migrationWallSeconds']:.1f} s "
        f"({default['migrationsPerSecond']}/s, peak {default['peakInFlight']} in flight)",
        flush=True,
    )
    set_limits(kube, *RAISED_LIMITS)
    try:
        raised = churn_round(kube, spec, 0.2, seed=2, pid=pid)
    finally:
        set_limits(kube, *DEFAULT_LIMITS)
    print(
        f"  {topology}: {raised['selected']} migrations at limits {RAISED_LIMITS}: {raised['migrationWallSeconds']:.1f} s "
        f"({raised['migrationsPerSecond']}/s, peak {raised['peakInFlight']} in flight)",
        flush=True,
    )
    rep = reports(kube, spec, raised, out_root / spec.run_id)
    print(
        f"  {topology}: diff {raised['diffSeconds']:.3f} s, reports {rep['reportSeconds']:.2f} s, "
        f"churn.html {rep['churnHtmlBytes'] // 1024} KiB rendered by Chromium with {rep['chromiumRenderedRows']} rows "
        f"in {rep['chromiumSeconds']:.1f} s",
        flush=True,
    )
    kube.close()
    teardown_s = teardown_namespaces(cluster, spec)
    strip = lambda d: {k: v for k, v in d.items() if not k.startswith("_")}  # noqa: E731
    return {
        "vms": spec.total_vms(),
        "setupFanoutSeconds": rnd(setup_s, 2),
        "defaultLimits": strip(default),
        "raisedLimits": strip(raised),
        "reports": rep,
        "teardownSeconds": rnd(teardown_s, 2),
    }


def run(quick: bool = False, topologies: tuple[str, ...] = ("Layer3", "Layer2")) -> dict[str, Any]:
    vms = 200 if quick else 5000
    print(f"churn: 20 % of {vms} VMs migrated, {', '.join(topologies)}; {NODES} nodes", flush=True)
    load0 = load_average()
    out_root = Path(tempfile.mkdtemp(prefix="bench-churn-"))
    cluster = start_cluster(NODES, vms_per_node=400)
    results: dict[str, Any] = {"scenario": "churn", "topologies": {}}
    try:
        for i, topo in enumerate(topologies):
            results["topologies"][topo] = topology_run(cluster, topo, vms, i, out_root)
    finally:
        cluster.stop()
        shutil.rmtree(out_root, ignore_errors=True)
    figs = []
    for topo, r in results["topologies"].items():
        d, ra, rep = r["defaultLimits"], r["raisedLimits"], r["reports"]
        figs.append(
            figure(
                f"churn {topo}: {d['selected']} of {r['vms']} VMs migrated, limits 5/1",
                d["migrationWallSeconds"],
                "s",
                f"{d['migrationsPerSecond']} migrations/s; {d['ipChanged']} IPs changed",
            )
        )
        figs.append(
            figure(
                f"churn {topo}: {ra['selected']} of {r['vms']} VMs migrated, limits 50/5",
                ra["migrationWallSeconds"],
                "s",
                f"{ra['migrationsPerSecond']} migrations/s; {ra['ipChanged']} IPs changed",
            )
        )
        figs.append(
            figure(
                f"churn {topo}: diff + reports of {ra['selected']} rows",
                rnd(ra["diffSeconds"] + rep["reportSeconds"], 3),
                "s",
                f"diff {ra['diffSeconds']} s; churn.html OK in Chromium ({rep['chromiumRenderedRows']} rows)",
            )
        )
    results["figures"] = figs
    results["parameters"] = {
        "vms": vms,
        "fraction": 0.2,
        "nodes": NODES,
        "defaultLimits": DEFAULT_LIMITS,
        "raisedLimits": RAISED_LIMITS,
        "kubevirtCrPatched": True,
    }
    results["loadAverage1m"] = {"before": load0, "after": load_average()}
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.churn", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 VMs")
    ap.add_argument("--topologies", default="Layer3,Layer2")
    args = ap.parse_args(argv)
    print(json.dumps(run(args.quick, tuple(args.topologies.split(","))), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
