"""The one door to the Kubernetes API: every flow and task reaches the cluster through this package.

Why one door: the API server is the real limit of a rollout, so client construction, the QPS/burst
token bucket, the cap on requests in flight, retries that honour ``Retry-After``, list+watch with
resume and relist on 410, and the serial console's WebSocket handshake must be shared by every
caller, process-wide, and be correct in one place. Nothing here knows whether the cluster is simulated.

* :mod:`.config` — which cluster (kubeconfig, context, in-cluster);
* :mod:`.errors` — what the server said;
* :mod:`.ratelimit` — the token bucket and request counters;
* :mod:`.resources` — every kind the tool touches, declared once;
* :mod:`.client` — :class:`Kube`, the verbs;
* :mod:`.watch` — watches and informers.

Share one :class:`Kube` per cluster in a process (see :func:`shared_kube`): its limiter and its
in-flight semaphore are what bound the load all threads and batch tasks put on the API server.
"""

from tasks.kube.client import FIELD_MANAGER, Kube, WaitTimeout, connect, shared_kube
from tasks.kube.config import ClusterParams, ClusterTarget
from tasks.kube.errors import HOW_TO_POINT, RETRYABLE_STATUS, ClusterConfigError, KubeError
from tasks.kube.ratelimit import KubeStats, RateLimiter
from tasks.kube.resources import Resource
from tasks.kube.watch import Informer, WatchCounters, WatchEvent, diff_events, object_key

__all__ = [
    "FIELD_MANAGER",
    "HOW_TO_POINT",
    "RETRYABLE_STATUS",
    "ClusterConfigError",
    "ClusterParams",
    "ClusterTarget",
    "Informer",
    "Kube",
    "KubeError",
    "KubeStats",
    "RateLimiter",
    "Resource",
    "WaitTimeout",
    "WatchCounters",
    "WatchEvent",
    "connect",
    "diff_events",
    "object_key",
    "shared_kube",
]
