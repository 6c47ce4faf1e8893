"""The quick commands as a user meets them (issue 18): whole processes, wall-clock, against a cluster that
is already running, without a Prefect server configured.

    uv run python -m bench.commands [--quick] [--repo DIR]     # or: uv run python -m bench commands

One long-lived simulated cluster (as `udn-rollout sim serve`); a small Layer2 run is rolled out once, then
each command is run REPEAT times as `uv run udn-rollout …` from the checkout (``--repo`` times another
checkout, e.g. a worktree of an older commit, against the same cluster: the "before" figures):
`--help`, `render`, `preflight`, `teardown --dry-run`, `report`, `runs`, and `fanout` of a second, small
run (its time outside the step is the wall minus what the step reported). The median is quoted; the
machine is shared, so the min–max spread is kept too. Target (issue 18): under 3 s each against a
running cluster, and under 3 s outside the step for `fanout`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import figure, load_average, rnd, start_cluster

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 3.0


def _env(kubeconfig: Path, reports: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(KUBECONFIG=str(kubeconfig), UDN_ROLLOUT_REPORTS=str(reports), COLUMNS="200")
    return env


def _run(repo: Path, args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    p = subprocess.run(
        ["uv", "run", "--frozen", "udn-rollout", *args], cwd=repo, env=env, capture_output=True, text=True
    )
    return time.perf_counter() - t0, p.returncode, p.stdout + p.stderr


def _spec(dir_: Path, run_id: str, vms: int) -> Path:
    path = dir_ / f"{run_id}.yaml"
    path.write_text(
        json.dumps(
            {
                "runId": run_id,
                "network": {"name": f"udn-{run_id}", "topology": "Layer2", "subnets": [{"cidr": "10.230.0.0/16"}]},
                "namespaces": {"names": [f"{run_id}-a", f"{run_id}-b"]},
                "vms": {"perNamespace": vms},
                "connectivity": {"mode": "off"},
                "churn": {"count": 1},
            }
        )
    )
    return path


def measure(repo: Path, repeat: int, vms: int) -> dict[str, Any]:
    cluster = start_cluster(4, profile="instant")
    out: dict[str, Any] = {"repo": str(repo), "loadAverage1m": {"before": load_average()}}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            env = _env(cluster.kubeconfig, work / "reports")
            spec = _spec(work, "cmd-base", vms)
            wall, code, said = _run(repo, ["rollout", "-f", str(spec), "--no-churn"], env)
            if code != 0:
                raise RuntimeError(f"the base rollout failed ({code}): {said[-2000:]}")
            out["baseRolloutSeconds"] = rnd(wall)
            commands = {
                "--help": ["--help"],
                "render": ["render", "-f", str(spec)],
                "preflight": ["preflight", "-f", str(spec)],
                "teardown --dry-run": ["teardown", "-f", str(spec), "--dry-run"],
                "report": ["report", "cmd-base"],
                "runs": ["runs"],
            }
            timings: dict[str, Any] = {}
            for name, args in commands.items():
                walls = []
                for _ in range(repeat):
                    w, code, said = _run(repo, args, env)
                    if code == 2 and "invalid choice" in said:
                        break  # an older checkout without this command
                    if code not in (0,) and name != "preflight":
                        raise RuntimeError(f"{name} failed ({code}): {said[-1000:]}")
                    walls.append(w)
                if not walls:
                    continue
                timings[name] = {
                    "median": rnd(statistics.median(walls)),
                    "min": rnd(min(walls)),
                    "max": rnd(max(walls)),
                }
            # fanout of a fresh run: the step's own time (its headline) against the whole process
            fan = []
            for i in range(repeat):
                s = _spec(work, f"cmd-fan{i}", vms)
                w, code, said = _run(repo, ["provision", "-f", str(s)], env)
                w, code, said = _run(repo, ["fanout", "-f", str(s)], env)
                m = re.search(r"VMs ready in ([0-9.]+)s", said)
                step = float(m.group(1)) if m else float("nan")
                fan.append((w, step))
            walls = [w for w, _ in fan]
            outside = [w - s for w, s in fan]
            timings["fanout"] = {
                "median": rnd(statistics.median(walls)),
                "stepMedian": rnd(statistics.median(s for _, s in fan)),
                "outsideStepMedian": rnd(statistics.median(outside)),
                "vms": 2 * vms,
            }
            out["commands"] = timings
    finally:
        cluster.stop()
    out["loadAverage1m"]["after"] = load_average()
    return out


def run(quick: bool, repo: Path | None = None) -> dict[str, Any]:
    repeat, vms = (2, 2) if quick else (5, 50)
    res = measure(repo or ROOT, repeat, vms)
    label = "" if repo is None else f" ({repo.name})"
    figures = []
    for name, t in res["commands"].items():
        if name == "fanout":
            figures.append(
                figure(
                    f"commands{label}: fanout {t['vms']} VMs, outside the step",
                    t["outsideStepMedian"],
                    "s",
                    f"whole process {t['median']} s, the step {t['stepMedian']} s; target < {TARGET_S:g} s outside",
                )
            )
        else:
            figures.append(
                figure(
                    f"commands{label}: {name}",
                    t["median"],
                    "s",
                    f"min {t['min']}, max {t['max']}; against a running cluster; target < {TARGET_S:g} s",
                )
            )
    res["scenario"] = "commands"
    res["figures"] = figures
    return res


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.commands")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repo", type=Path, help="time the commands of another checkout (e.g. an older commit's worktree)")
    a = p.parse_args()
    res = run(a.quick, a.repo.resolve() if a.repo else None)
    for f in res["figures"]:
        print(f"{f['name']}: {f['value']} {f['unit']}  ({f['note']})")
    json.dump(res, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
