"""Connectivity: the ping matrix by namespace and by node, failing pairs, isolation verdicts, heatmaps."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tasks.model import ProbeResult
from tasks.reports.common import (
    MAX_MARKDOWN_MATRIX,
    MAX_TABLE_ROWS,
    flatten,
    fmt,
    isnan,
    md_table,
    natsorted,
    natural_key,
    read_records,
    render,
)

if TYPE_CHECKING:
    import pandas as pd

PROBE_COLUMNS = [f.name for f in dataclasses.fields(ProbeResult)] + ["passed"]


def probes_frame(results: Sequence[ProbeResult]) -> pd.DataFrame:
    """A row per probe: every ProbeResult field plus ``passed``."""
    import pandas as pd

    fields = PROBE_COLUMNS[:-1]
    return pd.DataFrame([[*(getattr(r, f) for f in fields), r.passed] for r in results], columns=PROBE_COLUMNS)


def read_probes_csv(path: Path | str) -> list[ProbeResult]:
    """ProbeResults back from ``connectivity.csv``."""
    records: list[ProbeResult] = read_records(path, ProbeResult)
    return records


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
        return statistics.median(self.rtts) if self.rtts else math.nan


Group = Literal["namespace", "node"]


#: Up to this many VMs the HTML page also shows the matrix VM × VM.
MAX_VM_MATRIX = 50


def _cells(results: Iterable[ProbeResult], by: Group | Literal["vm"]) -> dict[tuple[str, str], _Cell]:
    if by not in ("namespace", "node", "vm"):
        raise ValueError(f"by must be 'namespace' or 'node', not {by!r}")
    cells: dict[tuple[str, str], _Cell] = {}
    for p in results:
        if p.kind != "mesh":
            continue
        if by == "vm":
            s = f"{p.src_namespace}/{p.src_vm}"
            d = f"{p.dst_namespace}/{p.dst_vm}" if p.dst_vm else ""
        else:
            s, d = getattr(p, f"src_{by}"), getattr(p, f"dst_{by}")
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
    return natsorted({g for pair in cells for g in pair})


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
    import pandas as pd

    axis = _axes(cells)
    idx = {g: i for i, g in enumerate(axis)}
    grid = [[math.nan] * len(axis) for _ in axis]
    for (s, d), c in cells.items():
        grid[idx[s]][idx[d]] = c.loss if value == "loss" else c.rtt
    df = pd.DataFrame(
        grid, dtype=float, index=pd.Index(axis, name=f"source {by}"), columns=pd.Index(axis, name=f"target {by}")
    )
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
    "cause",
]
GUEST_HEADER = ["VM", "Node", "VMI address", "Guest's addresses", "Guest MAC", "What the guest holds"]


def failing_pairs(results: Sequence[ProbeResult]) -> pd.DataFrame:
    """Mesh probes that did not get the reply they expected, one row per (source VM, target)."""
    import pandas as pd

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
    import pandas as pd

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
    for ip in natsorted(targets):
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
        "rtt_median_ms": round(statistics.median(rtts), 3) if rtts else None,
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
    bad.sort(key=lambda t: (-(t[2].loss if not math.isnan(t[2].loss) else 101.0), natural_key(t[0]), natural_key(t[1])))
    return [(s, d, c.probes, c.failed, fmt(c.loss, 1), fmt(c.rtt, 2)) for s, d, c in bad[:limit]]


@dataclasses.dataclass(slots=True)
class Analysis:
    """Everything the connectivity views need, computed once from the probes."""

    cells: dict[str, dict[tuple[str, str], _Cell]]
    failing: pd.DataFrame
    isolation: pd.DataFrame
    summary: dict[str, Any]
    causes: list[tuple[str, int]]


def analyse(results: Sequence[ProbeResult]) -> Analysis:
    iso = isolation_verdicts(results)
    return Analysis(
        cells={"namespace": _cells(results, "namespace"), "node": _cells(results, "node"), "vm": _cells(results, "vm")},
        failing=failing_pairs(results),
        isolation=iso,
        summary=connectivity_summary(results, iso),
        causes=causes(results),
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
                row.append("—" if isnan(lv) else f"{lv:.0f} % / {fmt(rv, 2)}")
            rows.append(row)
        out["table"] = md_table([f"{by} → {by}", *loss.columns], rows, "l" + "r" * n)
    return out


def connectivity_markdown(
    results: Sequence[ProbeResult], plan_coverage: Mapping[str, Any] | None = None, title: str = "Connectivity"
) -> str:
    """``connectivity.md``: verdict and figures, plan coverage, matrices (loss % / median RTT ms) by
    namespace and by node (up to 20 groups; above that the worst cells), failing pairs, isolation."""
    return connectivity_md_text(analyse(results), plan_coverage, title)


def causes(results: Sequence[ProbeResult]) -> list[tuple[str, int]]:
    """Each cause of a failing probe once, with how many probes it explains, most first."""
    counts: dict[str, int] = {}
    for p in results:
        if not p.passed:
            key = p.cause or p.error or p.outcome
            counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def guest_rows(guests: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """Rows of ``guests.csv`` for the views: the VMI's address beside the guest's own."""
    return [
        (
            f"{g.get('namespace', '')}/{g.get('vm', '')}",
            str(g.get("node", "")),
            str(g.get("vmi_ips", "")) or "—",
            str(g.get("guest_ips", "")) or "none",
            str(g.get("guest_mac", "")) or "—",
            str(g.get("verdict", "")) + (f" ({g['error']})" if g.get("error") else ""),
        )
        for g in guests
    ]


def guest_counts(guests: Sequence[Mapping[str, Any]]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for g in guests:
        v = str(g.get("verdict", ""))
        counts[v] = counts.get(v, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])


def connectivity_md_text(
    a: Analysis, plan_coverage: Mapping[str, Any] | None, title: str, guests: Sequence[Mapping[str, Any]] = ()
) -> str:
    fp, iso = a.failing, a.isolation
    return render(
        "connectivity.md.j2",
        title=title,
        causes=a.causes,
        guests=guest_rows(guests)[:MAX_TABLE_ROWS],
        guests_total=len(guests),
        guest_counts=guest_counts(guests),
        guest_header=GUEST_HEADER,
        summary=a.summary,
        coverage=flatten(plan_coverage or {}),
        coverage_rows=[(k, v, COVERAGE_HELP.get(k, "")) for k, v in flatten(plan_coverage or {})],
        coverage_help=COVERAGE_HELP,
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

#: What each figure of the probe plan's coverage means, in words (the reports show them side by side).
COVERAGE_HELP: dict[str, str] = {
    "mode": "full = every VM pings every other; sampled = a plan that still covers every pair of nodes and of namespaces",
    "vms": "VMs in the plan (Running, with an address)",
    "probes": "pings planned in all (mesh and isolation)",
    "mesh_probes": "pings between the run's VMs, which must be answered",
    "isolation_probes": "pings to addresses outside the network (the canary), which must stay silent",
    "k": "sampled mode: the least number of probes every VM sends and receives (connectivity.peersPerVm)",
    "min_sent": "the fewest probes any one VM sent",
    "max_sent": "the most probes any one VM sent",
    "min_received": "the fewest probes any one VM received",
    "max_received": "the most probes any one VM received",
    "node_pairs_required": "ordered pairs of nodes (source, target) that have VMs on both sides",
    "node_pairs_covered": "of those, pairs with at least one probe",
    "namespace_pairs_required": "ordered pairs of namespaces that have VMs on both sides",
    "namespace_pairs_covered": "of those, pairs with at least one probe",
    "early_probes": "of all probes, those run while the fleet came up, each VM pinging the VMs Ready just "
    "before it (connectivity.probeWhileFanningOut)",
}


def loss_colour(loss: float | None) -> str:
    """Heatmap colour for a loss %: green at 0; amber for the least loss, through orange, to red at 100.

    The jump from green to amber is deliberate: 1 % loss must not look like 0 %. NaN/None (no packet
    sent, only probe errors) is purple.
    """
    if loss is None or isnan(loss):
        return ERROR_COLOUR
    if loss <= 0:
        return "#{:02x}{:02x}{:02x}".format(*_GREEN)
    t = min(100.0, float(loss)) / 100.0
    rgb = tuple(round(a + (b - a) * t) for a, b in zip(_AMBER, _RED, strict=True))
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _text_colour(loss: float | None) -> str:
    return "#fff" if loss is None or isnan(loss) or loss <= 0 or loss >= 40 else "#111"


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
                row.append(
                    {"bg": NOT_PROBED_COLOUR, "fg": "#777", "text": "", "sub": "", "tip": f"{s} → {d}\nnot probed"}
                )
                continue
            loss, rtt = c.loss, c.rtt
            tip = (
                f"{s} → {d}\n{c.probes} probes, {c.failed} failed"
                + (f", {c.errors} errors" if c.errors else "")
                + (f"\nloss {loss:.1f} % ({c.tx - c.rx} of {c.tx} packets)" if c.tx else "\nno packets sent")
                + (f"\nmedian RTT {rtt:.2f} ms" if not math.isnan(rtt) else "\nno reply: no RTT")
            )
            if size == "l":  # loss with its unit, and the round trip, readable without hovering
                text = "unsent" if isnan(loss) else f"{loss:.0f} %"
                sub_text = "" if math.isnan(rtt) else f"{rtt:.1f} ms"
            else:
                text, sub_text = "", ""
            row.append({"bg": loss_colour(loss), "fg": _text_colour(loss), "text": text, "sub": sub_text, "tip": tip})
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
    return connectivity_html_text(analyse(results), plan_coverage, title)


def connectivity_html_text(
    a: Analysis, plan_coverage: Mapping[str, Any] | None, title: str, guests: Sequence[Mapping[str, Any]] = ()
) -> str:
    fp, iso = a.failing, a.isolation
    return render(
        "connectivity.html.j2",
        title=title,
        causes=a.causes,
        guests=guest_rows(guests)[: MAX_TABLE_ROWS * 5],
        guests_total=len(guests),
        guest_counts=guest_counts(guests),
        guest_header=GUEST_HEADER,
        summary=a.summary,
        coverage=flatten(plan_coverage or {}),
        heatmaps=[
            _heatmap(a.cells["namespace"], "namespace", "Namespace → namespace"),
            _heatmap(a.cells["node"], "node", "Node → node"),
            *([_heatmap(a.cells["vm"], "vm", "VM → VM")] if 0 < len(_axes(a.cells["vm"])) <= MAX_VM_MATRIX else []),
        ],
        coverage_help=COVERAGE_HELP,
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
