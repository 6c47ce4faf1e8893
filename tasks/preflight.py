"""Preflight: read what the run depends on, then judge it — before anything is written.

`gather` reads the cluster through `tasks.kube` (reads and SelfSubjectAccessReviews only);
`evaluate` is a pure function from the spec and those facts to a list of checks, each ok / warn /
fail with the detail and the fix. A run proceeds only when no check fails.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tasks.capacity import NodeInfo, layer2_capacity, layer3_capacity
from tasks.cidr import ExistingNetwork, find_overlaps
from tasks.model import Check
from tasks.spec import MANAGED_BY_LABEL, MANAGED_BY_VALUE, RUN_LABEL, RolloutSpec

PRIMARY_LABEL = "k8s.ovn.org/primary-user-defined-network"
MIN_OPENSHIFT = (4, 18)  # ClusterUserDefinedNetwork is GA from OpenShift 4.18

REQUIRED_CRDS: dict[str, str] = {
    "clusteruserdefinednetworks.k8s.ovn.org": "OVN-Kubernetes user-defined networks (OpenShift 4.18+)",
    "network-attachment-definitions.k8s.cni.cncf.io": "Multus NetworkAttachmentDefinitions",
    "virtualmachines.kubevirt.io": "OpenShift Virtualization (KubeVirt)",
    "virtualmachineinstances.kubevirt.io": "OpenShift Virtualization (KubeVirt)",
    "virtualmachineinstancemigrations.kubevirt.io": "OpenShift Virtualization live migration",
    "kubevirts.kubevirt.io": "OpenShift Virtualization (KubeVirt CR)",
}
PERSISTENT_IP_CRD = "ipamclaims.k8s.cni.cncf.io"


@dataclass(frozen=True)
class Permission:
    verb: str
    group: str
    resource: str
    subresource: str = ""
    why: str = ""

    @property
    def label(self) -> str:
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {res}" + (f".{self.group}" if self.group else "")


def required_permissions(spec: RolloutSpec) -> list[Permission]:
    """Every verb a full run (provision, fan-out, connectivity, churn, teardown) needs."""
    perms = [
        Permission("create", "", "namespaces", why="create the run's namespaces, labelled at creation"),
        Permission("get", "", "namespaces", why="check existing namespaces"),
        Permission("delete", "", "namespaces", why="teardown"),
        Permission("create", "k8s.ovn.org", "clusteruserdefinednetworks", why="create the network"),
        Permission("get", "k8s.ovn.org", "clusteruserdefinednetworks", why="read its status"),
        Permission("watch", "k8s.ovn.org", "clusteruserdefinednetworks", why="wait for NetworkCreated"),
        Permission("delete", "k8s.ovn.org", "clusteruserdefinednetworks", why="teardown"),
        Permission("list", "k8s.cni.cncf.io", "network-attachment-definitions", why="find existing primary networks"),
        Permission("create", "kubevirt.io", "virtualmachines", why="fan-out"),
        Permission("list", "kubevirt.io", "virtualmachines", why="resume"),
        Permission("watch", "kubevirt.io", "virtualmachineinstances", why="readiness by watch"),
        Permission("delete", "kubevirt.io", "virtualmachines", why="teardown"),
        Permission("create", "kubevirt.io", "virtualmachineinstancemigrations", why="churn"),
        Permission("watch", "kubevirt.io", "virtualmachineinstancemigrations", why="churn"),
        Permission(
            "get",
            "subresources.kubevirt.io",
            "virtualmachineinstances",
            "console",
            why="log in through the serial console for the ping matrix",
        ),
        Permission("list", "", "nodes", why="capacity and the probe plan"),
        Permission("get", "config.openshift.io", "networks", why="cluster and service networks"),
    ]
    if spec.generates_credentials():
        perms.append(Permission("create", "", "secrets", why="the generated console credentials"))
    return perms


@dataclass
class NamespaceFacts:
    exists: bool = False
    labelled: bool = False
    ours: bool = False  # carries this run's labels
    terminating: bool = False
    primary_nads: list[str] = field(default_factory=list)  # other primary networks already there


@dataclass
class ClusterFacts:
    """What preflight read from the cluster; plain data, so `evaluate` is testable without one."""

    server_version: str = ""
    openshift_version: str | None = None
    crds: set[str] = field(default_factory=set)
    permissions: dict[str, bool] = field(default_factory=dict)  # Permission.label → allowed
    cluster_networks: list[str] = field(default_factory=list)
    service_networks: list[str] = field(default_factory=list)
    network_config_found: bool = False
    existing_networks: list[ExistingNetwork] = field(default_factory=list)
    own_cudn: dict[str, Any] | None = None  # a CUDN with the spec's name, if one exists
    nodes: list[NodeInfo] = field(default_factory=list)
    vms_per_node: dict[str, int] = field(default_factory=dict)  # VMIs already on each node (all networks)
    namespaces: dict[str, NamespaceFacts] = field(default_factory=dict)
    bindings: dict[str, Any] = field(default_factory=dict)  # KubeVirt CR network.binding
    kubevirt_found: bool = False
    migration_limits: tuple[int, int] | None = None


# ---- evaluation (pure) ---------------------------------------------------------------------------
def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def network_spec_of(spec: RolloutSpec) -> dict[str, Any]:
    """The `spec.network` the run's CUDN will carry (what immutability is judged on)."""
    from tasks.render import render_cudn

    return render_cudn(spec)["spec"]["network"]


def evaluate(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
    """Every check of the run against the cluster, in the order an administrator reads them."""
    checks: list[Check] = []
    net = spec.network

    # APIs present
    missing = [name for name in REQUIRED_CRDS if name not in facts.crds]
    if net.topology == "Layer2" and net.persistent_ips is not False and PERSISTENT_IP_CRD not in facts.crds:
        missing.append(PERSISTENT_IP_CRD)
    if missing:
        checks.append(
            Check(
                "APIs",
                "fail",
                "missing: " + ", ".join(missing),
                "install OpenShift Virtualization and use OpenShift 4.18+ (OVN-Kubernetes with "
                "user-defined networks); for persistent IPs the IPAMClaim CRD must exist",
            )
        )
    else:
        checks.append(Check("APIs", "ok", f"{len(REQUIRED_CRDS)} required custom resources are served"))

    # version
    if facts.openshift_version:
        ok = _version_tuple(facts.openshift_version)[:2] >= MIN_OPENSHIFT
        checks.append(
            Check(
                "cluster version",
                "ok" if ok else "fail",
                f"OpenShift {facts.openshift_version} (Kubernetes {facts.server_version})",
                "" if ok else "ClusterUserDefinedNetwork needs OpenShift 4.18 or newer: upgrade",
            )
        )
    else:
        checks.append(
            Check(
                "cluster version",
                "warn",
                f"Kubernetes {facts.server_version}; no ClusterVersion found (not OpenShift?)",
                "results were validated against OpenShift 4.18+",
            )
        )

    # permissions
    denied = [p for p in required_permissions(spec) if not facts.permissions.get(p.label, False)]
    if denied:
        checks.append(
            Check(
                "permissions",
                "fail",
                "missing: " + "; ".join(f"{p.label} ({p.why})" for p in denied),
                "grant these verbs to the user or service account (e.g. a ClusterRole bound with "
                "a ClusterRoleBinding), then rerun",
            )
        )
    else:
        checks.append(
            Check("permissions", "ok", f"all {len(required_permissions(spec))} verbs allowed (SelfSubjectAccessReview)")
        )

    # KubeVirt: the primary-UDN binding must be registered and migratable
    if facts.kubevirt_found:
        l2 = facts.bindings.get("l2bridge")
        if l2 is None:
            checks.append(
                Check(
                    "l2bridge binding",
                    "fail",
                    "the KubeVirt CR does not register the l2bridge network binding plugin",
                    "enable it (OpenShift Virtualization 4.18+ does this through the HyperConverged CR)",
                )
            )
        elif (l2 or {}).get("migration") is None:
            checks.append(
                Check(
                    "l2bridge binding",
                    "warn",
                    "l2bridge is registered without migration: {}",
                    "VMs will not be live-migratable; add migration: {} to the binding",
                )
            )
        else:
            checks.append(Check("l2bridge binding", "ok", "l2bridge registered (managedTap, migratable)"))
    else:
        checks.append(Check("l2bridge binding", "fail", "no KubeVirt CR found", "install OpenShift Virtualization"))

    # network config and CIDR overlaps
    if not facts.network_config_found:
        checks.append(
            Check(
                "cluster networks",
                "warn",
                "networks.config.openshift.io/cluster not readable; "
                "overlaps with the cluster and service networks were not checked",
                "grant get on networks.config.openshift.io",
            )
        )
    overlaps = find_overlaps(
        [s.cidr for s in net.subnets],
        cluster_networks=facts.cluster_networks,
        service_networks=facts.service_networks,
        topology=net.topology,
        existing_udns=facts.existing_networks,
        self_name=net.name,
    )
    fails = [o for o in overlaps if o.severity == "fail"]
    warns = [o for o in overlaps if o.severity == "warn"]
    if fails:
        for o in fails:
            checks.append(Check("CIDR overlap", "fail", o.message, o.fix))
    else:
        checks.append(
            Check(
                "CIDR overlap",
                "ok",
                f"{', '.join(s.cidr for s in net.subnets)} clashes with no "
                "cluster, service, join, transit or masquerade subnet",
            )
        )
    for o in warns:
        checks.append(Check("CIDR overlap", "warn", o.message, o.fix))

    # existing network of the same name
    if facts.own_cudn is not None:
        labels = facts.own_cudn.get("metadata", {}).get("labels") or {}
        ours = labels.get(RUN_LABEL) == spec.run_id and labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
        same = (facts.own_cudn.get("spec") or {}).get("network") == network_spec_of(spec)
        if ours and same:
            checks.append(
                Check(
                    "network", "ok", f"ClusterUserDefinedNetwork {net.name} exists from this run (resume: it is kept)"
                )
            )
        elif not same:
            checks.append(
                Check(
                    "network",
                    "fail",
                    f"ClusterUserDefinedNetwork {net.name} already exists with a "
                    "different network spec, and spec.network is immutable",
                    "pick another network.name, or tear the existing network down first",
                )
            )
        else:
            checks.append(
                Check(
                    "network",
                    "fail",
                    f"ClusterUserDefinedNetwork {net.name} already exists and belongs to another run or tool",
                    "pick another network.name (or reuse that run's runId to resume it)",
                )
            )

    # namespaces
    bad_label, taken, foreign, terminating = [], [], [], []
    for name in spec.namespace_names():
        f = facts.namespaces.get(name, NamespaceFacts())
        if not f.exists:
            continue
        if f.terminating:
            terminating.append(name)
        elif not f.labelled:
            bad_label.append(name)
        elif f.primary_nads and not (f.ours and f.primary_nads == [net.name]):
            taken.append(f"{name} ({', '.join(f.primary_nads)})")
        elif not f.ours:
            foreign.append(name)
    existing = sum(1 for n in spec.namespace_names() if facts.namespaces.get(n, NamespaceFacts()).exists)
    if bad_label:
        checks.append(
            Check(
                "namespaces",
                "fail",
                f"exist without the {PRIMARY_LABEL} label: {_few(bad_label)}",
                "the label can only be set when a namespace is created: use other namespace names "
                "or delete and recreate these namespaces",
            )
        )
    if taken:
        checks.append(
            Check(
                "namespaces",
                "fail",
                f"already have a primary network: {_few(taken)}",
                "a namespace has one primary network: use other namespaces",
            )
        )
    if foreign:
        checks.append(
            Check(
                "namespaces",
                "fail",
                f"exist but were not created by this run: {_few(foreign)}",
                "udn-rollout adopts only namespaces carrying this run's labels: use other names "
                "or this namespace's original runId",
            )
        )
    if terminating:
        checks.append(
            Check(
                "namespaces",
                "fail",
                f"are being deleted: {_few(terminating)}",
                "wait until the deletion finished, then rerun",
            )
        )
    if not (bad_label or taken or foreign or terminating):
        new = len(spec.namespace_names()) - existing
        checks.append(Check("namespaces", "ok", f"{new} to create, {existing} from this run already exist"))

    # capacity
    checks.extend(_capacity_checks(spec, facts))

    # topology advice
    if net.topology == "Layer3" and spec.total_vms() > 0:
        checks.append(
            Check(
                "topology",
                "warn",
                "Layer3 with VMs: a VM's IP changes whenever it moves to "
                "another node (live migration, restart elsewhere)",
                "OpenShift supports Layer2 for VMs: set network.topology: Layer2 to keep IPs",
            )
        )
    return checks


def _capacity_checks(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
    net = spec.network
    schedulable = [n for n in facts.nodes if n.schedulable]
    if not schedulable:
        return [Check("capacity", "fail", "no Ready, schedulable node", "add or uncordon worker nodes")]
    total = spec.total_vms()
    out: list[Check] = []
    for sub in net.subnets:
        if net.topology == "Layer3":
            report = layer3_capacity(
                sub.cidr, sub.host_subnet or (24 if sub.ip_network().version == 4 else 64), facts.nodes, total
            )
        else:
            report = layer2_capacity(sub.cidr, total)
        detail = "; ".join(report.messages) or (
            f"{report.total_usable} addresses for {total} planned VMs ({report.existing} existing), "
            f"headroom {report.total_headroom}"
        )
        out.append(Check(f"capacity {sub.cidr}", report.verdict, detail, "; ".join(report.fixes)))
    slots = sum(n.max_vms or 0 for n in schedulable)
    used = sum(facts.vms_per_node.get(n.name, 0) for n in schedulable)
    if slots and total > slots - used:
        out.append(
            Check(
                "capacity nodes",
                "fail",
                f"{total} VMs planned but the schedulable nodes have {max(slots - used, 0)} free VM slots",
                "add nodes or plan fewer VMs",
            )
        )
    return out


def _few(items: list[str], limit: int = 8) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == "fail"]


# ---- gathering (reads only) ----------------------------------------------------------------------
def gather(kube: Any, spec: RolloutSpec) -> ClusterFacts:
    """Read every fact `evaluate` needs. Writes nothing (SelfSubjectAccessReviews are not stored)."""
    facts = ClusterFacts()
    facts.server_version = str(kube.version().get("gitVersion", ""))
    crds, _ = kube.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    facts.crds = {c["metadata"]["name"] for c in crds}
    for p in required_permissions(spec):
        facts.permissions[p.label] = kube.can_i(p.verb, p.group, p.resource, subresource=p.subresource or None)
    cv = _safe_get(kube, "config.openshift.io/v1", "ClusterVersion", "version")
    if cv:
        facts.openshift_version = (cv.get("status") or {}).get("desired", {}).get("version")
    netcfg = _safe_get(kube, "config.openshift.io/v1", "Network", "cluster")
    if netcfg:
        facts.network_config_found = True
        src = netcfg.get("status") or netcfg.get("spec") or {}
        facts.cluster_networks = [c["cidr"] for c in src.get("clusterNetwork") or []]
        facts.service_networks = list(src.get("serviceNetwork") or [])
    if "clusteruserdefinednetworks.k8s.ovn.org" in facts.crds:
        cudns, _ = kube.list("k8s.ovn.org/v1", "ClusterUserDefinedNetwork")
        for c in cudns:
            if c["metadata"]["name"] == spec.network.name:
                facts.own_cudn = c
            facts.existing_networks.append(
                ExistingNetwork(
                    "ClusterUserDefinedNetwork",
                    c["metadata"]["name"],
                    tuple(_subnets_of((c.get("spec") or {}).get("network"))),
                )
            )
        udns, _ = kube.list("k8s.ovn.org/v1", "UserDefinedNetwork")
        for u in udns:
            facts.existing_networks.append(
                ExistingNetwork(
                    "UserDefinedNetwork",
                    u["metadata"]["name"],
                    tuple(_subnets_of(u.get("spec"))),
                    u["metadata"]["namespace"],
                )
            )
    nodes, _ = kube.list("v1", "Node")
    for n in nodes:
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (n.get("status") or {}).get("conditions") or []
        )
        unschedulable = bool((n.get("spec") or {}).get("unschedulable"))
        try:
            max_vms = int(((n.get("status") or {}).get("allocatable") or {}).get("pods", "0")) or None
        except ValueError:
            max_vms = None
        facts.nodes.append(NodeInfo(n["metadata"]["name"], schedulable=ready and not unschedulable, max_vms=max_vms))
    if "virtualmachineinstances.kubevirt.io" in facts.crds:
        vmis, _ = kube.list("kubevirt.io/v1", "VirtualMachineInstance")
        for v in vmis:
            node = (v.get("status") or {}).get("nodeName")
            if node:
                facts.vms_per_node[node] = facts.vms_per_node.get(node, 0) + 1
    if "kubevirts.kubevirt.io" in facts.crds:
        kvs, _ = kube.list("kubevirt.io/v1", "KubeVirt")
        if kvs:
            facts.kubevirt_found = True
            conf = (kvs[0].get("spec") or {}).get("configuration") or {}
            facts.bindings = (conf.get("network") or {}).get("binding") or {}
            mig = conf.get("migrations") or {}
            facts.migration_limits = (
                int(mig.get("parallelMigrationsPerCluster", 5)),
                int(mig.get("parallelOutboundMigrationsPerNode", 2)),
            )
    wanted = set(spec.namespace_names())
    namespaces, _ = kube.list("v1", "Namespace")
    nads_by_ns: dict[str, list[str]] = {}
    if "network-attachment-definitions.k8s.cni.cncf.io" in facts.crds:
        nads, _ = kube.list("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition")
        for nad in nads:
            ns = nad["metadata"]["namespace"]
            if ns in wanted and _is_primary(nad):
                nads_by_ns.setdefault(ns, []).append(nad["metadata"]["name"])
    for ns in namespaces:
        name = ns["metadata"]["name"]
        if name not in wanted:
            continue
        labels = ns["metadata"].get("labels") or {}
        facts.namespaces[name] = NamespaceFacts(
            exists=True,
            labelled=PRIMARY_LABEL in labels,
            ours=labels.get(RUN_LABEL) == spec.run_id and labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE,
            terminating=bool(ns["metadata"].get("deletionTimestamp")),
            primary_nads=sorted(nads_by_ns.get(name, [])),
        )
    return facts


def _safe_get(kube: Any, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
    try:
        return kube.get(api_version, kind, name)
    except Exception:  # absent kind (not OpenShift) or no permission: the checks say so
        return None


def _subnets_of(network: dict[str, Any] | None) -> list[str]:
    network = network or {}
    out: list[str] = []
    for key in ("layer3", "layer2"):
        block = network.get(key) or {}
        for s in block.get("subnets") or []:
            out.append(s["cidr"] if isinstance(s, dict) else str(s))
    return out


def _is_primary(nad: dict[str, Any]) -> bool:
    try:
        conf = json.loads((nad.get("spec") or {}).get("config") or "{}")
    except ValueError:
        return False
    return conf.get("type") == "ovn-k8s-cni-overlay" and conf.get("role") == "primary"
