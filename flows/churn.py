"""Churn: the runbook's step 6 — live-migrate VMs and compare IP and node before and after — as a
measured report: which VMs moved, which changed address, whether an old address now belongs to
another VM, how long each migration took, and how much room each node has left."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import ClusterParams, connect, reports_dir, say, spec_summary
from tasks.artifacts import publish_markdown, publish_table
from tasks.capacity import NodeInfo, layer2_capacity, layer3_capacity
from tasks.churn import choose_vms, diff
from tasks.kube import Kube
from tasks.migrate import MigrationRunner, node_usage, snapshot
from tasks.model import ChurnRow, MigrationResult, ProbeResult, StepSummary, VMSnapshot
from tasks.reports import churn_frame, churn_summary, write_run_reports
from tasks.spec import RolloutSpec


class ChurnFailed(Exception):
    """Some migrations failed or did not finish; churn.csv says which and why."""


@dataclass
class ChurnResult:
    rows: list[ChurnRow]
    migrations: list[MigrationResult]
    summary: dict[str, object]
    reprobes: list[ProbeResult] = field(default_factory=list)
    wall_s: float = 0.0
    report_s: float = 0.0


@task(name="snapshot VMs", cache_policy=NO_CACHE)
def take_snapshot(kube: Kube, spec: RolloutSpec) -> list[VMSnapshot]:
    return snapshot(kube, spec)


@task(name="choose VMs", cache_policy=NO_CACHE)
def choose(kube: Kube, spec: RolloutSpec, before: list[VMSnapshot]) -> list[tuple[str, str]]:
    c = spec.churn
    kind, value = c.choice()
    if kind == "selector":
        from tasks.fanout import VM_API

        matched, _ = kube.list(*VM_API, label_selector=f"{value},udn-rollout.io/run={spec.run_id}")
        keys = {(m["metadata"]["namespace"], m["metadata"]["name"]) for m in matched}
        return choose_vms(before, selector_matches=keys)
    if kind == "drainNode":
        return choose_vms(before, drain_node=value)
    if kind == "count":
        return choose_vms(before, count=int(value), seed=len(before))
    return choose_vms(before, fraction=float(value), seed=len(before))


@task(name="migrate", cache_policy=NO_CACHE)
def migrate(
    kube: Kube, spec: RolloutSpec, chosen: list[VMSnapshot], churn_id: str
) -> tuple[list[MigrationResult], int]:
    runner = MigrationRunner(kube, spec, churn_id, max_parallel=spec.churn.max_parallel)
    results = runner.run(chosen, spec.churn.timeout_seconds)
    return results, runner.peak_in_flight


def capacity_parts(kube: Kube, spec: RolloutSpec, after: list[VMSnapshot]) -> tuple[list[dict], dict]:
    """Rows and summary for capacity.md: per node subnet (Layer3) or the pool (Layer2), as used now."""
    usage = node_usage(kube, spec, after)
    sub = spec.network.subnets[0]
    if spec.network.topology == "Layer3":
        nodes = [NodeInfo(name) for name in sorted(usage)]
        per_node = {name: u["vms"] for name, u in usage.items()}
        report = layer3_capacity(sub.cidr, sub.host_subnet or 24, nodes, 0, existing_vms_per_node=per_node)
        rows = report.rows()
        for row in rows:  # the subnet OVN-K actually gave the node (k8s.ovn.org/node-subnets), not just "yes"
            actual = usage.get(row["node"], {}).get("subnets") or []
            if actual:
                row["subnet"] = ", ".join(actual)
        return rows, report.summary()
    report = layer2_capacity(sub.cidr, 0, claims_held=len(after))
    return report.rows(), report.summary()


@flow(name="churn", log_prints=False)
def churn(spec: RolloutSpec, cluster: ClusterParams | None = None, reprobe: bool = True) -> ChurnResult:
    """Migrate a chosen set of the run's VMs and report IP and node churn per VM.

    Args:
        spec: The rollout spec (its churn section chooses the VMs: fraction, count, selector or drainNode).
        cluster: How to reach the cluster.
        reprobe: Ping the moved VMs afterwards: the new address must answer, the old one must not.
    """
    started = time.monotonic()
    kube = connect(cluster, spec)
    before = take_snapshot(kube, spec)
    keys = choose(kube, spec, before)
    by_key = {(s.namespace, s.name): s for s in before}
    chosen = [by_key[k] for k in keys if k in by_key]
    churn_id = uuid.uuid4().hex[:8]
    say(f"migrating {len(chosen)} of {len(before)} VMs (churn {churn_id})")
    migrations, peak = migrate(kube, spec, chosen, churn_id)
    after = take_snapshot(kube, spec)
    rows = diff(before, after, migrations, keys)
    reprobes: list[ProbeResult] = []
    if reprobe and rows:
        from flows.connectivity import reprobe_moved

        reprobes = reprobe_moved(kube, spec, rows, after)
    wall = time.monotonic() - started
    t0 = time.monotonic()
    summary = churn_summary(rows, spec.network.topology)
    cap_rows, cap_summary = capacity_parts(kube, spec, after)
    figures = {
        "selected": len(rows),
        "wall_s": round(wall, 2),
        "peak_in_flight": peak,
        "succeeded": sum(1 for m in migrations if m.phase == "Succeeded"),
    }
    out = reports_dir(spec)
    write_run_reports(
        out,
        run_id=spec.run_id,
        spec_summary=spec_summary(spec),
        figures={"churn": figures},
        churn_rows=rows,
        churn_topology=spec.network.topology,
        capacity_rows=cap_rows,
        capacity_summary=cap_summary,
        steps=[
            StepSummary(
                "churn",
                all(m.phase == "Succeeded" for m in migrations),
                figures,
                [f"{m.namespace}/{m.vm}: {m.failure_reason}" for m in migrations if m.phase != "Succeeded"],
            )
        ],
    )
    report_s = time.monotonic() - t0
    publish_table("churn", churn_frame(rows), f"Live-migration churn of run {spec.run_id}")
    publish_markdown("churn-summary", (out / "churn.md").read_text(), "Churn report")
    moved = sum(r.node_changed for r in rows)
    changed = sum(r.ip_changed for r in rows)
    say(
        f"{len(rows)} VMs selected, {figures['succeeded']} migrated, {moved} changed node, {changed} changed IP "
        f"({spec.network.topology}); stale-IP hazards: {sum(r.stale_ip_hazard for r in rows)}"
    )
    failed_probes = [p for p in reprobes if not p.passed]
    result = ChurnResult(rows, migrations, summary, reprobes, wall, report_s)
    problems = [m for m in migrations if m.phase != "Succeeded"]
    if problems or failed_probes:
        for m in problems[:10]:
            say(f"  migration of {m.namespace}/{m.vm}: {m.phase}: {m.failure_reason}")
        for p in failed_probes[:10]:
            say(f"  re-probe {p.src_namespace}/{p.src_vm} → {p.dst_ip}: {p.outcome} (expected {p.expect})")
        raise ChurnFailed(
            f"{len(problems)} migration(s) failed and {len(failed_probes)} re-probe(s) did not "
            f"match (see {out / 'churn.md'})"
        )
    return result
