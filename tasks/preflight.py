"""Preflight: read what the run depends on, then judge it — before anything is written.

:func:`gather` reads the cluster through :mod:`tasks.kube` (reads, SelfSubjectAccessReviews, and
server-side dry runs of the objects the run will create — none of them stores anything). Each check is a
small pure function from the spec and those facts to :class:`~tasks.model.Check` rows (ok / warn / fail,
what was found, the fix); :data:`CHECKS` lists them in the order an administrator reads them. A run
proceeds only when no check fails.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tasks.capacity import NodeInfo, layer2_capacity, layer3_capacity
from tasks.cidr import ExistingNetwork, find_overlaps
from tasks.kube import Kube, KubeError
from tasks.kube.resources import (
    CLUSTER_VERSION,
    CRD,
    CUDN,
    KUBEVIRT,
    LEASE,
    NAD,
    NAMESPACE,
    NETWORK_CONFIG,
    NODE,
    POD,
    SECRET,
    UDN,
    VM,
    VM_ACTIONS,
    VMI,
    VMI_SUBRESOURCES,
    VMIM,
    Resource,
)
from tasks.lock import Holder, conflicts
from tasks.model import Check
from tasks.orchestration import unit
from tasks.outcome import Artifact, PreflightFailed, StepResult
from tasks.render import render_canary_namespace, render_cudn, render_namespace, render_secret, render_vm
from tasks.reports.state import RunParts
from tasks.reports.terminal import checks_table_text
from tasks.scope import PRIMARY_UDN_LABEL, ref
from tasks.spec import RolloutSpec

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
DRY_RUN_PASSWORD = "dry-run-only"  # a dry run stores nothing; the real password is made at provision


# ---- permissions: one list for preflight's checks and `udn-rollout rbac` -------------------------


@dataclass(frozen=True)
class Permission:
    """One verb on one resource that a full run needs, and why."""

    verb: str
    resource: Resource
    subresource: str = ""
    why: str = ""
    namespace: str = ""  # checked in this namespace (a Role there is enough); "" = cluster-wide

    @property
    def group(self) -> str:
        return self.resource.group

    @property
    def label(self) -> str:
        res = f"{self.resource.plural}/{self.subresource}" if self.subresource else self.resource.plural
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {res}" + (f".{self.group}" if self.group else "") + where


def required_permissions(spec: RolloutSpec) -> list[Permission]:
    """Every verb a full run (preflight, provision, fan-out, connectivity, churn, teardown) needs."""
    lock_ns = spec.lock.namespace
    perms = [
        Permission("create", NAMESPACE, why="create the run's namespaces, labelled at creation"),
        Permission("get", NAMESPACE, why="check existing namespaces"),
        Permission("list", NAMESPACE, why="find the run's namespaces"),
        Permission("delete", NAMESPACE, why="teardown"),
        Permission("create", CUDN, why="create the network"),
        Permission("get", CUDN, why="read its status"),
        Permission("list", CUDN, why="find overlapping networks"),
        Permission("watch", CUDN, why="wait for NetworkCreated"),
        Permission("patch", CUDN, why="follow the spec's namespaces on a rerun"),
        Permission("delete", CUDN, why="teardown"),
        Permission("list", UDN, why="find overlapping networks"),
        Permission("list", NAD, why="find existing primary networks"),
        Permission("create", VM, why="fan-out"),
        Permission("list", VM, why="resume"),
        Permission("get", VM, why="the isolation canary, launched before the fan-out and found again"),
        Permission("watch", VM, why="readiness by watch"),
        Permission("delete", VM, why="teardown"),
        Permission("list", VMI, why="the probe plan and churn snapshots"),
        Permission("get", VMI, why="the isolation canary's state and a restarted VM's return"),
        Permission("watch", VMI, why="readiness by watch"),
        Permission("create", VMIM, why="churn"),
        Permission("list", VMIM, why="teardown"),
        Permission("watch", VMIM, why="churn"),
        Permission("delete", VMIM, why="teardown"),
        Permission("get", VMI_SUBRESOURCES, "console", why="log in through the serial console for the ping matrix"),
        Permission("list", NODE, why="capacity and the probe plan"),
        Permission("get", NETWORK_CONFIG, why="cluster and service networks"),
        Permission("list", KUBEVIRT, why="migration limits and the l2bridge binding"),
        Permission("list", CRD, why="the APIs the run needs"),
        Permission("get", SECRET, why="read the console credentials"),
        Permission("get", LEASE, why="the run's lock", namespace=lock_ns),
        Permission("list", LEASE, why="other runs' locks", namespace=lock_ns),
        Permission("create", LEASE, why="the run's lock", namespace=lock_ns),
        Permission("update", LEASE, why="renew the run's lock", namespace=lock_ns),
        Permission("delete", LEASE, why="release the run's lock", namespace=lock_ns),
    ]
    if spec.generates_credentials():
        perms.append(Permission("create", SECRET, why="the generated console credentials"))
    return perms + churn_permissions(spec)


def churn_permissions(spec: RolloutSpec) -> list[Permission]:
    """The verbs the spec's churn action needs beyond live migration (checked again before the churn)."""
    action = spec.churn.action
    perms: list[Permission] = []
    if action in ("restart", "drain"):
        perms += [
            Permission("get", NODE, why=f"churn {action}: cordon state"),
            Permission("patch", NODE, why=f"churn {action}: cordon and uncordon nodes (marked, undone)"),
        ]
    if action == "restart":
        perms += [
            Permission("update", VM_ACTIONS, "stop", why="churn restart: virtctl stop"),
            Permission("update", VM_ACTIONS, "start", why="churn restart: virtctl start"),
        ]
    if action == "drain":
        perms += [
            Permission("list", POD, why="churn drain: find the VMs' virt-launcher pods"),
            Permission("create", POD, "eviction", why="churn drain: evict the run's virt-launcher pods"),
        ]
    return perms


def check_churn_access(kube: Kube, spec: RolloutSpec) -> None:
    """Before the churn changes anything: every verb its action needs is allowed (SelfSubjectAccessReview)."""
    missing = [
        p.label
        for p in churn_permissions(spec)
        if not kube.can_i(
            p.verb, p.group, p.resource.plural, namespace=p.namespace or None, subresource=p.subresource or None
        )
    ]
    if missing:
        raise PreflightFailed(
            f"churn {spec.churn.action} cannot run: not allowed to {', '.join(missing)}",
            ["grant them (`udn-rollout rbac -f SPEC` prints the role), then rerun — nothing was changed"],
        )


# ---- facts -----------------------------------------------------------------------------------------


@dataclass
class NamespaceFacts:
    exists: bool = False
    labelled: bool = False
    ours: bool = False  # carries this run's labels
    terminating: bool = False
    primary_nads: list[str] = field(default_factory=list)  # other primary networks already there


@dataclass(frozen=True)
class DryRun:
    """What the API server said of one object submitted with ``dryRun=All``."""

    object: str  # "Kind ns/name"
    ok: bool
    message: str = ""


@dataclass
class ClusterFacts:
    """What preflight read from the cluster; plain data, so every check is testable without one."""

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
    lock_namespace_exists: bool = True
    lock_holders: list[Holder] = field(default_factory=list)  # live runs in the way
    stale_locks: list[Holder] = field(default_factory=list)
    dry_runs: list[DryRun] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # objects whose namespace does not exist yet


# ---- checks (pure) ---------------------------------------------------------------------------------

CheckFn = Callable[[RolloutSpec, ClusterFacts], list[Check]]


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def _few(items: list[str], limit: int = 8) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_apis(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
    net = spec.network
    missing = [name for name in REQUIRED_CRDS if name not in facts.crds]
    if net.topology == "Layer2" and net.persistent_ips is not False and PERSISTENT_IP_CRD not in facts.crds:
        missing.append(PERSISTENT_IP_CRD)
    if missing:
        return [
            Check(
                "APIs",
                "fail",
                "missing: " + ", ".join(missing),
                "install OpenShift Virtualization and use OpenShift 4.18+ (OVN-Kubernetes with "
                "user-defined networks); for persistent IPs the IPAMClaim CRD must exist",
            )
        ]
    return [Check("APIs", "ok", f"{len(REQUIRED_CRDS)} required custom resources are served")]


def check_version(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
    if not facts.openshift_version:
        return [
            Check(
                "cluster version",
                "warn",
                f"Kubernetes {facts.server_version}; no ClusterVersion found (not OpenShift?)",
                "results were validated against OpenShift 4.18+",
            )
        ]
    ok = _version_tuple(facts.openshift_version)[:2] >= MIN_OPENSHIFT
    return [
        Check(
            "cluster version",
            "ok" if ok else "fail",
            f"OpenShift {facts.openshift_version} (Kubernetes {facts.server_version})",
            "" if ok else "ClusterUserDefinedNetwork needs OpenShift 4.18 or newer: upgrade",
        )
    ]


def check_permissions(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
    perms = required_permissions(spec)
    denied = [p for p in perms if not facts.permissions.get(p.label, False)]
    if denied:
        return [
            Check(
                "permissions",
                "fail",
                "missing: " + "; ".join(f"{p.label} ({p.why})" for p in denied),
                "grant them: `udn-rollout rbac -f SPEC --user NAME` prints a ClusterRole and bindings with "
                "exactly these verbs (oc apply -f it as a cluster admin), then rerun",
            )
        ]
    return [Check("permissions", "ok", f"all {len(perms)} verbs allowed (SelfSubjectAccessReview)")]


def check_binding(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
    """KubeVirt: the primary-UDN binding must be registered and migratable."""
    if not facts.kubevirt_found:
        return [Check("l2bridge binding", "fail", "no KubeVirt CR found", "install OpenShift Virtualization")]
    l2 = facts.bindings.get("l2bridge")
    if l2 is None:
        return [
            Check(
                "l2bridge binding",
                "fail",
                "the KubeVirt CR does not register the l2bridge network binding plugin",
                "enable it (OpenShift Virtualization 4.18+ does this through the HyperConverged CR)",
            )
        ]
    if (l2 or {}).get("migration") is None:
        return [
            Check(
                "l2bridge binding",
                "warn",
                "l2bridge is registered without migration: {}",
                "VMs will not be live-migratable; add migration: {} to the binding",
            )
        ]
    return [Check("l2bridge binding", "ok", "l2bridge registered (managedTap, migratable)")]


def _families(cidrs: list[str]) -> set[int]:
    out: set[int] = set()
    for c in cidrs:
        with contextlib.suppress(ValueError):
            out.add(ipaddress.ip_network(c, strict=False).version)
    return out


def check_ip_families(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
    """OVN-Kubernetes refuses a primary network that uses an IP family the cluster lacks
    (``util.NewNetInfo``: "the cluster does not support ipv6") — after the CUDN was written."""
    if not facts.network_config_found:
        return []  # check_cluster_networks warns that nothing could be compared
    cluster = _families(facts.cluster_networks) & (_families(facts.service_networks) or {4, 6})
    wanted = {s.ip_network().version for s in spec.network.subnets}
    missing = sorted(wanted - cluster)
    if not missing:
        return [Check("IP families", "ok", f"the cluster serves IPv{' and IPv'.join(str(v) for v in sorted(wanted))}")]
    fam = " and ".join(f"IPv{v}" for v in missing)
    have = ", ".join(facts.cluster_networks) or "none"
    bad = [f"subnets[{i}] {s.cidr}" for i, s in enumerate(spec.network.subnets) if s.ip_network().version in missing]
    return [
        Check(
            "IP families",
            "fail",
            f"the cluster has no {fam} (clusterNetwork {have}; serviceNetwork "
            f"{', '.join(facts.service_networks) or 'none'}), but the spec's network uses it: {', '.join(bad)}; "
            f'OVN-Kubernetes would reject the network with "the cluster does not support {fam.lower()}"',
            f"remove {', '.join(bad)} from network.subnets (or run on a dual-stack cluster)",
        )
    ]


def check_cluster_networks(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
    if facts.network_config_found:
        return []
    return [
        Check(
            "cluster networks",
            "warn",
            "networks.config.openshift.io/cluster not readable; overlaps with the cluster and service "
            "networks and their IP families were not checked",
            "grant get on networks.config.openshift.io",
        )
    ]


def check_cidr_overlap(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
    net = spec.network
    overlaps = find_overlaps(
        [s.cidr for s in net.subnets],
        cluster_networks=facts.cluster_networks,
        service_networks=facts.service_networks,
        topology=net.topology,
        existing_udns=facts.existing_networks,
        self_name=net.name,
    )
    fails = [Check("CIDR overlap", "fail", o.message, o.fix) for o in overlaps if o.severity == "fail"]
    warns = [Check("CIDR overlap", "warn", o.message, o.fix) for o in overlaps if o.severity == "warn"]
    if fails:
        return fails + warns
    ok = Check(
        "CIDR overlap",
        "ok",
        f"{', '.join(s.cidr for s in net.subnets)} clashes with no cluster, service, join, transit or masquerade subnet",
    )
    return [ok, *warns]


def network_spec_of(spec: RolloutSpec) -> dict[str, Any]:
    """The ``spec.network`` the run's CUDN will carry (what immutability is judged on)."""
    network: dict[str, Any] = render_cudn(spec)["spec"]["network"]
    return network


def check_existing_network(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
    if facts.own_cudn is None:
        return []
    name = spec.network.name
    ours = spec.scope().labelled(facts.own_cudn)
    same = (facts.own_cudn.get("spec") or {}).get("network") == network_spec_of(spec)
    if ours and same:
        return [Check("network", "ok", f"ClusterUserDefinedNetwork {name} exists from this run (resume: it is kept)")]
    if not same:
        return [
            Check(
                "network",
                "fail",
                f"ClusterUserDefinedNetwork {name} already exists with a different network spec, and "
                "spec.network is immutable",
                "pick another network.name, or tear the existing network down first",
            )
        ]
    return [
        Check(
            "network",
            "fail",
            f"ClusterUserDefinedNetwork {name} already exists and belongs to another run or tool",
            "pick another network.name (or reuse that run's runId to resume it)",
        )
    ]


def check_namespaces(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
    net = spec.network
    bad_label, taken, foreign, terminating = [], [], [], []
    names = spec.namespace_names()
    for name in names:
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
    out = []
    if bad_label:
        out.append(
            Check(
                "namespaces",
                "fail",
                f"exist without the {PRIMARY_UDN_LABEL} label: {_few(bad_label)}",
                "the label can only be set when a namespace is created: use other namespace names "
                "or delete and recreate these namespaces",
            )
        )
    if taken:
        out.append(
            Check(
                "namespaces",
                "fail",
                f"already have a primary network: {_few(taken)}",
                "a namespace has one primary network: use other namespaces",
            )
        )
    if foreign:
        out.append(
            Check(
                "namespaces",
                "fail",
                f"exist but were not created by this run: {_few(foreign)}",
                "udn-rollout adopts only namespaces carrying this run's labels: use other names "
                "or this namespace's original runId",
            )
        )
    if terminating:
        out.append(
            Check(
                "namespaces",
                "fail",
                f"are being deleted: {_few(terminating)}",
                "wait until the deletion finished, then rerun",
            )
        )
    if out:
        return out
    existing = sum(1 for n in names if facts.namespaces.get(n, NamespaceFacts()).exists)
    return [Check("namespaces", "ok", f"{len(names) - existing} to create, {existing} from this run already exist")]


def check_capacity(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
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


def check_lock(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
    """No other live run may hold the network or one of the namespaces (see :mod:`tasks.lock`)."""
    ns = spec.lock.namespace
    if not facts.lock_namespace_exists:
        return [
            Check(
                "run lock",
                "fail",
                f"the lock namespace {ns} does not exist",
                "create it, or set lock.namespace to an existing namespace every udn-rollout run uses",
            )
        ]
    if facts.lock_holders:
        return [
            Check(
                "run lock",
                "fail",
                "another run is writing this network or these namespaces: "
                + "; ".join(h.describe() for h in facts.lock_holders),
                "wait for that run to finish (or stop it), then rerun",
            )
        ]
    out = [Check("run lock", "ok", f"no other run holds network {spec.network.name} or its namespaces")]
    out.extend(
        Check("run lock", "warn", f"{h.describe()} and stopped renewing; this run will take it over", "")
        for h in facts.stale_locks
    )
    return out


def check_admission(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
    """The cluster's own admission (CRD schema and CEL, webhooks, policies, quotas) on dry runs."""
    if not facts.dry_runs and not facts.deferred:
        return []
    rejected = [d for d in facts.dry_runs if not d.ok]
    out = [
        Check("admission", "fail", f"{d.object}: the API server refused it: {d.message}", "fix the spec value it names")
        for d in rejected
    ]
    if not rejected:
        checked = ", ".join(d.object for d in facts.dry_runs) or "nothing yet"
        detail = f"accepted with dryRun=All: {checked}"
        if facts.deferred:
            detail += (
                f"; checked once their namespace exists (provision, before the network and any VM): "
                f"{', '.join(facts.deferred)}"
            )
        out.append(Check("admission", "ok", detail))
    return out


def check_topology(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
    if spec.network.topology != "Layer3" or spec.total_vms() == 0:
        return []
    return [
        Check(
            "topology",
            "warn",
            "Layer3 with VMs: OVN-Kubernetes serves DHCP to VMs only on Layer2 primary networks "
            "(ovn-kubernetes requireDHCP), so a Layer3 guest configured for DHCP gets no address and "
            "reaches nothing, although the VMI status shows one; and an address is per node subnet, so "
            "it changes whenever the VM moves node",
            "OpenShift supports Layer2 for VMs: set network.topology: Layer2 (persistent IPs survive moves)",
        )
    ]


#: Every check, in the order an administrator reads them.
CHECKS: tuple[CheckFn, ...] = (
    check_apis,
    check_version,
    check_permissions,
    check_binding,
    check_cluster_networks,
    check_ip_families,
    check_cidr_overlap,
    check_existing_network,
    check_namespaces,
    check_capacity,
    check_lock,
    check_admission,
    check_topology,
)


def evaluate(spec: RolloutSpec, facts: ClusterFacts) -> list[Check]:
    """Every check of the run against the cluster (pure)."""
    return [c for check in CHECKS for c in check(spec, facts)]


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == "fail"]


# ---- gathering (reads, access reviews, dry runs) --------------------------------------------------


def _safe_get(kube: Kube, r: Resource, name: str) -> dict[str, Any] | None:
    try:
        return kube.get(r, name)
    except KubeError:  # absent kind (not OpenShift) or no permission: the checks say so
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


def dry_run(kube: Kube, obj: dict[str, Any]) -> DryRun:
    """Submit ``obj`` with ``dryRun=All``: the server validates and admits it, and stores nothing."""
    try:
        kube.create(obj, dry_run=True)
    except KubeError as e:
        if e.code == 409 and e.reason == "AlreadyExists":
            return DryRun(ref(obj), True, "exists already")
        if e.code in (0, 429) or e.code >= 500:
            raise
        return DryRun(ref(obj), False, f"{e.code} {e.reason}: {e.message}")
    return DryRun(ref(obj), True)


def admission_objects(spec: RolloutSpec, namespace: str) -> list[dict[str, Any]]:
    """The namespaced objects of the run, one per distinct template, as they would be in ``namespace``."""
    objs = []
    if spec.generates_credentials():
        objs.append(render_secret(spec, namespace, DRY_RUN_PASSWORD))
    refs = spec.vm_refs()
    if refs:
        first = refs[0]
        objs.append(render_vm(spec, namespace, first.name, first.position))
    return objs


def gather(kube: Kube, spec: RolloutSpec) -> ClusterFacts:
    """Read every fact the checks need. Writes nothing (access reviews and dry runs are not stored)."""
    facts = ClusterFacts()
    facts.server_version = str(kube.version().get("gitVersion", ""))
    crds, _ = kube.list(CRD)
    facts.crds = {c["metadata"]["name"] for c in crds}
    for p in required_permissions(spec):
        facts.permissions[p.label] = kube.can_i(
            p.verb, p.group, p.resource.plural, namespace=p.namespace or None, subresource=p.subresource or None
        )
    cv = _safe_get(kube, CLUSTER_VERSION, "version")
    if cv:
        facts.openshift_version = (cv.get("status") or {}).get("desired", {}).get("version")
    netcfg = _safe_get(kube, NETWORK_CONFIG, "cluster")
    if netcfg:
        facts.network_config_found = True
        src = netcfg.get("status") or netcfg.get("spec") or {}
        facts.cluster_networks = [c["cidr"] for c in src.get("clusterNetwork") or []]
        facts.service_networks = list(src.get("serviceNetwork") or [])
    if "clusteruserdefinednetworks.k8s.ovn.org" in facts.crds:
        cudns, _ = kube.list(CUDN)
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
        udns, _ = kube.list(UDN)
        for u in udns:
            facts.existing_networks.append(
                ExistingNetwork(
                    "UserDefinedNetwork",
                    u["metadata"]["name"],
                    tuple(_subnets_of(u.get("spec"))),
                    u["metadata"]["namespace"],
                )
            )
    nodes, _ = kube.list(NODE)
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
        vmis, _ = kube.list(VMI)
        for v in vmis:
            node = (v.get("status") or {}).get("nodeName")
            if node:
                facts.vms_per_node[node] = facts.vms_per_node.get(node, 0) + 1
    if "kubevirts.kubevirt.io" in facts.crds:
        kvs, _ = kube.list(KUBEVIRT)
        if kvs:
            facts.kubevirt_found = True
            conf = (kvs[0].get("spec") or {}).get("configuration") or {}
            facts.bindings = (conf.get("network") or {}).get("binding") or {}
            mig = conf.get("migrations") or {}
            facts.migration_limits = (
                int(mig.get("parallelMigrationsPerCluster", 5)),
                int(mig.get("parallelOutboundMigrationsPerNode", 2)),
            )
    existing_names = _gather_namespaces(kube, spec, facts)
    _gather_lock(kube, spec, facts, existing_names)
    _gather_admission(kube, spec, facts, existing_names)
    return facts


def _gather_namespaces(kube: Kube, spec: RolloutSpec, facts: ClusterFacts) -> set[str]:
    """The run's namespaces as they are now (label, owner, primary NADs); returns every namespace name."""
    wanted = set(spec.namespace_names())
    namespaces, _ = kube.list(NAMESPACE)
    nads_by_ns: dict[str, list[str]] = {}
    if not facts.crds or "network-attachment-definitions.k8s.cni.cncf.io" in facts.crds:
        nads, _ = kube.list(NAD)
        for nad in nads:
            ns = nad["metadata"]["namespace"]
            if ns in wanted and _is_primary(nad):
                nads_by_ns.setdefault(ns, []).append(nad["metadata"]["name"])
    scope = spec.scope()
    existing_names = {ns["metadata"]["name"] for ns in namespaces}
    for ns in namespaces:
        name = ns["metadata"]["name"]
        if name not in wanted:
            continue
        labels = ns["metadata"].get("labels") or {}
        facts.namespaces[name] = NamespaceFacts(
            exists=True,
            labelled=PRIMARY_UDN_LABEL in labels,
            ours=scope.labelled(ns),
            terminating=bool(ns["metadata"].get("deletionTimestamp")),
            primary_nads=sorted(nads_by_ns.get(name, [])),
        )
    return existing_names


def _gather_lock(kube: Kube, spec: RolloutSpec, facts: ClusterFacts, existing: set[str]) -> None:
    facts.lock_namespace_exists = spec.lock.namespace in existing
    if not facts.lock_namespace_exists:
        return
    try:
        leases, _ = kube.list(LEASE, spec.lock.namespace, label_selector="udn-rollout.io/lock=true")
    except KubeError as e:
        if e.code in (401, 403, 404):
            return  # the permissions check names what is missing
        raise
    facts.lock_holders, facts.stale_locks = conflicts(
        leases, spec.run_id, spec.network.name, spec.namespace_names(), datetime.now(UTC)
    )


def _gather_admission(kube: Kube, spec: RolloutSpec, facts: ClusterFacts, existing: set[str]) -> None:
    """Dry-run every kind the run creates. A namespaced object needs its namespace even in a dry run
    (NamespaceLifecycle admission), so when none of the run's namespaces exists yet the Secret and the
    VM are judged in the lock namespace instead (which must exist), and judged again in their own
    namespace once it exists (provision, before the network and any VM)."""
    names = spec.namespace_names()
    new = [n for n in names if n not in existing]
    objs: list[dict[str, Any]] = []
    if new:
        objs.append(render_namespace(spec, new[0]))
    if facts.own_cudn is None:
        objs.append(render_cudn(spec))
    if spec.connectivity.isolation_canary and spec.connectivity.mode != "off":
        objs.append(render_canary_namespace(spec))
    ours = [n for n in names if n in existing and facts.namespaces.get(n, NamespaceFacts()).ours]
    stand_in = ours[0] if ours else (spec.lock.namespace if spec.lock.namespace in existing else "")
    if stand_in:
        objs.extend(admission_objects(spec, stand_in))
    if not ours and names:
        facts.deferred = [ref(o) for o in admission_objects(spec, names[0])]
    for obj in objs:
        result = dry_run(kube, obj)
        if not result.ok and " cannot create " in result.message:
            facts.deferred.append(f"{result.object} (no permission to judge it there)")
            continue
        facts.dry_runs.append(result)


# ---- the step ---------------------------------------------------------------------------------------


@dataclass
class PreflightResult(StepResult):
    step = "preflight"
    failure = PreflightFailed
    checks: list[Check] = field(default_factory=list)
    facts: ClusterFacts | None = None

    def ok(self) -> bool:
        return not failed(self.checks)

    def figures(self) -> dict[str, Any]:
        return {"checks": len(self.checks), "wall_s": round(self.wall_s, 2)}

    def problems(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in failed(self.checks)]

    def details(self) -> list[str]:
        return []  # the table in the headline shows every check

    def headline(self) -> str:
        return checks_table_text(self.checks).rstrip("\n")

    def failure_message(self) -> str:
        bad = failed(self.checks)
        return (
            f"preflight failed: {len(bad)} check(s) failed: "
            + "; ".join(c.name for c in bad)
            + " — nothing was changed on the cluster"
        )

    def parts(self) -> RunParts:
        return RunParts(checks=self.checks)

    def artifacts(self) -> list[Artifact]:
        return [
            Artifact("preflight", "Preflight checks", table=[c.__dict__ for c in self.checks]),
            Artifact("preflight-summary", "Preflight report", markdown_file="preflight.md"),
        ]


@unit("read cluster facts")
def read_cluster(kube: Kube, spec: RolloutSpec) -> ClusterFacts:
    return gather(kube, spec)


def run_preflight(kube: Kube, spec: RolloutSpec) -> PreflightResult:
    """Gather, then judge."""
    started = time.monotonic()
    facts = read_cluster(kube, spec)
    checks = evaluate(spec, facts)
    return PreflightResult(wall_s=time.monotonic() - started, checks=checks, facts=facts)


def confirm_under_lock(kube: Kube, spec: RolloutSpec) -> None:
    """Preflight's checks that another run can invalidate between the preflight and the first write
    (the namespaces, the network), read again once this run holds its lock.

    Two runs sharing a namespace can both pass preflight before either writes; whichever takes the
    lock second stops here — as a failed preflight, nothing written — instead of at its first create.
    """
    facts = ClusterFacts()
    facts.own_cudn = _safe_get(kube, CUDN, spec.network.name)
    _gather_namespaces(kube, spec, facts)
    bad = failed(check_existing_network(spec, facts) + check_namespaces(spec, facts))
    if bad:
        raise PreflightFailed(
            "preflight failed: another run changed the cluster after this run's checks passed: "
            + "; ".join(c.detail for c in bad),
            [c.fix for c in bad if c.fix] + ["nothing was changed on the cluster by this run"],
        )
