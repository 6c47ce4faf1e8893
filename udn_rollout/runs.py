"""`udn-rollout runs`: the runs whose reports are under the reports root, newest first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.reports.publish import reports_root
from tasks.reports.terminal import table_text


def _status(state: dict[str, Any]) -> str:
    steps = state.get("steps") or []
    if not steps:
        return "unknown"
    failed = [s.get("step", "?") for s in steps if not s.get("ok")]
    return f"failed: {', '.join(failed)}" if failed else "ok"


def run_rows(root: Path) -> list[tuple[str, str, str, str, int | str, str, str]]:
    """(run id, last written, network, topology, VMs, status, reports path) per run, newest first."""
    rows = []
    for path in root.glob("*/run.json"):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        spec = state.get("spec") or {}
        prov = (state.get("derived") or {}).get("provisioning") or {}
        vms: int | str = prov.get("vms", spec.get("totalVMs", "—"))
        rows.append(
            (
                str(state.get("runId") or path.parent.name),
                str(state.get("generatedAt") or "")[:19].replace("T", " "),
                str(spec.get("network", "—")),
                str(spec.get("topology", "—")),
                vms,
                _status(state),
                str(path.parent),
            )
        )
    return sorted(rows, key=lambda r: r[1], reverse=True)


def print_runs(reports_dir: str | None) -> int:
    root = reports_root(reports_dir)
    rows = run_rows(root)
    if not rows:
        print(f"no runs under {root}/ (reports are written to <reports root>/<run-id>/; --reports-dir picks the root)")
        return 0
    print(table_text(["RUN", "WRITTEN (UTC)", "NETWORK", "TOPOLOGY", "VMS", "STATUS", "REPORTS"], rows), end="")
    return 0
