"""Read one run's report directory (``reports/<run-id>/``) into a ``RunRecord``.

This is the only module that knows the report files' layout, so when ``run.json`` or a CSV changes,
only this file changes. What it reads (every key optional unless said):

``run.json`` (required: it marks a run directory)
    ``runId`` (else the directory's name); ``spec.network`` (a name, or ``{name, topology}``),
    ``spec.topology``, else ``churn.topology`` / ``capacity.summary.topology``; the cluster's server URL
    from ``cluster.server``, ``clusterServer`` or ``server``; ``status`` (else ``ok`` when every
    ``steps[].ok``, ``failed`` when one is not, ``unknown`` without steps); ``startedAt``/``finishedAt``
    when present, else started = the earliest of ``inventory.csv``'s ``created`` and ``generatedAt``
    minus ``figures.rollout.wall_s``, finished = ``generatedAt``; ``capacity.rows`` (a row per node
    subnet, or one Layer2 pool row: ``node``/``cidr``, ``subnet``, ``usable``, ``existing`` + ``planned``
    or ``in_use``, ``headroom``/``free``/``free_after``), else ``capacity.headroom`` rows.
``inventory.csv`` (optional): ``namespace``, ``name`` required; ``node``, ``ip``, ``phase``, ``ready``.
``churn.csv`` (optional): ``namespace`` and ``vm`` (or ``name``) required; ``action`` (default
    ``migrate``; values other than migrate/restart/drain are kept as written, with a warning),
    ``node_before/after``, ``ip_before/after``, ``guest_ip_before/after``, ``migration_phase`` (or
    ``outcome``), ``duration_s``, ``downtime_ms``, ``packets_lost``, ``first_reply_ip``,
    ``old_ip_holder``, ``stale_ip_hazard``, ``failure_reason``.

A cell that should be a number and is not is an ``IngestError`` naming file, line and column.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tasks.history.records import (
    DEFAULT_ACTION,
    KNOWN_ACTIONS,
    CapacityRow,
    IngestError,
    MoveRow,
    RunRecord,
    VMRow,
)

__all__ = ["find_run_dirs", "parse_time", "read_run_dir"]

_MISSING = ("", "nan", "NaN", "None", "null", "—")


def parse_time(text: Any) -> datetime | None:
    """ISO-8601 (``Z`` or an offset; naive means UTC) → aware UTC datetime; None for empty."""
    if text is None or (isinstance(text, str) and text.strip() in _MISSING):
        return None
    if isinstance(text, (int, float)):
        return datetime.fromtimestamp(float(text), tz=UTC)
    dt = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def find_run_dirs(path: Path | str) -> list[Path]:
    """``path`` itself when it holds a ``run.json``, else its subdirectories that do (a reports root)."""
    p = Path(path)
    if not p.is_dir():
        raise IngestError(f"{p} is not a directory: give a run's report directory, e.g. reports/<run-id>/")
    if (p / "run.json").is_file():
        return [p]
    runs = sorted(d for d in p.iterdir() if d.is_dir() and (d / "run.json").is_file())
    if not runs:
        raise IngestError(
            f"{p} holds no run.json, nor do its subdirectories: give a run's report directory "
            "(reports/<run-id>/) or a reports root holding them"
        )
    return runs


def _get(d: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)
    return d


def _first(state: Mapping[str, Any], *paths: str) -> Any:
    for p in paths:
        v = _get(state, p)
        if v not in (None, ""):
            return v
    return None


def _csv_rows(path: Path, required: tuple[tuple[str, ...], ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV file; ``required`` lists alternatives per needed column."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or ())
        for alternatives in required:
            if not columns & set(alternatives):
                raise IngestError(
                    f"{path}: no column {' or '.join(repr(a) for a in alternatives)} "
                    f"(columns: {', '.join(reader.fieldnames or ()) or 'none'})"
                )
        for i, row in enumerate(reader, start=2):
            yield i, {k: (v or "").strip() for k, v in row.items() if k is not None}


def _float(row: Mapping[str, str], col: str, where: str) -> float | None:
    s = row.get(col, "")
    if s in _MISSING:
        return None
    try:
        return float(s)
    except ValueError:
        raise IngestError(f"{where}, column {col}: {s!r} is not a number") from None


def _int(value: Any, where: str) -> int | None:
    if value is None or (isinstance(value, str) and value.strip() in _MISSING):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise IngestError(f"{where}: {value!r} is not a number") from None


def _bool(s: str) -> bool:
    return s.strip().lower() in ("true", "1", "yes")


def _read_inventory(path: Path, warnings: list[str]) -> tuple[list[VMRow], datetime | None]:
    vms: dict[tuple[str, str], VMRow] = {}
    earliest: datetime | None = None
    for line, r in _csv_rows(path, (("namespace",), ("name",))):
        key = (r["namespace"], r["name"])
        if key in vms:
            warnings.append(f"{path.name} line {line}: {key[0]}/{key[1]} listed twice; the last row is kept")
        vms[key] = VMRow(
            namespace=key[0],
            name=key[1],
            node=r.get("node", ""),
            ip=r.get("ip", ""),
            phase=r.get("phase", ""),
            ready=_bool(r.get("ready", "")),
        )
        created = r.get("created", "")
        if created:
            try:
                t = parse_time(created)
            except ValueError:
                raise IngestError(f"{path} line {line}, column created: {created!r} is not an ISO-8601 time") from None
            if t is not None and (earliest is None or t < earliest):
                earliest = t
    return list(vms.values()), earliest


def _read_churn(path: Path, warnings: list[str]) -> list[MoveRow]:
    moves: list[MoveRow] = []
    unknown: dict[str, int] = {}
    for line, r in _csv_rows(path, (("namespace",), ("vm", "name"))):
        where = f"{path} line {line}"
        action = (r.get("action") or DEFAULT_ACTION).lower()
        if action not in KNOWN_ACTIONS:
            unknown[action] = unknown.get(action, 0) + 1
        holder = r.get("old_ip_holder", "")
        if not holder and _bool(r.get("stale_ip_hazard", "")):
            holder = "?"  # flagged without a name: still a hazard
        packets = _float(r, "packets_lost", where)
        moves.append(
            MoveRow(
                namespace=r["namespace"],
                name=r.get("vm") or r.get("name", ""),
                action=action,
                node_before=r.get("node_before", ""),
                node_after=r.get("node_after", ""),
                ip_before=r.get("ip_before", ""),
                ip_after=r.get("ip_after", ""),
                guest_ip_before=r.get("guest_ip_before", ""),
                guest_ip_after=r.get("guest_ip_after", ""),
                outcome=r.get("migration_phase") or r.get("outcome", ""),
                duration_s=_float(r, "duration_s", where),
                downtime_ms=_float(r, "downtime_ms", where),
                packets_lost=None if packets is None else int(packets),
                first_reply_ip=r.get("first_reply_ip", ""),
                old_ip_holder=holder,
                failure_reason=r.get("failure_reason", ""),
            )
        )
    for action, n in sorted(unknown.items()):
        warnings.append(
            f"{path.name}: {n} row(s) with unknown action {action!r} (known: {', '.join(KNOWN_ACTIONS)}); "
            "recorded as written"
        )
    return moves


def _capacity(state: Mapping[str, Any]) -> list[CapacityRow]:
    cap = state.get("capacity")
    if not isinstance(cap, Mapping):
        return []
    rows = cap.get("rows") or cap.get("headroom") or []
    out: list[CapacityRow] = []
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            continue
        where = f"run.json capacity row {i + 1}"
        usable = _int(r.get("usable"), where + " usable")
        in_use = _int(r.get("in_use"), where + " in_use")
        if in_use is None and (r.get("existing") is not None or r.get("planned") is not None):
            in_use = (_int(r.get("existing"), where + " existing") or 0) + (_int(r.get("planned"), where) or 0)
        free = next(
            (_int(r[k], f"{where} {k}") for k in ("free", "free_after", "headroom") if r.get(k) is not None), None
        )
        if free is None and usable is not None and in_use is not None:
            free = usable - in_use
        out.append(
            CapacityRow(
                node=str(r.get("node") or ""),
                subnet=str(r.get("subnet") or r.get("cidr") or ""),
                usable=usable,
                in_use=in_use,
                free=free,
            )
        )
    return out


def _status(state: Mapping[str, Any]) -> str:
    explicit = state.get("status")
    if isinstance(explicit, str) and explicit:
        return explicit
    steps = [s for s in state.get("steps") or [] if isinstance(s, Mapping)]
    if not steps:
        return "unknown"
    failed = [str(s.get("step", "?")) for s in steps if not s.get("ok", False)]
    return f"failed: {', '.join(failed)}" if failed else "ok"


def _time(state: Mapping[str, Any], where: str, *paths: str) -> datetime | None:
    value = _first(state, *paths)
    try:
        return parse_time(value)
    except (ValueError, OverflowError, OSError):
        raise IngestError(f"{where}: {paths[0]} {value!r} is not an ISO-8601 time") from None


def read_run_dir(path: Path | str) -> RunRecord:
    """The run in ``path`` as plain records (see the module docstring for what maps to what)."""
    out = Path(path)
    state_path = out / "run.json"
    if not state_path.is_file():
        raise IngestError(f"{out} is not a run's report directory: it has no run.json")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IngestError(f"{state_path} cannot be read as JSON: {e}") from None
    if not isinstance(state, Mapping):
        raise IngestError(f"{state_path}: expected a JSON object")

    warnings: list[str] = []
    raw_spec = state.get("spec")
    spec: Mapping[str, Any] = raw_spec if isinstance(raw_spec, Mapping) else {}
    net = spec.get("network")
    network = str(net.get("name", "")) if isinstance(net, Mapping) else str(net or "")
    topology = _first(
        state, "spec.topology", "spec.network.topology", "churn.topology", "capacity.summary.topology", "topology"
    )

    vms: list[VMRow] = []
    first_created: datetime | None = None
    if (out / "inventory.csv").is_file():
        vms, first_created = _read_inventory(out / "inventory.csv", warnings)
    moves = _read_churn(out / "churn.csv", warnings) if (out / "churn.csv").is_file() else []

    finished = _time(state, str(state_path), "finishedAt", "finished", "generatedAt")
    started = _time(state, str(state_path), "startedAt", "started")
    if started is None:
        candidates = [t for t in (first_created,) if t is not None]
        wall = _get(state, "figures.rollout.wall_s")
        generated = _time(state, str(state_path), "generatedAt")
        if generated is not None and isinstance(wall, (int, float)):
            candidates.append(generated - timedelta(seconds=float(wall)))
        started = min(candidates) if candidates else finished

    return RunRecord(
        run_id=str(state.get("runId") or out.name),
        started=started,
        finished=finished,
        network=network,
        topology=str(topology or ""),
        cluster_server=str(_first(state, "cluster.server", "clusterServer", "server", "spec.cluster.server") or ""),
        status=_status(state),
        source=str(out.resolve()),
        vms=vms,
        moves=moves,
        capacity=_capacity(state),
        warnings=warnings,
    )
