"""The rollout's own result: the chain's outcome under one run id, step by step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tasks.connectivity import ConnectivityResult
from tasks.fanout import FanoutResult
from tasks.migrate import ChurnResult
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
        return out

    def headline(self) -> str:
        return f"rollout {self.run_id} finished in {self.wall_s:.0f}s; reports in {self.reports}/summary.md"

    def figures(self) -> dict[str, Any]:
        return self.headline_figures()

    def problems(self) -> list[str]:
        return list(self.failed_steps)

    def failure_message(self) -> str:
        return "; ".join(self.failed_steps)

    def parts(self) -> RunParts:
        return RunParts(title=f"Rollout {self.run_id}")
