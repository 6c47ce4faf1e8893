"""The run history (issue 17, point 4): report directories in, `udn-rollout history` rows, a VM's
addresses over time and history.html charts out — on SQLite always, and on PostgreSQL when
UDN_ROLLOUT_TEST_HISTORY_DB names a database (CI: .ci/run).

Report directories are written here file by file in the format runs leave today (run.json,
inventory.csv, churn.csv — see tasks/history/ingest.py), plus churn.csv in the coming format (action,
guest addresses, downtime); one test also feeds the directory the reports' own writer produces.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tasks.history import (
    HistoryError,
    IngestError,
    open_store,
    parse_since,
    parse_vm_ref,
    read_run_dir,
    record_run,
)
from tasks.history.records import quantile
from tasks.history.render import history_html, nice_ticks
from tasks.history.store import mask_url, metadata, resolve_url
from udn_rollout import historycmd

ROOT = Path(__file__).resolve().parent.parent
PG_ENV = "UDN_ROLLOUT_TEST_HISTORY_DB"
UNREACHABLE = "postgresql+psycopg://x:s3cret@127.0.0.1:1/nope"
NOW = datetime.now(UTC).replace(microsecond=0)
NET3 = "udn-nightly-l3"

INVENTORY_COLUMNS = [
    "namespace", "name", "node", "ip", "phase", "ready", "reason", "created", "scheduled", "running",
    "ready_at", "scheduled_ms", "running_ms", "ready_ms", "adopted", "spec_drift",
]  # fmt: skip
CHURN_COLUMNS = [
    "namespace", "vm", "node_before", "node_after", "node_changed", "ip_before", "ip_after", "ip_changed",
    "migration_phase", "duration_s", "failure_reason", "old_ip_holder", "stale_ip_hazard",
]  # fmt: skip
CHURN_COLUMNS_NEXT = [
    *CHURN_COLUMNS,
    "action",
    "guest_ip_before",
    "guest_ip_after",
    "downtime_ms",
    "packets_lost",
    "first_reply_ip",
]


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- report directories as runs leave them --------------------------------------------------------
def move(
    ns: str, vm: str, node_before: str, node_after: str, ip_before: str, ip_after: str, **kw: Any
) -> dict[str, Any]:
    """A churn.csv row (today's columns; keyword arguments add the coming ones)."""
    row = {
        "namespace": ns, "vm": vm, "node_before": node_before, "node_after": node_after,
        "node_changed": node_before != node_after, "ip_before": ip_before, "ip_after": ip_after,
        "ip_changed": ip_before != ip_after, "migration_phase": "Succeeded", "duration_s": 2.0,
        "failure_reason": "", "old_ip_holder": "", "stale_ip_hazard": False,
    }  # fmt: skip
    row.update(kw)
    row["stale_ip_hazard"] = bool(row["old_ip_holder"])
    return row


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), restval="", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def write_churn_csv(run_dir: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """churn.csv: today's columns, or the coming ones (issue 17) when a row carries them."""
    nxt = any(k in r for r in rows for k in CHURN_COLUMNS_NEXT[len(CHURN_COLUMNS) :])
    write_csv(run_dir / "churn.csv", CHURN_COLUMNS_NEXT if nxt else CHURN_COLUMNS, rows)


def write_run(
    root: Path,
    run_id: str,
    *,
    started: datetime,
    vms: Sequence[tuple[str, str, str, str]],  # (namespace, name, node, ip)
    churn: Sequence[Mapping[str, Any]] = (),
    capacity: Sequence[tuple[str, int, int]] = (),  # (node, existing, usable)
    network: str = NET3,
    topology: str = "Layer3",
    steps_ok: bool = True,
) -> Path:
    """A run directory as the rollout flow leaves it (the data files; the views are not read)."""
    out = root / run_id
    out.mkdir(parents=True, exist_ok=True)
    state = {
        "schema": 1,
        "runId": run_id,
        "generatedAt": iso(started + timedelta(minutes=30)),
        "spec": {"runId": run_id, "network": network, "topology": topology, "subnets": ["10.0.0.0/16"],
                 "totalVMs": len(vms)},
        "steps": [
            {"step": "fanout", "ok": steps_ok, "figures": {"ready": len(vms)}, "problems": []},
            {"step": "churn", "ok": True, "figures": {"selected": len(churn)}, "problems": []},
        ],
        "churn": {"topology": topology},
        "capacity": {
            "rows": [
                {"node": n, "schedulable": True, "subnet": f"10.0.{i}.0/24", "usable": u, "existing": e,
                 "planned": 0, "headroom": u - e, "status": "ok", "note": ""}
                for i, (n, e, u) in enumerate(capacity)
            ],
            "summary": {"topology": topology},
            "headroom": None,
        },
    }  # fmt: skip
    (out / "run.json").write_text(json.dumps(state, indent=2))
    write_csv(
        out / "inventory.csv",
        INVENTORY_COLUMNS,
        [
            {"namespace": ns, "name": name, "node": node, "ip": ip, "phase": "Running", "ready": True,
             "created": iso(started + timedelta(seconds=i)), "ready_at": iso(started + timedelta(seconds=i + 20)),
             "adopted": False, "spec_drift": False}
            for i, (ns, name, node, ip) in enumerate(vms)
        ],
    )  # fmt: skip
    if churn:
        write_churn_csv(out, churn)
    return out


FLEET = [("ns-a", f"vm-{i}", f"worker-{i % 3}", f"10.0.{i % 3}.{3 + i // 3}") for i in range(6)]


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    """Two nightly Layer3 runs a day apart. ns-a/vm-0 starts at 10.0.0.3 on worker-0, migrates to
    worker-1 (10.0.1.9) in run 1, and comes up on worker-2 at 10.0.2.7 in run 2."""
    reports = tmp_path / "reports"
    r1 = write_run(
        reports,
        "nightly-1",
        started=NOW - timedelta(days=1),
        vms=FLEET,
        churn=[
            move("ns-a", "vm-0", "worker-0", "worker-1", "10.0.0.3", "10.0.1.9"),
            move("ns-a", "vm-1", "worker-1", "worker-2", "10.0.1.3", "10.0.2.9", old_ip_holder="ns-a/vm-5"),
        ],
        capacity=[("worker-0", 1, 252), ("worker-1", 3, 252), ("worker-2", 3, 252)],
    )
    fleet2 = [("ns-a", "vm-0", "worker-2", "10.0.2.7"), *FLEET[1:]]
    r2 = write_run(
        reports,
        "nightly-2",
        started=NOW - timedelta(hours=2),
        vms=fleet2,
        churn=[move("ns-a", "vm-2", "worker-2", "worker-0", "10.0.2.3", "10.0.0.8")],
        capacity=[("worker-0", 3, 252), ("worker-1", 2, 252), ("worker-2", 240, 252)],
    )
    return r1, r2


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty history database: a fresh SQLite file, or the CI PostgreSQL database emptied."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'history.sqlite'}"
        return
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} not set (CI sets it; locally: bash .ci/postgres.sh)")
    engine = sa.create_engine(resolve_url(url))
    metadata.drop_all(engine)
    engine.dispose()
    yield url


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = historycmd.main(["history", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def table_rows(out: str) -> list[list[str]]:
    """Data rows of a printed table (after the dashes line), split on runs of 2+ spaces."""
    lines = out.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("---"))
    return [re.split(r"\s{2,}", line.strip()) for line in lines[start + 1 :] if line.strip()]


# ---- ingest ----------------------------------------------------------------------------------------
def test_ingest_maps_report_files_to_records(two_runs: tuple[Path, Path]) -> None:
    run = read_run_dir(two_runs[0])
    assert (run.run_id, run.network, run.topology, run.status) == ("nightly-1", NET3, "Layer3", "ok")
    assert run.started is not None and abs((run.started - (NOW - timedelta(days=1))).total_seconds()) < 1
    assert run.finished is not None and run.finished >= run.started
    assert len(run.vms) == 6 and run.vms[0].ip == "10.0.0.3" and run.vms[0].ready
    assert [(m.name, m.action, m.ip_changed, m.stale_ip_hazard) for m in run.moves] == [
        ("vm-0", "migrate", True, False),
        ("vm-1", "migrate", True, True),
    ]
    assert [(c.node, c.usable, c.in_use, c.free) for c in run.capacity] == [
        ("worker-0", 252, 1, 251),
        ("worker-1", 252, 3, 249),
        ("worker-2", 252, 3, 249),
    ]
    assert run.warnings == []


def test_ingest_reads_what_the_reports_writer_writes(tmp_path: Path) -> None:
    """The directory the reports' own writer produces ingests as the hand-written one does (the writer
    is being restructured: either of its two call forms is used, and the test skips while neither imports)."""
    try:
        from tasks import reports
        from tasks.model import ChurnRow, StepSummary, VMRecord

        writer = reports.write_run_reports  # type: ignore[attr-defined]
    except (ImportError, AttributeError) as e:
        pytest.skip(f"tasks.reports.write_run_reports does not import right now: {e}")
    t = NOW.timestamp()
    records = [VMRecord(ns, n, node, ip, "Running", True, created=t + i) for i, (ns, n, node, ip) in enumerate(FLEET)]
    parts: dict[str, Any] = {
        "run_id": "w-1",
        "spec_summary": {"runId": "w-1", "network": NET3, "topology": "Layer3"},
        "records": records,
        "churn_rows": [ChurnRow("ns-a", "vm-0", "worker-0", "worker-1", "10.0.0.3", "10.0.1.9", "Succeeded", 3.0)],
        "churn_topology": "Layer3",
        "capacity_rows": [
            {"node": "worker-0", "subnet": "10.0.0.0/24", "usable": 252, "existing": 2, "planned": 0, "headroom": 250}
        ],
        "capacity_summary": {"topology": "Layer3"},
    }
    out = tmp_path / "w-1"
    run_parts = getattr(reports, "RunParts", None)
    if run_parts is not None:
        writer(out, run_parts(step=StepSummary("churn", True), **parts))
    else:
        writer(out, steps=[StepSummary("churn", True)], **parts)
    run = read_run_dir(out)
    assert (run.run_id, run.network, run.topology, run.status) == ("w-1", NET3, "Layer3", "ok")
    assert run.started is not None and abs((run.started - NOW).total_seconds()) < 1
    assert len(run.vms) == 6 and [(m.name, m.ip_changed) for m in run.moves] == [("vm-0", True)]
    assert [(c.node, c.free) for c in run.capacity] == [("worker-0", 250)]


def test_ingest_reads_the_coming_churn_columns(tmp_path: Path) -> None:
    d = write_run(tmp_path, "drain-1", started=NOW, vms=FLEET)
    write_churn_csv(
        d,
        [
            move("ns-a", "vm-0", "worker-0", "worker-1", "10.0.0.3", "10.0.1.9", action="drain",
                 guest_ip_before="10.0.0.3", guest_ip_after="10.0.0.3", downtime_ms=400, packets_lost=2),
            move("ns-a", "vm-0", "worker-1", "worker-2", "10.0.1.9", "10.0.2.9", action="drain",
                 guest_ip_before="10.0.0.3", guest_ip_after="10.0.2.9", downtime_ms=200, first_reply_ip="10.0.2.9"),
            move("ns-a", "vm-1", "worker-1", "worker-1", "10.0.1.3", "10.0.1.3", action="Restart", downtime_ms=9000),
        ],
    )  # fmt: skip
    run = read_run_dir(d)
    assert [m.action for m in run.moves] == ["drain", "drain", "restart"]  # a VM's every move is kept
    assert run.moves[0].packets_lost == 2 and run.moves[1].first_reply_ip == "10.0.2.9"
    assert [m.guest_ip_changed for m in run.moves] == [False, True, False]
    with open_store(f"sqlite:///{tmp_path / 'h.sqlite'}", create=True) as store:
        s = store.record(run)
    assert (s.moves, s.ip_changes, s.guest_ip_changes, s.downtime_count) == (3, 2, 1, 3)
    assert (s.downtime_p50_ms, s.downtime_max_ms) == (400.0, 9000.0)
    assert s.downtime_p95_ms == pytest.approx(quantile([200, 400, 9000], 0.95))


def test_unknown_action_is_recorded_as_written_with_a_warning(tmp_path: Path, capsys) -> None:
    """Decision: an unknown action in churn.csv does not lose the run — it is stored as written and
    `record` warns, naming the value and the known ones."""
    d = write_run(tmp_path / "reports", "odd-1", started=NOW, vms=FLEET)
    write_churn_csv(d, [move("ns-a", "vm-0", "worker-0", "worker-1", "10.0.0.3", "10.0.1.4", action="teleport")])
    db = f"sqlite:///{tmp_path / 'h.sqlite'}"
    rc, out, err = cli(capsys, "record", str(d), "--db", db)
    assert rc == 0, err
    assert "unknown action 'teleport'" in err and "migrate, restart, drain" in err
    rc, out, _ = cli(capsys, "--vm", "ns-a/vm-0", "--db", db)
    assert rc == 0 and "teleport" in out


def test_bad_number_in_churn_csv_records_nothing(tmp_path: Path, two_runs, capsys) -> None:
    bad = write_run(tmp_path / "other", "bad-1", started=NOW, vms=FLEET)
    write_churn_csv(bad, [move("ns-a", "vm-0", "worker-0", "worker-1", "10.0.0.3", "10.0.1.4", downtime_ms="fast")])
    db = tmp_path / "h.sqlite"
    rc, _, err = cli(capsys, "record", str(two_runs[0]), str(bad), "--db", str(db))
    assert rc == 2
    assert "churn.csv line 2, column downtime_ms: 'fast' is not a number" in err
    assert not db.exists()  # every directory is read before anything is written
    with pytest.raises(IngestError, match=r"no run\.json"):
        read_run_dir(tmp_path)


# ---- the database, on both backends -----------------------------------------------------------------
def test_two_runs_two_rows_and_idempotent_reingest(db_url: str, two_runs, capsys) -> None:
    r1, _ = two_runs
    rc, out, err = cli(capsys, "record", str(r1.parent), "--db", db_url)  # a reports root: both runs
    assert rc == 0, err
    assert "recorded nightly-1: 6 VMs, 2 moves, 2 IP changes, 1 stale-IP hazards, lowest free 249 (worker-1)" in out
    with open_store(db_url) as store:
        first = store.counts()
    assert first["history_runs"] == 2 and first["history_vms"] == 12 and first["history_moves"] == 3

    rc, out, err = cli(capsys, "--db", db_url)
    assert rc == 0, err
    rows = table_rows(out)
    assert [r[0] for r in rows] == ["nightly-1", "nightly-2"]  # oldest first
    header = re.split(r"\s{2,}", out.splitlines()[0])
    one = dict(zip(header, rows[0], strict=True))
    assert one["NETWORK"] == NET3 and one["VMS"] == "6" and one["MOVES"] == "2" and one["IP CHANGES"] == "2"
    assert one["STALE-IP HAZARDS"] == "1" and one["LOWEST FREE (NODE)"] == "249 (worker-1)"
    assert dict(zip(header, rows[1], strict=True))["LOWEST FREE (NODE)"] == "12 (worker-2)"

    # the same directory again: same rows, not twice as many
    assert cli(capsys, "record", str(r1), "--db", db_url)[0] == 0
    with open_store(db_url) as store:
        assert store.counts() == first
    # a resumed run rewrites its directory (more VMs now): its row is updated, not duplicated
    write_run(
        r1.parent,
        "nightly-1",
        started=NOW - timedelta(days=1),
        vms=[*FLEET, ("ns-a", "vm-9", "worker-0", "10.0.0.9")],
        capacity=[("worker-0", 2, 252), ("worker-1", 3, 252), ("worker-2", 3, 252)],
    )
    record_run(r1, db_url)
    with open_store(db_url) as store:
        runs = store.runs()
        assert [(r.run_id, r.vms) for r in runs] == [("nightly-1", 7), ("nightly-2", 6)]
        assert store.counts()["history_vms"] == 13
        trend = store.trend(network=NET3)
    assert [(t["run_id"], t["ip_changes"], t["lowest_free"], t["total_free"]) for t in trend] == [
        ("nightly-1", 2, 249, 748),
        ("nightly-2", 1, 12, 511),
    ]


def test_vm_addresses_and_nodes_over_two_runs(db_url: str, two_runs, capsys) -> None:
    for d in two_runs:
        record_run(d, db_url)
    rc, out, err = cli(capsys, "--vm", "ns-a/vm-0", "--db", db_url)
    assert rc == 0, err
    assert "addresses over time: 10.0.0.3 → 10.0.1.9 → 10.0.2.7" in out
    assert "nodes over time:     worker-0 → worker-1 → worker-2" in out
    rows = table_rows(out.split("\n\n")[0])
    assert [r[-6:-3] for r in rows] == [  # EVENT, NODE, VMI IP
        ["inventory", "worker-0", "10.0.0.3"],
        ["migrate", "worker-0 → worker-1", "10.0.0.3 → 10.0.1.9"],
        ["inventory", "worker-2", "10.0.2.7"],
    ]
    with open_store(db_url) as store:
        events = store.vm_history("ns-a", "vm-0")
    assert [(e.run_id, e.kind, e.ip_after) for e in events] == [
        ("nightly-1", "inventory", "10.0.0.3"),
        ("nightly-1", "migrate", "10.0.1.9"),
        ("nightly-2", "inventory", "10.0.2.7"),
    ]
    rc, out, _ = cli(capsys, "--vm", "ns-a/vm-0", "--since", "12h", "--db", db_url)
    assert "addresses over time: 10.0.2.7\n" in out  # only the second run
    rc, out, err = cli(capsys, "--vm", "ns-a/never-existed", "--db", db_url)
    assert rc == 0 and "no record of ns-a/never-existed" in err


def test_filters_network_and_since(db_url: str, two_runs, tmp_path: Path, capsys) -> None:
    for d in two_runs:
        record_run(d, db_url)
    l2 = write_run(
        tmp_path / "r2",
        "nightly-l2",
        started=NOW - timedelta(days=10),
        vms=FLEET,
        network="udn-nightly-l2",
        topology="Layer2",
        capacity=[("", 6, 65532)],
        steps_ok=False,
    )
    record_run(l2, db_url)
    with open_store(db_url) as store:
        assert [r.run_id for r in store.runs()] == ["nightly-l2", "nightly-1", "nightly-2"]
        assert [r.run_id for r in store.runs(network="udn-nightly-l2")] == ["nightly-l2"]
        assert store.runs(network="udn-nightly-l2")[0].status == "failed: fanout"
        assert [r.run_id for r in store.runs(since=parse_since("7d"))] == ["nightly-1", "nightly-2"]
    rc, out, _ = cli(capsys, "--db", db_url, "--since", "12h")
    assert [r[0] for r in table_rows(out)] == ["nightly-2"]
    rc, out, _ = cli(capsys, "--db", db_url, "--network", NET3, "--since", (NOW - timedelta(days=2)).date().isoformat())
    assert [r[0] for r in table_rows(out)] == ["nightly-1", "nightly-2"]
    rc, out, err = cli(capsys, "--db", db_url, "--network", "no-such-net")
    assert rc == 0 and out == "" and "no runs recorded matching network no-such-net" in err


# ---- bad input: a clear error, an exit code, nothing written -----------------------------------------
def test_bad_since_and_vm_are_refused_before_the_database_is_touched(tmp_path: Path, capsys) -> None:
    db = tmp_path / "h.sqlite"
    html = tmp_path / "history.html"
    for args, message in [
        (["--since", "last tuesday"], "--since 'last tuesday': write a duration back from now (30m, 24h, 7d, 2w)"),
        (["--since", "7x"], "--since '7x'"),
        (["--vm", "vm-0"], "--vm 'vm-0': write NAMESPACE/NAME"),
        (["--vm", "ns/Bad_Name"], "--vm 'ns/Bad_Name'"),
        (["--vm", "ns-a/vm-0", "--html", str(html)], "--html draws the runs' history"),
    ]:
        rc, out, err = cli(capsys, "--db", str(db), "--html", str(html), *args)
        assert rc == 2, args
        assert message in err and out == ""
    assert not db.exists() and not html.exists()
    with pytest.raises(HistoryError):
        parse_vm_ref("a/b/c")
    assert parse_vm_ref("namespace-7/rhel8-vm-1") == ("namespace-7", "rhel8-vm-1")


def test_unreachable_database_exit_4_password_masked_nothing_written(tmp_path: Path, two_runs, capsys) -> None:
    html = tmp_path / "history.html"
    reports = two_runs[0].parent
    for args in (["--html", str(html)], ["record", str(two_runs[0])], ["--vm", "ns-a/vm-0"]):
        rc, _, err = cli(capsys, *args, "--db", UNREACHABLE, "--reports-dir", str(reports))
        assert rc == 4, (args, err)
        assert "cannot reach the history database postgresql+psycopg://x:***@127.0.0.1:1/nope" in err
        assert "s3cret" not in err and "Fix: check that PostgreSQL runs" in err
    assert not html.exists() and not (reports / "history.sqlite").exists()


def test_malformed_or_unsupported_url_exit_2(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("UDN_ROLLOUT_DB", "postgresql://u:hunter2@db:port/x")
    rc, _, err = cli(capsys)
    assert rc == 2 and "malformed database URL postgresql://u:***@db:port/x" in err and "hunter2" not in err
    rc, _, err = cli(capsys, "--db", "mysql://u:hunter2@db/x")
    assert rc == 2 and "unsupported database URL mysql://u:***@db/x" in err and "hunter2" not in err
    assert mask_url("garbage://a:b@c") == "garbage://a:***@c"


def test_default_database_location(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("UDN_ROLLOUT_DB", raising=False)
    monkeypatch.setenv("UDN_ROLLOUT_REPORTS", str(tmp_path / "reports"))
    assert resolve_url().database == str((tmp_path / "reports" / "history.sqlite").resolve())
    assert resolve_url(reports_dir=tmp_path / "x").database == str((tmp_path / "x" / "history.sqlite").resolve())
    monkeypatch.delenv("UDN_ROLLOUT_REPORTS")
    monkeypatch.chdir(tmp_path)  # no ./reports here: the user's data directory
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert resolve_url().database == str(tmp_path / "data" / "udn-rollout" / "history.sqlite")
    monkeypatch.setenv("UDN_ROLLOUT_DB", "postgresql://u:p@h/db")
    assert resolve_url().drivername == "postgresql+psycopg"  # the sync driver, whatever the URL named
    # asking for history never creates an empty database file
    with open_store(f"sqlite:///{tmp_path / 'none.sqlite'}") as store:
        assert store.runs() == [] and store.vm_history("a", "b") == []
    assert not (tmp_path / "none.sqlite").exists()


def test_parse_since_and_quantiles() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T08:00+02:00", now) == datetime(2026, 11, 1, 6, tzinfo=UTC)
    assert quantile([], 0.5) is None and quantile([5.0], 0.99) == 5.0
    assert quantile([1, 2, 3, 4], 0.5) == 2.5  # numpy's linear interpolation
    assert nice_ticks(74) == [0, 20, 40, 60, 80] and nice_ticks(3) == [0, 1, 2, 3]


def test_history_command_does_not_import_prefect(tmp_path: Path, two_runs) -> None:
    db = f"sqlite:///{tmp_path / 'h.sqlite'}"
    code = (
        "import sys; from udn_rollout.historycmd import main; "
        f"rc = main(['history', 'record', {str(two_runs[0])!r}, '--db', {db!r}]) or "
        f"main(['history', '--db', {db!r}, '--html', {str(tmp_path / 'h.html')!r}]); "
        "heavy = [m for m in ('prefect', 'pandas', 'kubernetes') if m in sys.modules]; "
        "assert not heavy, heavy; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "nightly-1" in proc.stdout and (tmp_path / "h.html").exists()


# ---- history.html ---------------------------------------------------------------------------------
def figure(html: str, fid: str) -> str:
    m = re.search(rf'<figure class="chart" id="{fid}">(.*?)</figure>', html, re.S)
    assert m, fid
    return m.group(1)


def test_history_html_two_runs_two_points_per_chart(db_url: str, two_runs, tmp_path: Path, capsys) -> None:
    for d in two_runs:
        record_run(d, db_url)
    page = tmp_path / "out" / "history.html"
    rc, _, err = cli(capsys, "--db", db_url, "--html", str(page))
    assert rc == 0, err
    html = page.read_text()
    assert "http://" not in html and "https://" not in html and "<script src" not in html  # offline
    churn = figure(html, "churn-0")
    assert churn.count('<rect class="bar"') == 2 * 3  # moves, IP changes, hazards per run
    for fid in ("lowest-0", "total-0"):
        assert figure(html, fid).count("</title></circle>") == 2, fid  # a point per run
    assert "free addresses" in html and "VMs (count)" in html  # axes with units
    assert "VMI IP changed" in churn and "stale-IP hazards" in churn  # legend
    lowest = figure(html, "lowest-0")
    assert ">249<" in lowest and ">12<" in lowest and ">worker-2<" in lowest  # labelled points
    assert html.count("<tr><td>nightly-") == 2


BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for b in BROWSERS:
        path = b if os.path.isabs(b) and os.access(b, os.X_OK) else shutil.which(b)
        if path:
            return path
    return None


def run_chromium(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        "--hide-scrollbars", f"--user-data-dir={tmp / 'chromium-profile'}", *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_history_html_renders_in_chromium(two_runs, tmp_path: Path) -> None:
    browser = find_chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI for the HTML report checks: apt-get install -y chromium")
        pytest.skip("no Chromium installed (apt-get install -y chromium)")
    db = f"sqlite:///{tmp_path / 'h.sqlite'}"
    for d in two_runs:
        record_run(d, db)
    with open_store(db) as store:
        page = tmp_path / "history.html"
        page.write_text(history_html(store.runs(), source=store.display_url))
    dom = run_chromium(browser, tmp_path, "--dump-dom", page.as_uri()).stdout
    assert dom.count('<svg class="chart"') == 3 and "nightly-2" in dom
    shot = tmp_path / "history.png"
    run_chromium(browser, tmp_path, f"--screenshot={shot}", "--window-size=1400,1000", page.as_uri())
    assert png_size(shot) == (1400, 1000) and shot.stat().st_size > 30_000


@pytest.mark.slow
def test_bench_history_small_run() -> None:
    """The benchmark (bench/history.py) runs end to end at a small size; its figures are plain rows."""
    from bench import history as bench_history

    res = bench_history.run(runs=3, vms=300, command_repeat=1)
    assert res["rows"]["history_runs"] == 3 and res["rows"]["history_vms"] == 900
    assert res["queries"]["vmEvents"] >= 3  # one inventory row per run, plus its moves
    assert all({"name", "value", "unit"} <= f.keys() for f in res["figures"])
