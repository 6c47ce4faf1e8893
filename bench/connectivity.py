"""The ping matrix (issue 6): probe planning at 10,000 VMs, and a sampled matrix run over the serial
consoles of 500 VMs on the simulated cluster.

    uv run python -m bench.connectivity [--quick]      # or as part of: uv run python -m bench connectivity

Planning: `tasks.probeplan.plan_probes` in sampled mode (k = 8 peers per VM) for a synthetic fleet of
10,000 VMs spread over 100 nodes and 100 namespaces; the median of 5 runs, plus the time of the plan's
coverage check, whose figures must show every VM sending and receiving at least k probes and every
node pair and namespace pair covered.

Matrix: a Layer2 network with 500 VMs (10 namespaces × 50, 20 nodes) is provisioned and fanned out
with the tool (not timed), then the sampled plan for the running fleet is executed with
`tasks.connectivity.run_probes` exactly as the connectivity flow does (one console session per source
VM, at most 32 at once, `ping -c 3 -W 2 -q` per probe). Every probe must get its reply.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
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
)
from tasks.connectivity import credentials_from_secret, run_probes
from tasks.kube import Kube
from tasks.kube.resources import VMI
from tasks.probeplan import VMEndpoint, group_by_source, plan_probes
from tasks.scope import RUN_LABEL


def synthetic_fleet(vms: int, nodes: int, namespaces: int) -> list[VMEndpoint]:
    per_ns = vms // namespaces
    return [
        VMEndpoint(
            f"ns-{i // per_ns + 1}",
            f"vm-{i % per_ns + 1}",
            f"worker-{i % nodes}",
            f"10.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}",
        )
        for i in range(vms)
    ]


def planning(vms: int, nodes: int, namespaces: int, k: int = 8, repeats: int = 5) -> dict[str, Any]:
    fleet = synthetic_fleet(vms, nodes, namespaces)
    times = []
    plan = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        plan = plan_probes(fleet, mode="sampled", k=k, seed=0)
        times.append(time.perf_counter() - t0)
    assert plan is not None
    t0 = time.perf_counter()
    cov = plan.coverage()
    coverage_s = time.perf_counter() - t0
    assert cov["min_sent"] >= k and cov["min_received"] >= k, cov
    assert cov["node_pairs_covered"] == cov["node_pairs_required"], cov
    assert cov["namespace_pairs_covered"] == cov["namespace_pairs_required"], cov
    out = {
        "vms": vms,
        "nodes": nodes,
        "namespaces": namespaces,
        "k": k,
        "repeats": repeats,
        "secondsMedian": rnd(statistics.median(times), 4),
        "secondsMin": rnd(min(times), 4),
        "secondsMax": rnd(max(times), 4),
        "coverageCheckSeconds": rnd(coverage_s, 4),
        "probes": cov["probes"],
        "minSent": cov["min_sent"],
        "minReceived": cov["min_received"],
        "nodePairsCovered": f"{cov['node_pairs_covered']}/{cov['node_pairs_required']}",
        "namespacePairsCovered": f"{cov['namespace_pairs_covered']}/{cov['namespace_pairs_required']}",
    }
    print(
        f"  planning {vms} VMs (k={k}, {nodes} nodes, {namespaces} namespaces): median {out['secondsMedian']:.3f} s "
        f"of {repeats}; {cov['probes']} probes, every node and namespace pair covered",
        flush=True,
    )
    return out


def endpoints(kube: Kube, run_id: str) -> list[VMEndpoint]:
    vmis, _ = kube.list(VMI, label_selector=f"{RUN_LABEL}={run_id}")
    out = []
    for v in vmis:
        st = v.get("status") or {}
        ifaces = st.get("interfaces") or []
        if st.get("phase") == "Running" and ifaces and ifaces[0].get("ipAddress"):
            out.append(
                VMEndpoint(v["metadata"]["namespace"], v["metadata"]["name"], st["nodeName"], ifaces[0]["ipAddress"])
            )
    return out


def matrix(vms: int, max_sessions: int = 32, k: int = 8) -> dict[str, Any]:
    nodes = 20
    per_ns = min(50, vms)
    cluster = start_cluster(nodes, vms_per_node=250)
    try:
        spec = make_spec(
            "conn",
            namespaces=max(1, vms // per_ns),
            per_namespace=per_ns,
            topology="Layer2",
            cidr="10.200.0.0/16",
            qps=0,
        )
        provision_run(cluster, spec)
        kube = make_kube(cluster, qps=0)
        res = fanout(kube, spec)
        assert res.ready == spec.total_vms(), f"{res.ready}/{spec.total_vms()} VMs ready"
        eps = endpoints(kube, spec.run_id)
        assert len(eps) == spec.total_vms()
        plan = plan_probes(eps, mode="sampled", k=k, seed=0)
        groups = group_by_source(plan)
        creds = credentials_from_secret(kube, spec.namespace_names()[0], spec.credentials_secret_name())
        with metered(server_pid(cluster)) as m:
            results = run_probes(
                kube, groups, {e.key: e for e in eps}, creds, ping_count=3, ping_timeout=2, max_sessions=max_sessions
            )
    finally:
        cluster.stop()
    failed = [r for r in results if not r.passed]
    assert not failed, f"{len(failed)} of {len(results)} probes failed, e.g. {failed[:3]}"
    out = {
        "vms": len(eps),
        "nodes": nodes,
        "namespaces": len(spec.namespace_names()),
        "topology": "Layer2",
        "k": k,
        "maxSessions": max_sessions,
        "sessions": len(groups),
        "probes": len(results),
        "seconds": rnd(m.wall, 3),
        "sessionsPerSecond": rnd(len(groups) / m.wall, 1),
        "probesPerSecond": rnd(len(results) / m.wall, 1),
        "clientCpuSeconds": rnd(m.client_cpu, 2),
        "serverCpuSeconds": rnd(m.server_cpu, 2),
        "peakRssMiB": rnd(m.peak_rss_mib, 1),
        "allReplied": True,
    }
    print(
        f"  matrix {out['vms']} VMs: {out['probes']} probes from {out['sessions']} sessions in {out['seconds']:.2f} s "
        f"({out['sessionsPerSecond']} sessions/s, {out['probesPerSecond']} probes/s, {max_sessions} at once)",
        flush=True,
    )
    return out


def run(quick: bool = False) -> dict[str, Any]:
    plan_vms = 1000 if quick else 10_000
    plan_nodes, plan_ns = (20, 20) if quick else (100, 100)
    matrix_vms = 100 if quick else 500
    print(f"connectivity: planning for {plan_vms} VMs; sampled matrix over {matrix_vms} VMs' consoles", flush=True)
    load0 = load_average()
    p = planning(plan_vms, plan_nodes, plan_ns)
    mx = matrix(matrix_vms)
    return {
        "scenario": "connectivity",
        "planning": p,
        "matrix": mx,
        "loadAverage1m": {"before": load0, "after": load_average()},
        "figures": [
            figure(
                f"connectivity: plan {plan_vms} VMs (k=8, {plan_nodes} nodes, {plan_ns} ns)",
                p["secondsMedian"],
                "s",
                f"median of 5; {p['probes']} probes",
            ),
            figure(
                f"connectivity: {mx['vms']}-VM sampled matrix, sessions",
                mx["sessionsPerSecond"],
                "sessions/s",
                f"{mx['sessions']} sessions, {mx['maxSessions']} at once, {mx['seconds']} s",
            ),
            figure(
                f"connectivity: {mx['vms']}-VM sampled matrix, probes",
                mx["probesPerSecond"],
                "probes/s",
                f"{mx['probes']} probes (ping -c 3), all replied",
            ),
        ],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.connectivity", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="plan 1,000 VMs; matrix over 100 VMs")
    args = ap.parse_args(argv)
    print(json.dumps(run(args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
