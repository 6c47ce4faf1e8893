"""One entry point for every benchmark scenario against the simulated cluster.

    uv run python -m bench [all|sim|fanout|ansible|connectivity|churn|server ...] [--quick] [--out FILE]

A full run (no --quick) writes `bench/results/<yyyymmdd-hhmmss>.json` (this run), merges it into
`bench/results/latest.json` (the newest figures of every scenario, each with when and how it was
measured), renders `bench/results/latest.md` from that, and replaces the table between the markers
in `BENCHMARKS.md`. A --quick run (small sizes, for smoke tests) writes only
`bench/results/quick-<yyyymmdd-hhmmss>.json`, or --out FILE, and touches nothing else.

Scenarios are modules of this package, each with `run(quick) -> dict` whose `figures` list feeds the
table; to add one, write the module and add it to SCENARIOS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"

# name → module (run(quick) -> dict with "figures"); `all` runs them in this order
SCENARIOS: dict[str, str] = {
    "sim": "bench.sim_vms",
    "fanout": "bench.fanout",
    "ansible": "bench.ansible_k8s",
    "connectivity": "bench.connectivity",
    "churn": "bench.churn",
    "churn-actions": "bench.churn_actions",
    "rollout": "bench.rollout",
    "rollout-25k": "bench.rollout_25k",
    "bound": "bench.bound",
    "server": "bench.server_throughput",
    "commands": "bench.commands",
    "history": "bench.history",
}


def _server(quick: bool) -> dict[str, Any]:
    """The API server's own ceiling with a minimal client (bench/server_throughput.py)."""
    from bench import server_throughput as st

    params = (
        {"objects": 2000, "threads": 8, "vms": 500, "gets": 500, "live": 1000}
        if quick
        else {"objects": 20_000, "threads": 8, "vms": 2000, "gets": 2000, "live": 5000}
    )
    res = st.run(**params)
    ph = res["phases"]
    vm_key = next(k for k in ph if k.startswith("create VirtualMachine"))
    cm_key = next(k for k in ph if k.startswith("create ConfigMap"))
    res["scenario"] = "server"
    res["figures"] = [
        {
            "name": f"server: {vm_key}",
            "value": ph[vm_key]["perSecond"],
            "unit": "creates/s",
            "note": f"{ph[vm_key]['count']} VMs (Halted), official client, raw responses (the ceiling: fanout rows)",
        },
        {
            "name": f"server: {cm_key}",
            "value": ph[cm_key]["perSecond"],
            "unit": "creates/s",
            "note": f"p99 {ph[cm_key].get('latencyMsP99')} ms",
        },
        {
            "name": "server: watch while creating",
            "value": ph["watch while creating"]["perSecond"],
            "unit": "events/s",
            "note": f"lag {ph['watch while creating'].get('lagAfterLastCreateSeconds')} s",
        },
    ]
    return res


def run_scenario(name: str, quick: bool) -> dict[str, Any]:
    if name == "server":
        return _server(quick)
    return importlib.import_module(SCENARIOS[name]).run(quick)


def derived(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Figures that need two scenarios of the same run: Ansible's wall time over udn-rollout's at the
    spec's defaults (qps 50, burst 100) for the same number of VMs. (The tool against the server's ceiling is measured in pairs
    inside the fanout scenario, bench/ceiling.py.)"""
    out = []
    fo = results.get("fanout")
    an = results.get("ansible")
    if fo and an and "skipped" not in an:
        from bench.fanout import DEFAULT_BURST, DEFAULT_QPS

        at_defaults = {
            r["vms"]: r for r in fo.get("udnRollout", []) if r["qps"] == DEFAULT_QPS and r["burst"] == DEFAULT_BURST
        }
        for key, label in (("perVm", "k8s task per VM"), ("oneFile", "one k8s task, multi-doc src")):
            a = an.get(key)
            udn = at_defaults.get(a["vms"]) if a else None
            if a and udn:
                out.append(
                    {
                        "name": f"ansible: ratio {label} {a['vms']} VMs / udn-rollout at the spec's defaults",
                        "value": round(a["wallSeconds"] / udn["wallSeconds"], 2),
                        "unit": "x",
                        "note": f"{a['wallSeconds']} s / {udn['wallSeconds']} s, same number of VMs",
                    }
                )
    return out


def table(rows: list[dict[str, Any]], with_when: bool = False) -> str:
    head = "| figure | value | unit | notes |" + (" measured |" if with_when else "")
    sep = "| --- | ---: | --- | --- |" + (" --- |" if with_when else "")
    lines = [head, sep]
    for f in rows:
        v = f["value"]
        val = f"{v:,.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)
        line = f"| {f['name']} | {val} | {f['unit']} | {f.get('note', '')} |"
        if with_when:
            line += f" {f.get('measured', '')} |"
        lines.append(line)
    return "\n".join(lines)


def merged_rows(latest: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name in [*SCENARIOS, "derived"]:
        sc = latest.get("scenarios", {}).get(name)
        if not sc:
            continue
        for f in sc.get("figures", []):
            rows.append({**f, "measured": sc.get("measured", "")})
    return rows


def write_full(results: dict[str, Any], meta: dict[str, Any], stamp: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{stamp}.json"
    out.write_text(json.dumps({**meta, "scenarios": results}, indent=2, default=str) + "\n")
    latest_path = RESULTS / "latest.json"
    latest = json.loads(latest_path.read_text()) if latest_path.exists() else {"scenarios": {}}
    for name, res in results.items():
        latest["scenarios"][name] = {
            "measured": meta["started"],
            "file": out.name,
            "command": meta["command"],
            "machine": meta["machine"],
            "figures": res.get("figures", []),
        }
    latest["updated"] = meta["started"]
    latest_path.write_text(json.dumps(latest, indent=2, default=str) + "\n")
    md = table(merged_rows(latest), with_when=True)
    (RESULTS / "latest.md").write_text(
        f"# Latest benchmark figures\n\nMachine: {meta['machine']['cpus']} CPUs, Python {meta['machine']['python']}. "
        f"Each scenario's row says when it was measured; its full figures are in the JSON file named in "
        f"`latest.json`.\n\n{md}\n"
    )
    if BENCHMARKS_MD.exists():
        text = BENCHMARKS_MD.read_text()
        if START in text and END in text:
            head, rest = text.split(START, 1)
            _, tail = rest.split(END, 1)
            BENCHMARKS_MD.write_text(f"{head}{START}\n{md}\n{END}{tail}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "scenarios",
        nargs="*",
        default=["all"],
        choices=["all", *SCENARIOS],
        metavar="SCENARIO",
        help=f"all (default) or any of: {', '.join(SCENARIOS)}",
    )
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test; under a minute per scenario)")
    ap.add_argument("--out", type=Path, help="write this run's JSON here and touch nothing else")
    args = ap.parse_args(argv)
    names = list(SCENARIOS) if "all" in args.scenarios else list(dict.fromkeys(args.scenarios))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    started = dt.datetime.now()
    stamp = started.strftime("%Y%m%d-%H%M%S")
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "command": "uv run python -m bench " + " ".join([*args.scenarios, *(["--quick"] if args.quick else [])]),
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadAverage1mBefore": round(os.getloadavg()[0], 2),
        },
    }
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    for name in names:
        print(f"\n=== {name}{' (quick)' if args.quick else ''} ===", flush=True)
        s0 = time.perf_counter()
        results[name] = run_scenario(name, args.quick)
        results[name]["scenarioSeconds"] = round(time.perf_counter() - s0, 1)
    extra = derived(results)
    if extra:
        results["derived"] = {"figures": extra}
    meta["machine"]["loadAverage1mAfter"] = round(os.getloadavg()[0], 2)
    meta["totalSeconds"] = round(time.perf_counter() - t0, 1)
    rows = [f for r in results.values() for f in r.get("figures", [])]
    print("\n" + table(rows), flush=True)
    if args.out or args.quick:
        out = args.out or RESULTS / f"quick-{stamp}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**meta, "scenarios": results}, indent=2, default=str) + "\n")
    else:
        out = write_full(results, meta, stamp)
        print(f"wrote {RESULTS / 'latest.json'}, {RESULTS / 'latest.md'} and the table in {BENCHMARKS_MD.name}")
    print(f"wrote {out} ({meta['totalSeconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
