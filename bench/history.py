"""Run history at scale (issue 17, point 5): record 100 runs × 10,000 VMs, then time the queries.

    uv run python -m bench.history [--quick] [--runs N] [--vms N] [--db URL] [--out FILE]

Synthetic runs (generated in memory, not through the flows): a Layer3 network on 40 nodes, 100
namespaces, each run placing every VM on a node that shifts by one per run, a quarter of the VMs
live-migrated with a new address and a downtime, one stale-IP hazard in 500 moves, and 40 node-subnet
capacity rows. One run is also written as report files and read back (``ingest.read_run_dir``), so the
file-reading cost of a 10,000-VM run is measured too. Then:

* ``history`` query: ``HistoryStore.runs()`` over all runs (target under 1 s), and the whole command
  ``udn-rollout history`` in a fresh process (interpreter start and imports included);
* ``--vm`` query: one VM across every run (its inventory rows and moves), in-process and as a command;
* ``history.html`` for every run.

Default database: a fresh SQLite file in a temporary directory (``--db`` for another, e.g. the CI
PostgreSQL: its history tables are dropped first). Writes ``bench/results/history-<stamp>.json``
(``--out`` elsewhere); ``python -m bench history`` runs it with the other scenarios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.history.ingest import read_run_dir
from tasks.history.records import CapacityRow, MoveRow, RunRecord, VMRow
from tasks.history.render import history_html
from tasks.history.store import mask_url, metadata, open_store, resolve_url

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
NODES = 40
NAMESPACES = 100
MOVE_EVERY = 4  # a quarter of the VMs move in each run
T0 = dt.datetime(2026, 9, 1, 2, 0, tzinfo=dt.UTC)


def figure(name: str, value: Any, unit: str = "", note: str = "") -> dict[str, Any]:
    """One row of the benchmark table (as bench/common.py writes them)."""
    return {"name": name, "value": value, "unit": unit, "note": note}


def synthetic_run(k: int, vms: int) -> RunRecord:
    """Run ``k`` of a nightly series: where each VM runs and what moved, as plain records."""
    per_ns = max(1, vms // NAMESPACES)
    vm_rows = []
    moves = []
    used = [0] * NODES
    for i in range(vms):
        ns, name = f"ns-{i // per_ns}", f"vm-{i % per_ns}"
        node = (i + k) % NODES
        host = 3 + (i // NODES) % 250
        ip = f"10.{128 + node // 64}.{(node % 64) * 4 + host // 256}.{host % 256}"
        vm_rows.append(VMRow(ns, name, f"worker-{node}", ip, "Running", True))
        used[node] += 1
        if i % MOVE_EVERY == k % MOVE_EVERY:
            target = (node + 1) % NODES
            moves.append(
                MoveRow(
                    ns,
                    name,
                    "migrate",
                    f"worker-{node}",
                    f"worker-{target}",
                    ip,
                    f"10.{128 + target // 64}.{(target % 64) * 4}.{200 + i % 50}",
                    outcome="Succeeded",
                    duration_s=1.0 + (i % 7) * 0.3,
                    downtime_ms=80.0 + (i * 37 + k * 11) % 900,
                    old_ip_holder=f"{ns}/other" if i % 2000 == 0 else "",
                )
            )
    capacity = [CapacityRow(f"worker-{n}", "", 1020, used[n], 1020 - used[n] - k % 7) for n in range(NODES)]
    started = T0 + dt.timedelta(days=k)
    return RunRecord(
        run_id=f"nightly-{k:03d}",
        started=started,
        finished=started + dt.timedelta(minutes=42),
        network="udn-bench-l3",
        topology="Layer3",
        cluster_server="https://api.bench.example:6443",
        status="ok",
        source="synthetic",
        vms=vm_rows,
        moves=moves,
        capacity=capacity,
    )


def write_run_dir(run: RunRecord, out: Path) -> Path:
    """The run as report files in today's format (run.json, inventory.csv, churn.csv)."""
    out.mkdir(parents=True, exist_ok=True)
    assert run.started is not None
    state = {
        "schema": 1,
        "runId": run.run_id,
        "generatedAt": run.started.isoformat(),
        "spec": {"network": run.network, "topology": run.topology},
        "steps": [{"step": "churn", "ok": True}],
        "capacity": {"rows": [{"node": c.node, "usable": c.usable, "existing": c.in_use} for c in run.capacity]},
    }
    (out / "run.json").write_text(json.dumps(state))
    created = run.started.isoformat().replace("+00:00", "Z")
    lines = ["namespace,name,node,ip,phase,ready,created"]
    lines += [f"{v.namespace},{v.name},{v.node},{v.ip},{v.phase},True,{created}" for v in run.vms]
    (out / "inventory.csv").write_text("\n".join(lines) + "\n")
    lines = ["namespace,vm,node_before,node_after,ip_before,ip_after,migration_phase,duration_s,old_ip_holder"]
    lines += [
        f"{m.namespace},{m.name},{m.node_before},{m.node_after},{m.ip_before},{m.ip_after},Succeeded,"
        f"{m.duration_s},{m.old_ip_holder}"
        for m in run.moves
    ]
    (out / "churn.csv").write_text("\n".join(lines) + "\n")
    return out


def timed(fn: Callable[[], Any], repeat: int = 5) -> tuple[float, Any]:
    """Median wall seconds of ``repeat`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def command(args: list[str], db: str, repeat: int = 3) -> tuple[float, str]:
    """Median wall seconds of the history command in a fresh Python process (imports included), and
    its output."""
    times, out = [], ""
    for _ in range(repeat):
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "udn_rollout.historycmd", "history", *args, "--db", db],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise RuntimeError(f"history {' '.join(args)} failed: {proc.stderr[-1000:]}")
        out = proc.stdout
    return statistics.median(times), out


def import_floor(repeat: int = 3) -> float:
    """Median wall seconds of a fresh Python importing SQLAlchemy: the floor under any history command."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import sqlalchemy"], check=True, timeout=60)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(
    quick: bool = False,
    runs: int | None = None,
    vms: int | None = None,
    db: str | None = None,
    command_repeat: int = 3,
) -> dict[str, Any]:
    n_runs = runs or (10 if quick else 100)
    n_vms = vms or (1000 if quick else 10_000)
    tmp = Path(tempfile.mkdtemp(prefix="bench-history-"))
    url = resolve_url(db) if db else resolve_url(str(tmp / "history.sqlite"))
    backend = url.get_backend_name()
    print(f"history: {n_runs} runs × {n_vms} VMs into {mask_url(url)}", flush=True)
    if backend != "sqlite":
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        metadata.drop_all(engine)
        engine.dispose()

    # one run through the report files: read (ingest.py) and record
    t = time.perf_counter()
    files_dir = write_run_dir(synthetic_run(0, n_vms), tmp / "reports" / "nightly-000")
    write_files_s = time.perf_counter() - t
    read_s, from_files = timed(lambda: read_run_dir(files_dir), repeat=3)

    gen_s = 0.0
    record_s: list[float] = []
    with open_store(url, create=True) as store:
        t = time.perf_counter()
        store.record(from_files)
        first_record_s = time.perf_counter() - t
        for k in range(1, n_runs):
            t = time.perf_counter()
            rec = synthetic_run(k, n_vms)
            gen_s += time.perf_counter() - t
            t = time.perf_counter()
            store.record(rec)
            record_s.append(time.perf_counter() - t)
            if k % 10 == 0:
                print(f"  recorded {k + 1}/{n_runs} runs", flush=True)
        # idempotent re-ingest of a full run (a resumed run updating its rows)
        rerecord_s, _ = timed(lambda: store.record(from_files), repeat=1)
        counts = store.counts()

    with open_store(url) as store:
        runs_s, rows = timed(store.runs)
        assert len(rows) == n_runs, len(rows)
        since = T0 + dt.timedelta(days=n_runs - 7)
        since_s, recent = timed(lambda: store.runs(network="udn-bench-l3", since=since))
        vm_s, events = timed(lambda: store.vm_history("ns-1", "vm-0"))
        html_s, html = timed(lambda: history_html(rows, source=store.display_url), repeat=3)
    cmd_history_s, out = command([], str(url.render_as_string(hide_password=False)), command_repeat)
    assert out.count("nightly-") == n_runs
    cmd_vm_s, vm_out = command(["--vm", "ns-1/vm-0"], str(url.render_as_string(hide_password=False)), command_repeat)
    assert "addresses over time" in vm_out
    floor_s = import_floor(command_repeat)

    db_size = sum(p.stat().st_size for p in tmp.glob("history.sqlite*")) if backend == "sqlite" else None
    vm_rows = counts["history_vms"]
    total_record_s = sum(record_s) + first_record_s
    result: dict[str, Any] = {
        "scenario": "history",
        "parameters": {"runs": n_runs, "vmsPerRun": n_vms, "nodes": NODES, "movesPerRun": n_vms // MOVE_EVERY},
        "database": {
            "backend": backend,
            "url": mask_url(url),
            "sizeMiB": round(db_size / 2**20, 1) if db_size else None,
        },
        "rows": counts,
        "ingest": {
            "writeOneRunDirSeconds": round(write_files_s, 3),
            "readOneRunDirSeconds": round(read_s, 3),
            "recordFirstRunSeconds": round(first_record_s, 3),
            "recordPerRunMedianSeconds": round(statistics.median(record_s), 3) if record_s else None,
            "recordPerRunMaxSeconds": round(max(record_s), 3) if record_s else None,
            "recordAllSeconds": round(total_record_s, 2),
            "vmRowsPerSecond": round(vm_rows / total_record_s),
            "rerecordFullRunSeconds": round(rerecord_s, 3),
            "generateSyntheticSeconds": round(gen_s, 2),
        },
        "queries": {
            "historyAllRunsSeconds": round(runs_s, 4),
            "historySince7dSeconds": round(since_s, 4),
            "historySince7dRuns": len(recent),
            "vmSeconds": round(vm_s, 4),
            "vmEvents": len(events),
            "htmlRenderSeconds": round(html_s, 3),
            "htmlBytes": len(html),
            "commandHistorySeconds": round(cmd_history_s, 3),
            "commandVmSeconds": round(cmd_vm_s, 3),
            "pythonImportSqlalchemySeconds": round(floor_s, 3),
        },
    }
    label = f"{n_runs} runs × {n_vms:,} VMs, {backend}"
    result["figures"] = [
        figure(
            f"history: query of {label}",
            result["queries"]["historyAllRunsSeconds"],
            "s",
            f"target < 1 s; whole command in a fresh process {cmd_history_s:.2f} s, of which "
            f"{floor_s:.2f} s start Python and import SQLAlchemy",
        ),
        figure(
            f"history --vm NS/NAME over {label}",
            result["queries"]["vmSeconds"],
            "s",
            f"{len(events)} events; whole command {cmd_vm_s:.2f} s",
        ),
        figure(
            f"history: record one run of {n_vms:,} VMs ({backend})",
            result["ingest"]["recordPerRunMedianSeconds"],
            "s",
            f"median of {len(record_s)}; reading its report files {read_s:.2f} s; "
            f"{result['ingest']['vmRowsPerSecond']:,} VM rows/s overall",
        ),
        figure(f"history.html of {n_runs} runs", result["queries"]["htmlRenderSeconds"], "s", f"{len(html):,} bytes"),
    ]
    if backend == "sqlite":
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 runs × 1,000 VMs")
    ap.add_argument("--runs", type=int, help="runs to record (default 100)")
    ap.add_argument("--vms", type=int, help="VMs per run (default 10,000)")
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file); PostgreSQL tables are dropped first")
    ap.add_argument("--out", type=Path, help="where to write the JSON (default bench/results/history-<stamp>.json)")
    args = ap.parse_args(argv)
    started = dt.datetime.now()
    res = run(args.quick, args.runs, args.vms, args.db)
    doc = {
        "started": started.isoformat(timespec="seconds"),
        "command": "uv run python -m bench.history "
        + " ".join(mask_url(a) for a in (argv if argv is not None else sys.argv[1:])),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "scenarios": {"history": res},
    }
    out = args.out or RESULTS / f"{'quick-' if args.quick else ''}history-{started.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    for f in res["figures"]:
        print(f"{f['name']}: {f['value']} {f['unit']}  ({f['note']})")
    print(json.dumps({k: res[k] for k in ("rows", "ingest", "queries", "database")}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
