"""`udn-rollout demo`: the point of the tool in two minutes, on a fresh machine.

Starts the embedded simulated cluster, rolls out a small fleet the seed's way (Layer3) and the
recommended way (Layer2) side by side, pings every pair, live-migrates a quarter of the VMs, and
prints what happened to their addresses — then where the reports are.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from simcluster import ClusterConfig, SimCluster


def demo_specs(vms_per_namespace: int) -> list[object]:
    from tasks.spec import load_spec

    stamp = time.strftime("%H%M%S")
    common = [f"vms.perNamespace={vms_per_namespace}", "churn.fraction=0.25", "connectivity.mode=auto"]
    l3 = load_spec(
        "specs/seed-l3.yaml" if Path("specs/seed-l3.yaml").exists() else None,
        [*common, "namespaces.names={demo-l3-a,demo-l3-b,demo-l3-c}"],
        run_id=f"demo-l3-{stamp}",
    )
    l2 = load_spec(
        "specs/seed-l2.yaml" if Path("specs/seed-l2.yaml").exists() else None,
        [*common, "namespaces.names={demo-l2-a,demo-l2-b,demo-l2-c}"],
        run_id=f"demo-l2-{stamp}",
    )
    return [l3, l2]


def run_demo(nodes: int = 4, vms_per_namespace: int = 4, reports_dir: str | None = None, profile: str = "fast") -> int:
    from flows.common import REPORTS_ROOT_ENV, ClusterParams

    if reports_dir:
        os.environ[REPORTS_ROOT_ENV] = reports_dir
    started = time.monotonic()
    specs = demo_specs(vms_per_namespace)
    with SimCluster(config=ClusterConfig(nodes=nodes, profile=profile)) as sim:
        print(f"embedded simulated cluster: {sim.url}, {nodes} nodes, {profile} timing (kubeconfig {sim.kubeconfig})")
        print("starting Prefect (the first run on a machine takes ~20 s) ...", flush=True)
        from flows.rollout import RolloutFailed, rollout

        cluster = ClusterParams(kubeconfig=str(sim.kubeconfig))
        results = []
        failures = []
        for spec in specs:
            print(
                f"\n== {spec.network.topology}: {spec.total_vms()} VMs on {spec.network.name} "
                f"({', '.join(s.cidr for s in spec.network.subnets)}), run {spec.run_id}",
                flush=True,
            )
            try:
                results.append((spec, rollout(spec, cluster)))
            except RolloutFailed as e:
                failures.append(f"{spec.run_id}: {e}")
                results.append((spec, None))
    print("\n== summary")
    print(f"{'topology':10} {'VMs ready':>10} {'ping matrix':>22} {'migrated':>9} {'IP changed':>11} {'stale IPs':>10}")
    for spec, res in results:
        head = res.headline() if res else {}
        probes = head.get("probes", 0)
        failing = head.get("probes_failing", 0)
        verdict = f"{probes - failing}/{probes} as expected"
        print(
            f"{spec.network.topology:10} {head.get('vms_ready', 0):>4}/{head.get('vms', spec.total_vms()):<5} "
            f"{verdict:>22} {head.get('migrated', 0):>9} {head.get('ip_changed', 0):>11} "
            f"{head.get('stale_ip_hazards', 0):>10}"
        )
    print("\nLayer3 VMs take an address from the target node's subnet when they move; Layer2 VMs keep theirs.")
    root = Path(os.environ.get(REPORTS_ROOT_ENV) or "reports")
    for spec, _ in results:
        print(f"reports: {root / spec.run_id / 'summary.md'}  (heatmap: {root / spec.run_id / 'connectivity.html'})")
    print(f"demo finished in {time.monotonic() - started:.0f}s")
    for f in failures:
        print(f"problem: {f}")
    return 1 if failures else 0
