"""Temporary cordons: the one change churn makes to an object the run does not own, so it is marked and undone.

A restart moves a VM to another node by cordoning the node it ran on while it starts again; a drain
cordons each node it drains, as an upgrade does. A node that was already unschedulable is left exactly
as it was (the tool neither cordons nor uncordons it). Every node the tool cordons carries the
annotation ``udn-rollout.io/cordoned-by: <run-id>`` so that an interrupted churn leaves a trail: the
next churn of the run, and its teardown, uncordon those nodes (:func:`release_cordons`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from tasks.kube import Kube, KubeError
from tasks.kube.resources import NODE

log = logging.getLogger(__name__)

CORDONED_BY_ANNOTATION = "udn-rollout.io/cordoned-by"


def unschedulable(node: dict[str, Any] | None) -> bool:
    return bool(((node or {}).get("spec") or {}).get("unschedulable"))


def cordoned_by(node: dict[str, Any] | None) -> str:
    """The run that cordoned this node ("" when none did)."""
    return str((((node or {}).get("metadata") or {}).get("annotations") or {}).get(CORDONED_BY_ANNOTATION, ""))


def cordon(kube: Kube, node: str, run_id: str) -> bool:
    """Cordon ``node`` for run ``run_id``; False (and nothing changed) when it was unschedulable already."""
    current = kube.get(NODE, node)
    if current is None:
        raise KubeError(404, "NotFound", f"node {node} not found")
    if unschedulable(current):
        return cordoned_by(current) == run_id  # ours from an earlier attempt: still ours to lift
    kube.patch(
        NODE,
        node,
        {"metadata": {"annotations": {CORDONED_BY_ANNOTATION: run_id}}, "spec": {"unschedulable": True}},
    )
    return True


def uncordon(kube: Kube, node: str, run_id: str) -> bool:
    """Lift a cordon this run set (only then); True when the node was made schedulable again."""
    current = kube.get(NODE, node)
    if current is None or cordoned_by(current) != run_id:
        return False
    kube.patch(
        NODE, node, {"metadata": {"annotations": {CORDONED_BY_ANNOTATION: None}}, "spec": {"unschedulable": None}}
    )
    return True


@contextlib.contextmanager
def cordoned(kube: Kube, node: str, run_id: str) -> Iterator[bool]:
    """Hold a cordon on ``node`` for a block; yields whether this run set it (and so will lift it)."""
    ours = cordon(kube, node, run_id)
    try:
        yield ours
    finally:
        if ours:
            try:
                uncordon(kube, node, run_id)
            except KubeError as e:  # the annotation stays: the next churn or the teardown lifts it
                log.warning("could not uncordon node %s (%s); `udn-rollout teardown` will", node, e)


def release_cordons(kube: Kube, run_id: str) -> list[str]:
    """Uncordon every node an interrupted churn of ``run_id`` left cordoned; their names."""
    nodes, _ = kube.list(NODE)
    lifted = []
    for n in nodes:
        name = n["metadata"]["name"]
        if cordoned_by(n) == run_id and uncordon(kube, name, run_id):
            lifted.append(name)
    return lifted
