"""Object lifecycle as kube-controller-manager runs it: garbage collection through ownerReferences
(background, foreground and orphan propagation) and namespace termination."""

from __future__ import annotations

from typing import Any

from simcluster import kinds
from simcluster.controllers.base import Controller, Runtime
from simcluster.errors import ApiError
from simcluster.kinds import ResourceType
from simcluster.store import Event, deep_copy, pending_finalizers


class GarbageCollector(Controller):
    """Deletes dependents whose owners are gone; runs the foregroundDeletion and orphan finalizers."""

    name = "garbage-collector"

    def _owner_alive(self, dep_ns: str, ref: dict[str, Any]) -> bool:
        rt = kinds.BY_KIND.get((ref.get("apiVersion", ""), ref.get("kind", "")))
        if rt is None:
            return True  # unknown kinds are not ours to judge
        owner = self.store.try_get(rt, dep_ns if rt.namespaced else "", ref.get("name", ""))
        return owner is not None and owner["metadata"]["uid"] == ref.get("uid")

    def _collect(self, owner_uid: str) -> None:
        for rt, ns, name in self.store.dependents(owner_uid):
            dep = self.store.try_get(rt, ns, name)
            if dep is None or dep["metadata"].get("deletionTimestamp"):
                continue
            refs = dep["metadata"].get("ownerReferences") or []
            if any(self._owner_alive(ns, r) for r in refs if r.get("uid") != owner_uid):
                # other owners keep it: only drop the reference to the dead one
                self.rt.mutate(
                    rt,
                    ns,
                    name,
                    lambda o: o["metadata"].__setitem__(
                        "ownerReferences", [r for r in o["metadata"]["ownerReferences"] if r.get("uid") != owner_uid]
                    ),
                )
                continue
            self._delete(rt, ns, name)

    def _delete(self, rt: ResourceType, ns: str, name: str) -> None:
        try:
            self.rt.api.delete_object(rt, ns, name, "Background")
        except ApiError as e:
            if e.code != 404:
                raise

    def _finish_foreground(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        md = obj["metadata"]
        uid = md["uid"]
        remaining = [d for d in self.store.dependents(uid) if self.store.try_get(*d) is not None]
        blocking = []
        for drt, dns, dname in remaining:
            dep = self.store.try_get(drt, dns, dname)
            assert dep is not None
            if any(
                r.get("uid") == uid and r.get("blockOwnerDeletion")
                for r in dep["metadata"].get("ownerReferences") or []
            ):
                blocking.append((drt, dns, dname))
            if not dep["metadata"].get("deletionTimestamp"):
                self._delete(drt, dns, dname)
        if not blocking:
            self._drop_finalizer(rt, obj, "foregroundDeletion")

    def _drop_finalizer(self, rt: ResourceType, obj: dict[str, Any], finalizer: str) -> None:
        md = obj["metadata"]

        def drop(o: dict[str, Any]) -> None:
            o["metadata"]["finalizers"] = [f for f in o["metadata"].get("finalizers") or [] if f != finalizer]

        self.rt.mutate(rt, md.get("namespace", ""), md["name"], drop)

    def _orphan(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        uid = obj["metadata"]["uid"]
        for drt, dns, dname in self.store.dependents(uid):
            self.rt.mutate(
                drt,
                dns,
                dname,
                lambda o: o["metadata"].__setitem__(
                    "ownerReferences", [r for r in o["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                ),
            )
        self._drop_finalizer(rt, obj, "orphan")

    def handle(self, ev: Event) -> None:
        rt = kinds.BY_KEY[ev.resource]
        md = ev.obj["metadata"]
        if ev.type == "DELETED":
            self._collect(md["uid"])
            # a dependent going away may unblock an owner in foreground deletion
            for ref in md.get("ownerReferences") or []:
                ort = kinds.BY_KIND.get((ref.get("apiVersion", ""), ref.get("kind", "")))
                if ort is None:
                    continue
                owner = self.store.try_get(ort, md.get("namespace", "") if ort.namespaced else "", ref.get("name", ""))
                if owner and "foregroundDeletion" in (owner["metadata"].get("finalizers") or []):
                    self._finish_foreground(ort, owner)
            return
        finalizers = md.get("finalizers") or []
        if md.get("deletionTimestamp"):
            if "orphan" in finalizers:
                self._orphan(rt, ev.obj)
            elif "foregroundDeletion" in finalizers:
                self._finish_foreground(rt, ev.obj)
        elif ev.type == "ADDED" and md.get("ownerReferences"):
            ns = md.get("namespace", "")
            if not any(self._owner_alive(ns, r) for r in md["ownerReferences"]):
                self._delete(rt, ns, md["name"])


class NamespaceLifecycle(Controller):
    """Terminates namespaces: deletes their content, waits for its finalizers, then removes them."""

    name = "namespace-lifecycle"

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self._terminating: set[str] = set()

    def resync(self) -> None:
        for ns in self.store.items(kinds.NAMESPACE):
            if ns["metadata"].get("deletionTimestamp"):
                self._terminating.add(ns["metadata"]["name"])
                self._reconcile(ns["metadata"]["name"])

    def handle(self, ev: Event) -> None:
        md = ev.obj["metadata"]
        if ev.resource == kinds.NAMESPACE.key:
            if ev.type != "DELETED" and md.get("deletionTimestamp") and md["name"] not in self._terminating:
                self._terminating.add(md["name"])
                self._reconcile(md["name"])
            elif ev.type == "DELETED":
                self._terminating.discard(md["name"])
        elif ev.type == "DELETED" and md.get("namespace") in self._terminating:
            self._reconcile(md["namespace"])

    def _reconcile(self, name: str) -> None:
        ns = self.store.try_get(kinds.NAMESPACE, "", name)
        if ns is None:
            self._terminating.discard(name)
            return
        remaining = 0
        finalizers: set[str] = set()
        for rt in kinds.ALL:
            if not rt.namespaced:
                continue
            for obj in self.store.items(rt, name):
                remaining += 1
                finalizers.update(obj["metadata"].get("finalizers") or [])
                if not obj["metadata"].get("deletionTimestamp"):
                    try:
                        self.rt.api.delete_object(rt, name, obj["metadata"]["name"], "Background")
                    except ApiError as e:
                        if e.code != 404:
                            raise
        # count again: objects without finalizers went at once
        remaining = sum(len(list(self.store.items(rt, name))) for rt in kinds.ALL if rt.namespaced)
        if remaining:
            self._set_conditions(ns, remaining, sorted(finalizers))
            return
        obj = deep_copy(ns)
        obj.setdefault("spec", {})["finalizers"] = [f for f in obj["spec"].get("finalizers") or [] if f != "kubernetes"]
        if pending_finalizers(kinds.NAMESPACE, obj) or obj != ns:
            self.store.replace(kinds.NAMESPACE, obj)

    def _set_conditions(self, ns: dict[str, Any], remaining: int, finalizers: list[str]) -> None:
        conds = [
            {
                "type": "NamespaceContentRemaining",
                "status": "True",
                "reason": "SomeResourcesRemain",
                "message": f"Some resources are remaining: {remaining} objects",
            },
        ]
        if finalizers:
            conds.append(
                {
                    "type": "NamespaceFinalizersRemaining",
                    "status": "True",
                    "reason": "SomeFinalizersRemain",
                    "message": "Some content in the namespace has finalizers remaining: "
                    + ", ".join(f"{f} in {remaining} resource instances" for f in finalizers),
                }
            )

        def setc(o: dict[str, Any]) -> None:
            o["status"] = {"phase": "Terminating", "conditions": conds}

        self.rt.mutate(kinds.NAMESPACE, "", ns["metadata"]["name"], setc)
