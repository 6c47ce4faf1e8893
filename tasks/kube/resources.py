"""The kinds the tool touches, declared once: where each lives in the API (group/version, plural, scope).

Every caller names a kind by one of these constants (``kube.get(VM, name, ns)``), so a typo is an
import error rather than a 404 at run time, and the list below is the whole of the tool's API surface
(the RBAC manifest and preflight's permission checks are derived from the same names).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    """Where a kind lives: enough to build its URLs."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group(self) -> str:
        """The API group ("" for the core group), as RBAC spells it."""
        return self.api_version.rpartition("/")[0]

    @property
    def base(self) -> str:
        return f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        p = self.base
        if self.namespaced and namespace:
            p += f"/namespaces/{namespace}"
        p += f"/{self.plural}"
        if name:
            p += f"/{name}"
            if subresource:
                p += f"/{subresource}"
        return p

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


NAMESPACE = Resource("v1", "Namespace", "namespaces", False)
NODE = Resource("v1", "Node", "nodes", False)
EVENT = Resource("v1", "Event", "events", True)
SECRET = Resource("v1", "Secret", "secrets", True)
CONFIGMAP = Resource("v1", "ConfigMap", "configmaps", True)
POD = Resource("v1", "Pod", "pods", True)
LEASE = Resource("coordination.k8s.io/v1", "Lease", "leases", True)
SSAR = Resource("authorization.k8s.io/v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False)
CRD = Resource("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False)
NETWORK_CONFIG = Resource("config.openshift.io/v1", "Network", "networks", False)
CLUSTER_VERSION = Resource("config.openshift.io/v1", "ClusterVersion", "clusterversions", False)
CUDN = Resource("k8s.ovn.org/v1", "ClusterUserDefinedNetwork", "clusteruserdefinednetworks", False)
UDN = Resource("k8s.ovn.org/v1", "UserDefinedNetwork", "userdefinednetworks", True)
NAD = Resource("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition", "network-attachment-definitions", True)
IPAMCLAIM = Resource("k8s.cni.cncf.io/v1alpha1", "IPAMClaim", "ipamclaims", True)
VM = Resource("kubevirt.io/v1", "VirtualMachine", "virtualmachines", True)
VMI = Resource("kubevirt.io/v1", "VirtualMachineInstance", "virtualmachineinstances", True)
VMIM = Resource("kubevirt.io/v1", "VirtualMachineInstanceMigration", "virtualmachineinstancemigrations", True)
KUBEVIRT = Resource("kubevirt.io/v1", "KubeVirt", "kubevirts", True)
#: KubeVirt's action and console subresources are served under their own group (virt-api's aggregated API).
VM_ACTIONS = Resource("subresources.kubevirt.io/v1", "VirtualMachine", "virtualmachines", True)
VMI_SUBRESOURCES = Resource("subresources.kubevirt.io/v1", "VirtualMachineInstance", "virtualmachineinstances", True)

KNOWN: tuple[Resource, ...] = (
    NAMESPACE,
    NODE,
    EVENT,
    SECRET,
    CONFIGMAP,
    POD,
    LEASE,
    SSAR,
    CRD,
    NETWORK_CONFIG,
    CLUSTER_VERSION,
    CUDN,
    UDN,
    NAD,
    IPAMCLAIM,
    VM,
    VMI,
    VMIM,
    KUBEVIRT,
)
BY_KIND: dict[tuple[str, str], Resource] = {(r.api_version, r.kind): r for r in KNOWN}
