"""The one module that talks to the Kubernetes API; every flow and task goes through it.

Why one module: the API server is the real limit of a rollout, so client construction, the QPS/burst
token bucket, the cap on requests in flight, retries that honour ``Retry-After``, and list+watch with
resume and relist on 410 must be shared by every caller, process-wide, and be correct in one place.

Transport, authentication and TLS come from the official ``kubernetes`` client built from a
kubeconfig (or the in-cluster service account); the generated model classes are skipped on purpose:
requests and responses are plain dicts, decoded with orjson, because lists of thousands of VMs are
the hot path. Nothing here knows whether the cluster is simulated.

Share one :class:`Kube` per cluster in a process (see :func:`shared_kube`): its limiter and its
in-flight semaphore are what bound the load all threads and batch tasks put on the API server.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import math
import os
import random
import ssl
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import urllib3
import yaml
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from kubernetes.config import incluster_config, kube_config
from kubernetes.config.config_exception import ConfigException

log = logging.getLogger(__name__)

FIELD_MANAGER = "udn-rollout"
BACKOFF_BASE = 0.1
BACKOFF_CAP = 10.0
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
HOW_TO_POINT = (
    "point udn-rollout at a cluster with --kubeconfig PATH (and --context NAME to pick a context), "
    "or set KUBECONFIG, or use the embedded simulated cluster with --sim"
)

# ---- errors ---------------------------------------------------------------------------------


class KubeError(Exception):
    """An API error, carrying what the server's Status body said (so callers branch on code/reason)."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        retry_after: float | None = None,
        *,
        status: dict[str, Any] | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.status = status or {}
        self.attempts = attempts

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"KubeError({self.code}, {self.reason!r}, {self.message!r})"

    @classmethod
    def from_response(cls, code: int, data: bytes, headers: Mapping[str, str] | None = None) -> KubeError:
        """Build from an HTTP error response: the Status body when there is one, the raw text otherwise."""
        status: dict[str, Any] = {}
        with contextlib.suppress(orjson.JSONDecodeError):
            doc = orjson.loads(data) if data else None
            if isinstance(doc, dict):
                status = doc
        reason = str(status.get("reason") or _REASONS.get(code, "Unknown"))
        message = str(status.get("message") or (data[:500].decode(errors="replace") if data else reason))
        return cls(code, reason, message, _retry_after(headers, status), status=status)

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> KubeError:
        """Build from a Status object delivered inside a watch stream (ERROR event)."""
        code = int(status.get("code") or 500)
        reason = str(status.get("reason") or _REASONS.get(code, "Unknown"))
        return cls(code, reason, str(status.get("message") or reason), _retry_after(None, status), status=status)


class ClusterConfigError(ValueError):
    """No usable cluster configuration; the message says how to point the tool at one."""


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def _retry_after(headers: Mapping[str, str] | None, status: Mapping[str, Any]) -> float | None:
    """Seconds from the Retry-After header (seconds or HTTP date), else from Status details."""
    value = headers.get("Retry-After") if headers is not None else None
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - time.time())
    details = status.get("details") if isinstance(status, Mapping) else None
    if isinstance(details, Mapping) and details.get("retryAfterSeconds") is not None:
        with contextlib.suppress(TypeError, ValueError):
            return max(0.0, float(details["retryAfterSeconds"]))
    return None


# ---- cluster target -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterTarget:
    """Which cluster to talk to, resolved the way oc/kubectl do (see :meth:`resolve`)."""

    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False

    def resolve(self) -> tuple[k8s_client.Configuration, str, str]:
        """Return (client configuration, default namespace, description of the source).

        Order: explicit kubeconfig; else $KUBECONFIG (a ':'-separated list is merged); else
        ~/.kube/config; else the in-cluster service account when KUBERNETES_SERVICE_HOST is set.
        """
        if self.in_cluster:
            return self._in_cluster()
        if self.kubeconfig:
            path = Path(self.kubeconfig).expanduser()
            if not path.is_file():
                raise ClusterConfigError(f"kubeconfig {str(path)!r} does not exist; {HOW_TO_POINT}")
            return self._from_files([str(path)], f"kubeconfig {path}")
        env = os.environ.get("KUBECONFIG", "")
        if env.strip():
            listed = [p for p in env.split(os.pathsep) if p.strip()]
            existing = [str(Path(p).expanduser()) for p in listed if Path(p).expanduser().is_file()]
            if not existing:
                raise ClusterConfigError(f"KUBECONFIG={env!r} names no existing file; {HOW_TO_POINT}")
            return self._from_files(existing, f"KUBECONFIG {os.pathsep.join(existing)}")
        home = Path("~/.kube/config").expanduser()
        if home.is_file():
            return self._from_files([str(home)], f"kubeconfig {home}")
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return self._in_cluster()
        raise ClusterConfigError(
            f"no Kubernetes cluster configured (no --kubeconfig, no KUBECONFIG, no {home}, not in a pod); {HOW_TO_POINT}"
        )

    def _from_files(self, paths: list[str], source: str) -> tuple[k8s_client.Configuration, str, str]:
        try:
            context = self.context or (_first_current_context(paths) if len(paths) > 1 else None)
            merged = kube_config.KubeConfigMerger(os.pathsep.join(paths))
            if merged.config is None:
                raise ConfigException("no configuration found")
            loader = kube_config.KubeConfigLoader(
                config_dict=merged.config, config_base_path=None, active_context=context
            )
            cfg = k8s_client.Configuration()
            loader.load_and_set(cfg)
            ctx = loader.current_context
        except (ConfigException, KeyError, ValueError, OSError, yaml.YAMLError) as e:
            what = f"context {self.context!r} in {source}" if self.context else source
            raise ClusterConfigError(f"cannot use {what}: {e}; {HOW_TO_POINT}") from e
        namespace = (ctx.get("context") or {}).get("namespace") or "default"
        return cfg, namespace, f"{source} context {ctx.get('name')}"

    def _in_cluster(self) -> tuple[k8s_client.Configuration, str, str]:
        cfg = k8s_client.Configuration()
        try:
            incluster_config.load_incluster_config(client_configuration=cfg)
        except ConfigException as e:
            raise ClusterConfigError(f"in-cluster configuration failed: {e}; {HOW_TO_POINT}") from e
        ns_file = Path(incluster_config.SERVICE_TOKEN_FILENAME).with_name("namespace")
        namespace = ns_file.read_text().strip() if ns_file.is_file() else "default"
        return cfg, namespace, "in-cluster service account"


def _first_current_context(paths: list[str]) -> str | None:
    """kubectl's merge rule: the first file that sets current-context wins (the merger keeps the last)."""
    for p in paths:
        with open(p) as f:
            doc = yaml.safe_load(f) or {}
        if isinstance(doc, dict) and doc.get("current-context"):
            return str(doc["current-context"])
    return None


# ---- rate limiter and stats -----------------------------------------------------------------


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
    _done: deque[float] = field(default_factory=lambda: deque(maxlen=200_000), repr=False, compare=False)

    def _begin(self, verb: str, waited: float) -> None:
        with self._lock:
            self.requests += 1
            self.by_verb[verb] = self.by_verb.get(verb, 0) + 1
            self.limiter_wait_seconds += waited
            self.in_flight += 1
            self.in_flight_peak = max(self.in_flight_peak, self.in_flight)

    def _end(self) -> None:
        now = time.monotonic()
        with self._lock:
            self.in_flight -= 1
            self._done.append(now)

    def _add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def rate(self, window: float = 10.0) -> float:
        """Achieved requests per second over the last ``window`` seconds (completions)."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._done if t >= now - window]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            d = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
            d["by_verb"] = dict(self.by_verb)
        return d


# ---- routing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """Where a kind lives: enough to build its URLs."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def base(self) -> str:
        return f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        p = self.base
        if self.namespaced and namespace:
            p += f"/namespaces/{namespace}"
        p += f"/{self.plural}"
        if name:
            p += f"/{name}"
            if subresource:
                p += f"/{subresource}"
        return p


_ROUTES: dict[tuple[str, str], Resource] = {
    (r.api_version, r.kind): r
    for r in (
        Resource("v1", "Namespace", "namespaces", False),
        Resource("v1", "Node", "nodes", False),
        Resource("v1", "Event", "events", True),
        Resource("v1", "Secret", "secrets", True),
        Resource("v1", "ConfigMap", "configmaps", True),
        Resource("authorization.k8s.io/v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False),
        Resource("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False),
        Resource("config.openshift.io/v1", "Network", "networks", False),
        Resource("config.openshift.io/v1", "ClusterVersion", "clusterversions", False),
        Resource("k8s.ovn.org/v1", "ClusterUserDefinedNetwork", "clusteruserdefinednetworks", False),
        Resource("k8s.ovn.org/v1", "UserDefinedNetwork", "userdefinednetworks", True),
        Resource("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition", "network-attachment-definitions", True),
        Resource("k8s.cni.cncf.io/v1alpha1", "IPAMClaim", "ipamclaims", True),
        Resource("kubevirt.io/v1", "VirtualMachine", "virtualmachines", True),
        Resource("kubevirt.io/v1", "VirtualMachineInstance", "virtualmachineinstances", True),
        Resource("kubevirt.io/v1", "VirtualMachineInstanceMigration", "virtualmachineinstancemigrations", True),
        Resource("kubevirt.io/v1", "KubeVirt", "kubevirts", True),
    )
}
BUILTIN_ROUTES: Mapping[tuple[str, str], Resource] = _ROUTES


def object_key(obj: Mapping[str, Any]) -> str:
    """Cache key as client-go spells it: "namespace/name", or "name" for cluster-scoped objects."""
    md = obj.get("metadata") or {}
    ns = md.get("namespace")
    return f"{ns}/{md.get('name')}" if ns else str(md.get("name"))


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def diff_events(old: Mapping[str, dict[str, Any]], new: Mapping[str, dict[str, Any]]) -> list[WatchEvent]:
    """What changed between two snapshots (key → object), as watch events: how a relist loses nothing."""
    out: list[WatchEvent] = []
    for key, obj in new.items():
        prev = old.get(key)
        if prev is None:
            out.append(WatchEvent("ADDED", obj))
        elif _rv(prev) != _rv(obj):
            out.append(WatchEvent("MODIFIED", obj))
    out.extend(WatchEvent("DELETED", prev) for key, prev in old.items() if key not in new)
    return out


# ---- watch ----------------------------------------------------------------------------------

WatchType = Literal["ADDED", "MODIFIED", "DELETED", "RELISTED"]


@dataclass(frozen=True)
class WatchEvent:
    """One change. RELISTED marks the end of a relist diff (its object carries the list resourceVersion)."""

    type: WatchType
    object: dict[str, Any]


@dataclass
class WatchCounters:
    events: int = 0
    bookmarks: int = 0
    resumes: int = 0
    relists: int = 0
    streams: int = 0


class _StreamHandle:
    """The currently open watch response, so another thread can cut it to stop a blocked read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resp: Any = None
        self.cancelled = False

    def set(self, resp: Any) -> None:
        with self._lock:
            self._resp = resp
            if self.cancelled:
                _close_response(resp)

    def clear(self) -> None:
        with self._lock:
            self._resp = None

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            if self._resp is not None:
                _close_response(self._resp, shutdown=True)


def _close_response(resp: Any, shutdown: bool = False) -> None:
    raw = getattr(resp, "response", resp)
    if shutdown:
        with contextlib.suppress(Exception):
            raw.shutdown()
    with contextlib.suppress(Exception):
        raw.close()
    with contextlib.suppress(Exception):
        raw.release_conn()


# ---- the client -----------------------------------------------------------------------------


class Kube:
    """A thread-safe client for one cluster: plain dicts in and out, bounded and rate-limited.

    Every request takes a token from :attr:`limiter` and a slot of the in-flight semaphore, and is
    retried with exponential back-off and full jitter on 429 (``Retry-After`` honoured), 5xx and
    connection errors; other 4xx are raised at once as :class:`KubeError`.
    """

    def __init__(
        self,
        target: ClusterTarget | None = None,
        *,
        qps: float = 50,
        burst: int = 100,
        max_in_flight: int = 64,
        retries: int = 8,
        timeout: float = 30.0,
        user_agent: str = "udn-rollout/0.1",
    ) -> None:
        self.target = target or ClusterTarget()
        cfg, namespace, source = self.target.resolve()
        # Our retries are the only ones: urllib3 must not retry underneath us (it would bypass the
        # limiter and hide errors from the stats). Pool size ≥ in-flight cap (plus room for watch
        # streams, which hold a connection but not a slot) so threads never queue on the pool.
        cfg.retries = False
        cfg.connection_pool_maxsize = max(max_in_flight + 32, cfg.connection_pool_maxsize or 0)
        _throttle_refresh_hook(cfg)
        self._cfg = cfg
        self._api = k8s_client.ApiClient(cfg)
        self._api.user_agent = user_agent
        self.server: str = cfg.host
        self.namespace: str = namespace
        self.source = source
        self.limiter = RateLimiter(qps, burst)
        self.max_in_flight = max_in_flight
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self.retries = retries
        self.timeout = timeout
        self.stats = KubeStats()
        self._routes: dict[tuple[str, str], Resource] = dict(_ROUTES)
        self._routes_lock = threading.Lock()
        self._ws_ca: str | None = None

    # ---- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._api.rest_client.pool_manager.clear()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Kube({self.server!r}, namespace={self.namespace!r})"

    # ---- transport ----------------------------------------------------------------------
    def _backoff(self, attempt: int, err: KubeError | None) -> float:
        if err is not None and err.code == 429 and err.retry_after:
            return err.retry_after  # the server said exactly when; jitter would only make it later or early
        return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * (2**attempt)))

    def _request(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        stream: bool = False,
        read_timeout: float | None = None,
    ) -> tuple[int, bytes | Any]:
        """One logical request with limiter, in-flight slot and retries.

        Returns (status, body bytes), or (status, open response) when ``stream`` — then the slot is
        released once the headers are in: a long watch must not hold one of the in-flight slots.
        """
        attempt = 0
        while True:
            waited = self.limiter.acquire()
            err: KubeError
            with self._slots:
                self.stats._begin(verb, waited)
                try:
                    m, url, headers, _, _ = self._api.param_serialize(
                        method,
                        path,
                        query_params=query or None,
                        header_params={"Accept": "application/json", "Content-Type": content_type},
                        auth_settings=["BearerToken"],
                    )
                    timeout = (min(self.timeout, 10.0), read_timeout or self.timeout)
                    resp = self._api.call_api(m, url, headers, body, _request_timeout=timeout)
                    status = resp.status
                    if 200 <= status < 300:
                        if stream:
                            return status, resp
                        return status, resp.read()
                    data = resp.read()
                    err = KubeError.from_response(status, data, resp.headers)
                    if status == 429:
                        self.stats._add("throttled")
                    elif status >= 500:
                        self.stats._add("server_errors")
                except ApiException as e:  # the generated client maps SSL errors to status 0
                    text = str(e.reason or e)
                    if "CERTIFICATE" in text.upper():
                        raise KubeError(0, "SSLError", f"TLS verification failed for {self.server}: {text}") from e
                    self.stats._add("connection_errors")
                    err = KubeError(0, "ConnectionError", text)
                except (urllib3.exceptions.HTTPError, OSError) as e:
                    self.stats._add("connection_errors")
                    err = KubeError(0, "ConnectionError", f"{type(e).__name__}: {e}")
                finally:
                    self.stats._end()
            err.attempts = attempt + 1
            retryable = err.code == 0 or err.code in RETRYABLE_STATUS
            if not retryable or attempt >= self.retries:
                raise err
            delay = self._backoff(attempt, err)
            self.stats._add("retries")
            log.debug("%s %s: %s %s, retry %d in %.2fs", method, path, err.code, err.reason, attempt + 1, delay)
            attempt += 1
            if delay > 0:
                time.sleep(delay)

    def _json(self, method: str, path: str, *, verb: str, **kw: Any) -> Any:
        _, data = self._request(method, path, verb=verb, **kw)
        return orjson.loads(data) if data else None

    # ---- routing ------------------------------------------------------------------------
    def resource(self, api_version: str, kind: str) -> Resource:
        """The route for a kind: the built-in table, else API discovery (cached)."""
        key = (api_version, kind)
        r = self._routes.get(key)
        if r is not None:
            return r
        r = self.discover(api_version, kind)
        with self._routes_lock:
            self._routes[key] = r
        return r

    def discover(self, api_version: str, kind: str) -> Resource:
        """Ask the server where a kind lives (uncached; :meth:`resource` caches)."""
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        try:
            doc = self._json("GET", base, verb="discovery")
        except KubeError as e:
            if e.code == 404:
                raise KubeError(404, "NotFound", f"the server has no API group/version {api_version!r}") from e
            raise
        for res in doc.get("resources") or []:
            if res.get("kind") == kind and "/" not in res.get("name", ""):
                return Resource(api_version, kind, res["name"], bool(res.get("namespaced")))
        raise KubeError(404, "NotFound", f"the server has no kind {kind!r} in {api_version!r}")

    def _ns(self, r: Resource, namespace: str | None) -> str | None:
        return (namespace or self.namespace) if r.namespaced else None

    # ---- verbs --------------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        return self._json("GET", "/version", verb="get")

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        r = self.resource(api_version, kind)
        try:
            return self._json("GET", r.path(self._ns(r, namespace), name), verb="get")
        except KubeError as e:
            if e.code == 404:
                return None
            raise

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> tuple[list[dict[str, Any]], str]:
        """All items (paged with limit/continue) and the list's resourceVersion, to start a watch from.

        ``namespace=None`` lists across all namespaces. When a continue token expires (410) the
        listing restarts from the beginning, since pages from two snapshots would not be consistent.
        Items get ``apiVersion``/``kind`` filled in, as the server leaves them out of lists.
        """
        r = self.resource(api_version, kind)
        path = r.path(namespace if r.namespaced else None)
        restarts = 0
        while True:
            items: list[dict[str, Any]] = []
            cont = ""
            try:
                while True:
                    q: list[tuple[str, Any]] = []
                    if page_size:
                        q.append(("limit", page_size))
                    if cont:
                        q.append(("continue", cont))
                    if label_selector:
                        q.append(("labelSelector", label_selector))
                    if field_selector:
                        q.append(("fieldSelector", field_selector))
                    doc = self._json("GET", path, verb="list", query=q)
                    page = doc.get("items") or []
                    for it in page:
                        it.setdefault("apiVersion", api_version)
                        it.setdefault("kind", kind)
                    items.extend(page)
                    md = doc.get("metadata") or {}
                    cont = md.get("continue") or ""
                    if not cont:
                        return items, str(md.get("resourceVersion") or "")
            except KubeError as e:
                if e.code == 410 and cont and restarts < 10:
                    restarts += 1
                    self.stats._add("list_restarts")
                    log.debug("list %s: continue token expired, restarting", path)
                    continue
                raise

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create; raises KubeError (409 AlreadyExists included).

        If a retried POST meets 409, the first attempt may have succeeded server-side before the
        connection broke: the existing object is returned when it carries the same labels.
        """
        r = self.resource(obj["apiVersion"], obj["kind"])
        md = obj.get("metadata") or {}
        ns = self._ns(r, md.get("namespace"))
        try:
            return self._json("POST", r.path(ns), verb="create", body=obj)
        except KubeError as e:
            if e.code == 409 and e.attempts > 1 and md.get("name"):
                existing = self.get(obj["apiVersion"], obj["kind"], md["name"], ns)
                want = md.get("labels") or {}
                have = (existing or {}).get("metadata", {}).get("labels") or {}
                if existing is not None and all(have.get(k) == v for k, v in want.items()):
                    return existing
            raise

    def create_or_get(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Idempotent create: (object, True) when created, (existing, False) on 409 AlreadyExists."""
        try:
            return self.create(obj), True
        except KubeError as e:
            if e.code != 409 or e.reason != "AlreadyExists":
                raise
            md = obj.get("metadata") or {}
            existing = self.get(obj["apiVersion"], obj["kind"], md.get("name", ""), md.get("namespace"))
            if existing is None:  # deleted in between: try once more
                return self.create(obj), True
            return existing, False

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """PUT the whole object (optimistic concurrency through metadata.resourceVersion)."""
        r = self.resource(obj["apiVersion"], obj["kind"])
        md = obj["metadata"]
        return self._json("PUT", r.path(self._ns(r, md.get("namespace")), md["name"]), verb="update", body=obj)

    def replace_status(self, obj: dict[str, Any]) -> dict[str, Any]:
        """PUT the status subresource."""
        r = self.resource(obj["apiVersion"], obj["kind"])
        md = obj["metadata"]
        path = r.path(self._ns(r, md.get("namespace")), md["name"], "status")
        return self._json("PUT", path, verb="update", body=obj)

    _PATCH_TYPES: Mapping[str, str] = {
        "merge": "application/merge-patch+json",
        "json": "application/json-patch+json",
        "strategic": "application/strategic-merge-patch+json",
        "apply": "application/apply-patch+yaml",
    }

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        body: dict[str, Any] | list[dict[str, Any]],
        namespace: str | None = None,
        *,
        patch_type: Literal["merge", "json", "strategic", "apply"] = "merge",
        subresource: str | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        """Patch; ``apply`` is server-side apply with field manager udn-rollout."""
        ctype = self._PATCH_TYPES.get(patch_type)
        if ctype is None:
            raise ValueError(f"patch_type must be one of {sorted(self._PATCH_TYPES)}, not {patch_type!r}")
        if (patch_type == "json") != isinstance(body, list):
            raise ValueError("a json patch is a list of operations; the other patch types take an object")
        r = self.resource(api_version, kind)
        q: list[tuple[str, Any]] = []
        if patch_type == "apply":
            q.append(("fieldManager", FIELD_MANAGER))
            if force:
                q.append(("force", "true"))
        path = r.path(self._ns(r, namespace), name, subresource)
        return self._json("PATCH", path, verb="patch", body=body, content_type=ctype, query=q)

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation: Literal["Background", "Foreground", "Orphan"] = "Background",
    ) -> bool:
        """Delete; False when it was already gone."""
        r = self.resource(api_version, kind)
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            self._request("DELETE", r.path(self._ns(r, namespace), name), verb="delete", body=body)
        except KubeError as e:
            if e.code == 404:
                return False
            raise
        return True

    def put_subresource(self, path: str, body: dict[str, Any] | None = None) -> int:
        """PUT to an action subresource (KubeVirt migrate/start/stop); returns the HTTP status."""
        status, _ = self._request("PUT", path, verb="update", body=body if body is not None else {})
        return status

    def can_i(
        self,
        verb: str,
        group: str,
        resource: str,
        namespace: str | None = None,
        subresource: str | None = None,
        name: str | None = None,
    ) -> bool:
        """SelfSubjectAccessReview: may the current identity do this?"""
        attrs: dict[str, Any] = {"verb": verb, "group": group, "resource": resource}
        for k, v in (("namespace", namespace), ("subresource", subresource), ("name", name)):
            if v:
                attrs[k] = v
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        }
        doc = self._json("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", verb="create", body=body)
        return bool((doc.get("status") or {}).get("allowed"))

    # ---- websocket ----------------------------------------------------------------------
    def websocket_options(self) -> dict[str, Any]:
        """Connection options for websocket-client (serial console): base URL, auth header, TLS."""
        url = self.server.replace("https://", "wss://", 1).replace("http://", "ws://", 1).rstrip("/")
        headers: list[str] = []
        auth = self._cfg.auth_settings().get("BearerToken")
        if auth and auth.get("value"):
            headers.append(f"Authorization: {auth['value']}")
        sslopt: dict[str, Any] = {}
        if url.startswith("wss://"):
            verify = bool(self._cfg.verify_ssl)
            sslopt["cert_reqs"] = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
            if not verify:
                sslopt["check_hostname"] = False
            ca = self._cfg.ssl_ca_cert
            if not ca and self._cfg.ca_cert_data:
                ca = self._ca_file(self._cfg.ca_cert_data)
            if ca:
                sslopt["ca_certs"] = ca
            if self._cfg.cert_file:
                sslopt["certfile"] = self._cfg.cert_file
            if self._cfg.key_file:
                sslopt["keyfile"] = self._cfg.key_file
            if self._cfg.tls_server_name:
                sslopt["server_hostname"] = self._cfg.tls_server_name
        return {"url": url, "header": headers, "sslopt": sslopt}

    def _ca_file(self, data: str | bytes) -> str:
        if self._ws_ca is None:
            fd, name = tempfile.mkstemp(prefix="udn-rollout-ca-", suffix=".crt")
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
            self._ws_ca = name
        return self._ws_ca

    # ---- watch --------------------------------------------------------------------------
    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        known: Mapping[str, dict[str, Any]] | None = None,
        stop: threading.Event | None = None,
        timeout: float | None = None,
        counters: WatchCounters | None = None,
        _handle: _StreamHandle | None = None,
    ) -> Iterator[WatchEvent]:
        """Every change, exactly once and in order, across stream cuts and history compaction.

        Without ``resource_version`` it lists first (emitting ADDED per object), then watches from
        the list's resourceVersion. Bookmarks only advance the resourceVersion. A stream that ends or
        breaks is resumed from the last resourceVersion seen; a 410 (expired) relists and emits the
        diff against what was seen (ADDED/MODIFIED/DELETED), then one RELISTED. ``known`` seeds what
        the caller has already seen (key → object) when it passes its own ``resource_version``.
        Ends when ``stop`` is set or ``timeout`` seconds have passed.
        """
        r = self.resource(api_version, kind)
        ns = namespace if r.namespaced else None
        path = r.path(ns)
        ctr = counters if counters is not None else WatchCounters()
        deadline = time.monotonic() + timeout if timeout is not None else None
        handle = _handle or _StreamHandle()
        seen: dict[str, dict[str, Any]] = dict(known or {})
        finished = threading.Event()
        if _handle is None and (stop is not None or deadline is not None):
            threading.Thread(
                target=_guard, args=(handle, stop, deadline, finished), name="kube-watch-guard", daemon=True
            ).start()

        def stopped() -> bool:
            return (
                (stop is not None and stop.is_set())
                or (deadline is not None and time.monotonic() >= deadline)
                or handle.cancelled
            )

        def relist(initial: bool) -> Iterator[WatchEvent]:
            items, list_rv = self.list(
                api_version, kind, ns, label_selector=label_selector, field_selector=field_selector
            )
            fresh = {object_key(o): o for o in items}
            yield from diff_events(seen, fresh)
            seen.clear()
            seen.update(fresh)
            if not initial:
                ctr.relists += 1
                self.stats._add("watch_relists")
                yield WatchEvent("RELISTED", {"metadata": {"resourceVersion": list_rv}})
            state["rv"] = list_rv

        state: dict[str, str] = {"rv": resource_version or ""}
        try:
            if not resource_version:
                yield from relist(initial=True)
            failures = 0
            while not stopped():
                server_timeout = random.randint(300, 600)
                if deadline is not None:
                    server_timeout = max(1, min(server_timeout, math.ceil(deadline - time.monotonic())))
                q: list[tuple[str, Any]] = [
                    ("watch", "true"),
                    ("allowWatchBookmarks", "true"),
                    ("resourceVersion", state["rv"]),
                    ("timeoutSeconds", server_timeout),
                ]
                if label_selector:
                    q.append(("labelSelector", label_selector))
                if field_selector:
                    q.append(("fieldSelector", field_selector))
                gone = False
                error: KubeError | None = None
                started = time.monotonic()
                got_any = False
                try:
                    _, resp = self._request(
                        "GET", path, verb="watch", query=q, stream=True, read_timeout=server_timeout + 30
                    )
                except KubeError as e:
                    if e.code != 410:
                        raise
                    gone = True
                else:
                    ctr.streams += 1
                    handle.set(resp)
                    try:
                        for line in _lines(resp):
                            ev = orjson.loads(line)
                            etype, obj = ev.get("type"), ev.get("object") or {}
                            if etype == "BOOKMARK":
                                ctr.bookmarks += 1
                                state["rv"] = _rv(obj) or state["rv"]
                                continue
                            if etype == "ERROR":
                                err = KubeError.from_status(obj)
                                if err.code == 410:
                                    gone = True
                                else:
                                    error = err
                                break
                            got_any = True
                            state["rv"] = _rv(obj) or state["rv"]
                            key = object_key(obj)
                            if etype == "DELETED":
                                seen.pop(key, None)
                            else:
                                seen[key] = obj
                            ctr.events += 1
                            yield WatchEvent(etype, obj)
                            if stopped():
                                return
                    except (urllib3.exceptions.HTTPError, OSError, ValueError) as e:
                        if stopped():
                            return
                        self.stats._add("connection_errors")
                        log.debug("watch %s cut: %s", path, type(e).__name__)
                    finally:
                        handle.clear()
                        _close_response(resp)
                if stopped():
                    return
                if gone:
                    log.debug("watch %s: resourceVersion %s expired, relisting", path, state["rv"])
                    yield from relist(initial=False)
                    failures = 0
                    continue
                if error is not None and error.code not in RETRYABLE_STATUS:
                    raise error
                ctr.resumes += 1
                self.stats._add("watch_resumes")
                # A stream that ends at once with nothing in it (or with an error) would spin: back off.
                if error is not None or (not got_any and time.monotonic() - started < 0.5):
                    failures += 1
                    delay = self._backoff(min(failures, 10), error)
                    if stop is not None:
                        stop.wait(delay)
                    else:
                        time.sleep(delay)
                else:
                    failures = 0
        finally:
            finished.set()

    def wait_for(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        condition: Callable[[dict[str, Any] | None], bool],
        timeout: float,
    ) -> dict[str, Any] | None:
        """Block until ``condition(object or None)`` holds: one read, then watch events, no polling.

        Raises TimeoutError (with ``.last`` = the last state seen) when it does not hold in time.
        """
        r = self.resource(api_version, kind)
        ns = self._ns(r, namespace)
        fsel = f"metadata.name={name}"
        items, rv = self.list(api_version, kind, ns, field_selector=fsel)
        state: dict[str, Any] | None = items[0] if items else None
        if condition(state):
            return state
        deadline = time.monotonic() + timeout
        known = {object_key(state): state} if state else {}
        for ev in self.watch(
            api_version, kind, ns, field_selector=fsel, resource_version=rv, known=known, timeout=timeout
        ):
            if ev.type == "RELISTED":
                continue
            state = None if ev.type == "DELETED" else ev.object
            if condition(state):
                return state
            if time.monotonic() >= deadline:
                break
        err = TimeoutError(f"{kind} {ns + '/' if ns else ''}{name}: condition not met within {timeout:g}s")
        err.last = state  # type: ignore[attr-defined]
        raise err

    def informer(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_event: Callable[[WatchEvent], None] | None = None,
    ) -> Informer:
        """Start a list+watch cache in a daemon thread (one watch for many waiters)."""
        return Informer(
            self,
            api_version,
            kind,
            namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            on_event=on_event,
        )


TOKEN_REFRESH_INTERVAL = 10.0


def _throttle_refresh_hook(cfg: k8s_client.Configuration) -> None:
    """Run the kubeconfig loader's credential refresh at most every few seconds.

    The loader installs a hook that reloads credentials (exec plugins, OIDC, token files) on every
    request and, as a side effect, re-reads proxy settings from the environment: about a fifth of
    the client's CPU per request. The credentials it guards live for minutes, so a short interval
    keeps refresh correct without paying for it per request.
    """
    if cfg.refresh_api_key_hook is None:
        return
    lock = threading.Lock()
    state: dict[str, Any] = {"hook": cfg.refresh_api_key_hook, "last": float("-inf")}

    def throttled(c: k8s_client.Configuration) -> None:
        if time.monotonic() - state["last"] < TOKEN_REFRESH_INTERVAL:
            return
        with lock:
            if time.monotonic() - state["last"] < TOKEN_REFRESH_INTERVAL:
                return
            state["hook"](c)
            state["last"] = time.monotonic()
            if c.refresh_api_key_hook is not throttled:  # the loader re-installs its hook on every refresh
                state["hook"] = c.refresh_api_key_hook
                c.refresh_api_key_hook = throttled

    cfg.refresh_api_key_hook = throttled


def _guard(
    handle: _StreamHandle, stop: threading.Event | None, deadline: float | None, finished: threading.Event
) -> None:
    """Cut a watch's open stream when its stop event is set or its deadline passes."""
    while not finished.is_set():
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        step = 0.5 if remaining is None else min(0.5, remaining)
        if stop is not None:
            if stop.wait(step):
                break
        else:
            finished.wait(step)
    if not finished.is_set():
        handle.cancel()


def _lines(resp: Any) -> Iterator[bytes]:
    """Newline-delimited JSON from a chunked watch response, as soon as each chunk arrives."""
    buf = b""
    for chunk in resp.response.stream(None):
        if not chunk:
            continue
        parts = (buf + chunk).split(b"\n")
        buf = parts.pop()
        for p in parts:
            if p.strip():
                yield p
    if buf.strip():
        yield buf


class Informer:
    """A list+watch cache kept in a daemon thread, with waiters woken by a condition variable.

    ``cache`` maps "namespace/name" (or "name" when cluster-scoped) to the latest object; ``synced``
    is set after the first list. Waiters block on a Condition notified per event: no sleeping loops.
    """

    def __init__(
        self,
        kube: Kube,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_event: Callable[[WatchEvent], None] | None = None,
    ) -> None:
        self.kube = kube
        self.api_version, self.kind, self.namespace = api_version, kind, namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.on_event = on_event
        self.cache: dict[str, dict[str, Any]] = {}
        self.synced = threading.Event()
        self.counters = WatchCounters()
        self.error: BaseException | None = None
        self.resource_version = ""
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._handle = _StreamHandle()
        self._thread = threading.Thread(target=self._run, name=f"informer-{kind}", daemon=True)
        self._thread.start()

    # counters under the names callers look for
    @property
    def events_seen(self) -> int:
        return self.counters.events

    @property
    def relists(self) -> int:
        return self.counters.relists

    @property
    def resumes(self) -> int:
        return self.counters.resumes

    def _apply(self, ev: WatchEvent) -> None:
        with self._cond:
            rv = _rv(ev.object)
            if ev.type == "DELETED":
                self.cache.pop(object_key(ev.object), None)
            elif ev.type != "RELISTED":
                self.cache[object_key(ev.object)] = ev.object
            if rv:
                self.resource_version = rv
            self._cond.notify_all()
        self._callback(ev)

    def _callback(self, ev: WatchEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(ev)
        except Exception:  # a broken callback must not kill the cache
            log.exception("informer %s: on_event callback failed", self.kind)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                items, rv = self.kube.list(
                    self.api_version,
                    self.kind,
                    self.namespace,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                )
                fresh = {object_key(o): o for o in items}
                with self._cond:
                    changes = diff_events(self.cache, fresh)
                    self.cache = fresh
                    self.resource_version = rv
                    if self.synced.is_set():
                        self.counters.relists += 1
                    self._cond.notify_all()
                self.synced.set()
                if self.on_event is not None:
                    for ev in changes:
                        self._callback(ev)
                with self._cond:
                    known = dict(self.cache)
                for ev in self.kube.watch(
                    self.api_version,
                    self.kind,
                    self.namespace,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                    resource_version=rv,
                    known=known,
                    stop=self._stop,
                    counters=self.counters,
                    _handle=self._handle,
                ):
                    self._apply(ev)
                    failures = 0
            except KubeError as e:
                if e.code in (401, 403, 404):
                    self.error = e
                    log.warning("informer %s stopped: %s", self.kind, e)
                    break
                failures += 1
                log.debug("informer %s: %s; restarting", self.kind, e)
                self._stop.wait(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**failures)))
            except Exception as e:  # keep the cache alive through unexpected failures
                if self._stop.is_set():
                    break  # stop() cut the stream under a read: not a failure
                failures += 1
                log.warning("informer %s: %s; restarting", self.kind, e)
                self._stop.wait(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**failures)))
        with self._cond:
            self._cond.notify_all()

    def stop(self, join: float = 5.0) -> None:
        self._stop.set()
        self._handle.cancel()
        with self._cond:
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(join)

    def __enter__(self) -> Informer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        with self._cond:
            return self.cache.get(f"{namespace}/{name}" if namespace else name)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._cond:
            return dict(self.cache)

    def wait_for(
        self,
        predicate: Callable[[Any], bool],
        timeout: float,
        *,
        key: str | None = None,
    ) -> bool:
        """Block until the predicate holds; False on timeout.

        Without ``key`` the predicate gets the whole cache (dict key → object); with ``key``
        ("namespace/name") it gets that one object or None. Raises the informer's fatal error.
        """
        deadline = time.monotonic() + timeout
        if not self.synced.wait(timeout):
            return False

        def check() -> bool:
            if self.error is not None or self._stop.is_set():
                return True
            return bool(predicate(self.cache.get(key) if key is not None else self.cache))

        with self._cond:
            ok = self._cond.wait_for(check, max(0.0, deadline - time.monotonic()))
            if self.error is not None:
                raise self.error
            if self._stop.is_set() and ok:
                return bool(predicate(self.cache.get(key) if key is not None else self.cache))
            return bool(ok)


# ---- process-wide sharing -------------------------------------------------------------------

_SHARED: dict[tuple[ClusterTarget, float, int, int], Kube] = {}
_SHARED_LOCK = threading.Lock()


def shared_kube(
    target: ClusterTarget | None = None, *, qps: float = 50, burst: int = 100, max_in_flight: int = 64
) -> Kube:
    """One Kube per (target, limits) in the process, so every batch task shares its limiter and slots."""
    key = (target or ClusterTarget(), float(qps), int(burst), int(max_in_flight))
    with _SHARED_LOCK:
        kube = _SHARED.get(key)
        if kube is None:
            kube = _SHARED[key] = Kube(key[0], qps=qps, burst=burst, max_in_flight=max_in_flight)
        return kube
