"""Rollout time against the cluster's own bound (issue 20): the realistic profile (virt-controller and
virt-handler client rate limits, 10–30 s starts, seconds-long migrations), 1,000 VMs, Layer2 (10,000: see run()).

    uv run python -m bench bound [--quick]

Each rollout runs as bench/rollout.py runs it; the rollout computes its bound (`tasks.bound`: start rate
from the KubeVirt CR's rate limits, this run's fastest start and migration, the pings' own pacing) and
records the ratio in run.json. Target: wall / bound ≤ 1.15. Quick: 200 VMs, realistic.
"""

from __future__ import annotations

from typing import Any

from bench import rollout


def run(quick: bool = False) -> dict[str, Any]:
    # 10,000 VMs at the realistic profile take hours here (10,000 console sessions' worth of pings at
    # 32 at a time): run it on its own with `python -m bench.rollout --scale 10k-l2 --profile realistic`.
    runs = [rollout.run(True, profile="realistic")] if quick else [rollout.run(scale="1k", profile="realistic")]
    return {
        "scenario": "bound",
        "runs": runs,
        "figures": [f for r in runs for f in r["figures"] if "bound" in f["name"]],
    }
