"""simcluster: an embedded OpenShift-like Kubernetes API server with OVN-Kubernetes and KubeVirt behaviour.

Start one with ``with SimCluster(nodes=3) as cluster:`` and point any client at ``cluster.kubeconfig``.
"""

from simcluster.faults import Faults
from simcluster.seed import ClusterConfig
from simcluster.server import SimCluster

__all__ = ["ClusterConfig", "Faults", "SimCluster"]
