"""Churn: before/after per moved VM, the summary that says what the topology did to addresses."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
]


def churn_frame(rows: Sequence[ChurnRow]) -> pd.DataFrame:
    """A row per migrated VM: before/after node and IP, the change flags, migration outcome, hazard."""
    import pandas as pd

    return pd.DataFrame([[getattr(r, c) for c in CHURN_COLUMNS] for r in rows], columns=CHURN_COLUMNS)


def read_churn_csv(path: Path | str) -> list[ChurnRow]:
    """ChurnRows back from ``churn.csv`` (the derived columns are recomputed, not read)."""
    records: list[ChurnRow] = read_records(path, ChurnRow)
    return records


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
    if failed:
        problems.append(f"{failed} migration(s) failed")
    unfinished = n - succeeded - failed
    if unfinished:
        problems.append(f"{unfinished} migration(s) did not finish or were not recorded")
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
    return {
        "topology": topology,
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
        ("Duration P50 / P95 / max (s)", f"{fmt(d['p50'], 1)} / {fmt(d['p95'], 1)} / {fmt(d['max'], 1)}", ""),
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
            r.guest_ip_before or ("none" if r.reachable_after else "—"),
            bold(
                r.guest_ip_after or ("none" if r.reachable_after else ""),
                bool(r.reachable_after) and r.guest_ip_after != r.ip_after,
            )
            or "—",
            bold(r.reachable_after, r.reachable_after == "no") or "—",
            bold(r.migration_phase, r.migration_phase not in ("Succeeded", "")) if r.migration_phase else "—",
            fmt(r.duration_s, 1),
            bold(r.old_ip_holder, True),
            r.failure_reason or r.cause or "—",
        )
        for r in rows[:MAX_TABLE_ROWS]
    ]
    pair_rows = [
        (p["source"], p["target"], p["vms"], p["succeeded"], p["failed"], p["ip_changed"])
        for p in summary["by_node_pair"]
    ]
    figures = [(label, value) for label, value, _ in ctx["cards"]]
    return render("churn.md.j2", **ctx, figures=figures, pair_rows=pair_rows, vm_rows=vm_rows)


def churn_html(rows: Sequence[ChurnRow], summary: Mapping[str, Any], topology: str | None = None) -> str:
    """``churn.html``: self-contained page with summary cards, problems, the node-pair table and the
    before/after table per VM, changed cells highlighted (IP changes amber on Layer3 where expected,
    red on Layer2; failures and stale-IP hazards red), with a filter for changed/failed rows."""
    return render("churn.html.j2", **_churn_context(rows, summary, topology))
