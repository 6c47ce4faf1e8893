"""Client-side rate limits of KubeVirt's components, as the realistic profile applies them.

client-go's token bucket (``flowcontrol.NewTokenBucketRateLimiter``, golang.org/x/time/rate): ``burst``
tokens to start with, ``qps`` more per second. A controller that needs ``n`` API writes for one VM
waits until the bucket has them; reservations queue in arrival order, so a burst of 1,000 VM starts
spreads out instead of finishing in one latency draw.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable


class TokenBucket:
    """``reserve(n)`` returns how long to wait before ``n`` writes may go (tokens may go negative)."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.qps = max(float(qps), 1e-6)
        self.burst = max(int(burst), 1)
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()

    def configure(self, qps: float, burst: int) -> None:
        self._refill()
        self.qps = max(float(qps), 1e-6)
        self.burst = max(int(burst), 1)
        self._tokens = min(self._tokens, float(self.burst))

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now

    def reserve(self, n: int = 1) -> float:
        self._refill()
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps


class WorkerPool:
    """``workers`` goroutines draining a queue: ``start(duration)`` says when a job begins (seconds from
    now) given the jobs already holding a worker; the job then holds it for ``duration``."""

    def __init__(self, workers: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._free_at = [0.0] * max(workers, 1)
        heapq.heapify(self._free_at)

    def start(self, duration: float) -> float:
        now = self._clock()
        begin = max(now, heapq.heappop(self._free_at))
        heapq.heappush(self._free_at, begin + max(duration, 0.0))
        return begin - now
