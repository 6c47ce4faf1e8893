"""Provisioning: the inventory (a row per VM) and kube-burner-style start-up latency quantiles."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.model import VMRecord
from tasks.reports.common import (
    MAX_TABLE_ROWS,
    flatten,
    fmt,
    frame_csv,
    iso_utc,
    natsorted,
    parse_iso_utc,
    percentiles,
    render,
    write_text,
)

if TYPE_CHECKING:
    import pandas as pd

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
    import pandas as pd

    data: dict[str, list[float]] = {}
    for metric, attr in LATENCY_METRICS:
        vals = [
            (getattr(r, attr) - r.created) * 1000.0
            for r in records
            if r.created is not None and getattr(r, attr) is not None
        ]
        p50, p95, p99 = percentiles(vals, [50, 95, 99])
        data[metric] = [
            p50,
            p95,
            p99,
            max(vals) if vals else math.nan,
            statistics.fmean(vals) if vals else math.nan,
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
    import pandas as pd

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
    return write_text(Path(path), frame_csv(inventory_frame(records)), secrets)


def read_inventory_csv(path: Path | str) -> list[VMRecord]:
    """VMRecords back from ``inventory.csv`` (times at the millisecond resolution written)."""
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    yes = ("true", "1", "yes")
    out = []
    for r in frame.to_dict(orient="records"):
        out.append(
            VMRecord(
                namespace=r["namespace"],
                name=r["name"],
                node=r["node"],
                ip=r["ip"],
                phase=r["phase"],
                ready=r["ready"].lower() in yes,
                reason=r["reason"],
                created=parse_iso_utc(r["created"]),
                scheduled=parse_iso_utc(r["scheduled"]),
                running=parse_iso_utc(r["running"]),
                ready_at=parse_iso_utc(r["ready_at"]),
                adopted=r.get("adopted", "").lower() in yes,
                spec_drift=r.get("spec_drift", "").lower() in yes,
            )
        )
    return out


def provisioning_markdown(
    spec_summary: Mapping[str, Any],
    records: Sequence[VMRecord],
    quantiles_df: pd.DataFrame,
    problems: Sequence[VMRecord],
    figures: Mapping[str, Any],
) -> str:
    """``provisioning.md``: the headline figures, the spec, latency quantiles, VMs per node, and every VM
    that is not ready with its reason.

    ``figures`` keys read (all optional): ``wall_s`` (fan-out wall time), ``create_rate_per_s`` (VM
    creates per second achieved; without it the rate is derived from the records' creation times).
    The API limits come from ``spec_summary`` (``qps``, ``burst``). Other scalar figures are listed as they are.
    """
    total = len(records)
    ready = sum(1 for r in records if r.ready)
    created = sorted(r.created for r in records if r.created is not None)
    rate = figures.get("create_rate_per_s")
    rate_note = ""
    if rate is None and len(created) > 1 and created[-1] > created[0]:
        rate = (len(created) - 1) / (created[-1] - created[0])
        rate_note = " (from creation times)"
    rate_text = fmt(rate, 1) + rate_note + pacing_note(rate, spec_summary.get("qps"), spec_summary.get("burst"))

    headline = [
        ("VMs ready / total", f"{ready} / {total}"),
        ("Wall time (s)", fmt(figures.get("wall_s"), 1)),
        ("Create rate (VMs/s)", rate_text),
        ("Adopted (existed before this run)", sum(1 for r in records if r.adopted)),
        ("Spec drift (adopted VMs whose spec differs)", sum(1 for r in records if r.spec_drift)),
    ]
    known = {"wall_s", "create_rate_per_s"}
    extra = [(k, v) for k, v in flatten({k: v for k, v in figures.items() if k not in known})]

    by_node: dict[str, list[int]] = {}
    for r in records:
        c = by_node.setdefault(r.node or "(not scheduled)", [0, 0])
        c[0] += 1
        c[1] += int(r.ready)
    node_rows = [(n, *by_node[n]) for n in natsorted(by_node)]

    q_rows = [
        (metric, *(fmt(row[c], 1) for c in QUANTILE_COLUMNS[:-1]), int(row["count"]))
        for metric, row in quantiles_df.iterrows()
    ]
    prob_rows = [(p.namespace, p.name, p.phase or "—", p.node or "—", p.reason or "—") for p in problems]
    return render(
        "provisioning.md.j2",
        spec=flatten(spec_summary),
        headline=headline,
        extra=extra,
        quantiles=q_rows,
        quantile_header=["Metric", *[f"{c} (ms)" for c in QUANTILE_COLUMNS[:-1]], "VMs"],
        nodes=node_rows,
        problems=prob_rows[:MAX_TABLE_ROWS],
        problems_total=len(prob_rows),
    )


def pacing_note(rate: float | None, qps: float | None, burst: int | None) -> str:
    """How an achieved request rate reads against the limits: above qps only by the burst allowance."""
    if rate is None or not qps:
        return ""
    text = f" against api.qps {fmt(qps)}"
    if burst and rate > qps:
        text += f" (the first {burst} requests (api.burst) go at once, so a short run averages above qps)"
    return text
