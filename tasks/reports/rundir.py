"""A run's report directory, ``reports/<run-id>/``: data files first, then every view rendered from them.

Data files are the source of truth: ``inventory.csv`` (a row per VM), ``connectivity.csv`` (a row per
probe), ``churn.csv`` (a row per moved VM) and ``run.json`` (everything else). :func:`write_run_reports`
writes a step's parts, then renders every Markdown/HTML view *from the files*, exactly as
:func:`rerender` (``udn-rollout report``) does, so re-rendering a run gives the same bytes. Secrets
never reach a file: every text is checked against the ``secrets`` given before it is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.model import Check
from tasks.reports.capacity import capacity_markdown, preflight_markdown
from tasks.reports.churn import churn_frame, churn_html, churn_markdown, churn_summary, read_churn_csv
from tasks.reports.common import flatten, frame_csv, render, write_text
from tasks.reports.connectivity import (
    analyse,
    connectivity_html_text,
    connectivity_md_text,
    probes_frame,
    read_probes_csv,
)
from tasks.reports.provisioning import (
    QUANTILE_COLUMNS,
    latency_quantiles,
    provisioning_markdown,
    read_inventory_csv,
    write_inventory_csv,
)
from tasks.reports.state import RunParts, RunState

if TYPE_CHECKING:
    pass

FILE_DESCRIPTIONS = {
    "summary.md": "this page",
    "run.json": "every figure, machine-readable",
    "preflight.md": "checks made before any change",
    "capacity.md": "per-node subnet use and headroom",
    "provisioning.md": "fan-out figures, start-up latencies, VMs not ready",
    "inventory.csv": "one row per VM: node, IP, phase, times",
    "connectivity.md": "ping matrix verdict, failing pairs, isolation",
    "connectivity.html": "heatmaps by namespace and node (open in a browser)",
    "connectivity.csv": "one row per probe",
    "guests.csv": "one row per VM: its VMI address and what its guest holds",
    "churn.md": "before/after and downtime per move, drains per node, summary",
    "churn.html": "the same, highlighted, with charts by node (open in a browser)",
    "churn.csv": "one row per move",
}
_FILE_ORDER = list(FILE_DESCRIPTIONS)


def write_run_reports(out_dir: Path | str, parts: RunParts, *, secrets: Iterable[str] = ()) -> dict[str, Path]:
    """Write one step's parts into ``out_dir``, then re-render every report from the files.

    Returns every report file now in ``out_dir`` by name. Raises ``SecretLeakError`` before writing a
    file that would contain one of ``secrets``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    secrets = [s for s in secrets if s]
    state = RunState.load(out)
    if not state.run_id:
        state.run_id = out.name
    state.merge(parts)
    if parts.records is not None:
        write_inventory_csv(parts.records, out / "inventory.csv", secrets)
    if parts.probes is not None:
        write_text(out / "connectivity.csv", frame_csv(probes_frame(parts.probes)), secrets)
    if parts.churn_rows is not None:
        write_text(out / "churn.csv", frame_csv(churn_frame(parts.churn_rows)), secrets)
    if parts.guests is not None:
        import pandas as pd

        write_text(out / "guests.csv", frame_csv(pd.DataFrame([g.to_dict() for g in parts.guests])), secrets)
    return _render_run(out, state, secrets)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    if not path.exists():
        return []
    rows: list[dict[str, Any]] = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict(orient="records")
    return rows


def rerender(out_dir: Path | str, *, secrets: Iterable[str] = ()) -> dict[str, Path]:
    """Rebuild every Markdown/HTML report of a run from its ``run.json`` and CSV files (idempotent)."""
    out = Path(out_dir)
    if not (out / "run.json").exists():
        raise FileNotFoundError(f"{out / 'run.json'} not found: is {out} a run's report directory?")
    return _render_run(out, RunState.load(out), [s for s in secrets if s])


def _render_run(out: Path, state: RunState, secrets: Sequence[str]) -> dict[str, Path]:
    spec = state.spec
    derived: dict[str, Any] = {}
    if (out / "inventory.csv").exists():
        records = read_inventory_csv(out / "inventory.csv")
        q = latency_quantiles(records)
        problems = [r for r in records if not r.ready]
        fan = dict(state.figures.get("fanout") or {})
        write_text(out / "provisioning.md", provisioning_markdown(spec, records, q, problems, fan), secrets)
        derived["provisioning"] = {
            "vms": len(records),
            "ready": sum(r.ready for r in records),
            "notReady": len(problems),
            "latencyMs": {m: {c: row[c] for c in QUANTILE_COLUMNS} for m, row in q.iterrows()},
        }
    if (out / "connectivity.csv").exists():
        probes = read_probes_csv(out / "connectivity.csv")
        cov = (state.connectivity or {}).get("planCoverage")
        title = f"Connectivity — {state.run_id}".rstrip(" —")
        analysis = analyse(probes)
        guests = _read_rows(out / "guests.csv")
        write_text(out / "connectivity.md", connectivity_md_text(analysis, cov, title, guests), secrets)
        write_text(out / "connectivity.html", connectivity_html_text(analysis, cov, title, guests), secrets)
        derived["connectivity"] = analysis.summary
    if (out / "churn.csv").exists():
        rows = read_churn_csv(out / "churn.csv")
        churn = state.churn or {}
        topo = churn.get("topology") or spec.get("topology") or ""
        summary = churn_summary(rows, topo, drains=churn.get("drains") or [], notes=churn.get("notes") or [])
        write_text(out / "churn.md", churn_markdown(rows, summary, topo), secrets)
        write_text(out / "churn.html", churn_html(rows, summary, topo), secrets)
        derived["churn"] = summary
    if state.capacity is not None:
        cap = state.capacity
        write_text(out / "capacity.md", capacity_markdown(cap.rows, cap.summary, cap.headroom), secrets)
    if state.preflight:
        checks = [Check(**c) for c in state.preflight.get("checks", [])]
        write_text(out / "preflight.md", preflight_markdown(checks), secrets)
        derived["preflight"] = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "fail")}

    state.derived = derived
    names = {p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")} | {"summary.md", "run.json"}
    state.files = sorted(names, key=lambda n: (_FILE_ORDER.index(n) if n in _FILE_ORDER else len(_FILE_ORDER), n))
    summary_md = render(
        "summary.md.j2",
        title=state.title or f"udn-rollout run {state.run_id}",
        state=state.model_dump(mode="json", by_alias=True),
        spec=flatten(spec),
        steps=state.steps,
        derived=derived,
        links=[(n, FILE_DESCRIPTIONS.get(n, "")) for n in state.files if n != "summary.md"],
    )
    write_text(out / "summary.md", summary_md, secrets)
    write_text(out / "run.json", state.dump(), secrets)
    return {n: out / n for n in state.files}
