"""Client-side load bounds: a token bucket like client-go's, and counters of every request made."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


class RateLimiter:
    """Token bucket like client-go's: ``burst`` requests at once, then ``qps`` per second.

    Each acquire reserves a token (the bucket may go negative) and sleeps outside the lock until
    its reservation is due, so waiting threads are served in arrival order without busy loops.
    ``qps <= 0`` means unlimited.
    """

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = float(qps)
        self.burst = max(1, int(burst))
        self._tokens = float(self.burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self.acquired = 0
        self.waits = 0
        self.wait_seconds = 0.0

    @property
    def unlimited(self) -> bool:
        return self.qps <= 0

    def reserve(self) -> float:
        """Take a token now; return how long the caller must wait before using it."""
        with self._lock:
            self.acquired += 1
            if self.qps <= 0:
                return 0.0
            now = time.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            delay = -self._tokens / self.qps
            self.waits += 1
            self.wait_seconds += delay
            return delay

    def acquire(self) -> float:
        """Block until a token is available; returns the seconds waited."""
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)
        return delay


@dataclass
class KubeStats:
    """Counters over every request a :class:`Kube` made (attempts, including retries)."""

    requests: int = 0
    by_verb: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    throttled: int = 0  # 429 answers
    server_errors: int = 0  # 5xx answers
    connection_errors: int = 0
    limiter_wait_seconds: float = 0.0
    in_flight: int = 0
    in_flight_peak: int = 0
    list_restarts: int = 0
    watch_resumes: int = 0
    watch_relists: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def begin(self, verb: str, waited: float) -> None:
        with self._lock:
            self.requests += 1
            self.by_verb[verb] = self.by_verb.get(verb, 0) + 1
            self.limiter_wait_seconds += waited
            self.in_flight += 1
            self.in_flight_peak = max(self.in_flight_peak, self.in_flight)

    def end(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            d = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
            d["by_verb"] = dict(self.by_verb)
        return d
