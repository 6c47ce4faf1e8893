"""One vocabulary for what belongs to a run: its labels, its label selector and the ownership test.

Every object a run creates carries ``app.kubernetes.io/managed-by: udn-rollout`` and
``udn-rollout.io/run: <run-id>``. Labels alone are not proof of ownership — anyone can copy them onto an
object in another namespace — so an object is the run's only if it carries the run's labels *and* lies
within the run's scope: the spec's namespaces (and the run's isolation-canary namespace), or, for
cluster-scoped objects, the spec's network and those namespaces. Fan-out, the ping matrix, churn and
teardown all decide with :meth:`RunScope.owns` and report what they skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "udn-rollout"
RUN_LABEL = "udn-rollout.io/run"
ROLE_LABEL = "udn-rollout.io/role"  # "canary" on the isolation canary's namespace and VM
VM_INDEX_LABEL = "udn-rollout.io/vm-index"
CHURN_LABEL = "udn-rollout.io/churn"  # one churn run's migrations
SPEC_HASH_ANNOTATION = "udn-rollout.io/spec-hash"
PRIMARY_UDN_LABEL = "k8s.ovn.org/primary-user-defined-network"
CANARY_ROLE = "canary"


def run_labels(run_id: str) -> dict[str, str]:
    """The labels every object of run ``run_id`` carries."""
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, RUN_LABEL: run_id}


def canary_namespace(run_id: str) -> str:
    """The namespace of the run's isolation canary: outside the network, on the default network."""
    return f"{run_id}-canary"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    md = obj.get("metadata")
    return md if isinstance(md, Mapping) else {}


def ref(obj: Mapping[str, Any]) -> str:
    """``Kind ns/name`` (or ``Kind name``), how the tool names an object to a person."""
    md = _meta(obj)
    ns = md.get("namespace")
    return f"{obj.get('kind', '?')} {ns + '/' if ns else ''}{md.get('name', '?')}"


@dataclass(frozen=True)
class RunScope:
    """What run ``run_id`` may touch: its namespaces, its canary namespace and its network."""

    run_id: str
    namespaces: frozenset[str]
    network: str

    @property
    def labels(self) -> dict[str, str]:
        return run_labels(self.run_id)

    @property
    def selector(self) -> str:
        """The label selector of every object of the run (for lists and watches)."""
        return f"{RUN_LABEL}={self.run_id},{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"

    @property
    def canary_namespace(self) -> str:
        return canary_namespace(self.run_id)

    def labelled(self, obj: Mapping[str, Any]) -> bool:
        """Carries this run's labels (necessary, not sufficient: see :meth:`owns`)."""
        labels = _meta(obj).get("labels") or {}
        return labels.get(RUN_LABEL) == self.run_id and labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE

    def in_scope(self, obj: Mapping[str, Any]) -> bool:
        """Lies where this run works: in its namespaces (or its canary's), or is its network or one of those namespaces."""
        md = _meta(obj)
        ns = md.get("namespace")
        if ns:
            return ns in self.namespaces or ns == self.canary_namespace
        kind, name = obj.get("kind"), md.get("name")
        if kind == "Namespace":
            return name in self.namespaces or name == self.canary_namespace
        if kind == "ClusterUserDefinedNetwork":
            return name == self.network
        return False

    def owns(self, obj: Mapping[str, Any]) -> bool:
        """The run's labels, and within the run's scope."""
        return self.labelled(obj) and self.in_scope(obj)

    def in_fleet(self, obj: Mapping[str, Any]) -> bool:
        """One of the run's fleet objects (its VMs, VMIs, migrations): owned and in a spec namespace —
        the isolation canary is the run's, but never part of the fleet that is probed or migrated."""
        return self.owns(obj) and _meta(obj).get("namespace") in self.namespaces

    def split(self, objs: Iterable[dict[str, Any]], *, fleet: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
        """(objects that are the run's, refs of labelled objects skipped because they lie outside its scope)."""
        test = self.in_fleet if fleet else self.owns
        ours: list[dict[str, Any]] = []
        skipped: list[str] = []
        for obj in objs:
            if test(obj):
                ours.append(obj)
            elif self.labelled(obj) and not (fleet and self.owns(obj)):
                skipped.append(ref(obj))
        return ours, skipped
