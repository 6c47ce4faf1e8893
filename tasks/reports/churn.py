"""Churn: before/after and downtime per move, drains per node, the summary that says what the topology
did to addresses, and the charts by node."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.model import ChurnRow
from tasks.reports.common import MAX_TABLE_ROWS, fmt, natural_key, percentiles, read_records, render

if TYPE_CHECKING:
    import pandas as pd

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
    "action",
    "guest_ip_before",
    "guest_ip_after",
    "reachable_after",
    "cause",
    "move",
    "drain_node",
    "via",
    "downtime_ms",
    "packets_lost",
    "first_reply_ip",
    "last_reply_before",
    "first_reply_after",
    "downtime_peer",
    "downtime_note",
]
ACTION_TITLES = {"migrate": "live migration", "restart": "restart (stop/start)", "drain": "rolling drain"}


def churn_frame(rows: Sequence[ChurnRow]) -> pd.DataFrame:
    """A row per migrated VM: before/after node and IP, the change flags, migration outcome, hazard."""
    import pandas as pd

    return pd.DataFrame([[getattr(r, c) for c in CHURN_COLUMNS] for r in rows], columns=CHURN_COLUMNS)


def read_churn_csv(path: Path | str) -> list[ChurnRow]:
    """ChurnRows back from ``churn.csv`` (the derived columns are recomputed, not read)."""
    records: list[ChurnRow] = read_records(path, ChurnRow)
    return records


def _quantiles(values: Sequence[float]) -> dict[str, Any]:
    p50, p95, p99 = percentiles(values, [50, 95, 99])
    return {
        "count": len(values),
        "p50": None if not values else round(p50, 1),
        "p95": None if not values else round(p95, 1),
        "p99": None if not values else round(p99, 1),
        "max": round(max(values), 1) if values else None,
    }


def downtime_summary(rows: Sequence[ChurnRow], topology: str) -> list[dict[str, Any]]:
    """Per (topology, action): downtime quantiles (ms) over the measured moves, moves with no reply
    after, moves not measured, and packets lost."""
    by_action: dict[str, list[ChurnRow]] = {}
    for r in rows:
        by_action.setdefault(r.action or "migrate", []).append(r)
    out = []
    for action in sorted(by_action):
        group = by_action[action]
        measured = [r.downtime_ms for r in group if r.downtime_ms is not None]
        silent = [r for r in group if r.downtime_ms is None and r.last_reply_before]
        out.append(
            {
                "topology": topology,
                "action": action,
                "moves": len(group),
                **_quantiles(measured),
                "no_reply_after": len(silent),
                "not_measured": len(group) - len(measured) - len(silent),
                "packets_lost": sum(r.packets_lost or 0 for r in group),
            }
        )
    return out


def by_node(rows: Sequence[ChurnRow]) -> list[dict[str, Any]]:
    """Per source node: moves, IP changes, moves that failed, and downtime P50/max (ms) — the chart's data."""
    nodes: dict[str, dict[str, Any]] = {}
    for r in rows:
        node = r.node_before or "—"
        n = nodes.setdefault(node, {"node": node, "moves": 0, "ip_changed": 0, "failed": 0, "_dt": []})
        n["moves"] += 1
        n["ip_changed"] += r.ip_changed
        n["failed"] += r.migration_phase != "Succeeded"
        if r.downtime_ms is not None:
            n["_dt"].append(r.downtime_ms)
    out = []
    for node in sorted(nodes, key=natural_key):
        n = nodes[node]
        dts = n.pop("_dt")
        q = _quantiles(dts)
        out.append({**n, "downtime_p50_ms": q["p50"], "downtime_max_ms": q["max"], "downtime_count": len(dts)})
    return out


def churn_summary(
    rows: Sequence[ChurnRow],
    topology: str,
    *,
    drains: Sequence[Mapping[str, Any]] = (),
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Counts for the churn report, and ``problems``: what contradicts the topology's promise.

    A row is one move (a rolling drain can move a VM several times). On Layer2 no IP may change; on
    Layer3 a VM that changed node must have changed IP; failed or unfinished moves and stale-IP
    hazards are listed too. ``ip_changed_pct_of_moved`` is the share of moves that changed node and IP
    among those that changed node (None when none moved). Durations (seconds) are over succeeded
    moves; downtimes (ms) per action, as a peer that stayed measured them.
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
    by_pair = [pairs[k] for k in sorted(pairs, key=lambda k: (natural_key(k[0]), natural_key(k[1])))]

    durations = [r.duration_s for r in rows if r.duration_s is not None and r.migration_phase == "Succeeded"]
    p50, p95 = percentiles(durations, [50, 95])

    problems: list[str] = []
    if topology == "Layer2" and ip_changed:
        problems.append(f"{ip_changed} VM(s) changed IP on Layer2, where addresses must survive migration")
    if topology == "Layer3":
        kept = len(moved) - moved_ip
        if kept:
            problems.append(f"{kept} VM(s) changed node but kept their IP on Layer3 (expected a target-node address)")
    kinds = {r.action or "migrate" for r in rows}
    noun = (
        {"migrate": "migration(s)", "restart": "restart(s)"}.get(next(iter(kinds)), "move(s)")
        if len(kinds) == 1
        else "move(s)"
    )
    if failed:
        problems.append(f"{failed} {noun} failed")
    unfinished = n - succeeded - failed
    if unfinished:
        problems.append(f"{unfinished} {noun} did not finish or were not recorded")
    silent_after = [
        r for r in rows if r.downtime_ms is None and r.last_reply_before and r.migration_phase == "Succeeded"
    ]
    if silent_after:
        problems.append(
            f"{len(silent_after)} VM(s) answered a peer's ping before the move and never after it "
            f"(first: {silent_after[0].namespace}/{silent_after[0].vm}: {silent_after[0].downtime_note or 'no reply'})"
        )
    unreachable = [r for r in rows if r.reachable_after == "no"]
    if unreachable:
        problems.append(
            f"{len(unreachable)} moved VM(s) did not answer at their VMI address afterwards: {unreachable[0].cause}"
        )
    if hazards:
        shown = ", ".join(f"{r.namespace}/{r.vm} → {r.old_ip_holder}" for r in hazards[:5])
        problems.append(f"{len(hazards)} stale-IP hazard(s): an old address now belongs to another VM ({shown})")

    probed = [r for r in rows if r.reachable_after]
    after: dict[str, Any] = {}
    if probed:
        reached = sum(r.reachable_after == "yes" for r in probed)
        causes: dict[str, int] = {}
        for r in probed:
            if r.cause:
                causes[r.cause] = causes.get(r.cause, 0) + 1
        holding = sum(1 for r in probed if r.ip_after and r.ip_after in r.guest_ip_after.split())
        after = {
            "probed": len(probed),
            "reachable": reached,
            "guest_holds_vmi_ip": holding,
            "causes": sorted(causes.items(), key=lambda kv: -kv[1]),
            "line": (
                f"After the move {reached} of {len(probed)} moved VMs answered at their VMI address from a VM "
                f"that stayed; {holding} of {len(probed)} guests held the address their VMI status reports "
                "(read over the serial console)."
            ),
        }
    actions = sorted({r.action or "migrate" for r in rows})
    return {
        "topology": topology,
        "actions": actions,
        "vms": len({(r.namespace, r.vm) for r in rows}),
        "moves": n,
        "downtime": downtime_summary(rows, topology),
        "by_node": by_node(rows),
        "drains": [dict(d) for d in drains],
        "notes": list(notes),
        "selected": n,
        "after": after,
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


#: Nodes drawn in the charts (the busiest first when there are more; the tables keep every node).
MAX_CHART_NODES = 60


def node_charts(nodes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Two horizontal bar charts by source node, as inline SVG (pure): moves with IP changes and
    failures, and downtime P50 / max. Each bar carries its number, so the chart reads without hovering."""
    shown = sorted(nodes, key=lambda n: -n["moves"])[:MAX_CHART_NODES]
    shown = sorted(shown, key=lambda n: natural_key(n["node"]))
    if not shown:
        return []
    label_w, bar_w, row_h = 150, 520, 22
    charts = []
    series = [
        (
            "moves",
            "Moves, IP changes and failures by source node",
            [("moves", "moves", "#9aa5b1"), ("ip_changed", "IP changed", "#f0a830"), ("failed", "failed", "#c0392b")],
            "",
        ),
        (
            "downtime",
            "Downtime by source node (ms, as a peer's ping saw it)",
            [("downtime_p50_ms", "P50", "#2e86c1"), ("downtime_max_ms", "max", "#1b4f72")],
            " ms",
        ),
    ]
    for key, title, bars, unit in series:
        top = max((float(n.get(k) or 0) for n in shown for k, _, _ in bars), default=0.0)
        if top <= 0:
            continue
        per_row = row_h * len(bars) + 8
        height = per_row * len(shown) + 30
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 90}" height="{height}" '
            f'role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="12">'
        ]
        for i, n in enumerate(shown):
            y0 = 20 + i * per_row
            parts.append(
                f'<text x="{label_w - 8}" y="{y0 + per_row / 2}" text-anchor="end" dominant-baseline="middle">{n["node"]}</text>'
            )
            for j, (field, _, colour) in enumerate(bars):
                value = float(n.get(field) or 0)
                w = 0 if top <= 0 else max(1.0 if value else 0.0, bar_w * value / top)
                y = y0 + j * row_h
                shown_value = fmt(n.get(field), 0)
                parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row_h - 4}" fill="{colour}"/>')
                parts.append(
                    f'<text x="{label_w + w + 4:.1f}" y="{y + (row_h - 4) / 2}" dominant-baseline="middle">'
                    f"{shown_value}{unit if n.get(field) is not None else ''}</text>"
                )
        parts.append("</svg>")
        charts.append(
            {
                "id": f"chart-{key}",
                "title": title,
                "svg": "".join(parts),
                "legend": [(label, colour) for _, label, colour in bars],
                "cut": len(nodes) - len(shown),
            }
        )
    return charts


def _churn_context(rows: Sequence[ChurnRow], summary: Mapping[str, Any], topology: str | None) -> dict[str, Any]:
    topo = topology or summary.get("topology", "")
    d = summary["duration_s"]
    pct = summary["ip_changed_pct_of_moved"]
    actions = summary.get("actions") or ["migrate"]
    what = " + ".join(ACTION_TITLES.get(a, a) for a in actions)
    measured = [x for x in summary.get("downtime") or [] if x["count"]]
    cards = [
        ("VMs", summary.get("vms", summary["selected"]), ""),
        ("Moves", summary.get("moves", summary["selected"]), ""),
        ("Succeeded", summary["succeeded"], "good" if summary["succeeded"] == summary["selected"] else ""),
        ("Failed", summary["failed"], "bad" if summary["failed"] else "good"),
        ("Changed node", summary["node_changed"], ""),
        (
            "Changed IP",
            f"{summary['ip_changed']}" + (f" ({pct:.0f} % of moved)" if pct is not None else ""),
            "bad" if topo == "Layer2" and summary["ip_changed"] else "",
        ),
        ("Stale-IP hazards", summary["stale_ip_hazards"], "bad" if summary["stale_ip_hazards"] else "good"),
        *(
            [
                (
                    "Answered after the move",
                    f"{summary['after']['reachable']} / {summary['after']['probed']}",
                    "good" if summary["after"]["reachable"] == summary["after"]["probed"] else "bad",
                )
            ]
            if summary.get("after")
            else []
        ),
        *(
            [
                (
                    f"Downtime P50 / P95 / max ({x['action']}, ms)",
                    f"{fmt(x['p50'], 0)} / {fmt(x['p95'], 0)} / {fmt(x['max'], 0)}",
                    "",
                )
                for x in measured
            ]
        ),
        ("Duration P50 / P95 / max (s)", f"{fmt(d['p50'], 1)} / {fmt(d['p95'], 1)} / {fmt(d['max'], 1)}", ""),
    ]
    return {
        "title": f"Churn: {what} ({topo or 'topology unknown'})",
        "topology": topo,
        "actions": actions,
        "summary": summary,
        "cards": cards,
        "rows": rows,
        "charts": node_charts(summary.get("by_node") or []),
        "max_rows": MAX_TABLE_ROWS * 25,
    }


def churn_markdown(rows: Sequence[ChurnRow], summary: Mapping[str, Any], topology: str | None = None) -> str:
    """``churn.md``: summary figures, problems, downtime per action, drains per node, the node-pair
    table and a before/after table per move (changed values in bold)."""
    ctx = _churn_context(rows, summary, topology)

    def bold(value: str, changed: bool) -> str:
        return f"**{value}**" if changed and value else value or "—"

    vm_rows = [
        (
            r.namespace,
            r.vm,
            f"{r.action} {r.move}" if r.move > 1 or r.action != "migrate" else r.action,
            r.node_before or "—",
            bold(r.node_after, r.node_changed),
            r.ip_before or "—",
            bold(r.ip_after, r.ip_changed),
            r.guest_ip_before or ("none" if r.reachable_after else "—"),
            bold(
                r.guest_ip_after or ("none" if r.reachable_after else ""),
                bool(r.reachable_after) and r.guest_ip_after != r.ip_after,
            )
            or "—",
            bold(r.reachable_after, r.reachable_after == "no") or "—",
            fmt(r.downtime_ms, 0),
            fmt(r.packets_lost, 0),
            r.first_reply_ip or "—",
            bold(r.migration_phase, r.migration_phase not in ("Succeeded", "")) if r.migration_phase else "—",
            fmt(r.duration_s, 1),
            bold(r.old_ip_holder, True),
            r.failure_reason or r.cause or r.downtime_note or "—",
        )
        for r in rows[:MAX_TABLE_ROWS]
    ]
    pair_rows = [
        (p["source"], p["target"], p["vms"], p["succeeded"], p["failed"], p["ip_changed"])
        for p in summary["by_node_pair"]
    ]
    downtime_rows = [
        (
            x["topology"],
            x["action"],
            x["moves"],
            x["count"],
            fmt(x["p50"], 0),
            fmt(x["p95"], 0),
            fmt(x["p99"], 0),
            fmt(x["max"], 0),
            x["no_reply_after"],
            x["not_measured"],
            x["packets_lost"],
        )
        for x in summary.get("downtime") or []
    ]
    drain_rows = [
        (d["node"], d["started"], fmt(d["duration_s"], 1), d["vms"], d["moved"], d["failed"], d.get("note") or "—")
        for d in summary.get("drains") or []
    ]
    figures = [(label, value) for label, value, _ in ctx["cards"]]
    return render(
        "churn.md.j2",
        **ctx,
        figures=figures,
        pair_rows=pair_rows,
        vm_rows=vm_rows,
        downtime_rows=downtime_rows,
        drain_rows=drain_rows,
    )


def churn_html(rows: Sequence[ChurnRow], summary: Mapping[str, Any], topology: str | None = None) -> str:
    """``churn.html``: self-contained page with summary cards, problems, charts by node (moves, IP
    changes, downtime), downtime per action, drains per node, the node-pair table and the per-move
    table, changed cells highlighted (IP changes amber on Layer3 where expected, red on Layer2;
    failures and stale-IP hazards red), with a filter for changed/failed rows."""
    return render("churn.html.j2", **_churn_context(rows, summary, topology))
