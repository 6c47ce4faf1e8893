"""Capacity and preflight: per-node subnet use and headroom, and the checks made before any change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tasks.model import Check
from tasks.reports.common import md_table, render

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
    return render(
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
    return render("preflight.md.j2", verdict=verdict, counts=counts, rows=rows)
