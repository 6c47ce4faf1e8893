"""OVN-Kubernetes' user-defined network controller (cluster-manager): ClusterUserDefinedNetwork and
namespaced UserDefinedNetwork → one NetworkAttachmentDefinition per selected namespace, with the
finalizers, per-namespace errors and ``NetworkCreated`` condition OVN-K sets.

What it does, in the order OVN-K does it (facts: ovn-kubernetes.md b and d):

* first reconcile adds the finalizer ``k8s.ovn.org/user-defined-network-protection`` to the (C)UDN;
* each selected namespace (terminating ones skipped) gets the NAD ``render_nad`` gives, unless the
  network is Primary and the namespace lacks the primary-UDN label, rendering fails (overlap with the
  cluster's networks from ``networks.config.openshift.io/cluster``, or with OVN-K's internal subnets),
  another primary OVN-K NAD already lives there (checked only when creating), or a NAD of that name
  exists that this (C)UDN does not control. Each failure is that namespace's error; the others still
  get their NAD. An owned NAD whose config or labels drifted is updated in place;
* namespaces no longer selected lose their NAD, through the same in-use check as deletion;
* on deletion each NAD is released (finalizer removed, then deleted) only while nothing uses it, then
  the (C)UDN finalizer goes. Otherwise ``NetworkCreated`` is False with the "network in use" message
  and the controller retries when a pod in that namespace goes away;
* ``NetworkCreated`` is merged into the status, leaving conditions of other writers (the IPAM
  controller's ``NetworkAllocationSucceeded``) alone; ``lastTransitionTime`` moves only when the
  status flips (``meta.SetStatusCondition``). OVN-K sets no ``observedGeneration`` on this condition.

A pod "uses" the network when its ``k8s.ovn.org/pod-networks`` annotation has the NAD's key
``<namespace>/<name>`` (nad.go ``NetAttachDefNotInUse``: every pod of the namespace, any phase, being
deleted included). In the simulator those pods are the virt-launcher pods of VMIs (Completed source
pods of migrations included, until their VMI goes), so the "network in use by the following pods"
list names them as ``<namespace>/virt-launcher-<vm>-<suffix>``.

OVN-K records no Events for NAD sync errors (its event recorder serves only the subsystem
conditions), so neither does this controller: the condition carries the error.

Reconciles go through a small work queue: a burst of store events (a hundred NADs created, a
namespace relabelled) collapses into one reconcile per network, and a namespace event only wakes the
CUDNs that track the namespace or whose selector matches its old or new labels.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from simcluster import kinds
from simcluster.controllers.base import Controller, Runtime
from simcluster.errors import ApiError
from simcluster.ovn.nad import (
    FINALIZER_UDN,
    LABEL_PRIMARY_UDN,
    InternalSubnets,
    NADRenderError,
    foreign_nad_error,
    invalid_primary_network_error,
    is_primary_ovn_nad,
    nad_delete_error,
    network_created_condition,
    network_in_use_error,
    primary_network_exists_error,
    render_nad,
    udn_network_created_condition,
)
from simcluster.selectors import selector_from_match
from simcluster.store import Event, deep_copy, now_rfc3339

log = logging.getLogger("simcluster.controllers.udn")

NAME_LABEL = "kubernetes.io/metadata.name"  # kube-apiserver sets it on every namespace
CUDN_KIND = "ClusterUserDefinedNetwork"
UDN_KIND = "UserDefinedNetwork"

POD_NETWORKS = "k8s.ovn.org/pod-networks"
# A work-queue key: ("cudn", "", name) or ("udn", namespace, name).
Key = tuple[str, str, str]
Predicate = Callable[[Mapping[str, str]], bool]


def _controller_uid(obj: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(kind, name, uid) of the object's controller ownerReference, if any."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("kind", ""), ref.get("name", ""), ref.get("uid", "")
    return None


def _controlled_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    ref = _controller_uid(obj)
    return ref is not None and ref[2] == owner_uid


def _network_spec(obj: Mapping[str, Any], cluster_udn: bool) -> Mapping[str, Any]:
    spec = obj.get("spec") or {}
    return (spec.get("network") or {}) if cluster_udn else spec


def _role(obj: Mapping[str, Any], cluster_udn: bool) -> str:
    spec = _network_spec(obj, cluster_udn)
    topo = str(spec.get("topology", "")).lower()
    return str((spec.get(topo) or {}).get("role", "")).lower()


def _without_status(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in obj.items() if k != "status"}
    out["metadata"] = {k: v for k, v in obj["metadata"].items() if k not in ("resourceVersion", "managedFields")}
    return out


def set_condition(conditions: list[dict[str, Any]], cond: Mapping[str, str], now: str) -> bool:
    """meta.SetStatusCondition: replace the condition of that type, moving lastTransitionTime only on a flip.

    Returns whether anything changed. Other conditions keep their place and content.
    """
    for existing in conditions:
        if existing.get("type") != cond["type"]:
            continue
        changed = False
        if existing.get("status") != cond["status"]:
            existing["status"] = cond["status"]
            existing["lastTransitionTime"] = now
            changed = True
        for field in ("reason", "message"):
            if existing.get(field) != cond[field]:
                existing[field] = cond[field]
                changed = True
        return changed
    conditions.append(
        {
            "type": cond["type"],
            "status": cond["status"],
            "lastTransitionTime": now,
            "reason": cond["reason"],
            "message": cond["message"],
        }
    )
    return True


class UDNController(Controller):
    """NADs, finalizers and the NetworkCreated condition for CUDNs and UDNs."""

    name = "udn"
    resources = (kinds.CUDN, kinds.UDN, kinds.NAD, kinds.NAMESPACE, kinds.POD, kinds.NETWORK_CONFIG)

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self._dirty: dict[Key, None] = {}
        self._scheduled = False
        self._internal: InternalSubnets | None = None
        self._internal_version = 0
        # (kind, namespace, name) of a (C)UDN → (what the rendering depends on, namespace → NAD or error)
        self._rendered: dict[tuple[str, str, str], tuple[tuple[Any, ...], dict[str, dict[str, Any] | str]]] = {}
        self._selectors: dict[str, tuple[str, Predicate | None]] = {}  # cudn name → (uid/generation, predicate)
        # namespace → names, kept from events and from this controller's own writes (cheap per-namespace lookups)
        self._nads: dict[str, set[str]] = {}
        self._pods: dict[str, dict[str, frozenset[str]]] = {}  # namespace → pod → NAD keys in its pod-networks
        # namespace → networks whose NAD there waits for its users to go, or failed there and may recover
        self._blocked: dict[str, set[Key]] = {}
        self._failed: dict[str, set[Key]] = {}
        self._failed_in: dict[Key, set[str]] = {}

    # ---- events --------------------------------------------------------------------------
    def resync(self) -> None:
        self._nads.clear()
        self._pods.clear()
        for nad in self.store.items(kinds.NAD):
            md = nad["metadata"]
            self._nads.setdefault(md["namespace"], set()).add(md["name"])
        for pod in self.store.items(kinds.POD):
            self._track_pod(pod)
        for cudn in self.store.items(kinds.CUDN):
            self._enqueue(("cudn", "", cudn["metadata"]["name"]))
        for udn in self.store.items(kinds.UDN):
            md = udn["metadata"]
            self._enqueue(("udn", md["namespace"], md["name"]))

    def handle(self, ev: Event) -> None:
        res = ev.resource
        md = ev.obj["metadata"]
        if res == kinds.CUDN.key:
            if ev.type == "DELETED":
                self._selectors.pop(md["name"], None)
                self._rendered.pop((CUDN_KIND, "", md["name"]), None)
            elif ev.old is None or _without_status(ev.old) != _without_status(ev.obj):
                self._enqueue(("cudn", "", md["name"]))
        elif res == kinds.UDN.key:
            if ev.type == "DELETED":
                self._rendered.pop((UDN_KIND, md["namespace"], md["name"]), None)
            elif ev.old is None or _without_status(ev.old) != _without_status(ev.obj):
                self._enqueue(("udn", md["namespace"], md["name"]))
        elif res == kinds.NAD.key:
            self._on_nad(ev)
        elif res == kinds.NAMESPACE.key:
            self._on_namespace(ev)
        elif res == kinds.POD.key:
            ns = md["namespace"]
            if ev.type == "DELETED":
                self._pods.get(ns, {}).pop(md["name"], None)
                for key in self._blocked.pop(ns, ()):
                    self._enqueue(key)
            elif ev.old is None or (ev.old["metadata"].get("annotations") or {}).get(POD_NETWORKS) != (
                md.get("annotations") or {}
            ).get(POD_NETWORKS):
                self._track_pod(ev.obj)
        elif res == kinds.NETWORK_CONFIG.key and md["name"] == "cluster":
            self._internal = None
            self._internal_version += 1
            for cudn in self.store.items(kinds.CUDN):
                self._enqueue(("cudn", "", cudn["metadata"]["name"]))
            for udn in self.store.items(kinds.UDN):
                self._enqueue(("udn", udn["metadata"]["namespace"], udn["metadata"]["name"]))

    def _on_nad(self, ev: Event) -> None:
        md = ev.obj["metadata"]
        ns = md["namespace"]
        if ev.type == "DELETED":
            self._nads.get(ns, set()).discard(md["name"])
        else:
            self._nads.setdefault(ns, set()).add(md["name"])
        # the controlling (C)UDN re-checks its NAD (re-created when deleted while still wanted)
        ref = _controller_uid(ev.obj) or (_controller_uid(ev.old) if ev.old else None)
        if ref is not None:
            kind, name, _ = ref
            if kind == CUDN_KIND and self.store.try_get(kinds.CUDN, "", name) is not None:
                self._enqueue(("cudn", "", name))
            elif kind == UDN_KIND and self.store.try_get(kinds.UDN, ns, name) is not None:
                self._enqueue(("udn", ns, name))
        # a NAD appearing or going may clear another network's error there (foreign NAD, primary exists)
        if ev.type != "MODIFIED":
            for key in list(self._failed.get(ns, ())):
                self._enqueue(key)

    def _on_namespace(self, ev: Event) -> None:
        md = ev.obj["metadata"]
        ns = md["name"]
        new_labels = md.get("labels") or {}
        old_labels = (ev.old["metadata"].get("labels") or {}) if ev.old else None
        was_terminating = bool(ev.old and ev.old["metadata"].get("deletionTimestamp"))
        if ev.type == "MODIFIED" and old_labels == new_labels and was_terminating == bool(md.get("deletionTimestamp")):
            return  # status or finalizer churn: selection is unchanged
        if ev.type == "DELETED":
            for _, per_ns in self._rendered.values():
                per_ns.pop(ns, None)
        for cudn in self.store.items(kinds.CUDN):
            name = cudn["metadata"]["name"]
            if self._tracks(cudn, ns):
                self._enqueue(("cudn", "", name))
                continue
            if ev.type == "DELETED":
                continue
            pred = self._selector(cudn)
            if pred is None or pred(new_labels) or (old_labels is not None and pred(old_labels)):
                self._enqueue(("cudn", "", name))

    # ---- work queue ----------------------------------------------------------------------
    def _enqueue(self, key: Key) -> None:
        self._dirty[key] = None
        if not self._scheduled:
            self._scheduled = True
            self.rt.later(0, self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        batch, self._dirty = list(self._dirty), {}
        for key in batch:
            try:
                if key[0] == "cudn":
                    self._reconcile_cudn(key[2])
                else:
                    self._reconcile_udn(key[1], key[2])
            except Exception:
                log.exception("udn: reconcile of %s failed", "/".join(k for k in key[1:] if k))

    # ---- helpers -------------------------------------------------------------------------
    def _internal_subnets(self) -> InternalSubnets:
        if self._internal is None:
            net = self.store.try_get(kinds.NETWORK_CONFIG, "", "cluster") or {}
            spec = net.get("spec") or {}
            status = net.get("status") or {}
            cluster = spec.get("clusterNetwork") or status.get("clusterNetwork") or []
            service = spec.get("serviceNetwork") or status.get("serviceNetwork") or []
            self._internal = InternalSubnets(
                cluster_networks=tuple(str(c["cidr"]) for c in cluster if c.get("cidr")),
                service_networks=tuple(str(s) for s in service),
            )
        return self._internal

    def _render(self, owner: Mapping[str, Any], ns: str, cluster_udn: bool) -> dict[str, Any] | str:
        """render_nad, memoised per namespace until the owner's spec, labels, annotations or the cluster
        networks change (rendering validates subnets and dominates a reconcile of many namespaces)."""
        md = owner["metadata"]
        key = (CUDN_KIND if cluster_udn else UDN_KIND, md.get("namespace", ""), md["name"])
        stamp = (
            md.get("uid"),
            md.get("generation"),
            tuple(sorted((md.get("labels") or {}).items())),
            tuple(sorted((md.get("annotations") or {}).items())),
            self._internal_version,
        )
        cached = self._rendered.get(key)
        if cached is None or cached[0] != stamp:
            cached = (stamp, {})
            self._rendered[key] = cached
        out = cached[1].get(ns)
        if out is None:
            try:
                out = render_nad(owner, ns, cluster_udn=cluster_udn, internal=self._internal_subnets())
            except NADRenderError as e:
                out = str(e)
            cached[1][ns] = out
        return out

    def _selector(self, cudn: Mapping[str, Any]) -> Predicate | None:
        md = cudn["metadata"]
        stamp = f"{md.get('uid')}/{md.get('generation')}"
        cached = self._selectors.get(md["name"])
        if cached is None or cached[0] != stamp:
            cached = (stamp, selector_from_match((cudn.get("spec") or {}).get("namespaceSelector")))
            self._selectors[md["name"]] = cached
        return cached[1]

    def _tracks(self, owner: Mapping[str, Any], ns: str) -> bool:
        """Whether the NAD named after `owner` in `ns` is controlled by it."""
        nad = self.store.try_get(kinds.NAD, ns, owner["metadata"]["name"])
        return nad is not None and _controlled_by(nad, owner["metadata"]["uid"])

    def _tracked_namespaces(self, owner: Mapping[str, Any]) -> set[str]:
        md = owner["metadata"]
        return {
            ns
            for rt, ns, name in self.store.dependents(md["uid"])
            if rt is kinds.NAD and name == md["name"] and self._tracks(owner, ns)
        }

    def _candidate_namespaces(self, sel: Mapping[str, Any] | None) -> Iterable[str]:
        """Namespaces worth testing against a selector: by name when it pins names, else all of them."""
        names: set[str] | None = None
        sel = sel or {}
        pinned = (sel.get("matchLabels") or {}).get(NAME_LABEL)
        if pinned is not None:
            names = {pinned}
        for expr in sel.get("matchExpressions") or []:
            if expr.get("key") == NAME_LABEL and expr.get("operator") == "In":
                vals = set(expr.get("values") or ())
                names = vals if names is None else names & vals
        if names is not None:
            return names
        return [o["metadata"]["name"] for o in self.store.items(kinds.NAMESPACE)]

    def _selected_namespaces(self, cudn: Mapping[str, Any]) -> set[str]:
        pred = self._selector(cudn)
        out = set()
        for ns in self._candidate_namespaces((cudn.get("spec") or {}).get("namespaceSelector")):
            obj = self.store.try_get(kinds.NAMESPACE, "", ns)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                continue  # terminating namespaces are not selected (their NAD goes)
            if pred is None or pred(obj["metadata"].get("labels") or {}):
                out.add(ns)
        return out

    def _track_pod(self, pod: Mapping[str, Any]) -> None:
        md = pod["metadata"]
        raw = (md.get("annotations") or {}).get(POD_NETWORKS)
        keys: frozenset[str] = frozenset()
        if raw:
            try:
                parsed = json.loads(raw)
                keys = frozenset(parsed) if isinstance(parsed, dict) else frozenset()
            except ValueError:
                keys = frozenset()
        if keys:
            self._pods.setdefault(md["namespace"], {})[md["name"]] = keys
        else:
            self._pods.get(md["namespace"], {}).pop(md["name"], None)

    def _users(self, owner: Mapping[str, Any], ns: str, cluster_udn: bool) -> list[str]:
        """`ns/<pod>` of every pod whose pod-networks annotation has this network's NAD key."""
        key = f"{ns}/{owner['metadata']['name']}"
        return sorted(f"{ns}/{pod}" for pod, keys in self._pods.get(ns, {}).items() if key in keys)

    def _existing_primary(self, ns: str) -> str | None:
        for nad_name in sorted(self._nads.get(ns, ())):
            nad = self.store.try_get(kinds.NAD, ns, nad_name)
            if nad is not None and is_primary_ovn_nad(nad):
                return nad_name
        return None

    def _drop_finalizer(self, rt: kinds.ResourceType, ns: str, name: str) -> dict[str, Any] | None:
        def drop(o: dict[str, Any]) -> None:
            o["metadata"]["finalizers"] = [f for f in o["metadata"].get("finalizers") or [] if f != FINALIZER_UDN]

        self.rt.mutate(rt, ns, name, drop)
        return self.store.try_get(rt, ns, name)

    def _ensure_finalizer(self, rt: kinds.ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        md = obj["metadata"]
        if FINALIZER_UDN in (md.get("finalizers") or []):
            return obj

        def add(o: dict[str, Any]) -> None:
            o["metadata"]["finalizers"] = [*(o["metadata"].get("finalizers") or []), FINALIZER_UDN]

        return self.rt.mutate(rt, md.get("namespace", ""), md["name"], add) or obj

    def _set_status(self, rt: kinds.ResourceType, ns: str, name: str, cond: Mapping[str, str]) -> None:
        now = now_rfc3339()

        def apply(o: dict[str, Any]) -> bool:
            status = o.get("status")
            if not isinstance(status, dict):
                status = o["status"] = {}
            conds = status.get("conditions")
            if not isinstance(conds, list):
                conds = status["conditions"] = []
            return set_condition(conds, cond, now)

        self.rt.mutate(rt, ns, name, apply)

    # ---- NAD operations (controller_helper.go updateNAD / deleteNAD) -----------------------
    def _update_nad(self, owner: Mapping[str, Any], ns: str, cluster_udn: bool) -> tuple[dict[str, Any] | None, str]:
        """Create or refresh the NAD in `ns`; returns (nad, "") or (None, the namespace's error text)."""
        name = owner["metadata"]["name"]
        uid = owner["metadata"]["uid"]
        primary = _role(owner, cluster_udn) == "primary"
        if primary:
            nso = self.store.try_get(kinds.NAMESPACE, "", ns)
            if nso is None:
                return None, f'failed to get namespace "{ns}": namespace "{ns}" not found'
            if LABEL_PRIMARY_UDN not in (nso["metadata"].get("labels") or {}):
                return None, invalid_primary_network_error(ns)
        existing = self.store.try_get(kinds.NAD, ns, name)
        desired = self._render(owner, ns, cluster_udn)
        if isinstance(desired, str):
            return None, desired
        if existing is None:
            if primary:
                other = self._existing_primary(ns)
                if other is not None:
                    return None, primary_network_exists_error(ns, other)
            try:
                existing = self.rt.api.create_object(kinds.NAD, deep_copy(desired), ns)
            except ApiError as e:
                return None, f"failed to create NetworkAttachmentDefinition: {e.message}"
            self._nads.setdefault(ns, set()).add(name)
        assert existing is not None
        if not _controlled_by(existing, uid):
            return None, foreign_nad_error(ns, name)
        want_ann = desired["metadata"].get("annotations") or {}
        have_ann = existing["metadata"].get("annotations") or {}
        if (
            (existing.get("spec") or {}).get("config") != desired["spec"]["config"]
            or (existing["metadata"].get("labels") or {}) != desired["metadata"]["labels"]
            or any(have_ann.get(k) != v for k, v in want_ann.items())
        ):

            def refresh(o: dict[str, Any]) -> None:
                o.setdefault("spec", {})["config"] = desired["spec"]["config"]
                o["metadata"]["labels"] = dict(desired["metadata"]["labels"])
                if want_ann:
                    o["metadata"]["annotations"] = {**(o["metadata"].get("annotations") or {}), **want_ann}

            existing = self.rt.mutate(kinds.NAD, ns, name, refresh) or existing
        return existing, ""

    def _delete_nad(self, owner: Mapping[str, Any], key: Key, ns: str, cluster_udn: bool) -> str:
        """Release and delete the owned NAD in `ns` unless in use; returns "" or the error cause."""
        name = owner["metadata"]["name"]
        nad = self.store.try_get(kinds.NAD, ns, name)
        if nad is None or not _controlled_by(nad, owner["metadata"]["uid"]):
            return ""
        if FINALIZER_UDN not in (nad["metadata"].get("finalizers") or []):
            return ""
        users = self._users(owner, ns, cluster_udn)
        if users:
            self._blocked.setdefault(ns, set()).add(key)
            return network_in_use_error(users)
        left = self._drop_finalizer(kinds.NAD, ns, name)
        if left is not None and not left["metadata"].get("deletionTimestamp"):
            try:
                self.rt.api.delete_object(kinds.NAD, ns, name)
            except ApiError as e:
                if e.code != 404:
                    return str(e.message)
        if self.store.try_get(kinds.NAD, ns, name) is None:
            self._nads.get(ns, set()).discard(name)
        return ""

    def _note_failures(self, key: Key, namespaces: Iterable[str]) -> None:
        for ns in self._failed_in.pop(key, ()):
            keys = self._failed.get(ns)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._failed[ns]
        now = set(namespaces)
        if now:
            self._failed_in[key] = now
            for ns in now:
                self._failed.setdefault(ns, set()).add(key)

    def _unblock(self, key: Key) -> None:
        for ns in [n for n, keys in self._blocked.items() if key in keys]:
            self._blocked[ns].discard(key)
            if not self._blocked[ns]:
                del self._blocked[ns]

    # ---- reconcile -----------------------------------------------------------------------
    def _reconcile_cudn(self, name: str) -> None:
        key: Key = ("cudn", "", name)
        self._unblock(key)
        cudn = self.store.try_get(kinds.CUDN, "", name)
        if cudn is None:
            self._note_failures(key, ())
            return
        md = cudn["metadata"]
        errors: list[str] = []
        failed: list[str] = []
        if md.get("deletionTimestamp"):
            if FINALIZER_UDN not in (md.get("finalizers") or []):
                return
            for ns in sorted(self._tracked_namespaces(cudn)):
                cause = self._delete_nad(cudn, key, ns, True)
                if cause:
                    errors.append(nad_delete_error(ns, name, cause))
            if errors:
                self._set_status(kinds.CUDN, "", name, network_created_condition([], errors))
                return
            self._note_failures(key, ())
            if self._drop_finalizer(kinds.CUDN, "", name) is not None:
                self._set_status(kinds.CUDN, "", name, network_created_condition([]))
            return

        cudn = self._ensure_finalizer(kinds.CUDN, cudn)
        selected = self._selected_namespaces(cudn)
        for ns in sorted(self._tracked_namespaces(cudn) - selected):
            cause = self._delete_nad(cudn, key, ns, True)
            if cause:
                errors.append(nad_delete_error(ns, name, cause))
        created: list[str] = []
        deleting: list[str] = []
        for ns in sorted(selected):
            nad, err = self._update_nad(cudn, ns, True)
            if nad is None:
                errors.append(err)
                failed.append(ns)
                continue
            created.append(ns)
            if nad["metadata"].get("deletionTimestamp"):
                deleting.append(f"{ns}/{name}")
        self._note_failures(key, failed)
        self._set_status(kinds.CUDN, "", name, network_created_condition(created, errors, deleting))

    def _reconcile_udn(self, ns: str, name: str) -> None:
        key: Key = ("udn", ns, name)
        self._unblock(key)
        udn = self.store.try_get(kinds.UDN, ns, name)
        if udn is None:
            self._note_failures(key, ())
            return
        md = udn["metadata"]
        if md.get("deletionTimestamp"):
            if FINALIZER_UDN not in (md.get("finalizers") or []):
                return
            cause = self._delete_nad(udn, key, ns, False)
            if cause:
                self._set_status(kinds.UDN, ns, name, udn_network_created_condition(nad_delete_error(ns, name, cause)))
                return
            self._note_failures(key, ())
            if self._drop_finalizer(kinds.UDN, ns, name) is not None:
                self._set_status(kinds.UDN, ns, name, udn_network_created_condition())
            return
        udn = self._ensure_finalizer(kinds.UDN, udn)
        nad, err = self._update_nad(udn, ns, False)
        self._note_failures(key, [ns] if nad is None else [])
        if nad is None:
            cond = udn_network_created_condition(err)
        else:
            cond = udn_network_created_condition(deleting=bool(nad["metadata"].get("deletionTimestamp")))
        self._set_status(kinds.UDN, ns, name, cond)
