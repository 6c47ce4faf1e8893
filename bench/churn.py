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

Each round runs the churn step itself, in-process as the command line runs it (`tasks.migrate.run_churn`:
snapshot → choose → migrations paced by the limits in the CR, followed by one watch → snapshot → diff →
capacity; no re-probe); then (raised round) its reports through `tasks.reports.publish.report`, and
`chromium --headless --dump-dom` of churn.html, which must contain
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
from pathlib import Path
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
from tasks.kube import Kube
from tasks.kube.resources import KUBEVIRT
from tasks.migrate import migration_limits, run_churn
from tasks.reports.publish import report
from tasks.spec import ChurnSpec, RolloutSpec

NODES = 20
CHROMIUM = "/usr/bin/chromium"
DEFAULT_LIMITS = (5, 1)
RAISED_LIMITS = (50, 5)


def set_limits(kube: Kube, per_cluster: int, per_node: int) -> None:
    kvs, _ = kube.list(KUBEVIRT)
    kv = kvs[0]
    kube.patch(
        KUBEVIRT,
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


def churn_round(kube: Kube, spec: RolloutSpec, pid: int | None) -> dict[str, Any]:
    """One churn step as the command line runs it (``tasks.migrate.run_churn``, no re-probe: the bench
    measures the migrations and the diff; connectivity has its own bench)."""
    per_cluster, per_node = migration_limits(kube)
    with metered(pid) as m:
        result = run_churn(kube, spec, reprobe=False)
    rows, migrations = result.rows, result.migrations
    succeeded = sum(1 for r in migrations if r.phase == "Succeeded")
    assert succeeded == len(rows), f"{len(rows) - succeeded} of {len(rows)} migrations did not succeed"
    moved = sum(r.node_changed for r in rows)
    changed = sum(r.ip_changed for r in rows)
    if spec.network.topology == "Layer3":
        assert all(r.ip_changed for r in rows if r.node_changed), "a Layer3 VM changed node but kept its IP"
    else:
        assert changed == 0, f"{changed} Layer2 VMs changed IP"
    durations = sorted(r.duration_s for r in rows if r.duration_s is not None)
    return {
        "limits": {"parallelMigrationsPerCluster": per_cluster, "parallelOutboundMigrationsPerNode": per_node},
        "selected": len(rows),
        "succeeded": succeeded,
        "nodeChanged": moved,
        "ipChanged": changed,
        "staleIpHazards": sum(r.stale_ip_hazard for r in rows),
        "peakInFlight": result.peak_in_flight,
        "churnStepSeconds": rnd(m.wall, 3),
        "migrationsPerSecond": rnd(len(rows) / m.wall, 1),
        "migrationDurationP50Seconds": rnd(durations[len(durations) // 2], 3) if durations else None,
        "clientCpuSeconds": rnd(m.client_cpu, 2),
        "serverCpuSeconds": rnd(m.server_cpu, 2),
        "_result": result,
    }


def reports(spec: RolloutSpec, round_: dict[str, Any], out: Path) -> dict[str, Any]:
    """The churn step's reports (``tasks.reports.publish.report``: churn.csv/.md/.html, capacity.md,
    run.json); then Chromium renders churn.html."""
    result = round_["_result"]
    t0 = time.perf_counter()
    report(spec, result, reports_dir=out, quiet=True)
    report_s = time.perf_counter() - t0
    html = out / spec.run_id / "churn.html"
    files = sorted(p.name for p in html.parent.iterdir())
    assert html.exists(), f"no churn.html among {files}"
    rows = result.rows
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
        "reportFiles": files,
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
    fo = fanout(kube, spec)
    assert fo.ready == spec.total_vms()
    setup_s = time.perf_counter() - t0
    print(f"  {topology}: {fo.ready} VMs up in {setup_s:.1f} s (setup)", flush=True)
    pid = server_pid(cluster)
    # migration throughput: the downtime pings (bench/churn_actions.py measures them) stay off here
    spec = spec.model_copy(update={"churn": ChurnSpec(fraction=0.2, downtime=False)})
    set_limits(kube, *DEFAULT_LIMITS)
    default = churn_round(kube, spec, pid=pid)
    print(
        f"  {topology}: {default['selected']} migrations at limits {DEFAULT_LIMITS}: {default['churnStepSeconds']:.1f} s "
        f"({default['migrationsPerSecond']}/s, peak {default['peakInFlight']} in flight)",
        flush=True,
    )
    set_limits(kube, *RAISED_LIMITS)
    try:
        raised = churn_round(kube, spec, pid=pid)
    finally:
        set_limits(kube, *DEFAULT_LIMITS)
    print(
        f"  {topology}: {raised['selected']} migrations at limits {RAISED_LIMITS}: {raised['churnStepSeconds']:.1f} s "
        f"({raised['migrationsPerSecond']}/s, peak {raised['peakInFlight']} in flight)",
        flush=True,
    )
    rep = reports(spec, raised, out_root)
    print(
        f"  {topology}: reports {rep['reportSeconds']:.2f} s, "
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
