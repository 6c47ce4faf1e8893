"""Watching: every change exactly once across stream cuts and history compaction, and informers.

A watch resumes from the last resourceVersion when its stream ends or breaks, and on 410 Gone relists
and emits the difference, so callers see a consistent sequence of events. An :class:`Informer` keeps
a list+watch cache in a daemon thread and wakes its waiters on events: nothing here polls.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson
import urllib3

from tasks.kube.errors import RETRYABLE_STATUS, KubeError
from tasks.kube.ratelimit import KubeStats
from tasks.kube.resources import Resource

log = logging.getLogger(__name__)

BACKOFF_BASE = 0.1
BACKOFF_CAP = 10.0


class WatchClient(Protocol):
    """What watching needs of the client (:class:`tasks.kube.Kube`): lists, raw requests, back-off, stats."""

    stats: KubeStats

    def list(
        self,
        r: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> tuple[builtins.list[dict[str, Any]], str]: ...

    def request(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        query: builtins.list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        stream: bool = False,
        read_timeout: float | None = None,
    ) -> tuple[int, Any]: ...

    def backoff(self, attempt: int, err: KubeError | None) -> float: ...

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
    ) -> Iterator[WatchEvent]: ...


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


def watch(
    kube: WatchClient,
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
        items, list_rv = kube.list(r, ns, label_selector=label_selector, field_selector=field_selector)
        fresh = {object_key(o): o for o in items}
        yield from diff_events(seen, fresh)
        seen.clear()
        seen.update(fresh)
        if not initial:
            ctr.relists += 1
            kube.stats.count("watch_relists")
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
                _, resp = kube.request(
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
                    kube.stats.count("connection_errors")
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
            kube.stats.count("watch_resumes")
            # A stream that ends at once with nothing in it (or with an error) would spin: back off.
            if error is not None or (not got_any and time.monotonic() - started < 0.5):
                failures += 1
                delay = kube.backoff(min(failures, 10), error)
                if stop is not None:
                    stop.wait(delay)
                else:
                    time.sleep(delay)
            else:
                failures = 0
    finally:
        finished.set()


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
        kube: WatchClient,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_event: Callable[[WatchEvent], None] | None = None,
    ) -> None:
        self.kube = kube
        self.resource, self.namespace = resource, namespace
        self.kind = resource.kind
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
        self._thread = threading.Thread(target=self._run, name=f"informer-{resource.kind}", daemon=True)
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
                    self.resource,
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
                    self.resource,
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
