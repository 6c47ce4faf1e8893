"""Controllers of the simulated cluster, each a module with one job, started in this order."""

from __future__ import annotations

from simcluster.controllers.base import Controller, Runtime
from simcluster.controllers.lifecycle import GarbageCollector, NamespaceLifecycle


def controller_classes() -> list[type[Controller]]:
    """Every controller the cluster runs (imported lazily so each module stays independent)."""
    from simcluster.controllers.console import ConsoleController
    from simcluster.controllers.evacuation import EvacuationController
    from simcluster.controllers.eviction import EvictionController
    from simcluster.controllers.ipam import IPAMController
    from simcluster.controllers.kubevirt import KubeVirtController
    from simcluster.controllers.migration import MigrationController
    from simcluster.controllers.udn import UDNController

    return [
        GarbageCollector,
        NamespaceLifecycle,
        UDNController,
        IPAMController,
        KubeVirtController,
        MigrationController,
        EvictionController,
        EvacuationController,
        ConsoleController,
    ]


__all__ = ["Controller", "Runtime", "controller_classes"]
