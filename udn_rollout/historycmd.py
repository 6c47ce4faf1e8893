"""`udn-rollout history ...`: IP churn and free capacity across runs, from the run history database.

Kept apart from cli.py so the command imports only SQLAlchemy (and Jinja2 for --html): no Prefect,
no pandas, no Kubernetes client — it answers in well under a second.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_DB = 4

DESCRIPTION = """\
Every run's inventory, moves (migrations, restarts, drains), downtimes and per-node capacity, kept in
one database so IP churn and free addresses can be followed across runs.

Without a command: a row per run (VMs, moves, IP changes, stale-IP hazards, downtime quantiles, the
lowest free addresses of any node subnet). --vm NS/NAME: one VM's nodes and addresses over time.
--html FILE: charts of IP changes and free capacity per run.

The database: --db URL, else $UDN_ROLLOUT_DB (sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB),
else history.sqlite in the reports root (--reports-dir, $UDN_ROLLOUT_REPORTS, or ./reports when it
exists), else ~/.local/share/udn-rollout/history.sqlite.
"""

EPILOG = """\
Examples:
  udn-rollout history record reports/seed-l3        record a run (again: its rows are replaced)
  udn-rollout history record reports                record every run under a reports root
  udn-rollout history --network udn-cluster-primary-l3 --since 7d
  udn-rollout history --vm namespace-7/rhel8-vm-1
  udn-rollout history --since 2026-11-01 --html history.html

Exit codes: 0 ok, 2 bad input (nothing written), 4 the database could not be reached (nothing written).
"""


def _db_args(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    """--db and --reports-dir; on the subcommand they must not overwrite values given before it."""
    default = argparse.SUPPRESS if suppress else None
    p.add_argument(
        "--db",
        metavar="URL",
        default=default,
        help="database URL or SQLite file (default: $UDN_ROLLOUT_DB, else history.sqlite in the reports root)",
    )
    p.add_argument(
        "--reports-dir",
        metavar="DIR",
        default=default,
        help="reports root whose history.sqlite to use (default ./reports)",
    )


def add_history_parser(sub: Any) -> None:
    h = sub.add_parser(
        "history",
        help="IP churn and free capacity across runs (the run history database)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _db_args(h)
    h.add_argument("--network", metavar="N", help="only runs of this network (the ClusterUserDefinedNetwork's name)")
    h.add_argument("--since", metavar="WHEN", help="only runs started since: 24h, 7d, 2w, or an ISO date (UTC)")
    h.add_argument("--vm", metavar="NS/NAME", help="one VM's nodes and addresses over time")
    h.add_argument("--html", metavar="FILE", help="also write the charts page (history.html) to FILE")
    h.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    hs = h.add_subparsers(dest="history_cmd", metavar="COMMAND")
    r = hs.add_parser(
        "record",
        help="record run report directories into the history",
        description="Read each run's report directory (reports/<run-id>/: run.json, inventory.csv, churn.csv) "
        "and record it; a run id recorded before has its rows replaced. A directory without run.json is "
        "taken as a reports root: every run directory in it is recorded. All directories are read before "
        "anything is written, so one bad directory records nothing.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a run's report directory, or a reports root")
    _db_args(r, suppress=True)


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def run_history(args: argparse.Namespace) -> int:
    """Dispatch `history` and `history record`; HistoryError → its exit code (2 input, 4 database)."""
    from tasks.history.records import HistoryError

    try:
        if getattr(args, "history_cmd", None) == "record":
            return _record(args)
        return _show(args)
    except HistoryError as e:
        _err(str(e))
        return e.exit_code


def _url(args: argparse.Namespace) -> Any:
    from tasks.history.store import resolve_url

    return resolve_url(getattr(args, "db", None), getattr(args, "reports_dir", None))


def _record(args: argparse.Namespace) -> int:
    from tasks.history.render import fmt_int
    from tasks.history.store import mask_url, record_dirs

    url = _url(args)
    for run, s in record_dirs(args.run_dirs, url):
        for w in run.warnings:
            print(f"warning: {run.run_id}: {w}", file=sys.stderr)
        lowest = f"{fmt_int(s.lowest_free)} ({s.lowest_free_node})" if s.lowest_free is not None else "—"
        print(
            f"recorded {s.run_id}: {s.vms} VMs, {s.moves} moves, {s.ip_changes} IP changes, "
            f"{s.stale_ip_hazards} stale-IP hazards, lowest free {lowest}"
        )
    print(f"database: {mask_url(url)}", file=sys.stderr)
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    from tasks.history.records import HistoryError
    from tasks.history.store import open_store, parse_since, parse_vm_ref

    # every input is checked before the database is touched
    vm = parse_vm_ref(args.vm) if args.vm else None
    since = parse_since(args.since) if args.since else None
    if vm and args.html:
        raise HistoryError("--html draws the runs' history; leave out --vm (or run the two separately)")
    html = Path(args.html) if args.html else None
    if html is not None and html.is_dir():
        raise HistoryError(f"--html {html}: that is a directory; give a file name, e.g. {html / 'history.html'}")

    with open_store(_url(args), create=False) as store:
        if vm:
            return _show_vm(store, *vm, network=args.network, since=since, as_json=args.json)
        runs = store.runs(network=args.network, since=since)
        filters = ", ".join(
            f
            for f in (f"network {args.network}" if args.network else "", f"since {args.since}" if args.since else "")
            if f
        )
        if args.json:
            print(json.dumps([asdict(r) for r in runs], default=_json_default, indent=2))
        else:
            _print_runs(runs, store.display_url, filters, store.empty)
        if html is not None:
            from tasks.history.render import history_html

            text = history_html(runs, source=store.display_url, filters=filters)
            html.parent.mkdir(parents=True, exist_ok=True)
            tmp = html.with_name(f".{html.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(html)
            print(f"wrote {html}", file=sys.stderr)
    return EXIT_OK


def _json_default(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    return str(v)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A plain terminal table, numbers right-aligned."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if rt else c.ljust(w) for c, w, rt in zip(cells, widths, right, strict=True)
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _print_runs(runs: Sequence[Any], source: str, filters: str, empty: bool) -> None:
    from tasks.history.render import COLUMNS, format_row

    if not runs:
        where = f" matching {filters}" if filters else ""
        hint = " (record one: udn-rollout history record reports/<run-id>)" if empty or not filters else ""
        print(f"no runs recorded{where} in {source}{hint}", file=sys.stderr)
        return
    print(f"{len(runs)} run(s){' — ' + filters if filters else ''}; database {source}", file=sys.stderr)
    # guest addresses are measured only by runs that ping from a console during moves: no column otherwise
    keep = [i for i, (h, _) in enumerate(COLUMNS) if h != "GUEST IP CHANGES" or any(r.guest_ip_changes for r in runs)]
    rows = [format_row(r) for r in runs]
    print(
        table(
            [COLUMNS[i][0] for i in keep],
            [[row[i] for i in keep] for row in rows],
            [COLUMNS[i][1] for i in keep],
        )
    )


def _arrow(a: str, b: str) -> str:
    if not a and not b:
        return "—"
    return a or "—" if a == b else f"{a or '—'} → {b or '—'}"


def _show_vm(
    store: Any, namespace: str, name: str, *, network: str | None, since: datetime | None, as_json: bool
) -> int:
    from tasks.history.render import fmt_ms, fmt_time

    events = store.vm_history(namespace, name, network=network, since=since)
    if as_json:
        print(json.dumps([asdict(e) for e in events], default=_json_default, indent=2))
        return EXIT_OK
    ref = f"{namespace}/{name}"
    if not events:
        print(f"no record of {ref} in {store.display_url}", file=sys.stderr)
        return EXIT_OK
    header = ["STARTED (UTC)", "RUN", "NETWORK", "EVENT", "NODE", "VMI IP", "GUEST IP", "DOWNTIME ms", "STATE"]
    rows, last_run = [], None
    for e in events:
        first = e.run_id != last_run
        last_run = e.run_id
        state = e.phase + (", ready" if e.ready else ", not ready" if e.ready is False else "")
        if e.stale_ip_hazard:
            state += ", old IP now another VM's"
        rows.append(
            [
                fmt_time(e.started) if first else "",
                e.run_id if first else "",
                f"{e.network} ({e.topology})" if first else "",
                e.kind,
                _arrow(e.node_before, e.node_after),
                _arrow(e.ip_before, e.ip_after),
                _arrow(e.guest_ip_before, e.guest_ip_after),
                fmt_ms(e.downtime_ms),
                state or "—",
            ]
        )
    runs = len({e.run_id for e in events})
    print(f"{ref}: {runs} run(s), database {store.display_url}", file=sys.stderr)
    print(table(header, rows, [False] * 7 + [True, False]))
    ips = _changes([x for e in events for x in (e.ip_before, e.ip_after)])
    nodes = _changes([x for e in events for x in (e.node_before, e.node_after)])
    print(f"\naddresses over time: {' → '.join(ips) or '—'}")
    print(f"nodes over time:     {' → '.join(nodes) or '—'}")
    return EXIT_OK


def _changes(values: Sequence[str]) -> list[str]:
    """Values in order with consecutive repeats (and blanks) dropped."""
    out: list[str] = []
    for v in values:
        if v and (not out or out[-1] != v):
            out.append(v)
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m udn_rollout.historycmd ...`: the command without the rest of the CLI."""
    p = argparse.ArgumentParser(prog="udn-rollout")
    sub = p.add_subparsers(dest="cmd", required=True)
    add_history_parser(sub)
    return run_history(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
