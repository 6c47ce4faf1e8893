"""25,000 VMs on one cluster (issue 20): 250 nodes, Layer2, sampled ping matrix, 10 % churn, as a user runs it.

    uv run python -m bench.rollout --scale 25k     # or: uv run python -m bench rollout-25k

Targets: the whole rollout in under 15 minutes on this 2-core machine, the tool's peak RSS under 1.5 GiB
(bench/rollout.py measures both, step by step). The quick form is bench/rollout.py's quick size.
"""

from __future__ import annotations

from typing import Any

from bench import rollout


def run(quick: bool = False) -> dict[str, Any]:
    return rollout.run(quick, scale="25k")
