"""Latency profiles: how long the simulated cluster takes to do things.

`fast` keeps tests quick while preserving order and spread; `realistic` matches the times OpenShift
Virtualization shows (scheduling in about a second, a container-disk VM Running in 10–30 s, a live
migration of an idle 1 GiB VM in a few seconds, the guest agent connecting once the guest has
booted); `instant` removes waiting for what-if runs.

Spans are in real seconds of the simulator. The guests' own clocks run ``1 / console_time_scale``
times faster (their sleeps are scaled down), so the ``fast`` profile's switch-over window of
2.5–5 ms is 0.25–0.5 s on a guest's clock: the same outage a guest sees in ``realistic``.

``switchover`` is the end of a successful live migration during which the guest answers nothing:
QEMU pauses the source for the final memory copy (its default ``downtime-limit`` is 300 ms,
qemu ``migration/options.c`` ``DEFAULT_MIGRATE_SET_DOWNTIME``; KubeVirt v1.5 sets none), and on a
Layer2 UDN OVN-Kubernetes enables the target's logical switch port and disables the source's only
once the target domain is ready (ovn-kubernetes PR #4774 "VM migration: Reduce downtime using LSP
Enabled": measured downtime "<0.5s", 13 s before the change; in OpenShift from 4.16). So 0.2–0.5 s.
``migration_backoff`` is virt-controller's back-off before retrying an evacuation migration of a
VMI whose previous one failed (20 s, doubling: ``migration.go`` ``handleMigrationBackoff``).

Only `realistic` bounds VM start-up the way a cluster does (``rate_limited``): virt-controller's
client token bucket (KubeVirt CR ``spec.configuration.controllerConfiguration.restClient.rateLimiter
.tokenBucketRateLimiter``, KubeVirt v1.5 defaults QPS 200 / burst 400), and per node virt-handler's
10 VMI workers and its own client bucket (``handlerConfiguration``, defaults QPS 5 / burst 10).
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
    agent: tuple[float, float] = (0.0, 0.0)  # VMI Running → guest agent connected (the guest has booted)
    domain_start: tuple[float, float] = (0.0, 0.0)  # a virt-handler worker defining and starting the domain
    rate_limited: bool = False  # apply virt-controller / virt-handler client rate limits and worker counts
    switchover: tuple[float, float] = (0.0, 0.0)  # end of a live migration: guest paused, port moving
    migration_backoff: float = 20.0  # first back-off after a failed evacuation migration (then doubling)

    def draw(self, rng: random.Random, span: tuple[float, float]) -> float:
        lo, hi = span
        return lo if hi <= lo else rng.uniform(lo, hi)


PROFILES: dict[str, Profile] = {
    "instant": Profile("instant", (0, 0), (0, 0), (0, 0), (0, 0), 0.05, 0.001, migration_backoff=0.05),
    "fast": Profile(
        "fast",
        (0.005, 0.03),
        (0.02, 0.12),
        (0.005, 0.03),
        (0.03, 0.15),
        0.2,
        0.01,
        agent=(0.02, 0.06),
        switchover=(0.0025, 0.005),
        migration_backoff=0.4,
    ),
    "realistic": Profile(
        "realistic",
        (0.3, 1.5),
        (7.0, 22.0),
        (2.0, 5.0),
        (3.0, 10.0),
        10.0,
        1.0,
        agent=(15.0, 40.0),
        domain_start=(1.0, 3.0),
        rate_limited=True,
        switchover=(0.2, 0.5),
        migration_backoff=20.0,
    ),
}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError as e:
        raise ValueError(f"unknown latency profile {name!r}; choose one of {sorted(PROFILES)}") from e
