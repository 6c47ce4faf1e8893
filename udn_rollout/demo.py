"""`udn-rollout demo`: the point of the tool in two minutes, on a fresh machine.

Starts the embedded simulated cluster, rolls out a small fleet the seed's way (Layer3) and the
recommended way (Layer2) side by side, pings every pair, live-migrates a quarter of the VMs, and
prints what happened to their addresses — then where the reports are.
"""

from __future__ import annotations

import time
from typing import Any

from simcluster import ClusterConfig, SimCluster
from tasks.spec import RolloutSpec

#: The seed's runbook (specs/seed-l3.yaml) and its Layer2 counterpart (specs/seed-l2.yaml), on their
#: own namespaces: written out here so the demo runs from any directory, an installed wheel included.
DEMO_NETWORKS: dict[str, dict[str, Any]] = {
    "Layer3": {
        "name": "udn-cluster-primary-l3",
        "topology": "Layer3",
        "subnets": [{"cidr": "192.168.0.0/16", "hostSubnet": 24}],
    },
    "Layer2": {
        "name": "udn-cluster-primary-l2",
        "topology": "Layer2",
        "subnets": [{"cidr": "10.200.0.0/16"}],
        "persistentIPs": True,
    },
}


def demo_specs(vms_per_namespace: int) -> list[RolloutSpec]:
    stamp = time.strftime("%H%M%S")
    specs = []
    for topology, network in DEMO_NETWORKS.items():
        tag = "l3" if topology == "Layer3" else "l2"
        specs.append(
            RolloutSpec.model_validate(
                {
                    "runId": f"demo-{tag}-{stamp}",
                    "network": network,
                    "namespaces": {"names": [f"demo-{tag}-a", f"demo-{tag}-b", f"demo-{tag}-c"]},
                    "vms": {"perNamespace": vms_per_namespace, "namePrefix": "rhel8-vm"},
                    "connectivity": {"mode": "auto"},
                    "churn": {"fraction": 0.25},
                }
            )
        )
    return specs


SUMMARY_HEADER = [
    "topology",
    "VMs ready",
    "guests holding their VMI address",
    "pings answered",
    "moved",
    "VMI IP changed",
    "answered after the move",
    "stale IPs",
]


def _frac(a: int, b: int) -> str:
    return f"{a}/{b}"


def summary_rows(results: list[tuple[RolloutSpec, Any]]) -> tuple[list[list[Any]], list[str]]:
    """The demo's side-by-side table, and the causes behind its numbers, from the rollouts' results."""
    rows: list[list[Any]] = []
    whys: list[str] = []
    for spec, res in results:
        topo = spec.network.topology
        fan = getattr(res, "fanout", None)
        con = getattr(res, "connectivity", None)
        chu = getattr(res, "churn", None)
        ready = _frac(fan.ready, len(fan.records)) if fan else "—"
        census = con.census if con and con.guests else None
        holding = _frac(census.holding, census.total) if census else "—"
        mesh = [r for r in con.results if r.kind == "mesh"] if con else []
        answered = _frac(sum(r.received > 0 for r in mesh), len(mesh)) if con else "—"
        moved = sum(r.node_changed for r in chu.rows) if chu else 0
        changed = sum(r.ip_changed for r in chu.rows) if chu else 0
        probed = [r for r in chu.rows if r.reachable_after] if chu else []
        after = _frac(sum(r.reachable_after == "yes" for r in probed), len(probed)) if probed else "—"
        stale = sum(r.stale_ip_hazard for r in chu.rows) if chu else 0
        rows.append([topo, ready, holding, answered, moved, changed, after, stale])
        if census and census.holding < census.total:
            whys.append(f"{topo}: {census.line(topo)}")
        if con and con.failing:
            whys.extend(f"{topo} pings: {line}" for line in con.details()[:2])
        for r in probed:
            if r.cause:
                whys.append(f"{topo} after the move ({r.namespace}/{r.vm}): {r.cause}")
                break
    return rows, whys


def run_demo(nodes: int = 4, vms_per_namespace: int = 4, reports_dir: str | None = None, profile: str = "fast") -> int:
    from tasks.kube import ClusterParams
    from tasks.outcome import StepFailed
    from tasks.reports.publish import reports_root
    from tasks.reports.terminal import table_text

    started = time.monotonic()
    specs = demo_specs(vms_per_namespace)
    with SimCluster(config=ClusterConfig(nodes=nodes, profile=profile)) as sim:
        print(f"embedded simulated cluster: {sim.url}, {nodes} nodes, {profile} timing (kubeconfig {sim.kubeconfig})")
        from flows.rollout import rollout

        cluster = ClusterParams(kubeconfig=str(sim.kubeconfig))
        results: list[tuple[RolloutSpec, Any]] = []
        failures = []
        for spec in specs:
            print(
                f"\n== {spec.network.topology}: {spec.total_vms()} VMs on {spec.network.name} "
                f"({', '.join(s.cidr for s in spec.network.subnets)}), run {spec.run_id}",
                flush=True,
            )
            try:
                results.append((spec, rollout(spec, cluster, reports_dir=reports_dir)))
            except StepFailed as e:
                failures.append(f"{spec.run_id}: {e.args[0]}")
                results.append((spec, e.result))
    print("\n== summary: what the cluster reported and what the guests saw")
    rows, whys = summary_rows(results)
    print(table_text(SUMMARY_HEADER, rows), end="")
    if whys:
        print("\nwhy:")
        for line in whys:
            print(f"  {line}")
    root = reports_root(reports_dir)
    for spec, _ in results:
        print(f"reports: {root / spec.run_id / 'summary.md'}  (heatmap: {root / spec.run_id / 'connectivity.html'})")
    print(f"demo finished in {time.monotonic() - started:.0f}s")
    unmeasured = [spec.run_id for spec, res in results if res is None or getattr(res, "connectivity", None) is None]
    for f in failures:
        print(f"finding: {f}")
    return 1 if unmeasured else 0
