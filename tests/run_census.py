"""What a run left on the cluster, found by its run label: the kinds a rollout creates and two small
helpers the crash/resume and fault suites count with."""

from __future__ import annotations

from typing import Any

from tasks.kube import Kube
from tasks.kube.resources import CUDN, NAD, NAMESPACE, SECRET, VM, VMI, VMIM, Resource
from tasks.spec import RUN_LABEL, RolloutSpec

NS = NAMESPACE
__all__ = ["CUDN", "NAD", "NS", "SECRET", "VM", "VMI", "VMIM", "by_run", "keys"]


def by_run(kube: Kube, api: Resource, spec: RolloutSpec) -> list[dict[str, Any]]:
    """Every object of one kind that carries the run's label."""
    items, _ = kube.list(api, label_selector=f"{RUN_LABEL}={spec.run_id}")
    return items


def keys(objs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(namespace, name) of each object, sorted: comparable across listings."""
    return sorted((o["metadata"].get("namespace") or "", o["metadata"]["name"]) for o in objs)
