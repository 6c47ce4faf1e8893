"""The time a rollout cannot beat on this cluster, so the tool's own wall time can be read against it.

On a real cluster the limit is the cluster: how fast KubeVirt can start VMs, how long one takes to come
up, how many live migrations it runs at once. The bound is computed from the cluster's own limits (the
KubeVirt CR) and from what this very run observed (its fastest start, its fastest migration), for the
runbook's order — VMs up, then the ping matrix, then churn:

* fan-out ≥ the fastest create→Ready latency seen + (N − 1) / R, where R is the start rate KubeVirt's
  clients allow: virt-controller's token bucket (``controllerConfiguration.restClient.rateLimiter``,
  KubeVirt default 200 QPS) over the API writes it makes per VM start, and each node's virt-handler
  bucket (default 5 QPS up to v1.6, 50 from v1.7) over its writes per start (KubeVirt
  ``pkg/virt-config/virt-config.go``; the writes per start are the model's, ``WRITES_PER_START``);
* ping matrix ≥ the busiest source's own pacing: its probes one after another, each ``count`` pings
  ``interval`` apart (a console runs one command at a time), every source at once;
* churn ≥ the migrations' own durations (as this run's migration states report them) packed into the
  cluster's slots: their sum over ``parallelMigrationsPerCluster``, each node's sum over
  ``parallelOutboundMigrationsPerNode``, and the longest one — whichever is longest.

Pure functions over plain numbers, so the bound can be checked by hand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: API writes per VM start charged to virt-controller's and virt-handler's clients (the VMI, the launcher
#: pod, and status updates; virt-handler's phase updates) — the simulated cluster charges the same.
WRITES_PER_START = {"controller": 6, "handler": 3}
#: KubeVirt's client rate limits when the CR sets none (pkg/virt-config/virt-config.go).
DEFAULT_CONTROLLER_QPS = 200.0
DEFAULT_HANDLER_QPS = 5.0


@dataclass(frozen=True)
class Bound:
    fanout_s: float
    probes_s: float
    churn_s: float
    start_rate_per_s: float
    notes: tuple[str, ...] = ()
    #: False when the run beat a term (the cluster does not enforce the limits it was computed from, as
    #: the simulated cluster's fast profile does not): then it bounds nothing and no ratio is reported
    applies: bool = True

    @property
    def total_s(self) -> float:
        return self.fanout_s + self.probes_s + self.churn_s

    def to_dict(self) -> dict[str, object]:
        return {
            "fanout_s": round(self.fanout_s, 1),
            "probes_s": round(self.probes_s, 1),
            "churn_s": round(self.churn_s, 1),
            "total_s": round(self.total_s, 1),
            "start_rate_per_s": round(self.start_rate_per_s, 2),
            "notes": list(self.notes),
            "applies": self.applies,
        }


def kubevirt_rates(kubevirt: Mapping[str, object] | None) -> tuple[float, float]:
    """(virt-controller QPS, virt-handler QPS) from a KubeVirt CR: its rate limiters, else the defaults
    of its version (virt-handler's went from 5 to 50 QPS in v1.7)."""
    cr = dict(kubevirt or {})
    conf = dict((cr.get("spec") or {}).get("configuration") or {})  # type: ignore[attr-defined]

    def qps(component: str, default: float) -> float:
        bucket = (((conf.get(component) or {}).get("restClient") or {}).get("rateLimiter") or {}).get(
            "tokenBucketRateLimiter"
        ) or {}
        return float(bucket.get("qps") or default)

    version = str((cr.get("status") or {}).get("observedKubeVirtVersion") or "")  # type: ignore[attr-defined]
    parts = [int(x) for x in version.lstrip("v").split(".")[:2] if x.isdigit()]
    handler_default = 50.0 if len(parts) == 2 and tuple(parts) >= (1, 7) else DEFAULT_HANDLER_QPS
    return qps("controllerConfiguration", DEFAULT_CONTROLLER_QPS), qps("handlerConfiguration", handler_default)


def start_rate(nodes: int, controller_qps: float, handler_qps: float) -> float:
    """VM starts per second KubeVirt's clients allow: the lower of virt-controller's and all handlers'."""
    ctrl = controller_qps / WRITES_PER_START["controller"]
    handlers = max(nodes, 1) * handler_qps / WRITES_PER_START["handler"]
    return min(ctrl, handlers)


def fanout_bound(vms: int, fastest_start_s: float, rate: float) -> float:
    if vms <= 0:
        return 0.0
    return fastest_start_s + (vms - 1) / rate if rate > 0 else math.inf


def probes_bound(probes_per_source: Mapping[str, int] | Sequence[int], count: int, interval_s: float = 1.0) -> float:
    """The busiest source: its probes in turn, each ``count`` pings ``interval_s`` apart (the last one's
    reply a round trip later, counted as nothing)."""
    per = list(probes_per_source.values()) if isinstance(probes_per_source, Mapping) else list(probes_per_source)
    return max(per, default=0) * max(count - 1, 0) * interval_s


def churn_bound(durations_per_source_node: Mapping[str, Sequence[float]], per_cluster: int, per_node: int) -> float:
    """No schedule of these migrations within the limits ends sooner than this."""
    every = [d for ds in durations_per_source_node.values() for d in ds]
    if not every:
        return 0.0
    cluster = sum(every) / max(per_cluster, 1)
    node = max(sum(ds) / max(per_node, 1) for ds in durations_per_source_node.values())
    return max(cluster, node, max(every))


def rollout_bound(
    *,
    vms: int,
    nodes: int,
    fastest_start_s: float,
    controller_qps: float = DEFAULT_CONTROLLER_QPS,
    handler_qps: float = DEFAULT_HANDLER_QPS,
    probes_per_source: Mapping[str, int] | Sequence[int] = (),
    ping_count: int = 3,
    ping_interval: float = 1.0,
    migrations_per_source_node: Mapping[str, Sequence[float]] | None = None,
    per_cluster: int = 5,
    per_node: int = 2,
) -> Bound:
    rate = start_rate(nodes, controller_qps, handler_qps)
    notes = [
        f"start rate {rate:.1f} VMs/s: virt-controller {controller_qps:g} QPS / {WRITES_PER_START['controller']} "
        f"writes per start, {nodes} virt-handlers × {handler_qps:g} QPS / {WRITES_PER_START['handler']}",
        f"fastest create→Ready {fastest_start_s:.1f}s in this run; migrations as long as this run's took",
    ]
    return Bound(
        fanout_bound(vms, fastest_start_s, rate),
        probes_bound(probes_per_source, ping_count, ping_interval),
        churn_bound(migrations_per_source_node or {}, per_cluster, per_node),
        rate,
        tuple(notes),
    )
