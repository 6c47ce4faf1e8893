"""Report tables and files of a run: pandas builds the tables, Jinja2 renders Markdown and HTML.

Pure functions over the plain records of ``tasks.model`` (no cluster, no Prefect). A run's reports live
in ``reports/<run-id>/``:

* data files, the source of truth: ``inventory.csv`` (a row per VM), ``connectivity.csv`` (a row per
  probe), ``churn.csv`` (a row per migrated VM) and ``run.json`` (everything else, machine-readable);
* views rendered from them: ``provisioning.md``, ``connectivity.md``/``.html`` (heatmaps),
  ``churn.md``/``.html``, ``capacity.md``, ``preflight.md`` and ``summary.md`` linking every file.

``write_run_reports`` writes the data files, then renders the views *from the files* exactly as
``rerender`` (the ``udn-rollout report`` command) does, so re-rendering a run gives the same bytes.
Secrets never reach a file: every text is checked against the ``secrets`` given before it is written.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import shutil
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import jinja2
import numpy as np
import pandas as pd

from tasks.model import Check, ChurnRow, ProbeResult, StepSummary, VMRecord

__all__ = [
    "INVENTORY_COLUMNS",
    "LATENCY_METRICS",
    "QUANTILE_COLUMNS",
    "TEMPLATES_DIR",
    "SecretLeakError",
    "capacity_markdown",
    "checks_table_text",
    "churn_frame",
    "churn_html",
    "churn_markdown",
    "churn_summary",
    "connectivity_html",
    "connectivity_markdown",
    "connectivity_summary",
    "failing_pairs",
    "inventory_frame",
    "iso_utc",
    "isolation_verdicts",
    "latency_quantiles",
    "loss_colour",
    "matrix",
    "parse_iso_utc",
    "preflight_markdown",
    "probes_frame",
    "provisioning_markdown",
    "read_churn_csv",
    "read_inventory_csv",
    "read_probes_csv",
    "rerender",
    "write_inventory_csv",
    "write_run_reports",
]

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "reports" / "templates"

#: kube-burner vmiLatency names → the VMRecord timestamp that ends the interval (all start at `created`).
LATENCY_METRICS: tuple[tuple[str, str], ...] = (
    ("VMIScheduled", "scheduled"),
    ("VMIRunning", "running"),
    ("VMReady", "ready_at"),
)
QUANTILE_COLUMNS = ["P50", "P95", "P99", "max", "avg", "count"]

INVENTORY_COLUMNS = [
    "namespace",
    "name",
    "node",
    "ip",
    "phase",
    "ready",
    "reason",
    "created",
    "scheduled",
    "running",
    "ready_at",
    "scheduled_ms",
    "running_ms",
    "ready_ms",
    "adopted",
    "spec_drift",
]
PROBE_COLUMNS = [f.name for f in dataclasses.fields(ProbeResult)] + ["passed"]
CHURN_COLUMNS = [
    "namespace",
    "vm",
    "node_before",
    "node_after",
    "node_changed",
    "ip_before",
    "ip_after",
    "ip_changed",
    "migration_phase",
    "duration_s",
    "failure_reason",
    "old_ip_holder",
    "stale_ip_hazard",
]

#: Markdown/HTML tables longer than this are cut (the CSV keeps every row).
MAX_TABLE_ROWS = 200
#: Matrices wider than this go to the HTML heatmap only; the Markdown lists the worst cells.
MAX_MARKDOWN_MATRIX = 20


class SecretLeakError(ValueError):
    """A report text contained a value from the secrets list; nothing was written for it."""


# --------------------------------------------------------------------------------------------------
# small helpers


def iso_utc(ts: float | None) -> str:
    """Seconds since the epoch → ISO-8601 UTC, rounded to milliseconds (``2025-01-31T12:00:00.250Z``); "" for None."""
    if ts is None or (isinstance(ts, float) and math.isnan(ts)):
        return ""
    return datetime.fromtimestamp(round(ts, 3), tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso_utc(text: str | None) -> float | None:
    """The inverse of ``iso_utc`` (any ISO-8601 with an offset or Z; naive means UTC); None for ""."""
    if not text:
        return None
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _isnan(x: Any) -> bool:
    return x is None or (isinstance(x, (float, np.floating)) and math.isnan(x))


def _fmt(x: Any, nd: int = 1) -> str:
    """A number for a table: "—" when missing, ints as they are, floats with ``nd`` decimals."""
    if _isnan(x):
        return "—"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.{nd}f}"
    return str(x)


def _natural_key(s: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _natsorted(items: Iterable[str]) -> list[str]:
    return sorted(items, key=_natural_key)


def _md_cell(x: Any) -> str:
    s = x if isinstance(x, str) else _fmt(x)
    return s.replace("|", "\\|").replace("\r", "").replace("\n", "<br>") or " "


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` is one of l/r/c per column (default: left)."""
    align = align or "l" * len(header)
    marks = {"l": "---", "r": "--:", "c": ":-:"}
    lines = [
        "| " + " | ".join(_md_cell(h) for h in header) + " |",
        "|" + "|".join(marks[a] for a in align) + "|",
    ]
    lines.extend("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows)
    return "\n".join(lines)


def _percentiles(values: Sequence[float], qs: Sequence[float]) -> list[float]:
    if not len(values):
        return [math.nan] * len(qs)
    return [float(v) for v in np.percentile(np.asarray(values, dtype=float), qs)]


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["md_table"] = md_table
    env.filters["fmt"] = _fmt
    env.filters["md"] = _md_cell
    return env


def _render(template: str, **ctx: Any) -> str:
    return _env().get_template(template).render(**ctx)


def _check_secrets(text: str, secrets: Iterable[str], what: str) -> None:
    for s in secrets:
        if s and s in text:
            raise SecretLeakError(f"refusing to write {what}: it contains a secret value (it was not written)")


def _write_text(path: Path, text: str, secrets: Iterable[str] = ()) -> Path:
    """Write atomically (temp file + rename) after the secrets check."""
    _check_secrets(text, secrets, path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)
    return path


def _frame_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


def _read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _opt_float(s: str) -> float | None:
    return None if s in ("", "nan", "NaN", "None") else float(s)


def _opt_int(s: str) -> int | None:
    return None if s in ("", "nan", "NaN", "None") else int(float(s))


def _bool(s: str) -> bool:
    return s.strip().lower() in ("true", "1", "yes")


# --------------------------------------------------------------------------------------------------
# provisioning: inventory and latencies


def latency_quantiles(records: Sequence[VMRecord]) -> pd.DataFrame:
    """Start-up latency quantiles in milliseconds, one row per metric, kube-burner vmiLatency names.

    Every interval starts at ``created`` (the VM create call returned, or the server's creation stamp
    for an adopted VM):

    * ``VMIScheduled``: created → the VMI reached phase Scheduled;
    * ``VMIRunning``: created → the VMI reached phase Running;
    * ``VMReady``: created → the VM's Ready condition turned True.

    kube-burner's ``VMICreated`` (VM created → VMI object created) is not reported: a VMRecord does
    not carry the VMI's creation time, and reading it as "VMI scheduled" would mislabel it.

    Columns ``P50``, ``P95``, ``P99`` (numpy's linear interpolation), ``max``, ``avg`` and ``count``.
    A VM missing either timestamp of an interval is left out of that row only; a row with no VM has
    count 0 and NaN elsewhere.
    """
    data: dict[str, list[float]] = {}
    for metric, attr in LATENCY_METRICS:
        vals = [
            (getattr(r, attr) - r.created) * 1000.0
            for r in records
            if r.created is not None and getattr(r, attr) is not None
        ]
        p50, p95, p99 = _percentiles(vals, [50, 95, 99])
        data[metric] = [
            p50,
            p95,
            p99,
            max(vals) if vals else math.nan,
            float(np.mean(vals)) if vals else math.nan,
            len(vals),
        ]
    df = pd.DataFrame.from_dict(data, orient="index", columns=QUANTILE_COLUMNS)
    df["count"] = df["count"].astype(int)
    df.index.name = "metric"
    return df


def _ms(end: float | None, start: float | None) -> float:
    if end is None or start is None:
        return math.nan
    return round((end - start) * 1000.0, 3)


def inventory_frame(records: Sequence[VMRecord]) -> pd.DataFrame:
    """A row per VM: placement, state, the phase times as ISO-8601 UTC strings (ms) and latencies in ms
    from ``created`` (``scheduled_ms``, ``running_ms``, ``ready_ms``; NaN when not observed)."""
    rows = [
        {
            "namespace": r.namespace,
            "name": r.name,
            "node": r.node,
            "ip": r.ip,
            "phase": r.phase,
            "ready": bool(r.ready),
            "reason": r.reason,
            "created": iso_utc(r.created),
            "scheduled": iso_utc(r.scheduled),
            "running": iso_utc(r.running),
            "ready_at": iso_utc(r.ready_at),
            "scheduled_ms": _ms(r.scheduled, r.created),
            "running_ms": _ms(r.running, r.created),
            "ready_ms": _ms(r.ready_at, r.created),
            "adopted": bool(r.adopted),
            "spec_drift": bool(r.spec_drift),
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=INVENTORY_COLUMNS)


def write_inventory_csv(records: Sequence[VMRecord], path: Path | str, secrets: Iterable[str] = ()) -> Path:
    return _write_text(Path(path), _frame_csv(inventory_frame(records)), secrets)


def read_inventory_csv(path: Path | str) -> list[VMRecord]:
    """VMRecords back from ``inventory.csv`` (times at the millisecond resolution written)."""
    return [
        VMRecord(
            namespace=r["namespace"],
            name=r["name"],
            node=r["node"],
            ip=r["ip"],
            phase=r["phase"],
            ready=_bool(r["ready"]),
            reason=r["reason"],
            created=parse_iso_utc(r["created"]),
            scheduled=parse_iso_utc(r["scheduled"]),
            running=parse_iso_utc(r["running"]),
            ready_at=parse_iso_utc(r["ready_at"]),
            adopted=_bool(r.get("adopted", "")),
            spec_drift=_bool(r.get("spec_drift", "")),
        )
        for r in _read_csv_rows(Path(path))
    ]


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.extend(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out.append((key, ", ".join(str(x) for x in v)))
        else:
            out.append((key, v))
    return out


_RATE_KEYS = ("create_rate", "create_rate_per_s", "achieved_qps")
_QPS_KEYS = ("qps", "configured_qps")


def _first(keys: Sequence[str], *sources: Any) -> Any:
    for source in sources:
        if isinstance(source, Mapping):
            for k in keys:
                if source.get(k) is not None:
                    return source[k]
    return None


def provisioning_markdown(
    spec_summary: Mapping[str, Any],
    records: Sequence[VMRecord],
    quantiles_df: pd.DataFrame,
    problems: Sequence[VMRecord],
    figures: Mapping[str, Any],
) -> str:
    """``provisioning.md``: the headline figures, the spec, latency quantiles, VMs per node, and every VM
    that is not ready with its reason.

    ``figures`` keys read (all optional): ``wall_s`` (fan-out wall time), ``create_rate`` (or
    ``create_rate_per_s``/``achieved_qps``: VM creates per second achieved), ``qps`` (or
    ``configured_qps``; else ``spec_summary['qps']`` or ``spec_summary['fanout']['qps']``). Without ``create_rate`` the rate is derived from the records'
    creation times. Other scalar figures are listed as they are.
    """
    total = len(records)
    ready = sum(1 for r in records if r.ready)
    created = sorted(r.created for r in records if r.created is not None)
    rate = _first(_RATE_KEYS, figures)
    rate_note = ""
    if rate is None and len(created) > 1 and created[-1] > created[0]:
        rate = (len(created) - 1) / (created[-1] - created[0])
        rate_note = " (from creation times)"
    qps = _first(_QPS_KEYS, figures, spec_summary, spec_summary.get("fanout"))
    rate_text = _fmt(rate, 1) + rate_note
    if rate is not None and qps:
        rate_text += f" of {_fmt(qps)} configured ({100.0 * float(rate) / float(qps):.0f} %)"

    headline = [
        ("VMs ready / total", f"{ready} / {total}"),
        ("Wall time (s)", _fmt(figures.get("wall_s"), 1)),
        ("Create rate (VMs/s)", rate_text),
        ("Adopted (existed before this run)", sum(1 for r in records if r.adopted)),
        ("Spec drift (adopted VMs whose spec differs)", sum(1 for r in records if r.spec_drift)),
    ]
    known = {"wall_s", *_RATE_KEYS, *_QPS_KEYS}
    extra = [(k, v) for k, v in _flatten({k: v for k, v in figures.items() if k not in known})]

    by_node: dict[str, list[int]] = {}
    for r in records:
        c = by_node.setdefault(r.node or "(not scheduled)", [0, 0])
        c[0] += 1
        c[1] += int(r.ready)
    node_rows = [(n, *by_node[n]) for n in _natsorted(by_node)]

    q_rows = [
        (metric, *(_fmt(row[c], 1) for c in QUANTILE_COLUMNS[:-1]), int(row["count"]))
        for metric, row in quantiles_df.iterrows()
    ]
    prob_rows = [(p.namespace, p.name, p.phase or "—", p.node or "—", p.reason or "—") for p in problems]
    return _render(
        "provisioning.md.j2",
        spec=_flatten(spec_summary),
        headline=headline,
        extra=extra,
        quantiles=q_rows,
        quantile_header=["Metric", *[f"{c} (ms)" for c in QUANTILE_COLUMNS[:-1]], "VMs"],
        nodes=node_rows,
        problems=prob_rows[:MAX_TABLE_ROWS],
        problems_total=len(prob_rows),
    )


# --------------------------------------------------------------------------------------------------
# connectivity


def probes_frame(results: Sequence[ProbeResult]) -> pd.DataFrame:
    """A row per probe: every ProbeResult field plus ``passed``."""
    fields = PROBE_COLUMNS[:-1]
    return pd.DataFrame([[*(getattr(r, f) for f in fields), r.passed] for r in results], columns=PROBE_COLUMNS)


def read_probes_csv(path: Path | str) -> list[ProbeResult]:
    out = []
    for r in _read_csv_rows(Path(path)):
        out.append(
            ProbeResult(
                src_namespace=r["src_namespace"],
                src_vm=r["src_vm"],
                src_node=r["src_node"],
                dst_ip=r["dst_ip"],
                dst_namespace=r["dst_namespace"],
                dst_vm=r["dst_vm"],
                dst_node=r["dst_node"],
                kind=r["kind"],  # type: ignore[arg-type]
                expect=r["expect"],  # type: ignore[arg-type]
                transmitted=_opt_int(r["transmitted"]) or 0,
                received=_opt_int(r["received"]) or 0,
                loss_pct=_opt_float(r["loss_pct"]) or 0.0,
                rtt_min_ms=_opt_float(r["rtt_min_ms"]),
                rtt_avg_ms=_opt_float(r["rtt_avg_ms"]),
                rtt_max_ms=_opt_float(r["rtt_max_ms"]),
                outcome=r["outcome"],  # type: ignore[arg-type]
                exit_code=_opt_int(r["exit_code"]),
                error=r["error"],
            )
        )
    return out


@dataclasses.dataclass(slots=True)
class _Cell:
    probes: int = 0
    failed: int = 0
    errors: int = 0
    tx: int = 0
    rx: int = 0
    rtts: list[float] = dataclasses.field(default_factory=list)

    @property
    def loss(self) -> float:
        return 100.0 * (self.tx - self.rx) / self.tx if self.tx else math.nan

    @property
    def rtt(self) -> float:
        return float(np.median(self.rtts)) if self.rtts else math.nan


Group = Literal["namespace", "node"]


def _cells(results: Iterable[ProbeResult], by: Group) -> dict[tuple[str, str], _Cell]:
    if by not in ("namespace", "node"):
        raise ValueError(f"by must be 'namespace' or 'node', not {by!r}")
    src_attr, dst_attr = f"src_{by}", f"dst_{by}"
    cells: dict[tuple[str, str], _Cell] = {}
    for p in results:
        if p.kind != "mesh":
            continue
        s, d = getattr(p, src_attr), getattr(p, dst_attr)
        if not s or not d:
            continue
        c = cells.get((s, d))
        if c is None:
            c = cells[(s, d)] = _Cell()
        c.probes += 1
        c.failed += not p.passed
        c.errors += p.outcome == "error"
        c.tx += p.transmitted
        c.rx += p.received
        if p.received > 0 and p.rtt_avg_ms is not None:
            c.rtts.append(p.rtt_avg_ms)
    return cells


def _axes(cells: Mapping[tuple[str, str], Any]) -> list[str]:
    return _natsorted({g for pair in cells for g in pair})


def matrix(
    results: Sequence[ProbeResult], by: Group = "namespace", value: Literal["loss", "rtt"] = "loss"
) -> pd.DataFrame:
    """Source group × target group over the mesh probes (isolation probes are left out).

    ``loss``: 100·(Σ transmitted − Σ received)/Σ transmitted over the cell's probes (NaN when no packet
    was sent, e.g. only console errors); ``rtt``: the median of ``rtt_avg_ms`` over probes that got a
    reply. Both axes list every group seen (natural order), so the diagonal lines up; NaN = not probed.
    """
    if value not in ("loss", "rtt"):
        raise ValueError(f"value must be 'loss' or 'rtt', not {value!r}")
    return _matrix_from_cells(_cells(results, by), by, value)


def _matrix_from_cells(cells: Mapping[tuple[str, str], _Cell], by: str, value: str) -> pd.DataFrame:
    axis = _axes(cells)
    idx = {g: i for i, g in enumerate(axis)}
    arr = np.full((len(axis), len(axis)), np.nan)
    for (s, d), c in cells.items():
        arr[idx[s], idx[d]] = c.loss if value == "loss" else c.rtt
    df = pd.DataFrame(arr, index=pd.Index(axis, name=f"source {by}"), columns=pd.Index(axis, name=f"target {by}"))
    return df


FAILING_COLUMNS = [
    "src_namespace",
    "src_vm",
    "src_node",
    "dst_namespace",
    "dst_vm",
    "dst_node",
    "dst_ip",
    "outcome",
    "transmitted",
    "received",
    "loss_pct",
    "error",
]


def failing_pairs(results: Sequence[ProbeResult]) -> pd.DataFrame:
    """Mesh probes that did not get the reply they expected, one row per (source VM, target)."""
    rows = [{c: getattr(p, c) for c in FAILING_COLUMNS} for p in results if p.kind == "mesh" and not p.passed]
    df = pd.DataFrame(rows, columns=FAILING_COLUMNS)
    if len(df):
        df = df.sort_values(["src_namespace", "src_vm", "dst_namespace", "dst_vm", "dst_ip"], kind="stable")
        df = df.reset_index(drop=True)
    return df


ISOLATION_COLUMNS = [
    "target_ip",
    "target_namespace",
    "target_vm",
    "target_node",
    "probes",
    "replied",
    "errors",
    "verdict",
    "answered_sources",
]
SILENT, LEAK, INCONCLUSIVE = "silent as required", "LEAK", "inconclusive (probe errors only)"


def isolation_verdicts(results: Sequence[ProbeResult]) -> pd.DataFrame:
    """One row per isolation target: ``silent as required`` when no probe got a reply, ``LEAK`` when any
    did (``answered_sources`` names who got through), ``inconclusive`` when every probe errored."""
    targets: dict[str, dict[str, Any]] = {}
    for p in results:
        if p.kind != "isolation":
            continue
        t = targets.setdefault(
            p.dst_ip,
            {
                "target_ip": p.dst_ip,
                "target_namespace": p.dst_namespace,
                "target_vm": p.dst_vm,
                "target_node": p.dst_node,
                "probes": 0,
                "replied": 0,
                "errors": 0,
                "_src": [],
            },
        )
        t["probes"] += 1
        if p.received > 0:
            t["replied"] += 1
            t["_src"].append(f"{p.src_namespace}/{p.src_vm}")
        elif p.outcome == "error":
            t["errors"] += 1
    rows = []
    for ip in _natsorted(targets):
        t = targets[ip]
        src = t.pop("_src")
        if t["replied"]:
            verdict = LEAK
        elif t["errors"] == t["probes"]:
            verdict = INCONCLUSIVE
        else:
            verdict = SILENT
        shown = ", ".join(src[:5]) + (f" (+{len(src) - 5} more)" if len(src) > 5 else "")
        rows.append({**t, "verdict": verdict, "answered_sources": shown})
    return pd.DataFrame(rows, columns=ISOLATION_COLUMNS)


def connectivity_summary(results: Sequence[ProbeResult], _iso: pd.DataFrame | None = None) -> dict[str, Any]:
    """Headline figures: mesh probes passed/failed, packet loss, median RTT, isolation leaks, a verdict."""
    mesh = [p for p in results if p.kind == "mesh"]
    tx = sum(p.transmitted for p in mesh)
    rx = sum(p.received for p in mesh)
    rtts = [p.rtt_avg_ms for p in mesh if p.received > 0 and p.rtt_avg_ms is not None]
    iso = isolation_verdicts(results) if _iso is None else _iso
    failed = sum(1 for p in mesh if not p.passed)
    leaks = int((iso["verdict"] == LEAK).sum())
    inconclusive = int((iso["verdict"] == INCONCLUSIVE).sum())
    node_groups = {p.src_node for p in mesh} | {p.dst_node for p in mesh if p.dst_node}
    ns_groups = {p.src_namespace for p in mesh} | {p.dst_namespace for p in mesh if p.dst_namespace}
    return {
        "mesh_probes": len(mesh),
        "mesh_passed": len(mesh) - failed,
        "mesh_failed": failed,
        "probe_errors": sum(1 for p in mesh if p.outcome == "error"),
        "packets_transmitted": tx,
        "packets_received": rx,
        "loss_pct": round(100.0 * (tx - rx) / tx, 3) if tx else None,
        "rtt_median_ms": round(float(np.median(rtts)), 3) if rtts else None,
        "source_vms": len({(p.src_namespace, p.src_vm) for p in mesh}),
        "nodes": len(node_groups),
        "namespaces": len(ns_groups),
        "isolation_probes": sum(1 for p in results if p.kind == "isolation"),
        "isolation_targets": len(iso),
        "isolation_leaks": leaks,
        "isolation_inconclusive": inconclusive,
        "verdict": "PASS" if not failed and not leaks and not inconclusive else "FAIL",
    }


def _worst_cells(cells: Mapping[tuple[str, str], _Cell], limit: int = 20) -> list[tuple[Any, ...]]:
    bad = [(s, d, c) for (s, d), c in cells.items() if c.failed]
    bad.sort(
        key=lambda t: (-(t[2].loss if not math.isnan(t[2].loss) else 101.0), _natural_key(t[0]), _natural_key(t[1]))
    )
    return [(s, d, c.probes, c.failed, _fmt(c.loss, 1), _fmt(c.rtt, 2)) for s, d, c in bad[:limit]]


@dataclasses.dataclass(slots=True)
class _Connectivity:
    """Everything the connectivity views need, computed once from the probes."""

    cells: dict[str, dict[tuple[str, str], _Cell]]
    failing: pd.DataFrame
    isolation: pd.DataFrame
    summary: dict[str, Any]


def _analyse(results: Sequence[ProbeResult]) -> _Connectivity:
    iso = isolation_verdicts(results)
    return _Connectivity(
        cells={"namespace": _cells(results, "namespace"), "node": _cells(results, "node")},
        failing=failing_pairs(results),
        isolation=iso,
        summary=connectivity_summary(results, iso),
    )


def _matrix_md(cells: Mapping[tuple[str, str], _Cell], by: str) -> dict[str, Any]:
    loss = _matrix_from_cells(cells, by, "loss")
    n = len(loss)
    out: dict[str, Any] = {"by": by, "groups": n, "table": "", "worst": _worst_cells(cells)}
    if 0 < n <= MAX_MARKDOWN_MATRIX:
        rtt = _matrix_from_cells(cells, by, "rtt")
        rows = []
        for s in loss.index:
            row = [s]
            for d in loss.columns:
                lv, rv = loss.at[s, d], rtt.at[s, d]
                row.append("—" if _isnan(lv) else f"{lv:.0f} % / {_fmt(rv, 2)}")
            rows.append(row)
        out["table"] = md_table([f"{by} → {by}", *loss.columns], rows, "l" + "r" * n)
    return out


def connectivity_markdown(
    results: Sequence[ProbeResult], plan_coverage: Mapping[str, Any] | None = None, title: str = "Connectivity"
) -> str:
    """``connectivity.md``: verdict and figures, plan coverage, matrices (loss % / median RTT ms) by
    namespace and by node (up to 20 groups; above that the worst cells), failing pairs, isolation."""
    return _connectivity_md(_analyse(results), plan_coverage, title)


def _connectivity_md(a: _Connectivity, plan_coverage: Mapping[str, Any] | None, title: str) -> str:
    fp, iso = a.failing, a.isolation
    return _render(
        "connectivity.md.j2",
        title=title,
        summary=a.summary,
        coverage=_flatten(plan_coverage or {}),
        matrices=[_matrix_md(a.cells["namespace"], "namespace"), _matrix_md(a.cells["node"], "node")],
        failing=fp.head(MAX_TABLE_ROWS).itertuples(index=False, name=None),
        failing_header=list(fp.columns),
        failing_total=len(fp),
        isolation=iso.itertuples(index=False, name=None),
        isolation_header=list(iso.columns),
    )


# colour scale: 0 % loss green; any loss starts at amber and runs to red at 100 %
_GREEN, _AMBER, _RED = (26, 152, 80), (245, 166, 35), (215, 48, 39)
NOT_PROBED_COLOUR, ERROR_COLOUR = "#e4e4e4", "#6a3d9a"


def loss_colour(loss: float | None) -> str:
    """Heatmap colour for a loss %: green at 0; amber for the least loss, through orange, to red at 100.

    The jump from green to amber is deliberate: 1 % loss must not look like 0 %. NaN/None (no packet
    sent, only probe errors) is purple.
    """
    if _isnan(loss):
        return ERROR_COLOUR
    if loss <= 0:
        return "#{:02x}{:02x}{:02x}".format(*_GREEN)
    t = min(100.0, float(loss)) / 100.0
    rgb = tuple(round(a + (b - a) * t) for a, b in zip(_AMBER, _RED, strict=True))
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _text_colour(loss: float | None) -> str:
    return "#fff" if _isnan(loss) or loss <= 0 or loss >= 40 else "#111"


def _heatmap(cells: Mapping[tuple[str, str], _Cell], by: str, label: str) -> dict[str, Any]:
    axis = _axes(cells)
    n = len(axis)
    size = "l" if n <= 16 else "m" if n <= 40 else "s"
    rows = []
    for s in axis:
        row = []
        for d in axis:
            c = cells.get((s, d))
            if c is None:
                row.append({"bg": NOT_PROBED_COLOUR, "fg": "#777", "text": "", "tip": f"{s} → {d}\nnot probed"})
                continue
            loss, rtt = c.loss, c.rtt
            tip = (
                f"{s} → {d}\n{c.probes} probes, {c.failed} failed"
                + (f", {c.errors} errors" if c.errors else "")
                + (f"\nloss {loss:.1f} % ({c.tx - c.rx} of {c.tx} packets)" if c.tx else "\nno packets sent")
                + (f"\nmedian RTT {rtt:.2f} ms" if not math.isnan(rtt) else "\nno reply: no RTT")
            )
            text = ("err" if _isnan(loss) else f"{loss:.0f}") if size == "l" else ""
            row.append({"bg": loss_colour(loss), "fg": _text_colour(loss), "text": text, "tip": tip})
        rows.append((s, row))
    return {"id": f"hm-{by}", "label": label, "by": by, "axis": axis, "rows": rows, "size": size, "n": n}


def connectivity_html(
    results: Sequence[ProbeResult], plan_coverage: Mapping[str, Any] | None = None, title: str = "Connectivity"
) -> str:
    """``connectivity.html``: a self-contained page (inline CSS and JS, nothing fetched).

    Summary cards; loss heatmaps namespace × namespace and node × node (green 0 %, amber → red with
    loss, grey not probed, purple errors only; legend; every cell has a ``title`` tooltip with source,
    target, probes, loss % and median RTT, shown at once by a small script on hover); the failing
    pairs; isolation verdicts; plan coverage. Cells shrink to 11 px above 40 groups so 100 × 100 fits.
    """
    return _connectivity_html(_analyse(results), plan_coverage, title)


def _connectivity_html(a: _Connectivity, plan_coverage: Mapping[str, Any] | None, title: str) -> str:
    fp, iso = a.failing, a.isolation
    return _render(
        "connectivity.html.j2",
        title=title,
        summary=a.summary,
        coverage=_flatten(plan_coverage or {}),
        heatmaps=[
            _heatmap(a.cells["namespace"], "namespace", "Namespace → namespace"),
            _heatmap(a.cells["node"], "node", "Node → node"),
        ],
        legend={
            "green": loss_colour(0),
            "amber": loss_colour(0.001),
            "orange": loss_colour(50),
            "red": loss_colour(100),
            "none": NOT_PROBED_COLOUR,
            "error": ERROR_COLOUR,
        },
        failing=list(fp.head(MAX_TABLE_ROWS * 5).itertuples(index=False, name=None)),
        failing_header=list(fp.columns),
        failing_total=len(fp),
        isolation=list(iso.itertuples(index=False, name=None)),
        isolation_header=list(iso.columns),
        leak=LEAK,
        silent=SILENT,
    )


# --------------------------------------------------------------------------------------------------
# churn


def churn_frame(rows: Sequence[ChurnRow]) -> pd.DataFrame:
    """A row per migrated VM: before/after node and IP, the change flags, migration outcome, hazard."""
    return pd.DataFrame([[getattr(r, c) for c in CHURN_COLUMNS] for r in rows], columns=CHURN_COLUMNS)


def read_churn_csv(path: Path | str) -> list[ChurnRow]:
    return [
        ChurnRow(
            namespace=r["namespace"],
            vm=r["vm"],
            node_before=r["node_before"],
            node_after=r["node_after"],
            ip_before=r["ip_before"],
            ip_after=r["ip_after"],
            migration_phase=r["migration_phase"],
            duration_s=_opt_float(r["duration_s"]),
            failure_reason=r["failure_reason"],
            old_ip_holder=r["old_ip_holder"],
        )
        for r in _read_csv_rows(Path(path))
    ]


def churn_summary(rows: Sequence[ChurnRow], topology: str) -> dict[str, Any]:
    """Counts for the churn report, and ``problems``: what contradicts the topology's promise.

    On Layer2 no IP may change; on Layer3 a VM that changed node must have changed IP; failed or
    unfinished migrations and stale-IP hazards are listed too. ``ip_changed_pct_of_moved`` is the
    share of VMs that changed node and IP among those that changed node (None when none moved).
    Durations (seconds) are over succeeded migrations.
    """
    n = len(rows)
    succeeded = sum(r.migration_phase == "Succeeded" for r in rows)
    failed = sum(r.migration_phase == "Failed" for r in rows)
    moved = [r for r in rows if r.node_changed]
    ip_changed = sum(r.ip_changed for r in rows)
    moved_ip = sum(r.ip_changed for r in moved)
    hazards = [r for r in rows if r.stale_ip_hazard]

    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r.node_before or "—", r.node_after or "—")
        p = pairs.setdefault(
            key, {"source": key[0], "target": key[1], "vms": 0, "succeeded": 0, "failed": 0, "ip_changed": 0}
        )
        p["vms"] += 1
        p["succeeded"] += r.migration_phase == "Succeeded"
        p["failed"] += r.migration_phase == "Failed"
        p["ip_changed"] += r.ip_changed
    by_pair = [pairs[k] for k in sorted(pairs, key=lambda k: (_natural_key(k[0]), _natural_key(k[1])))]

    durations = [r.duration_s for r in rows if r.duration_s is not None and r.migration_phase == "Succeeded"]
    p50, p95 = _percentiles(durations, [50, 95])

    problems: list[str] = []
    if topology == "Layer2" and ip_changed:
        problems.append(f"{ip_changed} VM(s) changed IP on Layer2, where addresses must survive migration")
    if topology == "Layer3":
        kept = len(moved) - moved_ip
        if kept:
            problems.append(f"{kept} VM(s) changed node but kept their IP on Layer3 (expected a target-node address)")
    if failed:
        problems.append(f"{failed} migration(s) failed")
    unfinished = n - succeeded - failed
    if unfinished:
        problems.append(f"{unfinished} migration(s) did not finish or were not recorded")
    if hazards:
        shown = ", ".join(f"{r.namespace}/{r.vm} → {r.old_ip_holder}" for r in hazards[:5])
        problems.append(f"{len(hazards)} stale-IP hazard(s): an old address now belongs to another VM ({shown})")

    return {
        "topology": topology,
        "selected": n,
        "succeeded": succeeded,
        "failed": failed,
        "unfinished": unfinished,
        "node_changed": len(moved),
        "ip_changed": ip_changed,
        "ip_changed_of_moved": moved_ip,
        "ip_changed_pct_of_moved": round(100.0 * moved_ip / len(moved), 1) if moved else None,
        "stale_ip_hazards": len(hazards),
        "by_node_pair": by_pair,
        "duration_s": {
            "p50": None if math.isnan(p50) else round(p50, 3),
            "p95": None if math.isnan(p95) else round(p95, 3),
            "max": round(max(durations), 3) if durations else None,
            "count": len(durations),
        },
        "problems": problems,
        "ok": not problems,
    }


def _churn_context(rows: Sequence[ChurnRow], summary: Mapping[str, Any], topology: str | None) -> dict[str, Any]:
    topo = topology or summary.get("topology", "")
    d = summary["duration_s"]
    pct = summary["ip_changed_pct_of_moved"]
    cards = [
        ("Selected", summary["selected"], ""),
        ("Succeeded", summary["succeeded"], "good" if summary["succeeded"] == summary["selected"] else ""),
        ("Failed", summary["failed"], "bad" if summary["failed"] else "good"),
        ("Changed node", summary["node_changed"], ""),
        (
            "Changed IP",
            f"{summary['ip_changed']}" + (f" ({pct:.0f} % of moved)" if pct is not None else ""),
            "bad" if topo == "Layer2" and summary["ip_changed"] else "",
        ),
        ("Stale-IP hazards", summary["stale_ip_hazards"], "bad" if summary["stale_ip_hazards"] else "good"),
        ("Duration P50 / P95 / max (s)", f"{_fmt(d['p50'], 1)} / {_fmt(d['p95'], 1)} / {_fmt(d['max'], 1)}", ""),
    ]
    return {
        "title": f"Live-migration churn ({topo or 'topology unknown'})",
        "topology": topo,
        "summary": summary,
        "cards": cards,
        "rows": rows,
        "max_rows": MAX_TABLE_ROWS * 25,
    }


def churn_markdown(rows: Sequence[ChurnRow], summary: Mapping[str, Any], topology: str | None = None) -> str:
    """``churn.md``: summary figures, problems, the node-pair table and a before/after table per VM
    (changed values in bold)."""
    ctx = _churn_context(rows, summary, topology)

    def bold(value: str, changed: bool) -> str:
        return f"**{value}**" if changed and value else value or "—"

    vm_rows = [
        (
            r.namespace,
            r.vm,
            r.node_before or "—",
            bold(r.node_after, r.node_changed),
            r.ip_before or "—",
            bold(r.ip_after, r.ip_changed),
            bold(r.migration_phase, r.migration_phase not in ("Succeeded", "")) if r.migration_phase else "—",
            _fmt(r.duration_s, 1),
            bold(r.old_ip_holder, True),
            r.failure_reason or "—",
        )
        for r in rows[:MAX_TABLE_ROWS]
    ]
    pair_rows = [
        (p["source"], p["target"], p["vms"], p["succeeded"], p["failed"], p["ip_changed"])
        for p in summary["by_node_pair"]
    ]
    figures = [(label, value) for label, value, _ in ctx["cards"]]
    return _render("churn.md.j2", **ctx, figures=figures, pair_rows=pair_rows, vm_rows=vm_rows)


def churn_html(rows: Sequence[ChurnRow], summary: Mapping[str, Any], topology: str | None = None) -> str:
    """``churn.html``: self-contained page with summary cards, problems, the node-pair table and the
    before/after table per VM, changed cells highlighted (IP changes amber on Layer3 where expected,
    red on Layer2; failures and stale-IP hazards red), with a filter for changed/failed rows."""
    return _render("churn.html.j2", **_churn_context(rows, summary, topology))


# --------------------------------------------------------------------------------------------------
# capacity and preflight

_CAPACITY_LAYER3 = [
    ("node", "Node"),
    ("schedulable", "Schedulable"),
    ("subnet", "Node subnet"),
    ("usable", "Size (usable)"),
    ("existing", "Used (existing)"),
    ("planned", "VMs planned"),
    ("headroom", "Free after"),
    ("status", "Status"),
    ("note", "Note"),
]
_CAPACITY_LAYER2 = [
    ("cidr", "Pool"),
    ("usable", "Size (usable)"),
    ("existing", "Held (claims, pods)"),
    ("planned", "VMs planned"),
    ("headroom", "Free after"),
    ("status", "Status"),
]
_HEADROOM = [
    ("node", "Node"),
    ("usable", "Size (usable)"),
    ("in_use", "In use"),
    ("incoming", "Migrating in"),
    ("free_after", "Free after"),
    ("status", "Status"),
    ("note", "Note"),
]


def _rows_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    cols = [(k, label) for k, label in columns if any(k in r for r in rows)]
    extra = [k for r in rows for k in r if k not in {c for c, _ in cols}]
    cols += [(k, k) for k in dict.fromkeys(extra)]
    align = "".join(
        "r" if rows and isinstance(rows[0].get(k), (int, float)) and not isinstance(rows[0].get(k), bool) else "l"
        for k, _ in cols
    )
    return md_table([label for _, label in cols], ([r.get(k, "") for k, _ in cols] for r in rows), align)


def capacity_markdown(
    report_rows: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    headroom_rows: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """``capacity.md`` from ``CapacityReport.rows()/summary()`` and ``MigrationHeadroom.rows()``.

    Layer3: a row per node subnet (size, used, VMs planned, free, status); Layer2: the pool's size and
    use. Then the verdict, messages and fixes, and, when given, the migration headroom per node.
    """
    topology = summary.get("topology") or ("Layer2" if report_rows and "cidr" in report_rows[0] else "Layer3")
    columns = _CAPACITY_LAYER2 if topology == "Layer2" else _CAPACITY_LAYER3
    labels = {
        "topology": "Topology",
        "cidr": "CIDR",
        "hostSubnet": "hostSubnet",
        "nodeSubnetsAvailable": "Node subnets the CIDR holds",
        "nodesNeedingSubnet": "Nodes needing a subnet",
        "usablePerSubnet": "Usable addresses per node subnet" if topology == "Layer3" else "Usable addresses",
        "totalUsable": "Usable addresses, total",
        "totalDemand": "Addresses needed",
        "totalHeadroom": "Free after the planned fleet",
        "verdict": "Verdict",
    }
    figures = [(label, summary[k]) for k, label in labels.items() if k in summary and summary[k] is not None]
    if topology == "Layer2":
        figures = [(lab, v) for lab, v in figures if lab not in ("hostSubnet",)]
    return _render(
        "capacity.md.j2",
        topology=topology,
        figures=figures,
        messages=list(summary.get("messages") or []),
        fixes=list(summary.get("fixes") or []),
        table=_rows_table(report_rows, columns) if report_rows else "",
        headroom=_rows_table(headroom_rows, _HEADROOM) if headroom_rows else "",
    )


_STATUS = {"ok": "OK", "warn": "WARN", "fail": "FAIL"}


def preflight_markdown(checks: Sequence[Check]) -> str:
    """``preflight.md``: the verdict and every check with its status, detail and fix."""
    counts = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "fail")}
    verdict = "FAIL" if counts["fail"] else "WARN" if counts["warn"] else "OK"
    rows = [(c.name, _STATUS.get(c.status, c.status), c.detail, c.fix or "—") for c in checks]
    return _render("preflight.md.j2", verdict=verdict, counts=counts, rows=rows)


def checks_table_text(checks: Sequence[Check], width: int | None = None) -> str:
    """A terminal table CHECK / STATUS / DETAIL / FIX that fits ``width`` columns (default: the
    terminal's, at least 60), DETAIL and FIX wrapped at word boundaries; rows are separated by a blank
    line when any of them wraps."""
    width = max(60, width or shutil.get_terminal_size((120, 24)).columns)
    header = ("CHECK", "STATUS", "DETAIL", "FIX")
    data = [(c.name, _STATUS.get(c.status, c.status.upper()), c.detail, c.fix or "-") for c in checks]
    gap = 2
    w_check = min(max([len(header[0])] + [len(r[0]) for r in data]), 32)
    w_status = max(len(header[1]), *(len(r[1]) for r in data)) if data else len(header[1])
    room = width - w_check - w_status - 3 * gap
    want_d = max([len(header[2])] + [len(r[2]) for r in data])
    want_f = max([len(header[3])] + [len(r[3]) for r in data])
    if want_d + want_f <= room:
        w_detail, w_fix = want_d, want_f
    else:
        w_detail = max(16, min(want_d, round(room * want_d / (want_d + want_f))))
        w_fix = max(12, room - w_detail)
        if w_fix > want_f:
            w_detail, w_fix = room - want_f, want_f
    widths = (w_check, w_status, w_detail, w_fix)

    def wrap(text: str, w: int) -> list[str]:
        return textwrap.wrap(text, w, break_long_words=True, break_on_hyphens=False) or [""]

    def block(cols: Sequence[str]) -> list[str]:
        parts = [wrap(t, w) for t, w in zip(cols, widths, strict=True)]
        height = max(len(p) for p in parts)
        lines = []
        for i in range(height):
            cells = [(p[i] if i < len(p) else "").ljust(w) for p, w in zip(parts, widths, strict=True)]
            lines.append((" " * gap).join(cells).rstrip())
        return lines

    blocks = [block(r) for r in data]
    sep = [""] if any(len(b) > 1 for b in blocks) else []
    out = [*block(header), (" " * gap).join("-" * w for w in widths)]
    for i, b in enumerate(blocks):
        if i:
            out += sep
        out += b
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------
# the run directory

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
    "churn.md": "live-migration before/after and summary",
    "churn.html": "before/after per VM, highlighted (open in a browser)",
    "churn.csv": "one row per migrated VM",
}
_FILE_ORDER = list(FILE_DESCRIPTIONS)
SCHEMA_VERSION = 1


def _jsonable(value: Any) -> Any:
    """JSON-safe: dataclasses to dicts, timestamps to ISO strings, NaN to None, numpy to Python."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, pd.DataFrame):
        return _jsonable(value.reset_index().to_dict(orient="records"))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if type(value).__name__ in ("NaTType", "NAType"):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _dump_json(obj: Any) -> str:
    return json.dumps(_jsonable(obj), indent=2, sort_keys=False, ensure_ascii=False, allow_nan=False) + "\n"


def _load_state(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "run.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"schema": SCHEMA_VERSION}


def write_run_reports(
    out_dir: Path | str,
    *,
    run_id: str | None = None,
    spec_summary: Mapping[str, Any] | None = None,
    figures: Mapping[str, Any] | None = None,
    steps: Sequence[StepSummary | Mapping[str, Any]] | None = None,
    records: Sequence[VMRecord] | None = None,
    probes: Sequence[ProbeResult] | None = None,
    plan_coverage: Mapping[str, Any] | None = None,
    churn_rows: Sequence[ChurnRow] | None = None,
    churn_topology: str | None = None,
    capacity_rows: Sequence[Mapping[str, Any]] | None = None,
    capacity_summary: Mapping[str, Any] | None = None,
    headroom_rows: Sequence[Mapping[str, Any]] | None = None,
    checks: Sequence[Check] | None = None,
    title: str | None = None,
    secrets: Iterable[str] = (),
) -> dict[str, Path]:
    """Write the parts given into ``out_dir``, then re-render every report from the files.

    Parts accumulate across calls (a churn report added later to a rollout's directory keeps the
    rest): ``run.json`` is merged (``figures`` per key, ``steps`` by step name) and a CSV is replaced
    only when its records are given. ``figures['fanout']`` feeds ``provisioning.md`` (see
    ``provisioning_markdown``). Returns every report file now in ``out_dir`` by name. Raises
    ``SecretLeakError`` before writing a file that would contain one of ``secrets``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    secrets = [s for s in secrets if s]
    state = _load_state(out)
    state["schema"] = SCHEMA_VERSION
    if run_id is not None:
        state["runId"] = run_id
    state.setdefault("runId", out.name)
    if title is not None:
        state["title"] = title
    state["generatedAt"] = iso_utc(datetime.now(UTC).timestamp())
    if spec_summary is not None:
        state["spec"] = _jsonable(spec_summary)
    if figures is not None:
        state.setdefault("figures", {}).update(_jsonable(figures))
    if steps is not None:
        merged = {s["step"]: s for s in state.get("steps", [])}
        for s in steps:
            d = _jsonable(s)
            merged[d["step"]] = d
        state["steps"] = list(merged.values())
    if plan_coverage is not None:
        state.setdefault("connectivity", {})["planCoverage"] = _jsonable(plan_coverage)
    if churn_topology is not None:
        state.setdefault("churn", {})["topology"] = churn_topology
    if capacity_rows is not None or capacity_summary is not None:
        state["capacity"] = {
            "rows": _jsonable(capacity_rows or []),
            "summary": _jsonable(capacity_summary or {}),
            "headroom": _jsonable(headroom_rows) if headroom_rows is not None else None,
        }
    if checks is not None:
        state["preflight"] = {"checks": _jsonable(list(checks))}

    if records is not None:
        write_inventory_csv(records, out / "inventory.csv", secrets)
    if probes is not None:
        _write_text(out / "connectivity.csv", _frame_csv(probes_frame(probes)), secrets)
    if churn_rows is not None:
        _write_text(out / "churn.csv", _frame_csv(churn_frame(churn_rows)), secrets)
    return _render_run(out, state, secrets)


def rerender(out_dir: Path | str, *, secrets: Iterable[str] = ()) -> dict[str, Path]:
    """Rebuild every Markdown/HTML report of a run from its ``run.json`` and CSV files (idempotent)."""
    out = Path(out_dir)
    if not (out / "run.json").exists():
        raise FileNotFoundError(f"{out / 'run.json'} not found: is {out} a run's report directory?")
    return _render_run(out, _load_state(out), [s for s in secrets if s])


def _render_run(out: Path, state: dict[str, Any], secrets: Sequence[str]) -> dict[str, Path]:
    spec = state.get("spec") or {}
    figures = state.get("figures") or {}
    derived: dict[str, Any] = {}

    if (out / "inventory.csv").exists():
        records = read_inventory_csv(out / "inventory.csv")
        q = latency_quantiles(records)
        problems = [r for r in records if not r.ready]
        fan = dict(figures.get("fanout") or {})
        _write_text(out / "provisioning.md", provisioning_markdown(spec, records, q, problems, fan), secrets)
        derived["provisioning"] = {
            "vms": len(records),
            "ready": sum(r.ready for r in records),
            "notReady": len(problems),
            "latencyMs": {m: {c: row[c] for c in QUANTILE_COLUMNS} for m, row in q.iterrows()},
        }
    if (out / "connectivity.csv").exists():
        probes = read_probes_csv(out / "connectivity.csv")
        cov = (state.get("connectivity") or {}).get("planCoverage")
        ctitle = f"Connectivity — {state.get('runId', '')}".rstrip(" —")
        analysis = _analyse(probes)
        _write_text(out / "connectivity.md", _connectivity_md(analysis, cov, ctitle), secrets)
        _write_text(out / "connectivity.html", _connectivity_html(analysis, cov, ctitle), secrets)
        derived["connectivity"] = analysis.summary
    if (out / "churn.csv").exists():
        rows = read_churn_csv(out / "churn.csv")
        topo = (
            (state.get("churn") or {}).get("topology")
            or (spec.get("topology") if isinstance(spec, Mapping) else None)
            or ""
        )
        summ = churn_summary(rows, topo)
        _write_text(out / "churn.md", churn_markdown(rows, summ, topo), secrets)
        _write_text(out / "churn.html", churn_html(rows, summ, topo), secrets)
        derived["churn"] = summ
    if state.get("capacity"):
        cap = state["capacity"]
        _write_text(
            out / "capacity.md",
            capacity_markdown(cap.get("rows") or [], cap.get("summary") or {}, cap.get("headroom")),
            secrets,
        )
    if state.get("preflight"):
        checks = [Check(**c) for c in state["preflight"].get("checks", [])]
        _write_text(out / "preflight.md", preflight_markdown(checks), secrets)
        derived["preflight"] = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "fail")}

    state["derived"] = derived
    names = {p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")} | {"summary.md", "run.json"}
    files = sorted(names, key=lambda n: (_FILE_ORDER.index(n) if n in _FILE_ORDER else len(_FILE_ORDER), n))
    state["files"] = files
    summary_md = _render(
        "summary.md.j2",
        title=state.get("title") or f"udn-rollout run {state.get('runId', '')}",
        state=state,
        spec=_flatten(spec),
        steps=state.get("steps") or [],
        derived=derived,
        links=[(n, FILE_DESCRIPTIONS.get(n, "")) for n in files if n != "summary.md"],
    )
    _write_text(out / "summary.md", summary_md, secrets)
    _write_text(out / "run.json", _dump_json(state), secrets)
    return {n: out / n for n in files}
