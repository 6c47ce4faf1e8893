"""``history.html``: IP churn and free addresses per run, as inline SVG charts (machines are offline:
no JavaScript library, no CDN), one row of charts per network, and the table ``udn-rollout history``
prints.

The geometry (scales, ticks, bar and point positions) is computed here as plain data so it can be
tested; ``reports/templates/history.html.j2`` only draws it. Runs sit in equal slots in start order
rather than on a time scale: nightly runs are evenly spaced anyway, and runs minutes apart (tests,
re-runs) would otherwise collapse onto one point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.history.records import RunSummary

if TYPE_CHECKING:
    import jinja2

__all__ = ["COLUMNS", "Chart", "format_row", "history_charts", "history_html", "nice_ticks"]

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "reports" / "templates"

# colours: moves neutral, IP changes the figure of interest, hazards red (as the churn report)
C_MOVES = "#9aa3b2"
C_IP = "#e08214"
C_GUEST = "#8856a7"
C_HAZARD = "#d73027"
C_LOWEST = "#1a9850"
C_TOTAL = "#2c7fb8"
C_USABLE = "#5b6475"

W, H = 400, 270
M_LEFT, M_RIGHT, M_TOP, M_BOTTOM = 62, 16, 26, 62
MAX_X_LABELS = 6
MAX_VALUE_LABELS = 16  # above this many runs only the last and the extreme values are labelled


def fmt_int(v: int | float | None) -> str:
    return "—" if v is None else f"{round(v):,}"


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 10 else f"{v:.1f}"


def fmt_time(dt: datetime | None) -> str:
    return "—" if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def nice_ticks(top: float, n: int = 5, integer: bool = True) -> list[float]:
    """0 and round steps (1, 2, 2.5, 5 × 10^k) up to at least ``top``: axis labels a person reads."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1.0, math.ceil(step))
    count = math.ceil(top / step - 1e-9)
    return [i * step for i in range(count + 1)]


@dataclass
class Bar:
    x: float
    y: float
    w: float
    h: float
    colour: str
    tip: str
    label: str = ""  # value drawn above the bar ("" when there is no room)
    anchor: str = "middle"


@dataclass
class Point:
    x: float
    y: float
    colour: str
    tip: str
    label: str = ""
    sublabel: str = ""  # e.g. the node that has the fewest free addresses
    below: bool = False  # label under the point (a reference line runs just above it)
    r: float = 4.5
    anchor: str = "middle"


@dataclass
class Series:
    colour: str
    points: str  # "x,y x,y ..." for a polyline
    dash: str = ""


@dataclass
class Chart:
    id: str
    title: str
    note: str
    y_title: str
    x_title: str = "runs in start order (UTC start time)"
    width: int = W
    height: int = H
    plot: tuple[float, float, float, float] = (M_LEFT, M_TOP, W - M_RIGHT, H - M_BOTTOM)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str, str]] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    legend: list[tuple[str, str, str]] = field(default_factory=list)  # (colour, label, kind: bar|line|dash)
    empty: str = ""


@dataclass
class NetworkPanel:
    network: str
    topology: str
    runs: int
    first: str
    last: str
    charts: list[Chart]


def _slots(n: int) -> tuple[float, float]:
    """Slot width and the x of slot 0's centre, for ``n`` runs across the plot."""
    x0, x1 = M_LEFT, W - M_RIGHT
    width = (x1 - x0) / max(n, 1)
    return width, x0 + width / 2


def _x_ticks(runs: Sequence[RunSummary]) -> list[tuple[float, str, str]]:
    width, c0 = _slots(len(runs))
    every = max(1, math.ceil(len(runs) / MAX_X_LABELS))
    out = []
    for i, r in enumerate(runs):
        if i % every and i != len(runs) - 1:
            continue
        if i != len(runs) - 1 and len(runs) - 1 - i < every and len(runs) > MAX_X_LABELS:
            continue  # keep the last label clear of its neighbour
        day, time = (r.started.strftime("%m-%d"), r.started.strftime("%H:%M")) if r.started else ("?", "")
        out.append((c0 + i * width, day, time))
    return out


def _y_axis(chart: Chart, top: float, unit: str) -> float:
    """Fill the y ticks; returns the value at the top of the plot."""
    ticks = nice_ticks(top)
    vmax = ticks[-1]
    _, y0, _, y1 = chart.plot
    chart.y_ticks = [(y1 - (y1 - y0) * t / vmax, fmt_int(t)) for t in ticks]
    chart.y_title = unit
    return vmax


def _y(chart: Chart, value: float, vmax: float) -> float:
    _, y0, _, y1 = chart.plot
    return y1 - (y1 - y0) * value / vmax


def _anchor(x: float) -> str:
    """Text anchor for a value label at ``x``: kept inside the plot near its left and right edges."""
    if x - M_LEFT < 16:
        return "start"
    if W - M_RIGHT - x < 16:
        return "end"
    return "middle"


def _labelled(values: Sequence[float | None]) -> set[int]:
    """Which points carry a value label: all when few, else the last, the lowest and the highest."""
    idx = [i for i, v in enumerate(values) if v is not None]
    if len(idx) <= MAX_VALUE_LABELS:
        return set(idx)
    vals = [(values[i], i) for i in idx]
    return {idx[-1], min(vals)[1], max(vals)[1]}


def _tip(r: RunSummary) -> str:
    return f"{r.run_id}\nstarted {fmt_time(r.started)} UTC"


def churn_chart(runs: Sequence[RunSummary], cid: str) -> Chart:
    """Grouped bars per run: VMs moved, VMI IP changes, guest IP changes (when measured), stale-IP hazards."""
    chart = Chart(
        id=cid,
        title="IP changes per run",
        note="VMs moved, how many came back at another address, and stale-IP hazards (an old address "
        "now held by another VM)",
        y_title="VMs",
    )
    series = [("moves", "VMs moved", C_MOVES), ("ip_changes", "VMI IP changed", C_IP)]
    if any(r.guest_ip_changes for r in runs):
        series.append(("guest_ip_changes", "guest IP changed", C_GUEST))
    series.append(("stale_ip_hazards", "stale-IP hazards", C_HAZARD))
    chart.legend = [(c, label, "bar") for _, label, c in series]
    top = max([getattr(r, k) for r in runs for k, _, _ in series] + [1])
    vmax = _y_axis(chart, top, "VMs (count)")
    chart.x_ticks = _x_ticks(runs)
    slot, c0 = _slots(len(runs))
    group = min(slot * 0.8, 26.0 * len(series))
    bw = group / len(series)
    # too thin to stand side by side: overlap them instead, the larger behind (moves >= IP changes >= hazards)
    overlap = bw < 6
    if overlap:
        bw = group
    _, _, _, base = chart.plot
    for k_i, (key, label, colour) in enumerate(series):
        values = [getattr(r, key) for r in runs]
        # every bar is labelled when there is room; else the IP changes (the figure of interest) and any
        # stale-IP hazard while a slot still holds two digits; in a dense chart only the latest run's
        if bw >= 13 or len(runs) <= 3 or (slot >= 18 and key == "ip_changes"):
            keep = _labelled(values)
        elif slot >= 18 and key == "stale_ip_hazards":
            keep = {i for i, v in enumerate(values) if v}
        elif key == "ip_changes":
            keep = {len(runs) - 1}
        else:
            keep = set()
        for i, (r, v) in enumerate(zip(runs, values, strict=True)):
            x = c0 + i * slot - group / 2 + (0 if overlap else k_i * bw)
            y = _y(chart, v, vmax)
            chart.bars.append(
                Bar(
                    x=x + 0.5,
                    y=y,
                    w=max(bw - (0 if overlap else 1), 1),
                    h=max(base - y, 0),
                    colour=colour,
                    tip=f"{_tip(r)}\n{label}: {fmt_int(v)}",
                    label=fmt_int(v) if i in keep else "",
                    anchor=_anchor(x + bw / 2),
                )
            )
    return chart


def _line_chart(
    runs: Sequence[RunSummary],
    cid: str,
    title: str,
    note: str,
    lines: Sequence[tuple[str, str, str, str]],  # (attribute, legend label, colour, dash)
    sublabel: str = "",
) -> Chart:
    chart = Chart(id=cid, title=title, note=note, y_title="addresses")
    values = {a: [getattr(r, a) for r in runs] for a, _, _, _ in lines}
    known = [v for vs in values.values() for v in vs if v is not None]
    if not known:
        chart.empty = "No capacity figures in these runs (run.json had no capacity rows)."
        return chart
    vmax = _y_axis(chart, max(known) * 1.08, "free addresses")
    chart.x_ticks = _x_ticks(runs)
    slot, c0 = _slots(len(runs))
    refs = [[None if v is None else _y(chart, v, vmax) for v in values[a]] for a, _, _, dash in lines if dash]
    for attr, label, colour, dash in lines:
        vs = values[attr]
        last = next((v for v in reversed(vs) if v is not None), None)
        chart.legend.append((colour, f"{label}: {fmt_int(last)}" if dash else label, "dash" if dash else "line"))
        pts = [(c0 + i * slot, _y(chart, v, vmax)) for i, v in enumerate(vs) if v is not None]
        chart.series.append(Series(colour, " ".join(f"{x:.1f},{y:.1f}" for x, y in pts), dash))
        if dash:
            continue  # a reference line: its value is in the legend
        keep = _labelled(vs)
        for i, (r, v) in enumerate(zip(runs, vs, strict=True)):
            if v is None:
                continue
            y = _y(chart, v, vmax)
            where = getattr(r, sublabel) if sublabel else ""
            crowded = any((ry := ref[i]) is not None and 0 <= y - ry < 26 for ref in refs)
            chart.points.append(
                Point(
                    x=c0 + i * slot,
                    y=y,
                    colour=colour,
                    tip=f"{_tip(r)}\n{label}: {fmt_int(v)}" + (f" ({where})" if where else ""),
                    label=fmt_int(v) if i in keep else "",
                    sublabel=where if (i in keep and where and len(runs) <= 8) else "",
                    below=crowded,
                    r=4.5 if slot >= 12 else 2.5,
                    anchor=_anchor(c0 + i * slot),
                )
            )
    return chart


def history_charts(runs: Sequence[RunSummary]) -> list[NetworkPanel]:
    """One panel per network (its runs oldest first): churn bars, lowest free per node, total free."""
    by_net: dict[str, list[RunSummary]] = {}
    for r in runs:
        by_net.setdefault(r.network or "(network unknown)", []).append(r)
    panels = []
    for n, (net, rs) in enumerate(sorted(by_net.items())):
        topo = rs[-1].topology
        charts = [churn_chart(rs, f"churn-{n}")]
        if topo != "Layer2":
            charts.append(
                _line_chart(
                    rs,
                    f"lowest-{n}",
                    "Lowest free addresses on one node",
                    "the node subnet with the fewest free addresses (Layer3: a VM starts or migrates only "
                    "onto a node with a free one)",
                    [("lowest_free", "free on the fullest node subnet", C_LOWEST, "")],
                    sublabel="lowest_free_node",
                )
            )
        charts.append(
            _line_chart(
                rs,
                f"total-{n}",
                "Free addresses, total",
                "all node subnets together" if topo != "Layer2" else "the network's one address pool (Layer2)",
                [
                    ("total_free", "free addresses", C_TOTAL, ""),
                    ("total_usable", "usable (capacity), latest", C_USABLE, "5 4"),
                ],
            )
        )
        panels.append(
            NetworkPanel(
                network=net,
                topology=topo or "topology unknown",
                runs=len(rs),
                first=fmt_time(rs[0].started),
                last=fmt_time(rs[-1].started),
                charts=charts,
            )
        )
    return panels


#: The history table: (header, right-aligned) — shared by the terminal and the HTML page.
COLUMNS: list[tuple[str, bool]] = [
    ("RUN", False),
    ("STARTED (UTC)", False),
    ("NETWORK", False),
    ("TOPOLOGY", False),
    ("VMS", True),
    ("READY", True),
    ("MOVES", True),
    ("IP CHANGES", True),
    ("GUEST IP CHANGES", True),
    ("STALE-IP HAZARDS", True),
    ("DOWNTIME ms P50/P95/P99/MAX", True),
    ("LOWEST FREE (NODE)", False),
    ("TOTAL FREE", True),
    ("STATUS", False),
]


def format_row(r: RunSummary) -> list[str]:
    """A run's cells for ``COLUMNS``, as text."""
    downtime = (
        "/".join(fmt_ms(v) for v in (r.downtime_p50_ms, r.downtime_p95_ms, r.downtime_p99_ms, r.downtime_max_ms))
        if r.downtime_count
        else "—"
    )
    lowest = f"{fmt_int(r.lowest_free)} ({r.lowest_free_node})" if r.lowest_free is not None else "—"
    return [
        r.run_id,
        fmt_time(r.started),
        r.network or "—",
        r.topology or "—",
        fmt_int(r.vms),
        fmt_int(r.ready),
        fmt_int(r.moves),
        fmt_int(r.ip_changes),
        fmt_int(r.guest_ip_changes) if r.guest_ip_changes else "—",
        fmt_int(r.stale_ip_hazards),
        downtime,
        lowest,
        fmt_int(r.total_free),
        r.status or "—",
    ]


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    import jinja2  # only --html needs it: the table command starts faster without

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def history_html(
    runs: Sequence[RunSummary], *, source: str = "", filters: str = "", generated: datetime | None = None
) -> str:
    """The page: summary cards, a row of charts per network, and the table of runs (newest first)."""
    latest = runs[-1] if runs else None
    cards = [
        ("Runs", fmt_int(len(runs)), ""),
        ("Networks", fmt_int(len({r.network for r in runs})), ""),
        ("IP changes, all runs", fmt_int(sum(r.ip_changes for r in runs)), ""),
        (
            "Stale-IP hazards, all runs",
            fmt_int(sum(r.stale_ip_hazards for r in runs)),
            "bad" if any(r.stale_ip_hazards for r in runs) else "good",
        ),
    ]
    if latest is not None:
        cards.append(
            (
                f"Lowest free on a node, latest run ({latest.run_id})",
                f"{fmt_int(latest.lowest_free)}" + (f" · {latest.lowest_free_node}" if latest.lowest_free_node else ""),
                "",
            )
        )
    return (
        _env()
        .get_template("history.html.j2")
        .render(
            title="udn-rollout run history",
            source=source,
            filters=filters,
            generated=fmt_time(generated or datetime.now(UTC)),
            period=f"{fmt_time(runs[0].started)} → {fmt_time(runs[-1].started)} UTC" if runs else "",
            cards=cards,
            panels=history_charts(runs),
            columns=COLUMNS,
            rows=[format_row(r) for r in reversed(runs)],
            colours={"ip": C_IP, "hazard": C_HAZARD},
        )
    )
