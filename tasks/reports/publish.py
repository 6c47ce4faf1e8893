"""The one place a step's result becomes files, Prefect artifacts, terminal lines and an exit decision."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from tasks.artifacts import publish_markdown, publish_table
from tasks.model import StepSummary
from tasks.orchestration import say
from tasks.outcome import MAX_DETAIL_LINES, StepResult
from tasks.reports.rundir import write_run_reports

REPORTS_ROOT_ENV = "UDN_ROLLOUT_REPORTS"

S = TypeVar("S", bound=StepResult)


def reports_root(reports_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where runs write ``<run-id>/``: the given directory, else ``$UDN_ROLLOUT_REPORTS``, else ./reports."""
    return Path(reports_dir or os.environ.get(REPORTS_ROOT_ENV) or "reports")


def run_dir(run_id: str, reports_dir: str | os.PathLike[str] | None = None) -> Path:
    out = reports_root(reports_dir) / run_id
    out.mkdir(parents=True, exist_ok=True)
    return out


def report(
    spec: Any,
    result: S,
    *,
    reports_dir: str | os.PathLike[str] | None = None,
    secrets: Iterable[str] = (),
    quiet: bool = False,
) -> S:
    """Write ``result`` into the run's reports, publish its artifacts, tell the user, and raise the step's
    failure when it did not succeed (after everything was written). Returns ``result``."""
    out = run_dir(spec.run_id, reports_dir)
    parts = result.parts()
    parts.run_id = spec.run_id
    parts.spec_summary = spec.summary()
    parts.step = StepSummary(result.step, result.ok(), result.figures(), result.problems()[:50])
    parts.figures = result.figures()
    written = write_run_reports(out, parts, secrets=secrets)
    for a in result.artifacts():
        if a.table is not None:
            publish_table(a.key, a.table, a.description, secrets=secrets)
        text = a.markdown or (written[a.markdown_file].read_text() if a.markdown_file in written else "")
        if text:
            publish_markdown(a.key, text, a.description, secrets=secrets)
    if not quiet:
        say(result.headline())
        for note in result.notes:
            say(f"  {note}")
        if result.report_file and result.report_file in written:
            say(f"  report: {written[result.report_file]}")
    if not result.ok():
        details = result.details()
        for line in details[:MAX_DETAIL_LINES]:
            say(f"  {line}")
        if len(details) > MAX_DETAIL_LINES:
            say(f"  … and {len(details) - MAX_DETAIL_LINES} more (see {out})")
        raise result.failure(result.failure_message(), [f"reports: {out}"], result=result)
    return result
