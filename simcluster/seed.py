"""What a fresh simulated cluster holds: an OpenShift 4.19-like cluster with OVN-Kubernetes and
OpenShift Virtualization installed — nodes, the cluster network config, the ClusterVersion, the
KubeVirt CR with its migration limits, and the CRDs of every custom kind served."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from simcluster import kinds
from simcluster.kinds import ResourceType
from simcluster.options import resolve as resolve_options
from simcluster.store import Store

KUBE_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.7",
    "gitCommit": "simcluster",
    "gitTreeState": "clean",
    "buildDate": "2026-08-01T00:00:00Z",
    "goVersion": "go1.23.9",
    "compiler": "gc",
    "platform": "linux/amd64",
}
KUBEVIRT_NAMESPACE = "openshift-cnv"
KUBEVIRT_NAME = "kubevirt-kubevirt-hyperconverged"


@dataclass
class ClusterConfig:
    """How the simulated cluster is built. Defaults match a new OpenShift 4.19 install."""

    nodes: int = 3
    node_names: list[str] | None = None  # default worker-0 … worker-(n-1)
    vms_per_node: int = 250  # schedulable VM slots per node (kubelet maxPods-like)
    node_cpu: int = 64
    node_memory_gi: int = 256
    cluster_network: list[dict[str, Any]] = field(default_factory=lambda: [{"cidr": "10.128.0.0/14", "hostPrefix": 23}])
    service_network: list[str] = field(default_factory=lambda: ["172.30.0.0/16"])
    openshift_version: str = "4.19.9"
    kubevirt_version: str = "v1.5.2"
    parallel_migrations_per_cluster: int = 5
    parallel_outbound_migrations_per_node: int = 1
    profile: str = "fast"  # VM start-up latency profile: fast | realistic | instant
    seed: int | None = None
    # CRDs this cluster does not have (e.g. "clusteruserdefinednetworks.k8s.ovn.org" on OpenShift < 4.18,
    # or every kubevirt.io CRD without OpenShift Virtualization): not in the CRD list, not in discovery,
    # not routed (404), and nothing of them is seeded.
    missing_crds: list[str] = field(default_factory=list)
    # Named options for outcomes upstream leaves open (simcluster/options.py, FIDELITY.md), e.g.
    # {"layer3GuestAddressing": "static", "guestAgent": "absent"}.
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.hidden_kinds()  # reject unknown names at once
        resolve_options(self.options)

    def option(self, name: str) -> str:
        """The value of a named option (its default when not set)."""
        return resolve_options(self.options)[name]

    def hidden_kinds(self) -> frozenset[str]:
        """The resource keys (`plural.group`) of `missing_crds`, checked against the CRDs the cluster knows."""
        known = {rt.key for rt in kinds.ALL if rt.is_crd}
        unknown = sorted(set(self.missing_crds) - known)
        if unknown:
            raise ValueError(f"missing_crds: unknown CRD(s) {unknown}; known: {sorted(known)}")
        return frozenset(self.missing_crds)

    def names(self) -> list[str]:
        if self.node_names:
            return list(self.node_names)
        return [f"worker-{i}" for i in range(self.nodes)]


def _node(name: str, index: int, cfg: ClusterConfig) -> dict[str, Any]:
    ip = str(ipaddress.ip_address("10.0.0.10") + index)
    capacity = {
        "cpu": str(cfg.node_cpu),
        "memory": f"{cfg.node_memory_gi}Gi",
        "pods": str(cfg.vms_per_node),
        "devices.kubevirt.io/kvm": "1k",
        "devices.kubevirt.io/tun": "1k",
        "ephemeral-storage": "500Gi",
    }
    now = "2026-01-01T00:00:00Z"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/worker": "",
                "node.openshift.io/os_id": "rhcos",
                "kubevirt.io/schedulable": "true",
                "cpumanager": "false",
            },
            "annotations": {},
        },
        "spec": {},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": [
                {
                    "type": "MemoryPressure",
                    "status": "False",
                    "reason": "KubeletHasSufficientMemory",
                    "message": "kubelet has sufficient memory available",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                },
                {
                    "type": "DiskPressure",
                    "status": "False",
                    "reason": "KubeletHasNoDiskPressure",
                    "message": "kubelet has no disk pressure",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                },
                {
                    "type": "PIDPressure",
                    "status": "False",
                    "reason": "KubeletHasSufficientPID",
                    "message": "kubelet has sufficient PID available",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                },
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                },
            ],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "nodeInfo": {
                "kubeletVersion": "v1.32.7",
                "kubeProxyVersion": "",
                "containerRuntimeVersion": "cri-o://1.32.7-3.rhaos4.19.git",
                "osImage": "Red Hat Enterprise Linux CoreOS 9.6.20250805-0 (Plow)",
                "kernelVersion": "5.14.0-570.35.1.el9_6.x86_64",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "machineID": f"{index:032x}",
                "systemUUID": f"{index:08x}-5e1c-4d1a-9c3b-000000000000",
                "bootID": f"b007{index:04x}-0000-4000-8000-000000000000",
            },
        },
    }


def _crd(rt: ResourceType) -> dict[str, Any]:
    version: dict[str, Any] = {
        "name": rt.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    }
    if "status" in rt.subresources:
        version["subresources"] = {"status": {}}
    if rt.columns:
        version["additionalPrinterColumns"] = [
            {"name": c.name, "type": c.type, "jsonPath": c.path, **({"priority": c.priority} if c.priority else {})}
            for c in rt.columns
        ]
    names: dict[str, Any] = {"kind": rt.kind, "listKind": rt.list_kind, "plural": rt.plural, "singular": rt.singular}
    if rt.short_names:
        names["shortNames"] = list(rt.short_names)
    if rt.categories:
        names["categories"] = list(rt.categories)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": rt.key},
        "spec": {
            "group": rt.group,
            "names": names,
            "scope": "Namespaced" if rt.namespaced else "Cluster",
            "versions": [version],
        },
        "status": {
            "acceptedNames": names,
            "storedVersions": [rt.version],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"},
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                },
            ],
        },
    }


def kubevirt_cr(cfg: ClusterConfig) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {
            "name": KUBEVIRT_NAME,
            "namespace": KUBEVIRT_NAMESPACE,
            "labels": {"app": KUBEVIRT_NAME, "app.kubernetes.io/managed-by": "hco-operator"},
        },
        "spec": {
            "certificateRotateStrategy": {},
            "configuration": {
                "developerConfiguration": {
                    "featureGates": [
                        "CPUManager",
                        "Snapshot",
                        "HotplugVolumes",
                        "ExpandDisks",
                        "HostDevices",
                        "VMExport",
                        "KubevirtSeccompProfile",
                        "VMPersistentState",
                        "NetworkBindingPlugins",
                        "DynamicPodInterfaceNaming",
                    ]
                },
                "network": {"binding": {"l2bridge": {"domainAttachmentType": "managedTap", "migration": {}}}},
                "migrations": {
                    "parallelMigrationsPerCluster": cfg.parallel_migrations_per_cluster,
                    "parallelOutboundMigrationsPerNode": cfg.parallel_outbound_migrations_per_node,
                    "completionTimeoutPerGiB": 20,
                    "progressTimeout": 150,
                    "allowAutoConverge": False,
                    "allowPostCopy": False,
                    "bandwidthPerMigration": "0Mi",
                },
                "vmiCPUAllocationRatio": 10,
                # HCO's default (api/v1beta1 EvictionStrategy: "LiveMigrate with multiple worker nodes, None
                # on single worker clusters"; webhooks/mutator mutateEvictionStrategy, nodeinfo workers >= 2),
                # copied into the KubeVirt CR (controllers/handlers/kubevirt.go)
                "evictionStrategy": "LiveMigrate" if len(cfg.names()) >= 2 else "None",
            },
            "workloadUpdateStrategy": {"workloadUpdateMethods": ["LiveMigrate"]},
        },
        "status": {
            "phase": "Deployed",
            "observedKubeVirtVersion": cfg.kubevirt_version,
            "targetKubeVirtVersion": cfg.kubevirt_version,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "AllComponentsReady",
                    "message": "All components are ready.",
                }
            ],
        },
    }


def seed(store: Store, cfg: ClusterConfig) -> None:
    """Fill an empty store with the objects of a freshly installed cluster."""
    hidden = cfg.hidden_kinds()
    for rt in kinds.ALL:
        if rt.is_crd and rt.key not in hidden:
            store.create(kinds.CRD, _crd(rt))
    for ns in (
        "default",
        "kube-system",
        "kube-public",
        "openshift-cnv",
        "openshift-ovn-kubernetes",
        "openshift-config",
    ):
        store.create(
            kinds.NAMESPACE,
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            },
        )
    for i, name in enumerate(cfg.names()):
        store.create(kinds.NODE, _node(name, i, cfg))
    if kinds.NETWORK_CONFIG.key not in hidden:
        _seed_network_config(store, cfg)
    if kinds.CLUSTER_VERSION.key not in hidden:
        _seed_cluster_version(store, cfg)
    if kinds.KUBEVIRT.key not in hidden:
        store.create(kinds.KUBEVIRT, kubevirt_cr(cfg))


def _seed_network_config(store: Store, cfg: ClusterConfig) -> None:
    store.create(
        kinds.NETWORK_CONFIG,
        {
            "apiVersion": "config.openshift.io/v1",
            "kind": "Network",
            "metadata": {"name": "cluster"},
            "spec": {
                "clusterNetwork": cfg.cluster_network,
                "serviceNetwork": cfg.service_network,
                "networkType": "OVNKubernetes",
                "externalIP": {"policy": {}},
            },
            "status": {
                "clusterNetwork": cfg.cluster_network,
                "serviceNetwork": cfg.service_network,
                "networkType": "OVNKubernetes",
                "clusterNetworkMTU": 1400,
            },
        },
    )


def _seed_cluster_version(store: Store, cfg: ClusterConfig) -> None:
    ver = cfg.openshift_version
    minor = ".".join(ver.split(".")[:2])
    store.create(
        kinds.CLUSTER_VERSION,
        {
            "apiVersion": "config.openshift.io/v1",
            "kind": "ClusterVersion",
            "metadata": {"name": "version"},
            "spec": {"channel": f"stable-{minor}", "clusterID": "5f9e2a1c-0000-4000-8000-simcluster00"[:36]},
            "status": {
                "desired": {"version": ver, "image": f"quay.io/openshift-release-dev/ocp-release:{ver}-x86_64"},
                "history": [
                    {
                        "state": "Completed",
                        "version": ver,
                        "startedTime": "2026-01-01T00:00:00Z",
                        "completionTime": "2026-01-01T00:40:00Z",
                        "verified": False,
                        "image": f"quay.io/openshift-release-dev/ocp-release:{ver}-x86_64",
                    }
                ],
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True",
                        "lastTransitionTime": "2026-01-01T00:40:00Z",
                        "message": f"Done applying {ver}",
                    },
                    {"type": "Failing", "status": "False", "lastTransitionTime": "2026-01-01T00:40:00Z"},
                    {
                        "type": "Progressing",
                        "status": "False",
                        "lastTransitionTime": "2026-01-01T00:40:00Z",
                        "message": f"Cluster version is {ver}",
                    },
                ],
                "observedGeneration": 1,
                "versionHash": "simcluster",
            },
        },
    )
