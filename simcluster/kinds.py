"""The resource types the simulated API server serves, with their real group, version, names and scope.

Everything the API layer needs to route a URL, answer discovery and print a table comes from this
one registry, so adding a kind is one entry here (plus behaviour in a controller, if it has any).
"""

from __future__ import annotations

from dataclasses import dataclass

VERBS_RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
VERBS_RO = ("get", "list", "watch")


@dataclass(frozen=True)
class Column:
    """A server-side printing column (as in a CRD's additionalPrinterColumns)."""

    name: str
    type: str
    path: str  # a small JSONPath subset, see tables.py; "" for computed columns
    priority: int = 0
    format: str = ""
    description: str = ""


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = VERBS_RW
    subresources: tuple[str, ...] = ("status",)
    categories: tuple[str, ...] = ()
    columns: tuple[Column, ...] | None = None  # None: kube's default NAME/AGE for CRDs
    # Whether the object has a spec whose change bumps metadata.generation.
    has_generation: bool = True
    # A CRD in a real cluster (listed under apiextensions); False for built-in kinds.
    is_crd: bool = True
    single_name: str = ""

    @property
    def singular(self) -> str:
        return self.single_name or self.kind.lower()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def key(self) -> str:
        """The resource's unique name, as RBAC and CRDs spell it: `plural.group` or `plural`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def base_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


_AGE = Column("Age", "date", ".metadata.creationTimestamp")

NAMESPACE = ResourceType(
    "",
    "v1",
    "Namespace",
    "namespaces",
    False,
    ("ns",),
    (*VERBS_RO, "create", "delete", "patch", "update"),
    ("status", "finalize"),
    columns=(Column("Status", "string", ".status.phase"), _AGE),
    has_generation=False,
    is_crd=False,
)
NODE = ResourceType(
    "",
    "v1",
    "Node",
    "nodes",
    False,
    ("no",),
    subresources=("status", "proxy"),
    columns=(
        Column("Status", "string", ""),
        Column("Roles", "string", ""),
        _AGE,
        Column("Version", "string", ".status.nodeInfo.kubeletVersion"),
        Column("Internal-IP", "string", "", priority=1),
        Column("External-IP", "string", "", priority=1),
        Column("OS-Image", "string", ".status.nodeInfo.osImage", priority=1),
        Column("Kernel-Version", "string", ".status.nodeInfo.kernelVersion", priority=1),
        Column("Container-Runtime", "string", ".status.nodeInfo.containerRuntimeVersion", priority=1),
    ),
    has_generation=False,
    is_crd=False,
)
EVENT = ResourceType(
    "",
    "v1",
    "Event",
    "events",
    True,
    ("ev",),
    subresources=(),
    columns=(
        Column("Last Seen", "string", ""),
        Column("Type", "string", ".type"),
        Column("Reason", "string", ".reason"),
        Column("Object", "string", ""),
        Column("Message", "string", ".message"),
    ),
    has_generation=False,
    is_crd=False,
)
CONFIGMAP = ResourceType(
    "",
    "v1",
    "ConfigMap",
    "configmaps",
    True,
    ("cm",),
    subresources=(),
    columns=(Column("Data", "integer", ""), _AGE),
    has_generation=False,
    is_crd=False,
)
SECRET = ResourceType(
    "",
    "v1",
    "Secret",
    "secrets",
    True,
    (),
    subresources=(),
    columns=(Column("Type", "string", ".type"), Column("Data", "integer", ""), _AGE),
    has_generation=False,
    is_crd=False,
)
POD = ResourceType(
    "",
    "v1",
    "Pod",
    "pods",
    True,
    ("po",),
    # `pods/eviction` (policy/v1 Eviction, create only) is served by controllers/eviction.py
    subresources=("status", "eviction"),
    categories=("all",),
    columns=(
        Column("Ready", "string", "", description="The aggregate readiness state of this pod for accepting traffic."),
        Column("Status", "string", "", description="The aggregate status of the containers in this pod."),
        Column(
            "Restarts", "string", "", description="The number of times the containers in this pod have been restarted."
        ),
        _AGE,
        Column("IP", "string", ".status.podIP", priority=1),
        Column("Node", "string", ".spec.nodeName", priority=1),
        Column("Nominated Node", "string", ".status.nominatedNodeName", priority=1),
        Column("Readiness Gates", "string", "", priority=1),
    ),
    has_generation=False,
    is_crd=False,
)
# apps/v1 DaemonSet: virt-handler's, so its pods carry the controller reference `kubectl drain
# --ignore-daemonsets` looks up (kubectl pkg/drain/filters.go daemonSetFilter). Columns as
# kube-apiserver's printer (printDaemonSet) shows them.
DAEMONSET = ResourceType(
    "apps",
    "v1",
    "DaemonSet",
    "daemonsets",
    True,
    ("ds",),
    categories=("all",),
    columns=(
        Column("Desired", "integer", ".status.desiredNumberScheduled"),
        Column("Current", "integer", ".status.currentNumberScheduled"),
        Column("Ready", "integer", ".status.numberReady"),
        Column("Up-to-date", "integer", ".status.updatedNumberScheduled"),
        Column("Available", "integer", ".status.numberAvailable"),
        Column("Node Selector", "string", ""),
        _AGE,
        Column("Containers", "string", "", priority=1),
        Column("Images", "string", "", priority=1),
        Column("Selector", "string", "", priority=1),
    ),
    is_crd=False,
)
# coordination.k8s.io/v1 Lease (client-go leader election; udn-rollout's run lock). Built in, namespaced,
# columns as `kubectl get lease` prints them: HOLDER and AGE.
LEASE = ResourceType(
    "coordination.k8s.io",
    "v1",
    "Lease",
    "leases",
    True,
    (),
    subresources=(),
    columns=(Column("Holder", "string", ".spec.holderIdentity"), _AGE),
    has_generation=False,
    is_crd=False,
)
CRD = ResourceType(
    "apiextensions.k8s.io",
    "v1",
    "CustomResourceDefinition",
    "customresourcedefinitions",
    False,
    ("crd", "crds"),
    VERBS_RO,
    ("status",),
    categories=("api-extensions",),
    columns=(Column("Created At", "date", ".metadata.creationTimestamp", format="raw"),),
    is_crd=False,
)
SSAR = ResourceType(
    "authorization.k8s.io",
    "v1",
    "SelfSubjectAccessReview",
    "selfsubjectaccessreviews",
    False,
    (),
    ("create",),
    (),
    has_generation=False,
    is_crd=False,
)
NETWORK_CONFIG = ResourceType(
    "config.openshift.io",
    "v1",
    "Network",
    "networks",
    False,
    (),
    single_name="network",
)
CLUSTER_VERSION = ResourceType(
    "config.openshift.io",
    "v1",
    "ClusterVersion",
    "clusterversions",
    False,
    (),
    columns=(
        Column("Version", "string", '.status.history[?(@.state=="Completed")].version'),
        Column("Available", "string", '.status.conditions[?(@.type=="Available")].status'),
        Column("Progressing", "string", '.status.conditions[?(@.type=="Progressing")].status'),
        Column("Since", "date", '.status.conditions[?(@.type=="Progressing")].lastTransitionTime'),
        Column("Status", "string", '.status.conditions[?(@.type=="Progressing")].message'),
    ),
)
CUDN = ResourceType(
    "k8s.ovn.org",
    "v1",
    "ClusterUserDefinedNetwork",
    "clusteruserdefinednetworks",
    False,
    ("cudn",),
)
UDN = ResourceType("k8s.ovn.org", "v1", "UserDefinedNetwork", "userdefinednetworks", True, ("udn",))
NAD = ResourceType(
    "k8s.cni.cncf.io",
    "v1",
    "NetworkAttachmentDefinition",
    "network-attachment-definitions",
    True,
    ("net-attach-def",),
    subresources=(),
    has_generation=True,
    single_name="network-attachment-definition",
)
IPAMCLAIM = ResourceType("k8s.cni.cncf.io", "v1alpha1", "IPAMClaim", "ipamclaims", True, ())
VM = ResourceType(
    "kubevirt.io",
    "v1",
    "VirtualMachine",
    "virtualmachines",
    True,
    ("vm", "vms"),
    categories=("all",),
    columns=(
        _AGE,
        Column("Status", "string", ".status.printableStatus"),
        Column("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
    ),
)
VMI = ResourceType(
    "kubevirt.io",
    "v1",
    "VirtualMachineInstance",
    "virtualmachineinstances",
    True,
    ("vmi", "vmis"),
    categories=("all",),
    columns=(
        _AGE,
        Column("Phase", "string", ".status.phase"),
        Column("IP", "string", ".status.interfaces[0].ipAddress"),
        Column("NodeName", "string", ".status.nodeName"),
        Column("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        Column("Live-Migratable", "string", '.status.conditions[?(@.type=="LiveMigratable")].status', 1),
    ),
)
VMIM = ResourceType(
    "kubevirt.io",
    "v1",
    "VirtualMachineInstanceMigration",
    "virtualmachineinstancemigrations",
    True,
    ("vmim", "vmims"),
    categories=("all",),
    columns=(Column("Phase", "string", ".status.phase"), Column("VMI", "string", ".spec.vmiName")),
)
KUBEVIRT = ResourceType(
    "kubevirt.io",
    "v1",
    "KubeVirt",
    "kubevirts",
    True,
    ("kv", "kvs"),
    categories=("all",),
    columns=(_AGE, Column("Phase", "string", ".status.phase")),
)

ALL: tuple[ResourceType, ...] = (
    NAMESPACE,
    NODE,
    EVENT,
    CONFIGMAP,
    SECRET,
    POD,
    DAEMONSET,
    LEASE,
    CRD,
    SSAR,
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

# KubeVirt's aggregated subresource API (served by virt-api behind kube-apiserver).
SUBRESOURCE_GROUP = "subresources.kubevirt.io"
SUBRESOURCE_VERSION = "v1"
KUBEVIRT_SUBRESOURCES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("virtualmachineinstances/console", "VirtualMachineInstance", ("get",)),
    ("virtualmachines/migrate", "VirtualMachine", ("update",)),
    ("virtualmachines/start", "VirtualMachine", ("update",)),
    ("virtualmachines/stop", "VirtualMachine", ("update",)),
    ("virtualmachines/restart", "VirtualMachine", ("update",)),
)

BY_KEY: dict[str, ResourceType] = {rt.key: rt for rt in ALL}
BY_PATH: dict[tuple[str, str, str], ResourceType] = {(rt.group, rt.version, rt.plural): rt for rt in ALL}
BY_KIND: dict[tuple[str, str], ResourceType] = {(rt.api_version, rt.kind): rt for rt in ALL}


def served(hidden: frozenset[str] = frozenset()) -> tuple[ResourceType, ...]:
    """The kinds a cluster serves: all of them but the CRDs it lacks (`hidden`, by key)."""
    return tuple(rt for rt in ALL if rt.key not in hidden)


def serves_subresources(hidden: frozenset[str] = frozenset()) -> bool:
    """virt-api's aggregated group exists only where KubeVirt's VMs and VMIs do."""
    return VM.key not in hidden and VMI.key not in hidden


def groups(hidden: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Group name → served versions, in registry order (core group excluded)."""
    out: dict[str, list[str]] = {}
    for rt in served(hidden):
        if rt.group and rt.version not in out.setdefault(rt.group, []):
            out[rt.group].append(rt.version)
    if serves_subresources(hidden):
        out.setdefault(SUBRESOURCE_GROUP, [SUBRESOURCE_VERSION])
    return out
