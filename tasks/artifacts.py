"""Publish report tables, Markdown and progress as Prefect artifacts, so the UI shows them.

Thin on purpose: the tables come from ``tasks.reports``. Prefect is imported inside the functions
that need it (importing it costs about two seconds, which ``render`` and ``--help`` must not pay), and
outside a flow or task run every function is a no-op, so the same step code runs from plain tests
and scripts. Keys are checked here, before Prefect sees them, whether or not a run is active, so a bad
key fails in the first test instead of in production.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from tasks.reports.common import jsonable

__all__ = [
    "ProgressHandle",
    "in_prefect_run",
    "progress_artifact",
    "publish_markdown",
    "publish_table",
    "table_records",
    "validate_key",
]

_KEY = re.compile(r"[a-z0-9-]+")  # what Prefect accepts, minus the empty key


def validate_key(key: str) -> str:
    """Return ``key`` if Prefect accepts it as an artifact key; raise ValueError naming it otherwise."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        suggestion = re.sub(r"[^a-z0-9]+", "-", str(key).lower()).strip("-") or "report"
        raise ValueError(
            f"invalid Prefect artifact key {key!r}: use only lowercase letters, digits and dashes, e.g. {suggestion!r}"
        )
    return key


def in_prefect_run() -> bool:
    """True inside a Prefect flow or task run. Never imports Prefect when nothing has imported it yet
    (then no run can be active), and never raises."""
    if "prefect" not in sys.modules:
        return False
    try:
        from prefect.context import get_run_context

        get_run_context()
    except Exception:
        return False
    return True


def _prefect_artifacts() -> Any:
    import prefect.artifacts

    return prefect.artifacts


def table_records(frame_or_records: Any) -> list[dict[str, Any]]:
    """Rows for ``create_table_artifact``: a DataFrame (a named index becomes the first column),
    dataclass records (``to_dict()`` when they have one) or mappings, each converted to plain JSON values."""
    rows: Iterable[Any]
    if hasattr(frame_or_records, "to_dict") and hasattr(frame_or_records, "columns"):
        frame = frame_or_records
        if any(n is not None for n in frame.index.names):  # a named index (metric, source node) is a column
            frame = frame.reset_index()
        rows = frame.to_dict(orient="records")
    else:
        rows = frame_or_records
    out: list[dict[str, Any]] = []
    for r in rows:
        if hasattr(r, "to_dict") and callable(r.to_dict):
            r = r.to_dict()
        elif dataclasses.is_dataclass(r) and not isinstance(r, type):
            r = dataclasses.asdict(r)
        out.append({str(k): jsonable(v) for k, v in dict(r).items()})
    return out


def _scrub(text: str, secrets: Iterable[str]) -> None:
    for s in secrets:
        if s and s in text:
            raise ValueError("refusing to publish an artifact that contains a secret value")


def publish_table(
    key: str, frame_or_records: Any, description: str | None = None, *, secrets: Iterable[str] = ()
) -> UUID | None:
    """A table artifact from a DataFrame or records; None (nothing sent) outside a Prefect run."""
    validate_key(key)
    if not in_prefect_run():
        return None
    rows = table_records(frame_or_records)
    if secrets:
        _scrub(repr(rows), secrets)
    return _prefect_artifacts().create_table_artifact(table=rows, key=key, description=description)


def publish_markdown(key: str, md: str, description: str | None = None, *, secrets: Iterable[str] = ()) -> UUID | None:
    """A Markdown artifact; None (nothing sent) outside a Prefect run."""
    validate_key(key)
    if not in_prefect_run():
        return None
    _scrub(md, secrets)
    return _prefect_artifacts().create_markdown_artifact(markdown=md, key=key, description=description)


class ProgressHandle:
    """A progress artifact to move forward with ``update(pct)``.

    Inert when created outside a Prefect run (``artifact_id`` is None; ``update`` only records the
    value), so callers never branch. Updates are sent only when the value has moved by at least
    ``step`` percentage points since the last one sent, or reaches 100, so a loop over ten thousand
    VMs makes about a hundred API calls, not ten thousand.
    """

    def __init__(self, key: str, artifact_id: UUID | None, description: str | None, step: float = 1.0) -> None:
        self.key = key
        self.artifact_id = artifact_id
        self.description = description
        self.step = step
        self.value = 0.0
        self._sent = 0.0

    @property
    def active(self) -> bool:
        return self.artifact_id is not None

    def update(self, pct: float, description: str | None = None) -> UUID | None:
        pct = 0.0 if pct is None or math.isnan(pct) else min(100.0, max(0.0, float(pct)))
        self.value = pct
        if self.artifact_id is None:
            return None
        if pct - self._sent < self.step and not (pct >= 100.0 > self._sent) and description is None:
            return None
        self._sent = pct
        return _prefect_artifacts().update_progress_artifact(
            artifact_id=self.artifact_id, progress=pct, description=description
        )


def progress_artifact(key: str, description: str | None = None, *, step: float = 1.0) -> ProgressHandle:
    """A progress artifact at 0 %; inert outside a Prefect run (see ``ProgressHandle``)."""
    validate_key(key)
    artifact_id = None
    if in_prefect_run():
        artifact_id = _prefect_artifacts().create_progress_artifact(progress=0.0, key=key, description=description)
    return ProgressHandle(key, artifact_id, description, step)
