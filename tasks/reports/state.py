"""``run.json``: the machine-readable state of a run, merged step by step, as one pydantic model.

Each step contributes :class:`RunParts` (its figures, its summary line, and the data it produced);
:meth:`RunState.merge` folds them in, so a churn report added later to a rollout's directory keeps the
rest. Unknown keys are kept (``extra="allow"``), so an older tool's file survives a newer tool's merge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tasks.model import Check, ChurnRow, ProbeResult, StepSummary, VMRecord
from tasks.reports.common import iso_utc, jsonable

SCHEMA_VERSION = 1


@dataclass
class RunParts:
    """What one step hands to the run directory; every part is optional.

    The data files (``records`` → inventory.csv, ``probes`` → connectivity.csv, ``churn_rows`` →
    churn.csv) replace the file when given; the rest merges into run.json.
    """

    run_id: str | None = None
    title: str | None = None
    spec_summary: Mapping[str, Any] | None = None
    step: StepSummary | None = None
    figures: Mapping[str, Any] | None = None  # under the step's name in run.json "figures"
    records: Sequence[VMRecord] | None = None
    probes: Sequence[ProbeResult] | None = None
    plan_coverage: Mapping[str, Any] | None = None
    churn_rows: Sequence[ChurnRow] | None = None
    churn_topology: str | None = None
    churn_action: str | None = None
    churn_drains: Sequence[Mapping[str, Any]] | None = None  # tasks.drain.NodeDrain.to_dict()
    churn_notes: Sequence[str] | None = None
    capacity_rows: Sequence[Mapping[str, Any]] | None = None
    capacity_summary: Mapping[str, Any] | None = None
    headroom_rows: Sequence[Mapping[str, Any]] | None = None
    checks: Sequence[Check] | None = None
    guests: Sequence[Any] | None = None  # tasks.guest.GuestView → guests.csv
    extra: dict[str, Any] = field(default_factory=dict)  # other sections, by their run.json key


class _State(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class CapacityState(_State):
    rows: list[dict[str, Any]] = Field(default_factory=list)
    summary: dict[str, Any] = Field(default_factory=dict)
    headroom: list[dict[str, Any]] | None = None


class RunState(_State):
    """Everything of a run that is not in its CSV files."""

    schema_: int = Field(SCHEMA_VERSION, alias="schema")
    run_id: str = ""
    title: str | None = None
    generated_at: str = ""
    spec: dict[str, Any] = Field(default_factory=dict)
    figures: dict[str, Any] = Field(default_factory=dict)
    steps: list[dict[str, Any]] = Field(default_factory=list)
    connectivity: dict[str, Any] | None = None
    churn: dict[str, Any] | None = None
    capacity: CapacityState | None = None
    preflight: dict[str, Any] | None = None
    derived: dict[str, Any] = Field(default_factory=dict)
    files: list[str] = Field(default_factory=list)

    @classmethod
    def load(cls, out_dir: Path) -> RunState:
        path = out_dir / "run.json"
        if path.exists():
            return cls.model_validate(orjson.loads(path.read_bytes()))
        return cls(run_id=out_dir.name)

    def merge(self, parts: RunParts) -> None:
        """Fold one step's parts in: figures per step name, steps by name, the rest by section."""
        self.schema_ = SCHEMA_VERSION
        if parts.run_id is not None:
            self.run_id = parts.run_id
        if parts.title is not None:
            self.title = parts.title
        self.generated_at = iso_utc(datetime.now(UTC).timestamp())
        if parts.spec_summary is not None:
            self.spec = jsonable(parts.spec_summary)
        if parts.step is not None:
            if parts.figures is not None:
                self.figures[parts.step.step] = jsonable(parts.figures)
            merged = {s["step"]: s for s in self.steps}
            merged[parts.step.step] = jsonable(parts.step)
            self.steps = list(merged.values())
        elif parts.figures is not None:
            self.figures.update(jsonable(parts.figures))
        if parts.plan_coverage is not None:
            self.connectivity = {**(self.connectivity or {}), "planCoverage": jsonable(parts.plan_coverage)}
        if parts.churn_topology is not None:
            self.churn = {**(self.churn or {}), "topology": parts.churn_topology}
        if parts.churn_action is not None:
            self.churn = {
                **(self.churn or {}),
                "action": parts.churn_action,
                "drains": jsonable(list(parts.churn_drains or [])),
                "notes": list(parts.churn_notes or []),
            }
        if parts.capacity_rows is not None or parts.capacity_summary is not None:
            self.capacity = CapacityState(
                rows=jsonable(list(parts.capacity_rows or [])),
                summary=jsonable(parts.capacity_summary or {}),
                headroom=jsonable(parts.headroom_rows) if parts.headroom_rows is not None else None,
            )
        if parts.checks is not None:
            self.preflight = {"checks": jsonable(list(parts.checks))}
        for key, value in parts.extra.items():
            setattr(self, key, jsonable(value))

    def dump(self) -> str:
        doc = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"
