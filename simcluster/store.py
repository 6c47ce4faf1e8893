"""The object store: every object of every kind, one global resourceVersion, and a history of changes.

It plays etcd's part. All calls happen on the server's event loop thread, so a write is atomic and
resourceVersions are strictly increasing without locks. Stored objects are never mutated in place
(every write stores a fresh dict), so the history can share them with watchers cheaply.

Watchers and controllers subscribe to changes; a watch may start from any resourceVersion still in
the history window, and an older one gets 410 Gone as from a compacted etcd.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import datetime as dt
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from simcluster import errors, kinds
from simcluster.kinds import ResourceType

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace or "", name)

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


_stamp: tuple[int, str] = (-1, "")


def now_rfc3339() -> str:
    """The current time as Kubernetes writes timestamps (whole seconds, UTC), formatted once a second."""
    global _stamp
    second = int(time.time())
    if _stamp[0] != second:
        _stamp = (second, dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _stamp[1]


def deep_copy(obj: Any) -> Any:
    """A fast deep copy of JSON data (the store holds JSON only)."""
    return orjson.loads(orjson.dumps(obj))


@dataclass(slots=True)
class Event:
    rv: int
    resource: str
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj
    old: Obj | None = None


@dataclass
class Subscription:
    """A stream of events for one resource (or all, for controllers), filtered, delivered through a queue."""

    resource: str | None
    namespace: str | None
    label_pred: Callable[[Mapping[str, str]], bool] | None
    field_pred: Callable[[Mapping[str, Any]], bool] | None
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    closed: bool = False
    max_backlog: int = 0  # 0: unbounded (controllers); watches close when they fall this far behind

    def _matches(self, obj: Obj) -> bool:
        md = obj.get("metadata", {})
        if self.namespace and md.get("namespace") != self.namespace:
            return False
        if self.label_pred and not self.label_pred(md.get("labels") or {}):
            return False
        return not (self.field_pred and not self.field_pred(obj))

    def translate(self, ev: Event) -> Event | None:
        """The event as this subscriber sees it: selector-filtered watches see objects enter and leave."""
        if self.resource is not None and ev.resource != self.resource:
            return None
        now = self._matches(ev.obj)
        if ev.type != "MODIFIED" or ev.old is None:
            return ev if now else None
        before = self._matches(ev.old)
        if now and before:
            return ev
        if now:
            return Event(ev.rv, ev.resource, "ADDED", ev.obj, ev.old)
        if before:
            return Event(ev.rv, ev.resource, "DELETED", ev.obj, ev.old)
        return None


def pending_finalizers(rt: ResourceType, obj: Obj) -> list[str]:
    """What still holds an object being deleted: metadata finalizers, and a namespace's spec finalizers."""
    out = list(obj["metadata"].get("finalizers") or [])
    if rt.kind == "Namespace":
        out += (obj.get("spec") or {}).get("finalizers") or []
    return out


_list = list  # `list` inside Store's body means its method Store.list


class Store:
    def __init__(self, history: int = 100_000) -> None:
        self.history = history
        self._objects: dict[str, dict[Key, Obj]] = {rt.key: {} for rt in kinds.ALL}
        self._sorted: dict[str, list[Key] | None] = {}
        self._rv = 0
        self._log: list[Event] = []
        self._log_rvs: list[int] = []
        self._compacted_rv = 0  # events with rv <= this are gone from the history
        self._subs: list[Subscription] = []
        self._dependents: dict[str, set[tuple[str, str, str]]] = {}
        self.on_change: list[Callable[[Event], None]] = []

    # ---- reading -------------------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self._objects[rt.key].get((namespace if rt.namespaced else "", name))
        if obj is None:
            raise errors.not_found(rt, name)
        return obj

    def try_get(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        return self._objects[rt.key].get((namespace if rt.namespaced else "", name))

    def count(self, rt: ResourceType) -> int:
        return len(self._objects[rt.key])

    def items(self, rt: ResourceType, namespace: str | None = None) -> Iterable[Obj]:
        """All objects of a kind (optionally in one namespace), unsorted: for controllers."""
        objs = self._objects[rt.key]
        if namespace is None:
            return list(objs.values())
        return [o for (ns, _), o in objs.items() if ns == namespace]

    def _sorted_keys(self, rt: ResourceType) -> list[Key]:
        keys = self._sorted.get(rt.key)
        if keys is None:
            keys = sorted(self._objects[rt.key])
            self._sorted[rt.key] = keys
        return keys

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        label_pred: Callable[[Mapping[str, str]], bool] | None = None,
        field_pred: Callable[[Mapping[str, Any]], bool] | None = None,
        limit: int = 0,
        continue_token: str | None = None,
    ) -> tuple[list[Obj], str, str, int | None]:
        """Objects in key order; returns (items, resourceVersion, continue, remainingItemCount)."""
        objs = self._objects[rt.key]
        keys = self._sorted_keys(rt)
        start = 0
        list_rv = self._rv
        if continue_token:
            try:
                tok = orjson.loads(base64.urlsafe_b64decode(continue_token.encode()))
                last = (tok["ns"], tok["name"])
                list_rv = int(tok["rv"])
            except Exception as e:
                raise errors.bad_request("continue key is not valid: illegal base64 data at input byte 0") from e
            if list_rv < self._compacted_rv:
                raise errors.gone(
                    "The provided continue parameter is too old to display a consistent list result. You can "
                    "start a new list without the continue parameter."
                )
            start = bisect.bisect_right(keys, last)
        if namespace:
            lo = bisect.bisect_left(keys, (namespace, ""))
            hi = bisect.bisect_left(keys, (namespace + "\x00", ""))
            start = max(start, lo)
        else:
            hi = len(keys)
        out: list[Obj] = []
        cont = ""
        remaining: int | None = None
        i = start
        while i < hi:
            obj = objs[keys[i]]
            i += 1
            md = obj["metadata"]
            if label_pred and not label_pred(md.get("labels") or {}):
                continue
            if field_pred and not field_pred(obj):
                continue
            out.append(obj)
            if limit and len(out) >= limit:
                break
        if limit and len(out) >= limit and i < hi:
            last_key = keys[i - 1]
            cont = base64.urlsafe_b64encode(
                orjson.dumps({"rv": list_rv, "ns": last_key[0], "name": last_key[1]})
            ).decode()
            if not label_pred and not field_pred:
                remaining = hi - i
        return out, str(list_rv), cont, remaining

    # ---- writing -------------------------------------------------------------------------
    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _emit(self, rt: ResourceType, type_: str, obj: Obj, old: Obj | None) -> None:
        ev = Event(int(obj["metadata"]["resourceVersion"]), rt.key, type_, obj, old)
        self._log.append(ev)
        self._log_rvs.append(ev.rv)
        if len(self._log) > 2 * self.history:
            cut = len(self._log) - self.history
            self._compacted_rv = self._log_rvs[cut - 1]
            del self._log[:cut]
            del self._log_rvs[:cut]
        for sub in self._subs:
            if sub.closed:
                continue
            seen = sub.translate(ev)
            if seen is not None:
                if sub.max_backlog and sub.queue.qsize() >= sub.max_backlog:
                    sub.closed = True
                    sub.queue.put_nowait(None)
                    continue
                sub.queue.put_nowait(seen)
        for cb in self.on_change:
            cb(ev)

    def _index_owners(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        md = obj["metadata"]
        ref = (rt.key, md.get("namespace", ""), md["name"])
        if old is not None:
            for o in old["metadata"].get("ownerReferences") or []:
                self._dependents.get(o.get("uid", ""), set()).discard(ref)
        for o in md.get("ownerReferences") or []:
            self._dependents.setdefault(o.get("uid", ""), set()).add(ref)

    def dependents(self, owner_uid: str) -> _list[tuple[ResourceType, str, str]]:
        return [(kinds.BY_KEY[r], ns, n) for r, ns, n in sorted(self._dependents.get(owner_uid, ()))]

    def generate_name(self, rt: ResourceType, namespace: str, prefix: str) -> str:
        """`generateName`: the prefix plus five random characters, as kube-apiserver picks them."""
        objs = self._objects[rt.key]
        for _ in range(16):
            candidate = prefix[:58] + "".join(random.choices(_GENERATE_ALPHABET, k=5))
            if (namespace, candidate) not in objs:
                return candidate
        raise errors.already_exists(rt, prefix)

    def create(self, rt: ResourceType, obj: Obj) -> Obj:
        """Store a new object; fills uid, creationTimestamp, resourceVersion, generation, generateName."""
        md = obj.setdefault("metadata", {})
        ns = md.get("namespace", "") if rt.namespaced else ""
        if not rt.namespaced:
            md.pop("namespace", None)
        objs = self._objects[rt.key]
        if not md.get("name") and md.get("generateName"):
            md["name"] = self.generate_name(rt, ns, md["generateName"])
        name = md["name"]
        if (ns, name) in objs:
            raise errors.already_exists(rt, name)
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        if rt.has_generation:
            md["generation"] = 1
        md.pop("deletionTimestamp", None)
        md["resourceVersion"] = str(self._next_rv())
        objs[(ns, name)] = obj
        self._sorted[rt.key] = None
        self._index_owners(rt, obj, None)
        self._emit(rt, "ADDED", obj, None)
        return obj

    def replace(self, rt: ResourceType, obj: Obj) -> Obj:
        """Store a new version of an existing object (the caller did merging and checks).

        When the object is being deleted and its last finalizer is gone, it is removed instead.
        """
        md = obj["metadata"]
        key = (md.get("namespace", "") if rt.namespaced else "", md["name"])
        old = self._objects[rt.key].get(key)
        if old is None:
            raise errors.not_found(rt, md["name"])
        if md.get("deletionTimestamp") and not pending_finalizers(rt, obj):
            return self._remove(rt, key, obj)
        md["resourceVersion"] = str(self._next_rv())
        self._objects[rt.key][key] = obj
        self._index_owners(rt, obj, old)
        self._emit(rt, "MODIFIED", obj, old)
        return obj

    def _remove(self, rt: ResourceType, key: Key, final: Obj) -> Obj:
        old = self._objects[rt.key].pop(key)
        self._sorted[rt.key] = None
        final["metadata"]["resourceVersion"] = str(self._next_rv())
        for o in old["metadata"].get("ownerReferences") or []:
            self._dependents.get(o.get("uid", ""), set()).discard((rt.key, key[0], key[1]))
        self._emit(rt, "DELETED", final, old)
        return final

    def delete(self, rt: ResourceType, namespace: str, name: str, extra_finalizers: Iterable[str] = ()) -> Obj:
        """Delete now, or mark for deletion while finalizers remain (returns the object either way)."""
        old = self.get(rt, namespace, name)
        obj = deep_copy(old)
        md = obj["metadata"]
        finalizers = list(md.get("finalizers") or [])
        for f in extra_finalizers:
            if f not in finalizers:
                finalizers.append(f)
        if not finalizers:
            md.setdefault("deletionTimestamp", now_rfc3339())
            return self._remove(rt, (namespace if rt.namespaced else "", name), obj)
        if md.get("deletionTimestamp") and finalizers == list(md.get("finalizers") or []):
            return old  # already terminating: nothing changes
        md["finalizers"] = finalizers
        md.setdefault("deletionTimestamp", now_rfc3339())
        md.setdefault("deletionGracePeriodSeconds", 0)
        return self.replace(rt, obj)

    # ---- watching ------------------------------------------------------------------------
    def subscribe(
        self,
        resource: ResourceType | None,
        namespace: str | None = None,
        label_pred: Callable[[Mapping[str, str]], bool] | None = None,
        field_pred: Callable[[Mapping[str, Any]], bool] | None = None,
        since: int | None = None,
        max_backlog: int = 0,
    ) -> tuple[Subscription, _list[Event]]:
        """Register a subscriber; returns it with the events it missed since `since`.

        `since=None` replays the current state as ADDED events (watch without resourceVersion).
        A `since` older than the history window raises 410 Gone.
        """
        sub = Subscription(
            resource.key if resource else None, namespace, label_pred, field_pred, max_backlog=max_backlog
        )
        backlog: list[Event] = []
        if since is None:
            if resource is not None:
                objs, _, _, _ = self.list(resource, namespace, label_pred, field_pred)
                backlog = [Event(int(o["metadata"]["resourceVersion"]), resource.key, "ADDED", o) for o in objs]
        else:
            if since < self._compacted_rv:
                raise errors.gone(f"too old resource version: {since} ({self._compacted_rv + 1})")
            start = bisect.bisect_right(self._log_rvs, since)
            for ev in self._log[start:]:
                seen = sub.translate(ev)
                if seen is not None:
                    backlog.append(seen)
        self._subs.append(sub)
        return sub, backlog

    def unsubscribe(self, sub: Subscription) -> None:
        sub.closed = True
        try:
            self._subs.remove(sub)
        except ValueError:
            pass

    def compact(self) -> None:
        """Forget the whole history, as etcd compaction does (watches from older versions get 410)."""
        self._compacted_rv = self._rv
        self._log.clear()
        self._log_rvs.clear()

    # ---- persistence ---------------------------------------------------------------------
    def snapshot(self) -> bytes:
        return orjson.dumps({"rv": self._rv, "objects": {k: list(v.values()) for k, v in self._objects.items()}})

    def restore(self, data: bytes) -> None:
        doc = orjson.loads(data)
        self._rv = int(doc["rv"])
        self._compacted_rv = self._rv
        for key, objs in doc["objects"].items():
            rt = kinds.BY_KEY.get(key)
            if rt is None:
                continue
            for obj in objs:
                md = obj["metadata"]
                self._objects[key][(md.get("namespace", "") if rt.namespaced else "", md["name"])] = obj
                self._index_owners(rt, obj, None)
            self._sorted[key] = None
