"""Process-wide tuning for the tool's own process (CLI runs, flow runs started by a worker, benchmarks).

The tool keeps a cluster's worth of API objects as plain dicts (informer caches, VM records): tens of
thousands of containers without reference cycles. CPython's default collector (a young-generation
pass every 700 allocations, full passes as the heap grows) rescans them over and over; on a 5,000-VM
fan-out that was about a sixth of the client's CPU (bench/BENCHMARKS.md). Collecting less often, and
freezing what imports created, keeps cyclic garbage collected without rescanning the data.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> None:
    """Raise the collector's thresholds and, the first time, move what start-up made out of its sight.

    Freezing once only: frozen objects are never collected, so freezing again at every step would
    also freeze whatever garbage the previous step had not yet handed to the collector.
    """
    if gc.get_threshold() != GC_THRESHOLDS:
        gc.set_threshold(*GC_THRESHOLDS)
        gc.freeze()


def collect_between_steps() -> None:
    """A full collection where a pause is harmless (a step starting): with the raised thresholds full
    passes are rare, and cyclic garbage a previous step left behind (Prefect's and urllib3's objects
    included) would otherwise stay in memory for the rest of a long-lived process."""
    gc.collect()
