"""The fleet report: one row per cluster of a fleet rollout, as the terminal, ``fleet.md``, ``fleet.html``,
``fleet.json`` and a Prefect table show it.

Pure functions over :class:`ClusterOutcome` records (plain data, built by :mod:`tasks.fleet` from each
cluster's result or read back from a Prefect artifact or ``fleet.json``), except
:func:`write_fleet_reports`, which writes the files. A fleet's directory is ``<reports root>/<run-id>/``;
each cluster's own reports are a reports root of their own below it, ``clusters/<cluster>/``, in which
its run writes ``<run-id>/`` exactly as a single-cluster run does (see :func:`cluster_reports_root`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tasks.reports.common import flatten, iso_utc, render, write_text

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PREFLIGHT = 3
EXIT_CLUSTER = 4

#: what each exit code means for one cluster of a fleet
STATUS = {
    EXIT_OK: "passed",
    EXIT_FAILED: "failed",
    EXIT_USAGE: "bad input",
    EXIT_PREFLIGHT: "preflight failed, nothing changed",
    EXIT_CLUSTER: "unreachable",
}

FLEET_FILES = ("fleet.md", "fleet.html", "fleet.json")
SCHEMA_VERSION = 1


@dataclass
class ClusterOutcome:
    """How one cluster's run of a fleet ended, in plain values (None: the run did not get that far)."""

    cluster: str
    context: str = ""
    server: str = ""
    exit_code: int = EXIT_OK
    vms: int | None = None
    vms_ready: int | None = None
    probes: int | None = None
    probes_failing: int | None = None
    migrated: int | None = None
    ip_changed: int | None = None
    stale_ip_hazards: int | None = None
    wall_s: float = 0.0
    failures: list[str] = field(default_factory=list)
    reports: str = ""  # the cluster's run directory (…/clusters/<cluster>/<run-id>)
    flow_run: str = ""  # the Prefect flow run that carried it, when one did
    worker: str = ""  # the Prefect worker that ran it, when one did

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    @property
    def status(self) -> str:
        return STATUS.get(self.exit_code, f"exit {self.exit_code}")

    @property
    def probes_passing(self) -> int | None:
        if self.probes is None:
            return None
        return self.probes - (self.probes_failing or 0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}

    def table_row(self) -> dict[str, Any]:
        """A row of a Prefect table artifact: flat values (the failures one per line)."""
        return {**self.to_dict(), "failures": "\n".join(self.failures)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClusterOutcome:
        """Back from :meth:`to_dict` or :meth:`table_row` (unknown keys ignored, numbers as text accepted)."""
        known = {f.name: f for f in fields(cls)}
        kw: dict[str, Any] = {}
        for key, value in d.items():
            if key not in known or value is None or value == "":
                continue
            if key == "failures":
                kw[key] = [str(x) for x in value] if isinstance(value, list) else str(value).splitlines()
            elif key == "wall_s":
                kw[key] = float(value)
            elif key in ("cluster", "context", "server", "reports", "flow_run", "worker"):
                kw[key] = str(value)
            else:
                kw[key] = int(float(value))
        return cls(**kw)


# ---- layout --------------------------------------------------------------------------------------


def cluster_dirname(name: str) -> str:
    """A directory name for a cluster: its name with anything but letters, digits, ``.``, ``_`` and ``-``
    replaced (OpenShift context names hold ``/`` and ``:``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "cluster"


def cluster_dirnames(names: Sequence[str]) -> dict[str, str]:
    """Distinct directory names for distinct cluster names: a short hash of the name is appended when
    two names would otherwise share a directory."""
    plain = {n: cluster_dirname(n) for n in names}
    taken: dict[str, int] = {}
    for d in plain.values():
        taken[d] = taken.get(d, 0) + 1
    return {
        n: d if taken[d] == 1 else f"{d}-{hashlib.sha1(n.encode(), usedforsecurity=False).hexdigest()[:6]}"
        for n, d in plain.items()
    }


def cluster_reports_root(fleet_dir: Path | str, dirname: str) -> Path:
    """The reports root of one cluster of a fleet: ``<fleet dir>/clusters/<dirname>``."""
    return Path(fleet_dir) / "clusters" / dirname


def artifact_key(cluster: str) -> str:
    """The key of a cluster's outcome artifact: ``fleet-cluster-<name>`` in Prefect's alphabet."""
    return "fleet-cluster-" + (re.sub(r"[^a-z0-9]+", "-", cluster.lower()).strip("-") or "cluster")


# ---- verdicts ------------------------------------------------------------------------------------


def fleet_exit_code(outcomes: Iterable[ClusterOutcome]) -> int:
    """0 when every cluster passed, otherwise the highest exit code among them (4 unreachable > 3
    preflight failed > 1 a step failed); a fleet of no clusters is bad input (2)."""
    codes = [o.exit_code for o in outcomes]
    if not codes:
        return EXIT_USAGE
    return max(codes) if any(codes) else EXIT_OK


def _total(outcomes: Sequence[ClusterOutcome], attr: str) -> int | None:
    values = [getattr(o, attr) for o in outcomes if getattr(o, attr) is not None]
    return sum(values) if values else None


def fleet_summary(outcomes: Sequence[ClusterOutcome]) -> dict[str, Any]:
    """The fleet's figures: clusters passed/failed (and which), totals over the clusters that got there."""
    failed = [o for o in outcomes if not o.ok]
    return {
        "clusters": len(outcomes),
        "passed": len(outcomes) - len(failed),
        "failed": len(failed),
        "failedClusters": [o.cluster for o in failed],
        "exitCode": fleet_exit_code(outcomes),
        "vms": _total(outcomes, "vms"),
        "vmsReady": _total(outcomes, "vms_ready"),
        "probes": _total(outcomes, "probes"),
        "probesPassing": _total(outcomes, "probes_passing"),
        "migrated": _total(outcomes, "migrated"),
        "ipChanged": _total(outcomes, "ip_changed"),
        "staleIpHazards": _total(outcomes, "stale_ip_hazards"),
    }


def _ratio(part: int | None, whole: int | None) -> str:
    return "—" if whole is None else f"{part or 0}/{whole}"


def _count(x: int | None) -> str:
    return "—" if x is None else str(x)


TABLE_HEADER = [
    "CLUSTER",
    "RESULT",
    "EXIT",
    "VMS READY",
    "PROBES PASSING",
    "MOVED",
    "IP CHANGED",
    "FAILURES",
    "REPORTS",
]


def fleet_rows(outcomes: Sequence[ClusterOutcome], max_failure_chars: int = 100) -> list[list[Any]]:
    """One row per cluster, in :data:`TABLE_HEADER`'s order: the terminal's and the Markdown table's."""
    rows = []
    for o in outcomes:
        first = o.failures[0] if o.failures else ""
        if len(first) > max_failure_chars:
            first = first[: max_failure_chars - 1] + "…"
        more = f" (+{len(o.failures) - 1} more)" if len(o.failures) > 1 else ""
        rows.append(
            [
                o.cluster,
                o.status,
                o.exit_code,
                _ratio(o.vms_ready, o.vms),
                _ratio(o.probes_passing, o.probes),
                _count(o.migrated),
                _count(o.ip_changed),
                (first + more) or "—",
                o.reports or "—",
            ]
        )
    return rows


def fleet_headline(run_id: str, outcomes: Sequence[ClusterOutcome]) -> str:
    """One line: how many clusters passed, and which did not with their exit codes."""
    s = fleet_summary(outcomes)
    line = f"fleet {run_id}: {s['passed']} of {s['clusters']} clusters passed"
    if s["failed"]:
        line += "; failed: " + ", ".join(f"{o.cluster} (exit {o.exit_code}, {o.status})" for o in outcomes if not o.ok)
    return line


def fleet_terminal(run_id: str, outcomes: Sequence[ClusterOutcome], width: int | None = None) -> str:
    """The summary the terminal shows at the end of a fleet rollout: the headline and a row per cluster."""
    from tasks.reports.terminal import table_text

    return fleet_headline(run_id, outcomes) + "\n" + table_text(TABLE_HEADER, fleet_rows(outcomes), width)


def relative_link(fleet_dir: Path | str, reports: str) -> str:
    """A cluster's ``summary.md`` relative to the fleet directory when it lies below it, else absolute."""
    if not reports:
        return ""
    target = Path(reports) / "summary.md"
    try:
        return str(target.resolve().relative_to(Path(fleet_dir).resolve()))
    except ValueError:
        return str(target)


def _context(
    run_id: str, outcomes: Sequence[ClusterOutcome], fleet_dir: Path | str, spec: Mapping[str, Any], generated: str
) -> dict[str, Any]:
    summary = fleet_summary(outcomes)
    cards = [
        ("clusters passed", f"{summary['passed']}/{summary['clusters']}", "good" if not summary["failed"] else "bad"),
        ("VMs ready", _ratio(summary["vmsReady"], summary["vms"]), ""),
        ("probes passing", _ratio(summary["probesPassing"], summary["probes"]), ""),
        ("VMs moved", _count(summary["migrated"]), ""),
        ("IP changed", _count(summary["ipChanged"]), ""),
    ]
    return {
        "title": f"Fleet rollout {run_id}",
        "run_id": run_id,
        "generated": generated,
        "summary": summary,
        "cards": cards,
        "header": TABLE_HEADER,
        "rows": fleet_rows(outcomes),
        "outcomes": outcomes,
        "links": {o.cluster: relative_link(fleet_dir, o.reports) for o in outcomes},
        "spec": flatten(spec),
        "prefect": any(o.flow_run or o.worker for o in outcomes),
    }


def fleet_markdown(
    run_id: str,
    outcomes: Sequence[ClusterOutcome],
    fleet_dir: Path | str = ".",
    spec: Mapping[str, Any] | None = None,
    generated: str = "",
) -> str:
    """``fleet.md``: the verdict, a row per cluster, each failed cluster's failures, links to each cluster's reports."""
    return render("fleet.md.j2", **_context(run_id, outcomes, fleet_dir, spec or {}, generated))


def fleet_html(
    run_id: str,
    outcomes: Sequence[ClusterOutcome],
    fleet_dir: Path | str = ".",
    spec: Mapping[str, Any] | None = None,
    generated: str = "",
) -> str:
    """``fleet.html``: the same as ``fleet.md`` as a self-contained page, failed clusters in red."""
    return render("fleet.html.j2", **_context(run_id, outcomes, fleet_dir, spec or {}, generated))


def fleet_document(
    run_id: str, outcomes: Sequence[ClusterOutcome], spec: Mapping[str, Any] | None = None, generated: str = ""
) -> dict[str, Any]:
    """``fleet.json``: the summary and every cluster's outcome."""
    return {
        "schema": SCHEMA_VERSION,
        "runId": run_id,
        "generatedAt": generated,
        "spec": dict(spec or {}),
        "summary": fleet_summary(outcomes),
        "clusters": [o.to_dict() for o in outcomes],
    }


def read_fleet_json(path: Path | str) -> tuple[str, list[ClusterOutcome]]:
    """(run id, outcomes) back from a ``fleet.json``."""
    doc = orjson.loads(Path(path).read_bytes())
    return str(doc.get("runId", "")), [ClusterOutcome.from_dict(c) for c in doc.get("clusters", [])]


def write_fleet_reports(
    fleet_dir: Path | str,
    run_id: str,
    outcomes: Sequence[ClusterOutcome],
    spec: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``fleet.json``, ``fleet.md`` and ``fleet.html`` into the fleet's directory; returns them by name."""
    out = Path(fleet_dir)
    generated = iso_utc(datetime.now(UTC).timestamp())
    doc = fleet_document(run_id, outcomes, spec, generated)
    write_text(out / "fleet.json", orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    write_text(out / "fleet.md", fleet_markdown(run_id, outcomes, out, spec, generated))
    write_text(out / "fleet.html", fleet_html(run_id, outcomes, out, spec, generated))
    return {name: out / name for name in FLEET_FILES}
