"""`udn-rollout demo`: the embedded simulated cluster, and what a client sees of it.

Until the rollout flows land, the demo starts the cluster and reads it back through the official
Kubernetes client exactly as the flows will: nodes, the cluster network, the OpenShift version,
the KubeVirt migration limits and the custom resources served.
"""

from __future__ import annotations

import time

from kubernetes import client, config, dynamic

from simcluster import SimCluster


def run_demo(nodes: int = 3, keep: bool = False) -> int:
    started = time.monotonic()
    with SimCluster(nodes=nodes) as cluster:
        api = config.new_client_from_config(str(cluster.kubeconfig))
        core = client.CoreV1Api(api)
        dyn = dynamic.DynamicClient(api)
        version = client.VersionApi(api).get_code()
        network = dyn.resources.get(api_version="config.openshift.io/v1", kind="Network").get(name="cluster")
        cv = dyn.resources.get(api_version="config.openshift.io/v1", kind="ClusterVersion").get(name="version")
        kv = dyn.resources.get(api_version="kubevirt.io/v1", kind="KubeVirt").get(namespace="openshift-cnv")
        crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition").get()
        migrations = kv.items[0].spec.configuration.migrations
        print(f"simulated cluster at {cluster.url} (kubeconfig {cluster.kubeconfig})")
        print(f"  OpenShift {cv.status.desired.version}, Kubernetes {version.git_version}")
        print(
            f"  clusterNetwork {[c.cidr for c in network.spec.clusterNetwork]}, "
            f"serviceNetwork {list(network.spec.serviceNetwork)}"
        )
        print(f"  nodes: {', '.join(n.metadata.name for n in core.list_node().items)}")
        print(
            f"  live migration limits: {migrations.parallelMigrationsPerCluster} per cluster, "
            f"{migrations.parallelOutboundMigrationsPerNode} outbound per node"
        )
        print(f"  custom resources: {', '.join(sorted(c.metadata.name for c in crds.items))}")
        print(f"ready in {time.monotonic() - started:.1f}s; try: KUBECONFIG={cluster.kubeconfig} kubectl get nodes")
        if keep:
            print("serving until Ctrl-C")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0
