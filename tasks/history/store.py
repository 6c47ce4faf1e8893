"""The run history database: one SQLAlchemy Core schema for SQLite (the default file) and PostgreSQL.

Why a database and not the report directories themselves: "how has IP churn changed over weeks of
runs" needs every run at once, and reading a hundred 10,000-VM report directories per question takes
about 10 s (0.1 s each, bench/history.py), against milliseconds for the indexed tables. The
per-run figures are computed once at ingest (``records.summarize``) into ``history_runs``, so listing
runs reads one row each; per-VM rows (``history_vms``, ``history_moves``) are indexed by namespace/name
for ``--vm``.

Where it lives, first match wins: ``--db URL``; ``$UDN_ROLLOUT_DB``; ``<reports root>/history.sqlite``
where the reports root is ``--reports-dir``, ``$UDN_ROLLOUT_REPORTS`` or ``./reports`` when that
directory exists; else ``$XDG_DATA_HOME/udn-rollout/history.sqlite`` (``~/.local/share/...``).
A ``postgresql://`` (or ``postgres://``, ``postgresql+<driver>://``) URL is used with psycopg, a
synchronous driver; a bare path means an SQLite file.

Recording a run replaces every row of its run id in one transaction: ingest is idempotent, a resumed
run updates its row, and a failure leaves the database as it was.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from tasks.history.records import (
    HistoryError,
    HistoryUnavailable,
    HistoryURLError,
    MoveRow,
    RunRecord,
    RunSummary,
    VMEvent,
    summarize,
)

__all__ = [
    "DB_ENV",
    "REPORTS_ENV",
    "SCHEMA_VERSION",
    "HistoryStore",
    "default_sqlite_path",
    "mask_url",
    "open_store",
    "parse_since",
    "parse_vm_ref",
    "record_dirs",
    "record_run",
    "resolve_url",
]

DB_ENV = "UDN_ROLLOUT_DB"
REPORTS_ENV = "UDN_ROLLOUT_REPORTS"
DB_FILENAME = "history.sqlite"
SCHEMA_VERSION = 1
CONNECT_TIMEOUT_S = 5

# --------------------------------------------------------------------------------------------------
# schema

metadata = sa.MetaData()

runs_t = sa.Table(
    "history_runs",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("started", sa.DateTime),  # UTC, stored without zone on both databases
    sa.Column("finished", sa.DateTime),
    sa.Column("network", sa.String, nullable=False),
    sa.Column("topology", sa.String, nullable=False),
    sa.Column("cluster_server", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("vms", sa.Integer, nullable=False),
    sa.Column("ready", sa.Integer, nullable=False),
    sa.Column("moves", sa.Integer, nullable=False),
    sa.Column("node_changes", sa.Integer, nullable=False),
    sa.Column("ip_changes", sa.Integer, nullable=False),
    sa.Column("guest_ip_changes", sa.Integer, nullable=False),
    sa.Column("stale_ip_hazards", sa.Integer, nullable=False),
    sa.Column("downtime_count", sa.Integer, nullable=False),
    sa.Column("downtime_p50_ms", sa.Float),
    sa.Column("downtime_p95_ms", sa.Float),
    sa.Column("downtime_p99_ms", sa.Float),
    sa.Column("downtime_max_ms", sa.Float),
    sa.Column("lowest_free", sa.Integer),
    sa.Column("lowest_free_node", sa.String, nullable=False),
    sa.Column("total_free", sa.Integer),
    sa.Column("total_usable", sa.Integer),
    sa.Column("source", sa.String, nullable=False),
    sa.Column("recorded_at", sa.DateTime),
    sa.Index("ix_history_runs_started", "started"),
    sa.Index("ix_history_runs_network_started", "network", "started"),
)

vms_t = sa.Table(
    "history_vms",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("namespace", sa.String, primary_key=True),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("node", sa.String, nullable=False),
    sa.Column("ip", sa.String, nullable=False),
    sa.Column("phase", sa.String, nullable=False),
    sa.Column("ready", sa.Boolean, nullable=False),
    sa.Index("ix_history_vms_vm", "namespace", "name"),
)

moves_t = sa.Table(
    "history_moves",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),  # row order in churn.csv: a VM may move several times
    sa.Column("namespace", sa.String, nullable=False),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("action", sa.String, nullable=False),
    sa.Column("node_before", sa.String, nullable=False),
    sa.Column("node_after", sa.String, nullable=False),
    sa.Column("node_changed", sa.Boolean, nullable=False),
    sa.Column("ip_before", sa.String, nullable=False),
    sa.Column("ip_after", sa.String, nullable=False),
    sa.Column("ip_changed", sa.Boolean, nullable=False),
    sa.Column("guest_ip_before", sa.String, nullable=False),
    sa.Column("guest_ip_after", sa.String, nullable=False),
    sa.Column("outcome", sa.String, nullable=False),
    sa.Column("duration_s", sa.Float),
    sa.Column("downtime_ms", sa.Float),
    sa.Column("packets_lost", sa.Integer),
    sa.Column("first_reply_ip", sa.String, nullable=False),
    sa.Column("old_ip_holder", sa.String, nullable=False),
    sa.Column("stale_ip_hazard", sa.Boolean, nullable=False),
    sa.Column("failure_reason", sa.String, nullable=False),
    sa.Index("ix_history_moves_vm", "namespace", "name"),
)

capacity_t = sa.Table(
    "history_capacity",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("node", sa.String, nullable=False),  # empty for a Layer2 pool
    sa.Column("subnet", sa.String, nullable=False),
    sa.Column("usable", sa.Integer),
    sa.Column("in_use", sa.Integer),
    sa.Column("free", sa.Integer),
)

meta_t = sa.Table(
    "history_meta",
    metadata,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("value", sa.String, nullable=False),
)

PER_RUN_TABLES = (vms_t, moves_t, capacity_t, runs_t)

# --------------------------------------------------------------------------------------------------
# where the database is


def user_data_dir() -> Path:
    """The user's data directory for udn-rollout (XDG), used when there is no reports directory."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "udn-rollout"


def default_sqlite_path(reports_dir: str | Path | None = None) -> Path:
    """``history.sqlite`` beside the runs' report directories, or in the user's data directory."""
    if reports_dir:
        root = Path(reports_dir)
    elif os.environ.get(REPORTS_ENV):
        root = Path(os.environ[REPORTS_ENV])
    elif Path("reports").is_dir():
        root = Path("reports")
    else:
        root = user_data_dir()
    return (root / DB_FILENAME).resolve()


_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_FIX_URL = "write sqlite:///PATH, a file path, or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ***, even when it does not parse."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return _PASSWORD.sub(r"\1***@", url)


def _normalize(raw: str) -> URL:
    text = raw.strip()
    if "://" not in text:
        if not text:
            raise HistoryURLError(f"empty database URL: {_FIX_URL}")
        return URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
    try:
        url = make_url(text)
        _ = url.port  # a non-numeric port fails here
    except (ArgumentError, ValueError) as e:
        raise HistoryURLError(f"malformed database URL {mask_url(text)}: {e}; {_FIX_URL}") from None
    backend = url.drivername.split("+", 1)[0]
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return url.set(drivername="sqlite")
    raise HistoryURLError(f"unsupported database URL {mask_url(url)}: only SQLite and PostgreSQL are; {_FIX_URL}")


def resolve_url(db: str | None = None, reports_dir: str | Path | None = None) -> URL:
    """The history database's URL: ``db``, else ``$UDN_ROLLOUT_DB``, else the default SQLite file."""
    raw = db or os.environ.get(DB_ENV)
    if raw:
        return _normalize(raw)
    return URL.create("sqlite", database=str(default_sqlite_path(reports_dir)))


# --------------------------------------------------------------------------------------------------
# inputs of the queries


_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``24h``, ``90m``, ``2w`` back from ``now``, or an ISO date/time (naive = UTC) → UTC datetime."""
    m = _SINCE.match(text)
    if m:
        return (now or datetime.now(UTC)) - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise HistoryError(
            f"--since {text!r}: write a duration back from now (30m, 24h, 7d, 2w) or an ISO date "
            "(2026-11-01, 2026-11-01T08:00Z)"
        ) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_VM_REF = re.compile(rf"^(?P<ns>{_DNS_LABEL})/(?P<name>{_DNS_LABEL}(?:\.{_DNS_LABEL})*)$")


def parse_vm_ref(text: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` (Kubernetes names: lowercase letters, digits, '-', '.') → (namespace, name)."""
    m = _VM_REF.match(text.strip())
    if not m or len(m["name"]) > 253:
        raise HistoryError(
            f"--vm {text!r}: write NAMESPACE/NAME, e.g. --vm namespace-7/rhel8-vm-1 "
            "(lowercase letters, digits and '-', as Kubernetes names them)"
        )
    return m["ns"], m["name"]


# --------------------------------------------------------------------------------------------------
# the store


def _to_db(dt: datetime | None) -> datetime | None:
    return None if dt is None else dt.astimezone(UTC).replace(tzinfo=None)


def _from_db(dt: datetime | None) -> datetime | None:
    return None if dt is None else (dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC))


def _reason(e: BaseException) -> str:
    """The driver's first line, without SQLAlchemy's statement dump."""
    orig = getattr(e, "orig", None) or e
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


_SUMMARY_FIELDS = [f.name for f in fields(RunSummary)]


class HistoryStore:
    """A connection pool to the history database; ``record`` writes a run, the other methods read."""

    def __init__(self, engine: Engine | None, url: URL) -> None:
        self._engine = engine  # None: an SQLite file that does not exist yet (reads return nothing)
        self.url = url

    @property
    def display_url(self) -> str:
        return mask_url(self.url)

    @property
    def empty(self) -> bool:
        return self._engine is None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _conn(self, write: bool = False) -> Iterator[Connection]:
        if self._engine is None:
            raise HistoryUnavailable(f"the history database {self.display_url} does not exist")
        try:
            with self._engine.begin() if write else self._engine.connect() as conn:
                yield conn
        except HistoryError:
            raise
        except SQLAlchemyError as e:
            raise HistoryUnavailable(
                f"the history database {self.display_url} refused the {'write' if write else 'query'}: {_reason(e)}"
            ) from None

    # ---- writing --------------------------------------------------------------------------------
    def record(self, run: RunRecord) -> RunSummary:
        """Replace every row of ``run.run_id`` with this run's, in one transaction."""
        return self.record_many([run])[0]

    def record_many(self, runs: Sequence[RunRecord]) -> list[RunSummary]:
        """Record several runs in one transaction: all of them, or (on error) none."""
        now = datetime.now(UTC)
        summaries = [summarize(r, recorded_at=now) for r in runs]
        with self._conn(write=True) as conn:
            for run, summary in zip(runs, summaries, strict=True):
                for t in PER_RUN_TABLES:
                    conn.execute(t.delete().where(t.c.run_id == run.run_id))
                row = asdict(summary)
                for k in ("started", "finished", "recorded_at"):
                    row[k] = _to_db(row[k])
                conn.execute(runs_t.insert(), [row])
                rid = run.run_id
                if run.vms:
                    conn.execute(
                        vms_t.insert(),
                        [
                            {
                                "run_id": rid,
                                "namespace": v.namespace,
                                "name": v.name,
                                "node": v.node,
                                "ip": v.ip,
                                "phase": v.phase,
                                "ready": v.ready,
                            }
                            for v in run.vms
                        ],
                    )
                if run.moves:
                    conn.execute(moves_t.insert(), [_move_row(rid, i, m) for i, m in enumerate(run.moves)])
                if run.capacity:
                    conn.execute(
                        capacity_t.insert(),
                        [
                            {
                                "run_id": rid,
                                "seq": i,
                                "node": c.node,
                                "subnet": c.subnet,
                                "usable": c.usable,
                                "in_use": c.in_use,
                                "free": c.free,
                            }
                            for i, c in enumerate(run.capacity)
                        ],
                    )
        return summaries

    # ---- reading --------------------------------------------------------------------------------
    def runs(self, network: str | None = None, since: datetime | None = None) -> list[RunSummary]:
        """Every run (optionally of one network, started at or after ``since``), oldest first."""
        if self.empty:
            return []
        q = sa.select(runs_t)
        if network:
            q = q.where(runs_t.c.network == network)
        if since is not None:
            q = q.where(runs_t.c.started >= _to_db(since))
        q = q.order_by(runs_t.c.started, runs_t.c.run_id)
        with self._conn() as conn:
            rows = conn.execute(q).mappings().all()
        out = []
        for r in rows:
            d = {k: r[k] for k in _SUMMARY_FIELDS}
            for k in ("started", "finished", "recorded_at"):
                d[k] = _from_db(d[k])
            out.append(RunSummary(**d))
        out.sort(key=lambda s: (s.started is None, s.started or datetime.min.replace(tzinfo=UTC), s.run_id))
        return out

    def trend(self, network: str | None = None, since: datetime | None = None) -> list[dict[str, Any]]:
        """Per run, oldest first: IP changes, moves, stale-IP hazards and free addresses (plain dicts)."""
        keys = (
            "run_id",
            "started",
            "network",
            "topology",
            "moves",
            "ip_changes",
            "guest_ip_changes",
            "stale_ip_hazards",
            "lowest_free",
            "lowest_free_node",
            "total_free",
            "total_usable",
        )
        return [{k: getattr(s, k) for k in keys} for s in self.runs(network, since)]

    def vm_history(
        self, namespace: str, name: str, network: str | None = None, since: datetime | None = None
    ) -> list[VMEvent]:
        """One VM across runs, oldest first: its inventory row per run, then each of its moves in it."""
        if self.empty:
            return []
        run_cols = (runs_t.c.started, runs_t.c.network, runs_t.c.topology)
        run_filter = []
        if network:
            run_filter.append(runs_t.c.network == network)
        if since is not None:
            run_filter.append(runs_t.c.started >= _to_db(since))
        inv = (
            sa.select(vms_t, *run_cols)
            .join(runs_t, runs_t.c.run_id == vms_t.c.run_id)
            .where(vms_t.c.namespace == namespace, vms_t.c.name == name, *run_filter)
        )
        mv = (
            sa.select(moves_t, *run_cols)
            .join(runs_t, runs_t.c.run_id == moves_t.c.run_id)
            .where(moves_t.c.namespace == namespace, moves_t.c.name == name, *run_filter)
        )
        events: list[tuple[tuple[Any, ...], VMEvent]] = []
        with self._conn() as conn:
            for r in conn.execute(inv).mappings():
                started = _from_db(r["started"])
                ev = VMEvent(
                    run_id=r["run_id"],
                    started=started,
                    network=r["network"],
                    topology=r["topology"],
                    kind="inventory",
                    node_before=r["node"],
                    node_after=r["node"],
                    ip_before=r["ip"],
                    ip_after=r["ip"],
                    phase=r["phase"],
                    ready=bool(r["ready"]),
                )
                events.append((_event_key(started, r["run_id"], -1), ev))
            for r in conn.execute(mv).mappings():
                started = _from_db(r["started"])
                ev = VMEvent(
                    run_id=r["run_id"],
                    started=started,
                    network=r["network"],
                    topology=r["topology"],
                    kind=r["action"],
                    node_before=r["node_before"],
                    node_after=r["node_after"],
                    ip_before=r["ip_before"],
                    ip_after=r["ip_after"],
                    guest_ip_before=r["guest_ip_before"],
                    guest_ip_after=r["guest_ip_after"],
                    phase=r["outcome"],
                    downtime_ms=r["downtime_ms"],
                    stale_ip_hazard=bool(r["stale_ip_hazard"]),
                )
                events.append((_event_key(started, r["run_id"], r["seq"]), ev))
        events.sort(key=lambda e: e[0])
        return [e for _, e in events]

    def counts(self) -> dict[str, int]:
        """Rows per table (what tests and ``record`` messages need to say what was written)."""
        if self.empty:
            return {t.name: 0 for t in metadata.sorted_tables}
        with self._conn() as conn:
            return {
                t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for t in metadata.sorted_tables
            }


def _event_key(started: datetime | None, run_id: str, seq: int) -> tuple[Any, ...]:
    return (started is None, started or datetime.min.replace(tzinfo=UTC), run_id, seq)


def _move_row(run_id: str, seq: int, m: MoveRow) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "seq": seq,
        "namespace": m.namespace,
        "name": m.name,
        "action": m.action,
        "node_before": m.node_before,
        "node_after": m.node_after,
        "node_changed": m.node_changed,
        "ip_before": m.ip_before,
        "ip_after": m.ip_after,
        "ip_changed": m.ip_changed,
        "guest_ip_before": m.guest_ip_before,
        "guest_ip_after": m.guest_ip_after,
        "outcome": m.outcome,
        "duration_s": m.duration_s,
        "downtime_ms": m.downtime_ms,
        "packets_lost": m.packets_lost,
        "first_reply_ip": m.first_reply_ip,
        "old_ip_holder": m.old_ip_holder,
        "stale_ip_hazard": m.stale_ip_hazard,
        "failure_reason": m.failure_reason,
    }


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (history, --html) never wait for a nightly ingest
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _unreachable(url: URL, e: BaseException) -> HistoryUnavailable:
    if url.get_backend_name() == "sqlite":
        fix = "check that the directory exists and is writable, or choose another file with --db"
    else:
        fix = (
            "check that PostgreSQL runs and accepts this host, port, user and password, and that the database "
            f"exists; or use the default SQLite file in the reports directory (leave out --db, unset {DB_ENV})"
        )
    return HistoryUnavailable(f"cannot reach the history database {mask_url(url)}: {_reason(e)}. Fix: {fix}")


def open_store(url: URL | str | None = None, *, create: bool = False) -> HistoryStore:
    """Connect (and check the connection) to the history database.

    ``create``: make the schema (and an SQLite file's directory) when missing, for writers. Readers
    pass False, so asking for history never creates an empty database file. Raises ``HistoryURLError``
    for a URL we cannot use, ``HistoryUnavailable`` when the database cannot be reached.
    """
    u = resolve_url() if url is None else url if isinstance(url, URL) else _normalize(url)
    sqlite = u.get_backend_name() == "sqlite"
    memory = sqlite and u.database in (None, "", ":memory:")
    if sqlite and not memory:
        path = Path(u.database or "")
        if not path.exists():
            if not create:
                return HistoryStore(None, u)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise _unreachable(u, e) from None
    connect_args: dict[str, Any] = {"timeout": 30} if sqlite else {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        engine = sa.create_engine(u, connect_args=connect_args, pool_pre_ping=not sqlite)
    except (ArgumentError, ImportError) as e:
        raise HistoryURLError(f"cannot use database URL {mask_url(u)}: {e}; {_FIX_URL}") from None
    if sqlite:
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.connect() as conn:
            has_schema = sa.inspect(conn).has_table(runs_t.name)
    except SQLAlchemyError as e:
        engine.dispose()
        raise _unreachable(u, e) from None
    store = HistoryStore(engine, u)
    if create:
        with store._conn(write=True) as conn:
            metadata.create_all(conn, checkfirst=True)
            version = conn.execute(sa.select(meta_t.c.value).where(meta_t.c.key == "schema_version")).scalar()
            if version is None:
                conn.execute(meta_t.insert(), [{"key": "schema_version", "value": str(SCHEMA_VERSION)}])
            elif version != str(SCHEMA_VERSION):
                engine.dispose()
                raise HistoryError(
                    f"the history database {mask_url(u)} has schema version {version}; this udn-rollout "
                    f"knows version {SCHEMA_VERSION}: use a matching udn-rollout or a new database"
                )
    elif not has_schema:
        engine.dispose()
        return HistoryStore(None, u)
    return store


def record_run(run_dir: str | Path, url: URL | str | None = None) -> RunSummary:
    """Read one run's report directory and record it: the one call a flow needs at its end."""
    from tasks.history.ingest import read_run_dir

    run = read_run_dir(run_dir)
    with open_store(url, create=True) as store:
        return store.record(run)


def record_dirs(paths: Iterable[str | Path], url: URL | str | None = None) -> list[tuple[RunRecord, RunSummary]]:
    """Read every run directory first (any bad one: nothing written), then record them together."""
    from tasks.history.ingest import find_run_dirs, read_run_dir

    runs = [read_run_dir(d) for p in paths for d in find_run_dirs(p)]
    with open_store(url, create=True) as store:
        summaries = store.record_many(runs)
    return list(zip(runs, summaries, strict=True))
