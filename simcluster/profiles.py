"""Latency profiles: how long the simulated cluster takes to do things.

`fast` keeps tests quick while preserving order and spread; `realistic` matches the times OpenShift
Virtualization shows (scheduling in about a second, a container-disk VM Running in 10–30 s, a live
migration of an idle 1 GiB VM in a few seconds); `instant` removes waiting for what-if runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    schedule: tuple[float, float]  # VMI created → Scheduled
    start: tuple[float, float]  # Scheduled → Running
    stop: tuple[float, float]  # stop requested → VMI gone
    migration: tuple[float, float]  # migration Running → Succeeded
    retry: float  # back-off base for crash loops and blocked pods
    console_time_scale: float  # scales guest-side sleeps (ping intervals)

    def draw(self, rng: random.Random, span: tuple[float, float]) -> float:
        lo, hi = span
        return lo if hi <= lo else rng.uniform(lo, hi)


PROFILES: dict[str, Profile] = {
    "instant": Profile("instant", (0, 0), (0, 0), (0, 0), (0, 0), 0.05, 0.001),
    "fast": Profile("fast", (0.005, 0.03), (0.02, 0.12), (0.005, 0.03), (0.03, 0.15), 0.2, 0.01),
    "realistic": Profile("realistic", (0.3, 1.5), (8.0, 25.0), (2.0, 5.0), (3.0, 10.0), 10.0, 1.0),
}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError as e:
        raise ValueError(f"unknown latency profile {name!r}; choose one of {sorted(PROFILES)}") from e
