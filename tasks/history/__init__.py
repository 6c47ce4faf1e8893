"""Run history (issue 17): every run's inventory, moves, downtimes and per-node capacity in one database,
so IP churn and free capacity can be followed across runs.

``ingest`` reads a run's report directory into the plain records of ``records``; ``store`` writes them
to SQLite or PostgreSQL and answers the queries; ``render`` draws ``history.html``. A flow records its
run with one call: ``record_run(reports_dir)``.
"""

from pathlib import Path

from tasks.history.ingest import find_run_dirs, read_run_dir
from tasks.history.records import (
    CapacityRow,
    HistoryError,
    HistoryUnavailable,
    HistoryURLError,
    IngestError,
    MoveRow,
    RunRecord,
    RunSummary,
    VMEvent,
    VMRow,
    summarize,
)
from tasks.history.store import (
    HistoryStore,
    open_store,
    parse_since,
    parse_vm_ref,
    record_dirs,
    record_run,
    resolve_url,
)

__all__ = [
    "CapacityRow",
    "HistoryError",
    "HistoryStore",
    "HistoryURLError",
    "HistoryUnavailable",
    "IngestError",
    "MoveRow",
    "RunRecord",
    "RunSummary",
    "VMEvent",
    "VMRow",
    "find_run_dirs",
    "open_store",
    "parse_since",
    "parse_vm_ref",
    "read_run_dir",
    "record_dirs",
    "record_run",
    "resolve_url",
    "summarize",
]


def remember(run_dir: str | Path) -> str:
    """Record a finished run in the history (the flows' last step); a database that cannot be reached
    costs a warning, never the run. Returns what to tell the user."""
    from tasks.history.records import HistoryError
    from tasks.history.store import mask_url, record_run, resolve_url

    url = resolve_url(reports_dir=Path(run_dir).parent)
    try:
        record_run(run_dir, url)
    except HistoryError as e:
        return f"warning: the run was not recorded in the history ({mask_url(url)}): {e}"
    return f"recorded in the run history ({mask_url(url)}); `udn-rollout history` shows the trend"
