"""simcluster: an embedded OpenShift-like Kubernetes API server with OVN-Kubernetes and KubeVirt behaviour.

Start one with ``with SimCluster(nodes=3) as cluster:`` and point any client at ``cluster.kubeconfig``.

The three names load their modules on first use (PEP 562), so ``udn-rollout --help`` can list the
simulator's options (:mod:`simcluster.options`) without starting to import aiohttp and the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simcluster.faults import Faults
    from simcluster.seed import ClusterConfig
    from simcluster.server import SimCluster

_HOME = {"ClusterConfig": "seed", "Faults": "faults", "SimCluster": "server"}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = ["ClusterConfig", "Faults", "SimCluster"]
