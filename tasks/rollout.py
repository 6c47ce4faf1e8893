"""The rollout's own result: the chain's outcome under one run id, step by step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from tasks.bound import Bound, kubevirt_rates, rollout_bound
from tasks.connectivity import ConnectivityResult
from tasks.fanout import FanoutResult
from tasks.kube import Kube, KubeError
from tasks.kube.resources import KUBEVIRT, NODE
from tasks.migrate import ChurnResult, migration_limits
from tasks.outcome import RolloutFailed, StepFailed, StepResult
from tasks.reports.state import RunParts

R = TypeVar("R", bound=StepResult)


@dataclass
class RolloutResult(StepResult):
    step = "rollout"
    failure = RolloutFailed
    run_id: str = ""
    reports: str = ""
    fanout: FanoutResult | None = None
    connectivity: ConnectivityResult | None = None
    churn: ChurnResult | None = None
    failed_steps: list[str] = field(default_factory=list)  # "step: its one-line cause"
    bound: Bound | None = None  # what this cluster allows at best (tasks.bound)

    def keep_going(self, call: Callable[[], R]) -> R | None:
        """Run a step after provisioning; its failure is recorded and the chain goes on."""
        try:
            return call()
        except StepFailed as e:
            self.failed_steps.append(str(e.args[0]))
            result = e.result
            return result  # type: ignore[return-value]

    def ok(self) -> bool:
        return not self.failed_steps

    def headline_figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"runId": self.run_id, "wall_s": round(self.wall_s, 1)}
        if self.fanout:
            out["vms_ready"] = self.fanout.ready
            out["vms"] = len(self.fanout.records)
        if self.connectivity:
            out["probes"] = len(self.connectivity.results)
            out["probes_failing"] = len(self.connectivity.failing)
        if self.churn:
            rows = self.churn.rows
            out["migrated"] = sum(r.node_changed for r in rows)
            out["ip_changed"] = sum(r.ip_changed for r in rows)
            out["stale_ip_hazards"] = sum(r.stale_ip_hazard for r in rows)
        if self.bound is not None and not self.bound.applies:
            out["bound"] = self.bound.to_dict()
        elif self.bound is not None and self.bound.total_s > 0:
            out["cluster_bound_s"] = round(self.bound.total_s, 1)
            out["over_bound"] = round(self.wall_s / self.bound.total_s, 2)
            out["bound"] = self.bound.to_dict()
        return out

    def headline(self) -> str:
        head = f"rollout {self.run_id} finished in {self.wall_s:.0f}s; reports in {self.reports}/summary.md"
        b = self.bound
        if b is not None and b.applies and b.total_s >= 5:  # a cluster that starts VMs at once has no bound to show
            head += (
                f"\nthe cluster's bound for this rollout: {b.total_s:.0f}s (VMs up {b.fanout_s:.0f}s, pings "
                f"{b.probes_s:.0f}s, churn {b.churn_s:.0f}s): this run took {self.wall_s / b.total_s:.2f}× that"
            )
        return head

    def figures(self) -> dict[str, Any]:
        return self.headline_figures()

    def problems(self) -> list[str]:
        return list(self.failed_steps)

    def failure_message(self) -> str:
        return "; ".join(self.failed_steps)

    def parts(self) -> RunParts:
        return RunParts(title=f"Rollout {self.run_id}")


def cluster_bound(kube: Kube, result: RolloutResult, ping_count: int, ping_interval: float = 1.0) -> Bound | None:
    """The rollout's lower bound on this cluster (:mod:`tasks.bound`), from the KubeVirt CR and what the
    run's steps observed; None without a fan-out to learn the start latency from."""
    fan = result.fanout
    if fan is None:
        return None
    latencies = [r.ready_at - r.created for r in fan.records if r.ready_at and r.created and not r.adopted]
    if not latencies:
        return None
    try:
        kvs, _ = kube.list(KUBEVIRT)
        nodes, _ = kube.list(NODE)
        per_cluster, per_node = migration_limits(kube)
    except KubeError:  # a figure for the report, not worth failing a finished rollout over
        return None
    controller_qps, handler_qps = kubevirt_rates(kvs[0] if kvs else None)
    probes: dict[str, int] = {}
    for p in result.connectivity.results if result.connectivity else []:
        if not p.transmitted:  # nothing left the source (no address, console error): no pacing to wait for
            continue
        key = f"{p.src_namespace}/{p.src_vm}"
        probes[key] = probes.get(key, 0) + 1
    moves: dict[str, list[float]] = {}
    for r in result.churn.rows if result.churn else []:
        if r.migration_phase == "Succeeded" and r.node_changed and r.duration_s:
            moves.setdefault(r.node_before, []).append(r.duration_s)
    bound = rollout_bound(
        vms=len(fan.records),
        nodes=len(nodes),
        fastest_start_s=min(latencies),
        controller_qps=controller_qps,
        handler_qps=handler_qps,
        probes_per_source=probes,
        ping_count=ping_count,
        ping_interval=ping_interval,
        migrations_per_source_node=moves,
        per_cluster=per_cluster,
        per_node=per_node,
    )
    created = [r.created for r in fan.records if r.created and not r.adopted]
    ready = [r.ready_at for r in fan.records if r.ready_at and not r.adopted]
    span = max(ready) - min(created) if created and ready else 0.0
    if span and span < 0.95 * bound.fanout_s:  # faster than the KubeVirt CR's limits allow: not enforced here
        note = (
            f"VMs came up in {span:.0f}s, faster than the {bound.fanout_s:.0f}s the KubeVirt CR's client limits "
            "allow: this cluster does not enforce them (the simulated cluster's fast profile does not), so "
            "there is no bound to read the run against"
        )
        bound = replace(bound, applies=False, notes=(*bound.notes, note))
    return bound
