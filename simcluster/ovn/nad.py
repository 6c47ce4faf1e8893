"""NetworkAttachmentDefinition rendering, subnet validation and status texts of the OVN-K UDN controller.

Mirrors OVN-Kubernetes **v1.2.0** (go-controller/pkg/clustermanager/userdefinednetwork/template and
util.ValidateNetConf / SubnetOverlapCheck / SetTransitSubnets), the line OpenShift 4.20-4.22 ships:

* ``cniVersion`` "1.0.0" (master from v1.3.0 renders "1.1.0": pass ``cni_version="1.1.0"``);
* the CUDN's annotations are copied onto the NAD except those starting with ``k8s.ovn.org``
  (v1.1.0 copied none);
* Layer2 primary networks carry a ``transitSubnet`` (100.88.0.0/16,fd97::/64, moved past any subnet
  it overlaps);
* ``spec.config`` is Go's ``json.Marshal`` of a map: compact, **keys sorted**, HTML characters escaped.
  (Upstream tests compare it with MatchJSON, so their key order is not what a cluster stores.)

Errors are reported with the exact text the controller puts in the NetworkCreated=False condition, so
the simulated cluster and preflight can show the same message a real cluster would.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# -- names and defaults (pkg/types/const.go, template, config) -------------------------------------
OVN_K8S_CNI_OVERLAY = "ovn-k8s-cni-overlay"
FINALIZER_UDN = "k8s.ovn.org/user-defined-network-protection"
LABEL_UDN = "k8s.ovn.org/user-defined-network"
LABEL_PRIMARY_UDN = "k8s.ovn.org/primary-user-defined-network"
OVN_K8S_PREFIX = "k8s.ovn.org"
CUDN_PREFIX = "cluster_udn_"
UDN_API_VERSION = "k8s.ovn.org/v1"
NAD_API_VERSION = "k8s.cni.cncf.io/v1"
CNI_VERSION_V1_2 = "1.0.0"
CNI_VERSION_MASTER = "1.1.0"

DEFAULT_UDN_JOIN_SUBNETS = ("100.65.0.0/16", "fd99::/64")
DEFAULT_JOIN_SUBNETS = ("100.64.0.0/16", "fd98::/64")
DEFAULT_TRANSIT_SUBNETS = ("100.88.0.0/16", "fd97::/64")
# OpenShift (CNO) default for new clusters; the upstream binary default is 169.254.169.0/29, fd69::/125
DEFAULT_MASQUERADE_SUBNETS = ("169.254.0.0/17", "fd69::/112")

# ConfigSubnetType names (pkg/config/utils.go)
SUBNET_CLUSTER = "cluster subnet"
SUBNET_SERVICE = "service subnet"
SUBNET_JOIN = "built-in join subnet"
SUBNET_MASQUERADE = "masquerade subnet"
SUBNET_TRANSIT = "transit switch subnet"
SUBNET_USER = "user defined subnet"
SUBNET_USER_JOIN = "user defined join subnet"

# -- condition types, reasons and messages --------------------------------------------------------
CONDITION_NETWORK_CREATED = "NetworkCreated"
CONDITION_NETWORK_ALLOCATION = "NetworkAllocationSucceeded"
REASON_NAD_CREATED = "NetworkAttachmentDefinitionCreated"
REASON_NAD_DELETED = "NetworkAttachmentDefinitionDeleted"
REASON_NAD_SYNC_ERROR = "NetworkAttachmentDefinitionSyncError"  # ClusterUserDefinedNetwork
REASON_SYNC_ERROR = "SyncError"  # namespaced UserDefinedNetwork
REASON_ALLOCATION_SUCCEEDED = "NetworkAllocationSucceeded"
REASON_ALLOCATION_INTERNAL_ERROR = "InternalError"
EVENT_REASON_ALLOCATION_FAILED = "NetworkAllocationFailed"
MSG_ALLOCATION_SUCCEEDED = "Network allocation succeeded for all synced nodes."
MSG_UDN_NAD_CREATED = "NetworkAttachmentDefinition has been created"
MSG_UDN_NAD_DELETING = "NetworkAttachmentDefinition is being deleted"
ERR_NO_SUBNETS_AVAILABLE = "no subnets available"

_GENERATE = "failed to generate NetworkAttachmentDefinition: "
_RENDER = "failed to render CNI network config: "


class NADRenderError(ValueError):
    """Rendering failed; ``str(err)`` is the full NetworkCreated=False condition message for the namespace."""


class _Invalid(Exception):
    """An error inside the render path; the text is wrapped by the caller the way Go wraps it."""


@dataclass(frozen=True)
class InternalSubnets:
    """The cluster's own subnets a UDN must not overlap (networks.config + OVN-K internals)."""

    cluster_networks: tuple[str, ...] = ()
    service_networks: tuple[str, ...] = ()
    masquerade: tuple[str, ...] = DEFAULT_MASQUERADE_SUBNETS
    default_join: tuple[str, ...] = DEFAULT_JOIN_SUBNETS
    transit: tuple[str, ...] = DEFAULT_TRANSIT_SUBNETS
    persistent_ips_enabled: bool = True

    def cluster_families(self) -> set[int] | None:
        """IP families the cluster runs; None when unknown (no cluster networks given)."""
        if not self.cluster_networks:
            return None
        return {ipaddress.ip_network(c, strict=False).version for c in self.cluster_networks}


# -- names ------------------------------------------------------------------------------------------
def _is_cluster_udn(obj: Mapping[str, Any]) -> bool:
    kind = obj.get("kind")
    if kind:
        return kind == "ClusterUserDefinedNetwork"
    return not obj.get("metadata", {}).get("namespace")


def network_name(obj: Mapping[str, Any]) -> str:
    """OVN network name: ``cluster_udn_<name>`` for a CUDN, ``<namespace>_<name>`` for a UDN."""
    meta = obj["metadata"]
    if _is_cluster_udn(obj):
        return CUDN_PREFIX + meta["name"]
    return f"{meta['namespace']}_{meta['name']}"


def nad_key(namespace: str, name: str) -> str:
    """``<namespace>/<name>``: the NAD key used in netAttachDefName and pod-networks annotations."""
    return f"{namespace}/{name}"


# -- Go-compatible formatting -----------------------------------------------------------------------
def _go_json(value: Any) -> str:
    """``json.Marshal`` output: sorted map keys, no spaces, <, >, & escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _go_list(items: Iterable[str]) -> str:
    """Go's ``%v`` of a []string: ``[a b c]``."""
    return "[" + " ".join(items) + "]"


def _cidr(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise _Invalid(f"invalid CIDR address: {text.strip()}") from exc


# -- subnet parsing as OVN-K's NetInfo does it -----------------------------------------------------
def _parse_layer3_subnets(subnets: Sequence[str]) -> list[IPNetwork]:
    """config.ParseClusterSubnetEntries: host length defaults 24/64, with OVN-K's validation errors."""
    out: list[IPNetwork] = []
    ipv4_host = 0
    for entry in subnets:
        entry = entry.strip()
        parts = entry.split("/")
        if len(parts) < 2 or len(parts) > 3:
            raise _Invalid(f'CIDR "{entry}" not properly formatted')
        net = _cidr(f"{parts[0]}/{parts[1]}")
        host = int(parts[2]) if len(parts) == 3 else (64 if net.version == 6 else 24)
        if net.version == 6 and host != 64:
            raise _Invalid("IPv6 only supports /64 host subnets")
        if net.version == 4 and host > 32:
            raise _Invalid("invalid host subnet, IPv4 subnet must be < 32")
        if net.version == 4:
            if ipv4_host == 0:
                ipv4_host = host
            elif host != ipv4_host:
                raise _Invalid(
                    "all IPv4 cluster subnet entries must have the same host subnet length; "
                    f"found {ipv4_host} and {host}"
                )
        if host <= net.prefixlen:
            raise _Invalid(
                "cannot use a host subnet length mask shorter than or equal to the cluster subnet mask. "
                f"host subnet length: {host}, cluster subnet length: {net.prefixlen}"
            )
        out.append(net)
    return out


def _parse_join(join: Sequence[str] | None) -> list[IPNetwork]:
    """parseJoinSubnet: both families always present, defaults filling the family not given."""
    result = [_cidr(DEFAULT_UDN_JOIN_SUBNETS[0]), _cidr(DEFAULT_UDN_JOIN_SUBNETS[1])]
    for text in join or ():
        net = _cidr(text)
        result[0 if net.version == 4 else 1] = net
    return result


def _overlaps(a: IPNetwork, b: IPNetwork) -> bool:
    return a.version == b.version and (a.network_address in b or b.network_address in a)


def _subnet_overlap_check(
    topology: str,
    role: str,
    subnets: Sequence[str],
    join_subnets: Sequence[str] | None,
    transit_subnets: Sequence[str],
    internal: InternalSubnets,
    name: str,
) -> tuple[IPNetwork | None, IPNetwork | None, str | None]:
    """util.SubnetOverlapCheck: the first overlapping pair (later entry first) and its error text."""
    entries: list[tuple[str, IPNetwork]] = []
    entries += [(SUBNET_CLUSTER, _cidr(c)) for c in internal.cluster_networks]
    entries += [(SUBNET_SERVICE, _cidr(c)) for c in internal.service_networks]
    entries += [(SUBNET_JOIN, _cidr(c)) for c in internal.default_join]
    entries += [(SUBNET_MASQUERADE, _cidr(c)) for c in internal.masquerade]
    if topology == "layer3":
        entries += [(SUBNET_TRANSIT, _cidr(c)) for c in internal.transit]

    try:
        if topology == "layer3":
            user = _parse_layer3_subnets(subnets)
        else:
            try:
                user = [_cidr(s) for s in subnets]
            except _Invalid as exc:
                raise _Invalid(f"invalid network subnets for {topology} netconf {name}: {exc}") from exc
        join = _parse_join(join_subnets if role == "primary" else None)
        transit = [_cidr(t) for t in transit_subnets] if role == "primary" else []
        families = internal.cluster_families()
        if role == "primary" and families is not None:
            for fam in (4, 6):
                if any(n.version == fam for n in user) and fam not in families:
                    v = f"ipv{fam}"
                    raise _Invalid(
                        f"network {name} is attempting to use {v} subnets but the cluster does not support {v}"
                    )
    except _Invalid as exc:
        return None, None, f"error while parsing subnets: {exc}"

    entries += [(SUBNET_USER, n) for n in user]
    entries += [(SUBNET_USER_JOIN, n) for n in join]
    entries += [(SUBNET_TRANSIT, n) for n in transit]
    for i, (ti, si) in enumerate(entries):
        for tj, sj in entries[:i]:
            if _overlaps(si, sj):
                msg = f'{ti} "{si}" overlaps {tj} "{sj}"'
                return si, sj, f"pod or join subnet overlaps with already configured internal subnets: {msg}"
    return None, None, None


def _set_transit_subnets(
    subnets: Sequence[str], join: Sequence[str] | None, internal: InternalSubnets, name: str
) -> list[str]:
    """util.SetTransitSubnets: per subnet family, the default transit moved past whatever it overlaps."""
    out: list[str] = []
    for text in subnets:
        net = _cidr(text)
        candidate = _cidr(internal.transit[0] if net.version == 4 else internal.transit[1])
        for _ in range(10):
            s1, s2, err = _subnet_overlap_check("layer2", "primary", subnets, join, [str(candidate)], internal, name)
            if err is None:
                out.append(str(candidate))
                break
            if s1 is None or s2 is None or (str(s1) != str(candidate) and str(s2) != str(candidate)):
                raise _Invalid(err)
            base = s2 if s2.prefixlen < s1.prefixlen else s1
            nxt = (int(base.broadcast_address) + 1) % (1 << base.max_prefixlen)
            addr = ipaddress.ip_address(nxt) if base.version == 4 else ipaddress.IPv6Address(nxt)
            candidate = ipaddress.ip_network(f"{addr}/{candidate.prefixlen}", strict=False)
        else:
            raise _Invalid(
                "can't generate transit subnets: failed to find non-overlapping transit subnet after 10 attempts"
            )
    return out


def _validate_netconf(
    topology: str,
    role: str,
    subnets: Sequence[str],
    join_subnets: Sequence[str] | None,
    transit: Sequence[str],
    internal: InternalSubnets,
    name: str,
) -> None:
    """The subnet part of util.ValidateNetConf."""
    if role == "primary" and not subnets and topology == "layer2":
        raise _Invalid("the subnet attribute must be defined for layer2 primary user defined networks")
    _, _, err = _subnet_overlap_check(topology, role, subnets, join_subnets, transit, internal, name)
    if err is not None:
        raise _Invalid(f"invalid subnet configuration: {err}")


def _render_checks(
    topology: str,
    role: str,
    subnets: Sequence[str],
    join_subnets: Sequence[str] | None,
    internal: InternalSubnets,
    name: str,
    *,
    allow_persistent_ips: bool = False,
) -> list[str]:
    """Checks in renderCNINetworkConfig order; returns the Layer2 primary transit subnets."""
    transit: list[str] = []
    if topology == "layer2" and role == "primary":
        transit = _set_transit_subnets(subnets, join_subnets, internal, name)
    if allow_persistent_ips and not internal.persistent_ips_enabled:
        raise _Invalid("allowPersistentIPs is set but persistentIPs is Disabled")
    if allow_persistent_ips and topology == "layer3":
        raise _Invalid("layer3 topology does not allow persistent IPs")
    _validate_netconf(topology, role, subnets, join_subnets, transit, internal, name)
    return transit


def check_overlaps(
    topology: str,
    role: str,
    subnets: list[str],
    join_subnets: list[str] | None,
    *,
    cluster_networks: list[str],
    service_networks: list[str],
    masquerade: Sequence[str] = DEFAULT_MASQUERADE_SUBNETS,
    default_join: Sequence[str] = DEFAULT_JOIN_SUBNETS,
    transit: Sequence[str] = DEFAULT_TRANSIT_SUBNETS,
    name: str,
) -> str | None:
    """The NetworkCreated=False message OVN-K would set for these subnets, or None if they are accepted.

    ``subnets`` are written as in the NAD config (Layer3 entries may carry ``/hostSubnet``);
    ``join_subnets`` None means the default 100.65.0.0/16,fd99::/64; ``name`` is the OVN network name
    (``cluster_udn_<cudn>``), used in the IP-family message. Layer3 and Layer2-secondary errors carry
    "invalid subnet configuration: "; Layer2-primary ones fail earlier, while placing the transit
    subnet, and do not. Overlap between different UDNs is allowed and not checked.
    """
    internal = InternalSubnets(
        cluster_networks=tuple(cluster_networks),
        service_networks=tuple(service_networks),
        masquerade=tuple(masquerade),
        default_join=tuple(default_join),
        transit=tuple(transit),
    )
    try:
        _render_checks(topology.lower(), role.lower(), subnets, join_subnets, internal, name)
    except _Invalid as exc:
        return _GENERATE + _RENDER + str(exc)
    return None


# -- NAD rendering ----------------------------------------------------------------------------------
def _spec_of(obj: Mapping[str, Any], cluster_udn: bool) -> Mapping[str, Any]:
    spec = obj.get("spec") or {}
    return (spec.get("network") or {}) if cluster_udn else spec


def _layer3_subnets(cfg: Mapping[str, Any]) -> list[str]:
    out = []
    for s in cfg.get("subnets") or []:
        host = int(s.get("hostSubnet") or 0)
        out.append(f"{s['cidr']}/{host}" if host > 0 else str(s["cidr"]))
    return out


def render_cni_config(
    obj: Mapping[str, Any],
    namespace: str,
    *,
    cluster_udn: bool = True,
    cni_version: str = CNI_VERSION_V1_2,
    internal: InternalSubnets | None = None,
) -> dict[str, Any]:
    """The CNI network config (as a dict) OVN-K renders for ``obj`` in ``namespace``.

    Raises NADRenderError with the full condition message when OVN-K would refuse it.
    """
    internal = internal or InternalSubnets()
    name = obj["metadata"]["name"]
    net_name = CUDN_PREFIX + name if cluster_udn else f"{namespace}_{name}"
    spec = _spec_of(obj, cluster_udn)
    topology_crd = str(spec.get("topology", ""))
    topology = topology_crd.lower()
    cfg = spec.get(topology)
    if topology not in ("layer2", "layer3", "localnet") or cfg is None:
        raise NADRenderError(
            f"{_GENERATE}invalid topology specified: "
            f"topology {topology_crd} is specified but {topology_crd} config is nil"
        )
    if topology == "localnet":
        raise NADRenderError(f"{_GENERATE}{_RENDER}Localnet topology is not simulated")
    role = str(cfg.get("role", "")).lower()
    mtu = int(cfg.get("mtu") or 0)
    user_join = list(cfg.get("joinSubnets") or []) or None
    join = (user_join or list(DEFAULT_UDN_JOIN_SUBNETS)) if role == "primary" else None
    persistent = False
    try:
        if topology == "layer3":
            subnets = _layer3_subnets(cfg)
        else:
            subnets = [str(s) for s in cfg.get("subnets") or []]
            ipam = cfg.get("ipam") or {}
            mode = ipam.get("mode") or "Enabled"
            persistent = ipam.get("lifecycle") == "Persistent"
            if persistent and mode != "Enabled":
                raise _Invalid("lifecycle Persistent is only supported when ipam.mode is Enabled")
            if mode == "Enabled" and not subnets:
                raise _Invalid("subnets is required with ipam.mode is Enabled or unset")
            if mode != "Enabled" and subnets:
                raise _Invalid("subnets must be unset when ipam.mode is Disabled")
        transit = _render_checks(topology, role, subnets, join, internal, net_name, allow_persistent_ips=persistent)
    except _Invalid as exc:
        raise NADRenderError(_GENERATE + _RENDER + str(exc)) from None

    conf: dict[str, Any] = {
        "cniVersion": cni_version,
        "type": OVN_K8S_CNI_OVERLAY,
        "name": net_name,
        "netAttachDefName": nad_key(namespace, name),
        "role": role,
        "topology": topology,
    }
    if join:
        conf["joinSubnet"] = ",".join(join)
    if transit:
        conf["transitSubnet"] = ",".join(transit)
    if subnets:
        conf["subnets"] = ",".join(subnets)
    if mtu > 0:
        conf["mtu"] = mtu
    if persistent:
        conf["allowPersistentIPs"] = True
    return conf


def render_nad(
    cudn: Mapping[str, Any],
    namespace: str,
    *,
    cluster_udn: bool = True,
    cni_version: str = CNI_VERSION_V1_2,
    internal: InternalSubnets | None = None,
) -> dict[str, Any]:
    """The NetworkAttachmentDefinition OVN-K creates for a CUDN (or, ``cluster_udn=False``, a UDN).

    ``internal`` describes the cluster's networks for validation and for placing a Layer2 primary
    transit subnet; without it only the OVN-K internal subnets are checked.
    Raises NADRenderError (full condition message) when OVN-K would refuse the network.
    """
    if not namespace:
        raise NADRenderError(_GENERATE + "namespace should not be empty")
    meta = cudn["metadata"]
    conf = render_cni_config(cudn, namespace, cluster_udn=cluster_udn, cni_version=cni_version, internal=internal)
    labels = {LABEL_UDN: ""}
    labels.update(meta.get("labels") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith(OVN_K8S_PREFIX)}
    owner = {
        "apiVersion": UDN_API_VERSION,
        "kind": "ClusterUserDefinedNetwork" if cluster_udn else "UserDefinedNetwork",
        "name": meta["name"],
        "uid": meta.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }
    metadata: dict[str, Any] = {
        "name": meta["name"],
        "namespace": namespace,
        "labels": dict(sorted(labels.items())),
    }
    if annotations:
        metadata["annotations"] = dict(sorted(annotations.items()))
    metadata["ownerReferences"] = [owner]
    metadata["finalizers"] = [FINALIZER_UDN]
    return {
        "apiVersion": NAD_API_VERSION,
        "kind": "NetworkAttachmentDefinition",
        "metadata": metadata,
        "spec": {"config": _go_json(conf)},
    }


def is_primary_ovn_nad(nad: Mapping[str, Any]) -> bool:
    """Whether a NAD is an OVN-K primary network (what PrimaryNetAttachDefNotExist looks for)."""
    try:
        conf = json.loads((nad.get("spec") or {}).get("config") or "{}")
    except ValueError:
        return False
    return conf.get("type") == OVN_K8S_CNI_OVERLAY and conf.get("role") == "primary"


# -- per-namespace errors and status messages -------------------------------------------------------
def invalid_primary_network_error(namespace: str) -> str:
    """Primary network, namespace without the required label: no NAD is created there."""
    return (
        f'invalid primary network state for namespace "{namespace}": '
        "a valid primary user defined network or network attachment definition custom resource, "
        f'and required namespace label "{LABEL_PRIMARY_UDN}" must both be present'
    )


def primary_network_exists_error(namespace: str, nad_name: str) -> str:
    """Another OVN-K primary NAD already lives in the namespace."""
    return f'primary network already exist in namespace "{namespace}": "{nad_name}"'


def foreign_nad_error(namespace: str, name: str) -> str:
    """A NAD of the wanted name exists but is not controlled by this (C)UDN."""
    return f"foreign NetworkAttachmentDefinition with the desired name already exist [{namespace}/{name}]"


def network_in_use_error(pods: Iterable[str]) -> str:
    """Pods (``ns/name``) still carry the NAD key in ``k8s.ovn.org/pod-networks``."""
    return f"network in use by the following pods: {_go_list(sorted(pods))}"


def nad_delete_error(namespace: str, name: str, cause: str) -> str:
    """Wrapper used when a NAD cannot be removed (deletion or namespace no longer selected)."""
    return f"failed to delete NetworkAttachmentDefinition [{namespace}/{name}]: {cause}"


def controller_still_running_error(cudn_name: str, *, cluster_udn: bool = True, namespace: str = "") -> str:
    """Deletion waits until OVN-K has stopped the network's controller."""
    if cluster_udn:
        return f"cannot remove cluster UDN, controller for network {CUDN_PREFIX}{cudn_name} is still running"
    return f"cannot remove UDN, controller for network {namespace}_{cudn_name} is still running"


def network_created_message(namespaces: Iterable[str]) -> str:
    """NetworkCreated=True message of a CUDN (namespaces sorted, as OVN-K sorts the NADs)."""
    joined = ", ".join(sorted(namespaces))
    return f"NetworkAttachmentDefinition has been created in following namespaces: [{joined}]"


def network_created_condition(
    namespaces: Iterable[str],
    errors: Sequence[str] = (),
    deleting: Iterable[str] = (),
) -> dict[str, str]:
    """CUDN NetworkCreated condition (type/status/reason/message; the caller adds timestamps).

    ``namespaces``: those whose NAD exists and is in sync; ``deleting``: ``ns/name`` keys of NADs with a
    deletionTimestamp; ``errors``: per-namespace error texts, joined with newlines like errors.Join.
    """
    ns = sorted(namespaces)
    cond = {
        "type": CONDITION_NETWORK_CREATED,
        "status": "True",
        "reason": REASON_NAD_CREATED,
        "message": network_created_message(ns),
    }
    deleting_keys = sorted(deleting)
    if deleting_keys:
        cond.update(
            status="False",
            reason=REASON_NAD_DELETED,
            message=f"NetworkAttachmentDefinition are being deleted: {_go_list(deleting_keys)}",
        )
    if errors:
        cond.update(status="False", reason=REASON_NAD_SYNC_ERROR, message="\n".join(errors))
    return cond


def udn_network_created_condition(error: str | None = None, *, deleting: bool = False) -> dict[str, str]:
    """NetworkCreated condition of a namespaced UserDefinedNetwork."""
    cond = {
        "type": CONDITION_NETWORK_CREATED,
        "status": "True",
        "reason": REASON_NAD_CREATED,
        "message": MSG_UDN_NAD_CREATED,
    }
    if deleting:
        cond.update(status="False", reason=REASON_NAD_DELETED, message=MSG_UDN_NAD_DELETING)
    if error:
        cond.update(status="False", reason=REASON_SYNC_ERROR, message=error)
    return cond


def network_allocation_condition(error_node: str | None = None) -> dict[str, str]:
    """NetworkAllocationSucceeded condition; OVN-K names only one failing node."""
    if not error_node:
        return {
            "type": CONDITION_NETWORK_ALLOCATION,
            "status": "True",
            "reason": REASON_ALLOCATION_SUCCEEDED,
            "message": MSG_ALLOCATION_SUCCEEDED,
        }
    return {
        "type": CONDITION_NETWORK_ALLOCATION,
        "status": "False",
        "reason": REASON_ALLOCATION_INTERNAL_ERROR,
        "message": (f"Network allocation failed for at least one node: {error_node}, check UDN events for more info."),
    }


def node_allocation_error(node: str, network: str) -> str:
    """Error of a node that got no subnet because the network's ranges are exhausted."""
    return f"error allocating network for node {node}, network name {network}: {ERR_NO_SUBNETS_AVAILABLE}"


def network_allocation_failed_event(node: str, error: str) -> dict[str, str]:
    """The Warning event OVN-K records on the (C)UDN for a node allocation failure."""
    return {
        "type": "Warning",
        "reason": EVENT_REASON_ALLOCATION_FAILED,
        "message": f"Error occurred for node {node}: {error}",
    }
