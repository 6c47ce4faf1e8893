"""The client: one thread-safe object per cluster through which every request of the tool goes.

Transport, authentication and TLS come from the official ``kubernetes`` client built from a
kubeconfig (or the in-cluster service account); its generated model classes are skipped on purpose:
requests and responses are plain dicts decoded with orjson, because lists of thousands of VMs are the
hot path. Every request — REST, watch, or the serial console's WebSocket handshake — takes a token
from the shared :class:`RateLimiter` and a slot of the in-flight cap, and is retried with back-off on
429 (``Retry-After`` honoured), 5xx and connection errors.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import random
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, Protocol

import orjson
import urllib3
import websocket
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from tasks.kube import watch as _watch
from tasks.kube.config import ClusterParams, ClusterTarget
from tasks.kube.errors import RETRYABLE_STATUS, KubeError
from tasks.kube.ratelimit import KubeStats, RateLimiter
from tasks.kube.resources import BY_KIND, POD, SSAR, Resource
from tasks.kube.watch import Informer, WatchCounters, WatchEvent, object_key

log = logging.getLogger(__name__)

FIELD_MANAGER = "udn-rollout"
BACKOFF_BASE = 0.1
BACKOFF_CAP = 10.0


class WaitTimeout(TimeoutError):
    """A condition did not hold in time; ``last`` is the last state of the object that was seen."""

    def __init__(self, message: str, last: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.last = last


class Kube:
    """A thread-safe client for one cluster: plain dicts in and out, bounded and rate-limited.

    Other 4xx answers are raised at once as :class:`KubeError` (404 on ``get``/``delete`` is None/False).
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
        self._routes: dict[tuple[str, str], Resource] = dict(BY_KIND)
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
    def backoff(self, attempt: int, err: KubeError | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``: the server's Retry-After, else full jitter."""
        if err is not None and err.code == 429 and err.retry_after:
            return err.retry_after  # the server said exactly when; jitter would only make it later or early
        return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * (2**attempt)))

    def _retrying(
        self, what: str, verb: str, attempt_once: Callable[[], Any], answers: frozenset[int] = frozenset()
    ) -> Any:
        """Run one attempt at a time under the limiter and an in-flight slot, retrying what may pass.

        Statuses in ``answers`` are the server's answer to this very request (an eviction's 429), not
        a reason to retry: they are raised at once."""
        attempt = 0
        while True:
            waited = self.limiter.acquire()
            with self._slots:
                self.stats.begin(verb, waited)
                try:
                    return attempt_once()
                except KubeError as e:
                    err = e
                finally:
                    self.stats.end()
            if err.code == 429:
                self.stats.count("throttled")
            elif err.code >= 500:
                self.stats.count("server_errors")
            elif err.code == 0 and err.reason == "ConnectionError":
                self.stats.count("connection_errors")
            err.attempts = attempt + 1
            retryable = (err.code == 0 and err.reason == "ConnectionError") or err.code in RETRYABLE_STATUS
            if err.code in answers:
                raise err
            if not retryable or attempt >= self.retries:
                raise err
            delay = self.backoff(attempt, err)
            self.stats.count("retries")
            log.debug("%s: %s %s, retry %d in %.2fs", what, err.code, err.reason, attempt + 1, delay)
            attempt += 1
            if delay > 0:
                time.sleep(delay)

    def request(
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
        answers: frozenset[int] = frozenset(),
    ) -> tuple[int, Any]:
        """One logical request with limiter, in-flight slot and retries.

        Returns (status, body bytes), or (status, open response) when ``stream`` — then the slot is
        released once the headers are in: a long watch must not hold one of the in-flight slots.
        """

        def once() -> tuple[int, Any]:
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
            except ApiException as e:  # the generated client maps SSL errors to status 0
                text = str(e.reason or e)
                if "CERTIFICATE" in text.upper():
                    raise KubeError(0, "SSLError", f"TLS verification failed for {self.server}: {text}") from e
                raise KubeError(0, "ConnectionError", text) from e
            except (urllib3.exceptions.HTTPError, OSError) as e:
                raise KubeError(0, "ConnectionError", f"{type(e).__name__}: {e}") from e
            status = resp.status
            if 200 <= status < 300:
                return (status, resp) if stream else (status, resp.read())
            raise KubeError.from_response(status, resp.read(), resp.headers)

        result: tuple[int, Any] = self._retrying(f"{method} {path}", verb, once, answers)
        return result

    def _json(self, method: str, path: str, *, verb: str, **kw: Any) -> Any:
        _, data = self.request(method, path, verb=verb, **kw)
        return orjson.loads(data) if data else None

    # ---- routing ------------------------------------------------------------------------
    def resource(self, api_version: str, kind: str) -> Resource:
        """The route for a kind the tool does not declare: API discovery, cached."""
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

    def _of(self, obj: Mapping[str, Any]) -> Resource:
        return self.resource(str(obj["apiVersion"]), str(obj["kind"]))

    def _ns(self, r: Resource, namespace: str | None) -> str | None:
        return (namespace or self.namespace) if r.namespaced else None

    # ---- verbs --------------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/version", verb="get")
        return result

    def check_access(self) -> None:
        """One authenticated request (core API discovery), no retries of a refusal: a bad token or an
        unreachable server is reported at once rather than at the first real step."""
        self._json("GET", "/api", verb="discovery")

    def get(self, r: Resource, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            obj: dict[str, Any] = self._json("GET", r.path(self._ns(r, namespace), name), verb="get")
        except KubeError as e:
            if e.code == 404:
                return None
            raise
        return obj

    def list(
        self,
        r: Resource,
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
                        it.setdefault("apiVersion", r.api_version)
                        it.setdefault("kind", r.kind)
                    items.extend(page)
                    md = doc.get("metadata") or {}
                    cont = md.get("continue") or ""
                    if not cont:
                        return items, str(md.get("resourceVersion") or "")
            except KubeError as e:
                if e.code == 410 and cont and restarts < 10:
                    restarts += 1
                    self.stats.count("list_restarts")
                    log.debug("list %s: continue token expired, restarting", path)
                    continue
                raise

    def create(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Create; raises KubeError (409 AlreadyExists included).

        ``dry_run`` asks the server to judge the object (schema, admission) without storing it.
        If a retried POST meets 409, the first attempt may have succeeded server-side before the
        connection broke: the existing object is returned when it carries the same labels.
        """
        r = self._of(obj)
        md = obj.get("metadata") or {}
        ns = self._ns(r, md.get("namespace"))
        query = [("dryRun", "All")] if dry_run else None
        try:
            created: dict[str, Any] = self._json("POST", r.path(ns), verb="create", body=obj, query=query)
        except KubeError as e:
            if e.code == 409 and e.attempts > 1 and md.get("name") and not dry_run:
                existing = self.get(r, md["name"], ns)
                want = md.get("labels") or {}
                have = (existing or {}).get("metadata", {}).get("labels") or {}
                if existing is not None and all(have.get(k) == v for k, v in want.items()):
                    return existing
            raise
        return created

    def create_or_get(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Idempotent create: (object, True) when created, (existing, False) on 409 AlreadyExists."""
        try:
            return self.create(obj), True
        except KubeError as e:
            if e.code != 409 or e.reason != "AlreadyExists":
                raise
            md = obj.get("metadata") or {}
            existing = self.get(self._of(obj), md.get("name", ""), md.get("namespace"))
            if existing is None:  # deleted in between: try once more
                return self.create(obj), True
            return existing, False

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """PUT the whole object (optimistic concurrency through metadata.resourceVersion: 409 if stale)."""
        r = self._of(obj)
        md = obj["metadata"]
        result: dict[str, Any] = self._json(
            "PUT", r.path(self._ns(r, md.get("namespace")), md["name"]), verb="update", body=obj
        )
        return result

    _PATCH_TYPES: Mapping[str, str] = {
        "merge": "application/merge-patch+json",
        "json": "application/json-patch+json",
        "strategic": "application/strategic-merge-patch+json",
        "apply": "application/apply-patch+yaml",
    }

    def patch(
        self,
        r: Resource,
        name: str,
        body: dict[str, Any] | builtins.list[dict[str, Any]],
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
        q: list[tuple[str, Any]] = []
        if patch_type == "apply":
            q.append(("fieldManager", FIELD_MANAGER))
            if force:
                q.append(("force", "true"))
        path = r.path(self._ns(r, namespace), name, subresource)
        result: dict[str, Any] = self._json("PATCH", path, verb="patch", body=body, content_type=ctype, query=q)
        return result

    def delete(
        self,
        r: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation: Literal["Background", "Foreground", "Orphan"] = "Background",
    ) -> bool:
        """Delete; False when it was already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            self.request("DELETE", r.path(self._ns(r, namespace), name), verb="delete", body=body)
        except KubeError as e:
            if e.code == 404:
                return False
            raise
        return True

    def action(self, r: Resource, name: str, namespace: str | None, action: str, body: Any = None) -> int:
        """PUT to an action subresource (KubeVirt's ``migrate``/``start``/``stop``/``restart`` on
        ``VM_ACTIONS``, as virtctl does); returns the HTTP status (202 Accepted for most)."""
        status, _ = self.request(
            "PUT", r.path(self._ns(r, namespace), name, action), verb="update", body=body if body is not None else {}
        )
        return status

    def evict(self, pod: str, namespace: str) -> tuple[int, str]:
        """Ask to evict a pod (a policy/v1 Eviction, as ``kubectl drain`` does); (status, message).

        201: evicted (the pod is being deleted). 429: not now — a PodDisruptionBudget, or KubeVirt
        answering that it started a live migration instead (the VMI is marked for evacuation); like
        kubectl drain, the caller asks again later. 404: the pod is gone. Anything else raises.
        """
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": namespace},
        }
        try:
            status, _ = self.request(
                "POST", POD.path(namespace, pod, "eviction"), verb="create", body=body, answers=frozenset({429})
            )
        except KubeError as e:
            if e.code in (404, 429):
                return e.code, e.message
            raise
        return status, "evicted"

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
        body = {"apiVersion": SSAR.api_version, "kind": SSAR.kind, "spec": {"resourceAttributes": attrs}}
        doc = self._json("POST", SSAR.path(), verb="create", body=body)
        return bool((doc.get("status") or {}).get("allowed"))

    # ---- websocket ----------------------------------------------------------------------
    def websocket(self, path: str, *, subprotocols: builtins.list[str], timeout: float) -> websocket.WebSocket:
        """Open a WebSocket to an API path (the serial console) through the limiter and in-flight cap.

        Only the handshake takes a slot (like a watch, a long session must not hold one). 429 (with
        Retry-After), 5xx and refused connections are retried like any request; any other refusal is
        raised as :class:`KubeError` carrying the server's Status, so callers decide (e.g. the console
        waits out 400 "VMI is not running" as virtctl does).
        """
        url = self._ws_base() + path
        header, sslopt = self._ws_auth()

        def once() -> websocket.WebSocket:
            try:
                return websocket.create_connection(
                    url, header=header, sslopt=sslopt, subprotocols=subprotocols, timeout=timeout
                )
            except websocket.WebSocketBadStatusException as e:
                body = e.resp_body if isinstance(e.resp_body, bytes) else str(e.resp_body or "").encode()
                raise KubeError.from_response(int(e.status_code), body, e.resp_headers or {}) from None
            except (OSError, websocket.WebSocketException) as e:
                raise KubeError(0, "ConnectionError", f"{type(e).__name__}: {e}") from None

        ws: websocket.WebSocket = self._retrying(f"WebSocket {path}", "connect", once)
        return ws

    def _ws_base(self) -> str:
        return self.server.replace("https://", "wss://", 1).replace("http://", "ws://", 1).rstrip("/")

    def _ws_auth(self) -> tuple[builtins.list[str], dict[str, Any]]:
        """The kubeconfig's bearer token and TLS settings, in websocket-client's terms."""
        headers: list[str] = []
        auth = self._cfg.auth_settings().get("BearerToken")
        if auth and auth.get("value"):
            headers.append(f"Authorization: {auth['value']}")
        sslopt: dict[str, Any] = {}
        if self._ws_base().startswith("wss://"):
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
        return headers, sslopt

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
        r: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        known: Mapping[str, dict[str, Any]] | None = None,
        stop: threading.Event | None = None,
        timeout: float | None = None,
        counters: WatchCounters | None = None,
        _handle: Any = None,
    ) -> Iterator[WatchEvent]:
        """Every change, exactly once and in order (see :func:`tasks.kube.watch.watch`)."""
        return _watch.watch(
            self,
            r,
            namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            resource_version=resource_version,
            known=known,
            stop=stop,
            timeout=timeout,
            counters=counters,
            _handle=_handle,
        )

    def wait_for(
        self,
        r: Resource,
        name: str,
        namespace: str | None = None,
        *,
        condition: Callable[[dict[str, Any] | None], bool],
        timeout: float,
    ) -> dict[str, Any] | None:
        """Block until ``condition(object or None)`` holds: one read, then watch events, no polling.

        Raises :class:`WaitTimeout` (with ``.last`` = the last state seen) when it does not hold in time.
        """
        ns = self._ns(r, namespace)
        fsel = f"metadata.name={name}"
        items, rv = self.list(r, ns, field_selector=fsel)
        state: dict[str, Any] | None = items[0] if items else None
        if condition(state):
            return state
        deadline = time.monotonic() + timeout
        known = {object_key(state): state} if state else {}
        for ev in self.watch(r, ns, field_selector=fsel, resource_version=rv, known=known, timeout=timeout):
            if ev.type == "RELISTED":
                continue
            state = None if ev.type == "DELETED" else ev.object
            if condition(state):
                return state
            if time.monotonic() >= deadline:
                break
        raise WaitTimeout(f"{r.kind} {ns + '/' if ns else ''}{name}: condition not met within {timeout:g}s", state)

    def informer(
        self,
        r: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_event: Callable[[WatchEvent], None] | None = None,
    ) -> Informer:
        """Start a list+watch cache in a daemon thread (one watch for many waiters)."""
        return Informer(
            self, r, namespace, label_selector=label_selector, field_selector=field_selector, on_event=on_event
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


class ApiLimits(Protocol):
    """The load a run may put on the API server (the spec's ``api`` section)."""

    qps: float
    burst: int
    max_in_flight: int


def connect(cluster: ClusterParams | None, limits: ApiLimits) -> Kube:
    """The process's client for a cluster, paced by the run's API limits (see :func:`shared_kube`)."""
    return shared_kube(
        (cluster or ClusterParams()).target(), qps=limits.qps, burst=limits.burst, max_in_flight=limits.max_in_flight
    )
