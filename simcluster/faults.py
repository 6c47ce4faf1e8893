"""Faults on demand: knobs that make the simulated cluster misbehave the way busy real clusters do.

Each knob can be set at start (`SimCluster(faults=...)`, `sim serve --fault k=v`) and at run time
through the admin endpoint `PUT /simcluster/v1/faults`, so tests and benchmarks can prove what the
flows survive. API faults hit resource requests only (not discovery), as a priority-and-fairness
rejection would. Controller knobs (start/migration failures, packet loss, NotReady nodes) are read
by the controllers.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from simcluster import errors


@dataclass
class Faults:
    rate_429: float = 0.0  # fraction of resource requests answered 429 TooManyRequests
    retry_after_seconds: int = 1
    rate_5xx: float = 0.0  # fraction answered 500/503
    latency_ms: float = 0.0  # added to every resource request
    latency_jitter_ms: float = 0.0
    watch_cut_seconds: float = 0.0  # end every watch stream after this long (0: never)
    vmi_start_failure_rate: float = 0.0  # fraction of VMIs that fail to start
    migration_failure_rate: float = 0.0  # fraction of migrations that fail
    packet_loss: dict[str, float] = field(default_factory=dict)  # "nodeA|nodeB" → loss fraction (both ways)
    not_ready_nodes: list[str] = field(default_factory=list)
    # kind → message: creates of that kind (dry runs too) are refused as a validating webhook refuses
    # them (403, "admission webhook … denied the request: <message>"), like a site policy or quota.
    admission_deny: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    counters: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    async def before_request(self, request: web.Request) -> None:
        path = request.path
        resource = path.startswith(("/api/", "/apis/")) and path.count("/") >= 3
        if not resource:
            return
        if self.latency_ms or self.latency_jitter_ms:
            await asyncio.sleep((self.latency_ms + self._rng.random() * self.latency_jitter_ms) / 1000)
        if self.chance(self.rate_429):
            self._count("429")
            raise errors.too_many_requests(self.retry_after_seconds)
        if self.chance(self.rate_5xx):
            self._count("5xx")
            if self._rng.random() < 0.5:
                raise errors.ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request")
            raise errors.internal("etcdserver: request timed out")

    def watch_cut_deadline(self) -> float | None:
        return time.monotonic() + self.watch_cut_seconds if self.watch_cut_seconds > 0 else None

    def loss_between(self, a: str, b: str) -> float:
        return self.packet_loss.get(f"{a}|{b}", self.packet_loss.get(f"{b}|{a}", 0.0))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("seed", None)
        return d

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update; unknown knobs are an error naming the valid ones."""
        valid = {k for k in self.to_dict() if k != "counters"}
        unknown = set(changes) - valid - {"seed"}
        if unknown:
            raise errors.bad_request(f"unknown fault knob(s) {sorted(unknown)}; valid knobs: {sorted(valid)}")
        for k, v in changes.items():
            if k == "seed":
                self._rng = random.Random(v)
                continue
            current = getattr(self, k)
            if isinstance(current, bool) or not isinstance(current, (int, float)):
                setattr(self, k, v)
            else:
                try:
                    setattr(self, k, type(current)(v))
                except (TypeError, ValueError) as e:
                    raise errors.bad_request(f"fault knob {k}: {v!r} is not a number") from e
