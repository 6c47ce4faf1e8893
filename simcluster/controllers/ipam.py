"""IPAM and the network model: which network a VM is on, which address it holds, who holds an address.

Plays OVN-K's cluster manager (node subnets per network, `k8s.ovn.org/node-subnets`, the
`NetworkAllocationSucceeded` condition), OVN-K's pod IPAM (addresses inside node subnets for
Layer3, from the whole subnet for Layer2, the default network from clusterNetwork), and the
IPAMClaim persistence of kubevirt/ipam-extensions (Layer2 `allowPersistentIPs`).

A network is learned from the NetworkAttachmentDefinitions the UDN controller renders, exactly as
OVN-K's network manager reads them: a namespace's primary network is its primary
ovn-k8s-cni-overlay NAD. The KubeVirt and migration controllers call `attach`, `detach`,
`prepare_migration` and `finish_migration`; the console asks `holder` who answers a ping.

Next to each VM's port (its ``Attachment``) it keeps what the guest itself configured at boot
(``simcluster.vmnet.GuestNic``): on Layer3 nothing answers the guest's DHCP, and after a live
migration the guest keeps its MAC and configuration while the target pod's port may have changed.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from simcluster import kinds
from simcluster.controllers.base import Controller, Runtime
from simcluster.ovn import (
    ERR_SUBNET_EXHAUSTED,
    DefaultNetworkIPAM,
    Layer2Pool,
    NodeNetworkIPAM,
    PersistentClaims,
    network_allocation_condition,
    network_allocation_failed_event,
    node_allocation_error,
)
from simcluster.ovn.subnets import NODE_SUBNETS_ANNOTATION, node_subnets_annotation, parse_node_subnets_annotation
from simcluster.store import Event
from simcluster.vmnet import GuestNic, dhcp_served
from simcluster.vmnet import boot as boot_nic

log = logging.getLogger("simcluster.ipam")

DEFAULT_NETWORK = "default"
CLAIM_FINALIZER = "kubevirt.io/persistent-ipam"


@dataclass
class Network:
    """One OVN network as a NAD's CNI config describes it."""

    name: str  # OVN network name: cluster_udn_<cudn>, <ns>_<udn>, or "default"
    topology: str  # layer3 | layer2
    role: str  # primary | secondary
    subnets: list[tuple[str, int | None]]  # (cidr, hostSubnet) for layer3; (cidr, None) for layer2
    persistent_ips: bool = False
    mtu: int | None = None
    owner: tuple[str, str, str] | None = None  # (resource key, namespace, name) of the CUDN/UDN
    namespaces: set[str] = field(default_factory=set)
    layer3: NodeNetworkIPAM | None = None
    layer2: Layer2Pool | None = None
    claims: PersistentClaims | None = None
    failed_nodes: list[str] = field(default_factory=list)

    @property
    def is_udn(self) -> bool:
        return self.name != DEFAULT_NETWORK


@dataclass
class Attachment:
    """A VM's address on its primary network on one node."""

    network: str
    node: str
    ips: list[str]  # bare addresses, one per family
    prefixed: list[str]  # with prefix length, as pod-networks and the guest show them
    gateways: list[str]
    mac: str
    pod_interface: str  # ovn-udn1 on a primary UDN, eth0 on the default network
    topology: str
    claim: str | None = None
    role: str = "primary"


def mac_for(ip: str) -> str:
    """OVN-K derives a pod's MAC from its IPv4 address: 0a:58 + the four octets."""
    addr = ipaddress.ip_address(ip)
    if addr.version == 4:
        return "0a:58:" + ":".join(f"{b:02x}" for b in addr.packed)
    return "0a:58:" + ":".join(f"{b:02x}" for b in addr.packed[-4:])


def parse_nad_network(nad: dict[str, Any]) -> Network | None:
    """The network a NAD describes, or None when it is not an OVN-K overlay network."""
    try:
        conf = json.loads((nad.get("spec") or {}).get("config") or "{}")
    except ValueError:
        return None
    if conf.get("type") != "ovn-k8s-cni-overlay":
        return None
    topology = str(conf.get("topology", "")).lower()
    subnets: list[tuple[str, int | None]] = []
    for entry in filter(None, (s.strip() for s in str(conf.get("subnets", "")).split(","))):
        parts = entry.split("/")
        if topology == "layer3" and len(parts) == 3:
            subnets.append((f"{parts[0]}/{parts[1]}", int(parts[2])))
        else:
            subnets.append((entry, None))
    return Network(
        name=str(conf.get("name", "")),
        topology=topology,
        role=str(conf.get("role", "secondary")),
        subnets=subnets,
        persistent_ips=bool(conf.get("allowPersistentIPs")),
        mtu=int(conf["mtu"]) if isinstance(conf.get("mtu"), int) else None,
    )


class IPAMController(Controller):
    name = "ipam"
    resources = (kinds.NAD, kinds.NODE, kinds.IPAMCLAIM, kinds.NETWORK_CONFIG)

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.networks: dict[str, Network] = {}
        self.by_namespace: dict[str, str] = {}  # namespace → its primary network name
        self.attachments: dict[tuple[str, str], Attachment] = {}  # (ns, vmi) → current attachment
        self.migration_targets: dict[tuple[str, str], Attachment] = {}
        self.holders: dict[tuple[str, str], tuple[str, str]] = {}  # (network, ip) → (ns, vmi)
        self.nics: dict[tuple[str, str], GuestNic] = {}  # (ns, vmi) → the guest's eth0 since its boot
        self.default = self._default_network()

    # ---- networks ------------------------------------------------------------------------
    def _default_network(self) -> Network:
        cfg = self.store.try_get(kinds.NETWORK_CONFIG, "", "cluster")
        entries = (cfg or {}).get("spec", {}).get("clusterNetwork") or self.rt.config.cluster_network
        net = Network(DEFAULT_NETWORK, "layer3", "primary", [(e["cidr"], e.get("hostPrefix")) for e in entries])
        net.layer3 = DefaultNetworkIPAM.from_cluster_network(entries)
        return net

    def resync(self) -> None:
        annotations = {
            n["metadata"]["name"]: parse_node_subnets_annotation(
                (n["metadata"].get("annotations") or {}).get(NODE_SUBNETS_ANNOTATION)
            )
            for n in self.store.items(kinds.NODE)
        }
        for node, nets in annotations.items():
            if DEFAULT_NETWORK in nets and self.default.layer3 is not None:
                try:
                    self.default.layer3.restore_node(node, nets[DEFAULT_NETWORK])
                except ValueError:
                    log.warning("node %s: default subnet annotation conflicts; reallocating", node)
        for nad in self.store.items(kinds.NAD):
            self._learn(nad, annotations)
        for node in sorted(annotations):
            self._ensure_node(node)
        self._restore_workloads()

    def _restore_workloads(self) -> None:
        """After a restart from a state file: re-take the addresses running VMIs and claims hold."""
        for claim in self.store.items(kinds.IPAMCLAIM):
            net = self.networks.get((claim.get("spec") or {}).get("network", ""))
            ips = [i.split("/")[0] for i in (claim.get("status") or {}).get("ips") or []]
            if net and net.claims is not None and ips:
                net.claims.restore(self._claim_key(claim["metadata"]["namespace"], claim["metadata"]["name"]), ips)
        for vmi in self.store.items(kinds.VMI):
            st = vmi.get("status") or {}
            node = st.get("nodeName")
            ifaces = st.get("interfaces") or []
            if not node or not ifaces or st.get("phase") in ("Succeeded", "Failed"):
                continue
            ns, name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
            net = self.network_for_namespace(ns)
            ips = [i for i in ifaces[0].get("ipAddresses") or [] if i]
            if net.layer3 is not None:
                net.layer3.allocate_specific(node, ips)
            elif net.layer2 is not None and not net.persistent_ips:
                net.layer2.allocate_specific(ips)
            att = self._attachment(net, node, ips, None)
            self.attachments[(ns, name)] = att
            for ip in ips:
                self.holders[(net.name, ip)] = (ns, name)
            if st.get("phase") == "Running":
                # the guest's own state is not in the API: after a simulator restart it boots afresh
                self.boot_guest(ns, name)
        for pod in self.store.items(kinds.POD):
            st = pod.get("status") or {}
            node = (pod.get("spec") or {}).get("nodeName")
            if node and st.get("podIP") and st.get("phase") not in ("Succeeded", "Failed") and self.default.layer3:
                self.default.layer3.allocate_specific(node, [st["podIP"]])

    def _learn(self, nad: dict[str, Any], annotations: dict[str, dict[str, list[str]]] | None = None) -> None:
        parsed = parse_nad_network(nad)
        if parsed is None:
            return
        ns = nad["metadata"]["namespace"]
        net = self.networks.get(parsed.name)
        if net is None:
            net = parsed
            if net.topology == "layer3":
                net.layer3 = NodeNetworkIPAM(net.subnets)
                for node, nets in (annotations or {}).items():
                    if net.name in nets:
                        try:
                            net.layer3.restore_node(node, nets[net.name])
                        except ValueError:
                            log.warning("node %s: subnet annotation for %s conflicts", node, net.name)
            else:
                net.layer2 = Layer2Pool([c for c, _ in net.subnets])
                net.claims = PersistentClaims(net.layer2) if net.persistent_ips else None
            owner = next((r for r in nad["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
            if owner is not None:
                rt = kinds.CUDN if owner.get("kind") == "ClusterUserDefinedNetwork" else kinds.UDN
                net.owner = (rt.key, "" if rt is kinds.CUDN else ns, owner.get("name", ""))
            self.networks[net.name] = net
            if net.layer3 is not None:
                for node in sorted(n["metadata"]["name"] for n in self.store.items(kinds.NODE)):
                    self._ensure_node(node, only=net)
            # cluster-manager runs a network controller (whose init resets NetworkAllocationSucceeded)
            # for every Layer3 and Layer2 network, and Localnet ones with subnets
            # (user_defined_network_cluster_manager.go isTopologyManaged; network_cluster_controller.go resetStatus)
            if net.topology in ("layer3", "layer2") or (net.topology == "localnet" and net.subnets):
                self._report_allocation(net)
        net.namespaces.add(ns)
        if net.role == "primary":
            self.by_namespace[ns] = net.name

    def _forget(self, nad: dict[str, Any]) -> None:
        parsed = parse_nad_network(nad)
        ns = nad["metadata"]["namespace"]
        if parsed is None:
            return
        net = self.networks.get(parsed.name)
        if net is None or ns not in net.namespaces:
            return
        if self.by_namespace.get(ns) == parsed.name:
            del self.by_namespace[ns]
        net.namespaces.discard(ns)
        if not net.namespaces:
            del self.networks[net.name]
            for node in list(self._node_names()):
                self._annotate(node, net.name, None)

    def network_for_namespace(self, namespace: str) -> Network:
        name = self.by_namespace.get(namespace)
        return self.networks[name] if name else self.default

    def namespace_wants_udn(self, namespace: str) -> bool:
        ns = self.store.try_get(kinds.NAMESPACE, "", namespace)
        return ns is not None and "k8s.ovn.org/primary-user-defined-network" in (ns["metadata"].get("labels") or {})

    # ---- nodes ---------------------------------------------------------------------------
    def _node_names(self) -> list[str]:
        return sorted(n["metadata"]["name"] for n in self.store.items(kinds.NODE))

    def _ensure_node(self, node: str, only: Network | None = None) -> None:
        nets = [only] if only else [self.default, *self.networks.values()]
        for net in nets:
            if net.layer3 is None:
                continue
            subnets = net.layer3.ensure_node(node)
            if subnets is None:
                if node not in net.failed_nodes:
                    net.failed_nodes.append(node)
                continue
            if node in net.failed_nodes:
                net.failed_nodes.remove(node)
            self._annotate(node, net.name, subnets)

    def _annotate(self, node: str, network: str, subnets: list[str] | None) -> None:
        def edit(obj: dict[str, Any]) -> None:
            ann = obj["metadata"].setdefault("annotations", {})
            value = node_subnets_annotation(ann.get(NODE_SUBNETS_ANNOTATION), network, subnets)
            if value is None:
                ann.pop(NODE_SUBNETS_ANNOTATION, None)
            else:
                ann[NODE_SUBNETS_ANNOTATION] = value

        self.rt.mutate(kinds.NODE, "", node, edit)

    def _report_allocation(self, net: Network) -> None:
        """NetworkAllocationSucceeded on the owning CUDN/UDN, and a Warning event per failed node."""
        if net.owner is None:
            return
        key, ns, name = net.owner
        rt = kinds.BY_KEY[key]
        failed = net.failed_nodes[0] if net.failed_nodes else None
        cond = network_allocation_condition(failed)
        owner = self.store.try_get(rt, ns, name)
        if owner is None:
            return
        if failed:
            ev = network_allocation_failed_event(failed, node_allocation_error(failed, net.name))
            self.rt.event(owner, ev["reason"], ev["message"], ev["type"], component="cluster-manager")

        def set_condition(obj: dict[str, Any]) -> None:
            conds = obj.setdefault("status", {}).setdefault("conditions", [])
            old = next((c for c in conds if c.get("type") == cond["type"]), None)
            new = dict(cond)
            new["lastTransitionTime"] = (
                old["lastTransitionTime"]
                if old and old.get("status") == new["status"] and old.get("lastTransitionTime")
                else _now()
            )
            if old is not None:
                conds[conds.index(old)] = new
            else:
                conds.append(new)

        self.rt.mutate(rt, ns, name, set_condition)

    # ---- events --------------------------------------------------------------------------
    def handle(self, ev: Event) -> None:
        if ev.resource == kinds.NAD.key:
            if ev.type == "DELETED" or ev.obj["metadata"].get("deletionTimestamp"):
                self._forget(ev.obj)
            else:
                self._learn(ev.obj)
        elif ev.resource == kinds.NODE.key:
            node = ev.obj["metadata"]["name"]
            if ev.type == "ADDED":
                self._ensure_node(node)
                for net in self.networks.values():
                    self._report_allocation(net)
            elif ev.type == "DELETED":
                for net in [self.default, *self.networks.values()]:
                    if net.layer3 is not None:
                        net.layer3.remove_node(node)
        elif ev.resource == kinds.IPAMCLAIM.key and ev.type == "DELETED":
            md = ev.obj["metadata"]
            claimed = self.networks.get((ev.obj.get("spec") or {}).get("network", ""))
            if claimed and claimed.claims is not None:
                claimed.claims.release(self._claim_key(md["namespace"], md["name"]))

    # ---- workloads -----------------------------------------------------------------------
    @staticmethod
    def _claim_key(namespace: str, claim: str) -> str:
        return f"{namespace}/{claim}"

    def _attachment(self, net: Network, node: str, ips: list[str], claim: str | None) -> Attachment:
        if net.layer3 is not None:
            prefixed, gateways = [], []
            for alloc in net.layer3.allocators(node) or []:
                for ip in ips:
                    if alloc.contains(ip):
                        prefixed.append(alloc.prefixed(ip))
                        gateways.append(alloc.gateway())
        else:
            assert net.layer2 is not None
            prefixed, gateways = net.layer2.prefixed(ips), net.layer2.gateways()
        return Attachment(
            net.name,
            node,
            ips,
            prefixed,
            gateways,
            mac_for(ips[0]) if ips else "",
            "ovn-udn1" if net.is_udn else "eth0",
            net.topology,
            claim,
            net.role,
        )

    def _allocate(
        self, net: Network, node: str, vmi: dict[str, Any], pod: str
    ) -> tuple[list[str] | None, str | None, str]:
        """Addresses for a VMI on `node`: (ips, claim name, error)."""
        if net.layer3 is not None:
            if net.layer3.node_subnets(node) is None:
                return (
                    None,
                    None,
                    (f"node {node} has no subnet for network {net.name}: " + node_allocation_error(node, net.name)),
                )
            ips = net.layer3.allocate(node)
            return ips, None, "" if ips else ERR_SUBNET_EXHAUSTED
        assert net.layer2 is not None
        if net.claims is not None:
            claim = self._ensure_claim(net, vmi)
            ips = net.claims.ensure(self._claim_key(vmi["metadata"]["namespace"], claim))
            if ips:
                self._claim_status(vmi["metadata"]["namespace"], claim, net, ips, pod, None)
            else:
                self._claim_status(vmi["metadata"]["namespace"], claim, net, [], pod, ERR_SUBNET_EXHAUSTED)
            return ips, claim, "" if ips else ERR_SUBNET_EXHAUSTED
        ips = net.layer2.allocate()
        return ips, None, "" if ips else ERR_SUBNET_EXHAUSTED

    def attach(self, vmi: dict[str, Any], node: str, pod: str = "") -> Attachment | str:
        """Give a VMI its primary-network addresses on `node` (for its launcher `pod`); an error
        message when it cannot start there."""
        ns, name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        key = (ns, name)
        if key in self.attachments:
            return self.attachments[key]
        if ns not in self.by_namespace and self.namespace_wants_udn(ns):
            return (
                f'failed to get primary network for namespace "{ns}": the namespace requires a primary '
                "user defined network, but no NetworkAttachmentDefinition for it exists yet"
            )
        net = self.network_for_namespace(ns)
        if net is self.default and net.layer3 is not None and net.layer3.node_subnets(node) is None:
            self._ensure_node(node, only=net)
        ips, claim, error = self._allocate(net, node, vmi, pod or f"virt-launcher-{name}")
        if not ips:
            return f"failed to allocate IP on node {node} for network {net.name}: {error}"
        att = self._attachment(net, node, ips, claim)
        self.attachments[key] = att
        for ip in ips:
            self.holders[(net.name, ip)] = key
        return att

    def detach(self, namespace: str, name: str) -> None:
        """The VMI stopped: free its addresses (a persistent claim keeps them for the VM)."""
        att = self.attachments.pop((namespace, name), None)
        target = self.migration_targets.pop((namespace, name), None)
        self.nics.pop((namespace, name), None)
        for a in (att, target):
            if a is None:
                continue
            self._release(a)

    def _release(self, att: Attachment) -> None:
        net = self.networks.get(att.network) if att.network != DEFAULT_NETWORK else self.default
        for ip in att.ips:
            self.holders.pop((att.network, ip), None)
        if net is None or att.claim is not None:
            return
        if net.layer3 is not None:
            net.layer3.release(att.node, att.ips)
        elif net.layer2 is not None:
            net.layer2.release(att.ips)

    def attachment(self, namespace: str, name: str) -> Attachment | None:
        return self.attachments.get((namespace, name))

    def network_of(self, att: Attachment) -> Network | None:
        return self.networks.get(att.network) if att.network != DEFAULT_NETWORK else self.default

    def boot_guest(self, namespace: str, name: str) -> GuestNic | None:
        """The guest boots on its current port: its NIC takes the port's MAC, and DHCP answers or not."""
        att = self.attachments.get((namespace, name))
        if att is None:
            return None
        net = self.network_of(att)
        nic = boot_nic(
            att.mac,
            att.prefixed,
            att.gateways,
            served=dhcp_served(att.topology, att.role, att.network != DEFAULT_NETWORK),
            addressing=self.rt.config.option("layer3GuestAddressing"),
            mtu=net.mtu if net is not None else None,
        )
        self.nics[(namespace, name)] = nic
        return nic

    def guest(self, namespace: str, name: str) -> GuestNic | None:
        """What the guest configured on eth0 at its boot (kept across live migrations)."""
        return self.nics.get((namespace, name))

    # ---- default-network addresses of pods (launcher pods on a primary UDN, virt-handler) ----
    def allocate_pod_address(self, node: str) -> tuple[str, str, str] | None:
        """A default-network address on `node` for a pod: (ip, ip/prefix, gateway)."""
        ipam = self.default.layer3
        if ipam is None:
            return None
        if ipam.node_subnets(node) is None:
            self._ensure_node(node, only=self.default)
        ips = ipam.allocate(node)
        if not ips:
            return None
        for alloc in ipam.allocators(node) or []:
            if alloc.contains(ips[0]):
                return ips[0], alloc.prefixed(ips[0]), alloc.gateway()
        return ips[0], ips[0] + "/32", ""

    def release_pod_address(self, node: str, ip: str) -> None:
        if self.default.layer3 is not None and ip:
            self.default.layer3.release(node, [ip])

    def holder(self, network: str, ip: str) -> tuple[str, str] | None:
        return self.holders.get((network, ip))

    def prepare_migration(self, vmi: dict[str, Any], target: str, pod: str = "") -> Attachment | str:
        """Addresses for the migration target `pod`: new ones from the target's subnet on Layer3 (and on
        Layer2 without persistent IPs), the claim's on Layer2 with persistent IPs (which then names
        the target pod as its owner, as OVN-K records the pod it allocated for)."""
        ns, name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        src = self.attachments.get((ns, name))
        if src is None:
            return "the VMI has no network attachment"
        net = self.networks.get(src.network) if src.network != DEFAULT_NETWORK else self.default
        if net is None:
            return f"network {src.network} is gone"
        if net.layer3 is None and (net.claims is not None or not net.is_udn):
            att = Attachment(
                src.network,
                target,
                list(src.ips),
                list(src.prefixed),
                list(src.gateways),
                src.mac,
                src.pod_interface,
                src.topology,
                src.claim,
                src.role,
            )
        elif net.layer3 is None:
            # Layer2 without persistent IPs: no IPAMClaim, so the target pod is allocated afresh
            assert net.layer2 is not None
            ips = net.layer2.allocate()
            if not ips:
                return f"failed to allocate IP on node {target} for network {net.name}: {ERR_SUBNET_EXHAUSTED}"
            att = self._attachment(net, target, ips, None)
            for ip in ips:
                self.holders.setdefault((net.name, ip), (ns, name))
        else:
            if net.layer3.node_subnets(target) is None:
                return f"node {target} has no subnet for network {net.name}"
            ips = net.layer3.allocate(target)
            if not ips:
                return f"failed to allocate IP on node {target} for network {net.name}: {ERR_SUBNET_EXHAUSTED}"
            att = self._attachment(net, target, ips, None)
            for ip in ips:
                self.holders.setdefault((net.name, ip), (ns, name))
        self.migration_targets[(ns, name)] = att
        if att.claim is not None and net.layer2 is not None and pod:
            self._claim_status(ns, att.claim, net, list(att.ips), pod, None)
        return att

    def finish_migration(self, namespace: str, name: str, succeeded: bool) -> Attachment | None:
        """Switch to the target's addresses on success (freeing the source's), or drop the target's."""
        key = (namespace, name)
        target = self.migration_targets.pop(key, None)
        if target is None:
            return self.attachments.get(key)
        source = self.attachments.get(key)
        if not succeeded:
            if source is None or target.ips != source.ips:
                self._release(target)
            return source
        if source is not None and source.ips != target.ips:
            self._release(source)
        if source is not None and source.ips == target.ips:
            pass  # Layer2: the same addresses move with the VM
        self.attachments[key] = target
        for ip in target.ips:
            self.holders[(target.network, ip)] = key
        if target.network == DEFAULT_NETWORK and key in self.nics:
            # on the default network KubeVirt's masquerade binding hides the pod's address from the
            # guest (NAT), so the guest stays reachable at the target pod's address
            self.boot_guest(namespace, name)
        return target

    # ---- IPAMClaims (kubevirt/ipam-extensions + OVN-K persistent IPs) --------------------
    def _claim_name(self, vmi: dict[str, Any]) -> str:
        nets = (vmi.get("spec") or {}).get("networks") or []
        pod_net = next((n["name"] for n in nets if "pod" in n), "default")
        return f"{vmi['metadata']['name']}.{pod_net}".lower()

    def _ensure_claim(self, net: Network, vmi: dict[str, Any]) -> str:
        ns = vmi["metadata"]["namespace"]
        name = self._claim_name(vmi)
        if self.store.try_get(kinds.IPAMCLAIM, ns, name) is None:
            owner = next(
                (r for r in vmi["metadata"].get("ownerReferences") or [] if r.get("kind") == "VirtualMachine"), None
            )
            ref = owner or {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstance",
                "name": vmi["metadata"]["name"],
                "uid": vmi["metadata"]["uid"],
            }
            self.store.create(
                kinds.IPAMCLAIM,
                {
                    "apiVersion": "k8s.cni.cncf.io/v1alpha1",
                    "kind": "IPAMClaim",
                    "metadata": {
                        "name": name,
                        "namespace": ns,
                        "finalizers": [CLAIM_FINALIZER],
                        "labels": {"kubevirt.io/vm": vmi["metadata"]["name"]},
                        "ownerReferences": [
                            {
                                "apiVersion": ref["apiVersion"],
                                "kind": ref["kind"],
                                "name": ref["name"],
                                "uid": ref["uid"],
                                "controller": True,
                                "blockOwnerDeletion": True,
                            }
                        ],
                    },
                    "spec": {"network": net.name, "interface": "ovn-udn1"},
                },
            )
        return name

    def _claim_status(self, ns: str, claim: str, net: Network, ips: list[str], pod: str, error: str | None) -> None:
        assert net.layer2 is not None
        cond = (
            {
                "type": "IPsAllocated",
                "status": "True",
                "reason": "SuccessfulAllocation",
                "message": "IPs allocated successfully",
            }
            if not error
            else {"type": "IPsAllocated", "status": "False", "reason": "SubnetExhausted", "message": error}
        )

        def edit(obj: dict[str, Any]) -> None:
            obj["status"] = {
                "ips": net.layer2.prefixed(ips) if ips else [],  # type: ignore[union-attr]
                "ownerPod": {"name": pod},
                "conditions": [{**cond, "lastTransitionTime": _now()}],
            }

        self.rt.mutate(kinds.IPAMCLAIM, ns, claim, edit)

    def release_claims_of(self, namespace: str, vm: str) -> None:
        """The VM is being deleted and its VMI is gone: drop the claim's finalizer so GC can remove it."""
        for claim in self.store.items(kinds.IPAMCLAIM, namespace):
            if (claim["metadata"].get("labels") or {}).get("kubevirt.io/vm") != vm:
                continue
            self.rt.mutate(
                kinds.IPAMCLAIM,
                namespace,
                claim["metadata"]["name"],
                lambda o: o["metadata"].__setitem__(
                    "finalizers", [f for f in o["metadata"].get("finalizers") or [] if f != CLAIM_FINALIZER]
                ),
            )


def _now() -> str:
    from simcluster.store import now_rfc3339

    return now_rfc3339()
