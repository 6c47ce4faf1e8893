"""The bad-input catalogue (issue 9, item 3): one table of end-to-end cases — spec files, command-line
arguments and cluster states — each run through the real command line (`main([...])` in-process) and
judged on three things: the exit code, a message that names the field or object and says how to fix
it, and an unchanged cluster (every namespace, Secret, CUDN, NAD and VM, with its labels and spec,
listed before and after).

Spec and argument cases stop before any cluster call; cluster-state cases run the real `rollout`
(or `provision`) flow against a module simulated cluster and must stop at preflight (exit 3). Two
more small clusters lack CRDs (`ClusterConfig.missing_crds`): an OpenShift 4.16 without user-defined
networks, and a cluster without OpenShift Virtualization. Spec-level rules are covered field by field
in test_spec.py; this file proves the same inputs are refused end to end, before anything is written.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from simcluster import ClusterConfig, SimCluster
from tasks.kube import ClusterTarget, Kube, KubeError
from tasks.kube.resources import CUDN, LEASE, NAD, NAMESPACE, SECRET, VM
from tasks.render import render_cudn
from tasks.spec import load_spec
from udn_rollout import cli

pytestmark = pytest.mark.usefixtures("prefect_harness", "reports_root")

SPECS = Path(__file__).resolve().parent.parent / "specs"
SEED_L2 = yaml.safe_load((SPECS / "seed-l2.yaml").read_text())
SEED_L3 = yaml.safe_load((SPECS / "seed-l3.yaml").read_text())
PRIMARY = "k8s.ovn.org/primary-user-defined-network"


INVENTORY_KINDS = [NAMESPACE, SECRET, CUDN, NAD, VM, LEASE]
NO_UDN_CRDS = [
    "clusteruserdefinednetworks.k8s.ovn.org",
    "userdefinednetworks.k8s.ovn.org",
    "ipamclaims.k8s.cni.cncf.io",
]
NO_VIRT_CRDS = [
    "virtualmachines.kubevirt.io",
    "virtualmachineinstances.kubevirt.io",
    "virtualmachineinstancemigrations.kubevirt.io",
    "kubevirts.kubevirt.io",
]

_octets = itertools.count(60)


# ---- clusters -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clusters() -> Iterator[dict[str, SimCluster]]:
    """main: a healthy 3-node cluster; old-ocp: OpenShift 4.16 without UDN CRDs; no-virt: no KubeVirt."""
    with (
        SimCluster(config=ClusterConfig(nodes=3, profile="fast")) as main,
        SimCluster(config=ClusterConfig(nodes=2, openshift_version="4.16.9", missing_crds=list(NO_UDN_CRDS))) as old,
        SimCluster(config=ClusterConfig(nodes=2, missing_crds=list(NO_VIRT_CRDS))) as novirt,
    ):
        yield {"main": main, "old-ocp": old, "no-virt": novirt}


@pytest.fixture(scope="module")
def closed_port_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig whose API server does not answer (a port nobody listens on)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path_factory.mktemp("unreachable") / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "gone", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
                "current-context": "gone",
            }
        )
    )
    return path


def inventory(sim: SimCluster) -> dict[tuple[str, str, str], str]:
    """Every namespace, Secret, CUDN, NAD and VM → its labels and spec/data (not status, which
    controllers keep writing). Kinds the cluster does not serve are skipped."""
    kube = Kube(ClusterTarget(kubeconfig=str(sim.kubeconfig)), qps=0)
    out: dict[tuple[str, str, str], str] = {}
    try:
        for r in INVENTORY_KINDS:
            kind = r.kind
            try:
                items, _ = kube.list(r)
            except KubeError as e:
                if e.code == 404:
                    continue
                raise
            for o in items:
                md = o["metadata"]
                body = {k: v for k, v in o.items() if k not in ("metadata", "status")}
                body["labels"] = md.get("labels") or {}
                out[(kind, md.get("namespace", ""), md["name"])] = json.dumps(body, sort_keys=True)
    finally:
        kube.close()
    return out


# ---- the case table -------------------------------------------------------------------------------
@dataclass
class Ctx:
    """One case's unique names, so cases never see each other's objects."""

    uid: str
    sim: SimCluster
    tmp: Path
    unreachable: Path

    @property
    def run_id(self) -> str:
        return f"bad-{self.uid}"

    @property
    def net(self) -> str:
        return f"net-{self.uid}"

    @property
    def namespaces(self) -> list[str]:
        return [f"bad-{self.uid}-a", f"bad-{self.uid}-b"]

    def kube(self) -> Kube:
        return Kube(ClusterTarget(kubeconfig=str(self.sim.kubeconfig)), qps=0)


Edit = Callable[[dict[str, Any]], None]
State = Callable[[Ctx], Callable[[], None] | None]


@dataclass
class Case:
    id: str
    code: int
    says: tuple[str, ...]  # every phrase must appear in what the user reads (stderr + stdout)
    spec: str | Edit | None = None  # raw file text, an edit of the seed document, or the seed as is
    sets: tuple[str, ...] = ()
    args: tuple[str, ...] = ()  # extra arguments; "{tmp}", "{kubeconfig}", "{unreachable}" are filled in
    cmd: str = "provision"
    base: str = "l2"
    state: State | None = None  # puts the cluster in a state before the run; may return a cleanup
    cluster: str = "main"
    spec_file: bool = True  # False: no -f at all
    cluster_args: bool = True  # False: no --kubeconfig (the case brings its own)
    extra: dict[str, Any] = field(default_factory=dict)


def put(path: str, value: Any) -> Edit:
    """Set a dotted path in the spec document (list indexes as numbers)."""

    def edit(doc: dict[str, Any]) -> None:
        node: Any = doc
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(keys[-1])] = value
        else:
            node[keys[-1]] = value

    return edit


# ---- cluster states -------------------------------------------------------------------------------
def _create_namespace(ctx: Ctx, name: str, labels: dict[str, str] | None = None) -> None:
    kube = ctx.kube()
    try:
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}})
    finally:
        kube.close()


def _wait(cond: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def ns_without_label(ctx: Ctx) -> None:
    _create_namespace(ctx, ctx.namespaces[1])


def ns_not_ours(ctx: Ctx) -> None:
    _create_namespace(ctx, ctx.namespaces[0], {PRIMARY: ""})


def ns_with_other_primary(ctx: Ctx) -> None:
    taken, other = ctx.namespaces[0], f"other-{ctx.uid}"
    _create_namespace(ctx, taken, {PRIMARY: ""})
    kube = ctx.kube()
    try:
        kube.create(
            {
                "apiVersion": "k8s.ovn.org/v1",
                "kind": "ClusterUserDefinedNetwork",
                "metadata": {"name": other},
                "spec": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": taken}},
                    "network": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["10.250.0.0/24"]}},
                },
            }
        )
        _wait(lambda: kube.get(NAD, other, taken) is not None, f"NAD {other} in {taken}")
    finally:
        kube.close()


def cudn_other_spec(ctx: Ctx) -> None:
    kube = ctx.kube()
    try:
        kube.create(
            {
                "apiVersion": "k8s.ovn.org/v1",
                "kind": "ClusterUserDefinedNetwork",
                "metadata": {"name": ctx.net},
                "spec": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "nowhere"}},
                    "network": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["10.251.0.0/24"]}},
                },
            }
        )
    finally:
        kube.close()


def cudn_of_another_run(ctx: Ctx) -> None:
    """The very network this spec renders, created by another run id."""
    spec_file = ctx.tmp / "spec.yaml"
    other = load_spec(spec_file, run_id=f"other-{ctx.uid}")
    kube = ctx.kube()
    try:
        kube.create(render_cudn(other))
    finally:
        kube.close()


def deny(*rules: dict[str, Any]) -> State:
    """Everything allowed except what the rules leave out (the policy is an allow-list)."""

    def state(ctx: Ctx) -> Callable[[], None]:
        ctx.sim.set_policy(rules=list(rules))
        return lambda: ctx.sim.set_policy(allow_all=True)

    return state


def lease_held_by_another_run(ctx: Ctx) -> Callable[[], None]:
    """A live run on this very network: its Lease renewed just now, by a process that exists (ours)."""
    import os
    import socket
    from datetime import UTC, datetime

    from tasks.lock import LOCK_LABEL, NAMESPACES_ANNOTATION, NETWORK_ANNOTATION, RUN_ANNOTATION, lease_name

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kube = ctx.kube()
    name = lease_name(ctx.net)
    try:
        kube.create(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": name,
                    "namespace": "default",
                    "labels": {LOCK_LABEL: "true", "app.kubernetes.io/managed-by": "udn-rollout"},
                    "annotations": {
                        RUN_ANNOTATION: f"busy-{ctx.uid}",
                        NETWORK_ANNOTATION: ctx.net,
                        NAMESPACES_ANNOTATION: ",".join(ctx.namespaces),
                    },
                },
                "spec": {
                    "holderIdentity": f"busy-{ctx.uid}@{socket.gethostname()}:{os.getpid()}",
                    "leaseDurationSeconds": 600,
                    "acquireTime": now,
                    "renewTime": now,
                },
            }
        )
    finally:
        kube.close()

    def cleanup() -> None:
        k = ctx.kube()
        try:
            k.delete(LEASE, name, "default")
        finally:
            k.close()

    return cleanup


def admission_denies(kind: str, message: str) -> State:
    """The cluster's own admission refuses a kind (a site webhook or quota): only a dry run finds it."""

    def state(ctx: Ctx) -> Callable[[], None]:
        ctx.sim.set_faults(admission_deny={kind: message})
        return lambda: ctx.sim.set_faults(admission_deny={})

    return state


ALL_BUT_CREATE_CUDN = deny(
    {"verbs": ["get", "list", "watch", "delete", "patch", "update", "deletecollection"]},
    {"verbs": ["create"], "apiGroups": ["", "kubevirt.io", "authorization.k8s.io"]},
)

U, P, C = cli.EXIT_USAGE, cli.EXIT_PREFLIGHT, cli.EXIT_CLUSTER

CASES: list[Case] = [
    # ---- spec files ----
    Case("file: YAML syntax error", U, ("YAML syntax error at line 3", "fix the indentation or quoting"),
         spec="network:\n  name: [unclosed\n  topology: Layer2\n"),
    Case("file: tab indentation", U, ("YAML syntax error at line 2", "'\\t'", "fix the indentation"),
         spec="network:\n\tname: a\n"),
    Case("file: a list, not a mapping", U, ("must be a mapping",), spec="- network\n- vms\n"),
    Case("file: two YAML documents", U, ("2 YAML documents", "keep one spec per file"),
         spec="network: {name: a}\n---\nnetwork: {name: b}\n"),
    Case("file: empty", U, ("network is required", "add a network section"), spec=""),
    Case("file: a key given twice", U, ("'vms' is given twice, on line 5 and line 7", "keep one"),
         spec="network:\n  name: a\n  subnets: [10.9.0.0/16]\nnamespaces: {names: [a]}\nvms:\n  perNamespace: 1\nvms:\n"
              "  perNamespace: 5\n"),
    Case("file: an alias bomb", U, ("aliases expand to more than", "an alias bomb"),
         spec="a: &a [x, x, x, x, x, x, x, x, x]\n"
              + "".join(f"{n}: &{n} [" + ", ".join([f"*{p}"] * 9) + "]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))),
    Case("file: not UTF-8 text", U, ("not UTF-8", "save it as UTF-8"), spec="\udcff"),
    Case("unknown top-level key", U, ("networks", "did you mean 'network'"), spec=put("networks", {"name": "x"})),
    Case("unknown nested key", U, ("vms.perNamspace", "did you mean 'perNamespace'"), spec=put("vms.perNamspace", 3)),
    Case("network is a string", U, ("network", "must be a mapping", "key: value"), spec=put("network", "udn-a")),
    Case("subnets is a string", U, ("network.subnets", "must be a list", "- item"),
         spec=put("network.subnets", "10.9.0.0/16")),
    Case("perNamespace not a number", U, ("vms.perNamespace", "not a whole number", "write a number"),
         spec=put("vms.perNamespace", "many")),
    Case("persistentIPs not a boolean", U, ("network.persistentIPs", "write true or false"),
         sets=("network.persistentIPs=maybe",)),
    Case("CIDR not a CIDR", U, ("network.subnets[0].cidr", "write it like 10.200.0.0/16"),
         spec=put("network.subnets", [{"cidr": "10.300.0.0/16"}])),
    Case("CIDR with host bits", U, ("network.subnets[0].cidr", "host bits set", "use the masked network 10.9.0.0/16"),
         spec=put("network.subnets", [{"cidr": "10.9.0.1/16"}])),
    Case("hostSubnet out of range", U, ("network.subnets[0].hostSubnet", "between 17 and 29"),
         base="l3", spec=put("network.subnets.0.hostSubnet", 12)),
    Case("mtu out of range", U, ("network.mtu", "between 576 and 65536"), spec=put("network.mtu", 100)),
    Case("cpu zero", U, ("vms.cpu", "between 1 and"), spec=put("vms.cpu", 0)),
    Case("memory not a quantity", U, ("vms.memory", "write it like 1Gi"), spec=put("vms.memory", "lots")),
    Case("churn fraction above 1", U, ("churn.fraction", "between 0 and 1"), spec=put("churn", {"fraction": 1.5})),
    Case("qps zero", U, ("api.qps", "greater than 0"), sets=("api.qps=0",)),
    Case("connectivity mode unknown", U, ("connectivity.mode", "use one of auto, full, sampled, off"),
         sets=("connectivity.mode=banana",)),
    Case("topology unknown", U, ("network.topology", "Layer3", "Layer2"), spec=put("network.topology", "Layer4")),
    Case("Layer2 with hostSubnet", U, ("network.subnets[0].hostSubnet", "Layer3 only", "remove it"),
         spec=put("network.subnets.0.hostSubnet", 24)),
    Case("Layer3 with persistentIPs", U, ("network.persistentIPs", "Layer2 only", "set topology: Layer2"),
         base="l3", spec=put("network.persistentIPs", True)),
    Case("names and prefix+count", U, ("namespaces.prefix", "either names, or prefix + count"),
         spec=put("namespaces", {"names": ["a"], "prefix": "p", "count": 2})),
    Case("churn count and fraction", U, ("churn.count", "keep one"),
         spec=put("churn", {"count": 2, "fraction": 0.5})),
    Case("network name not DNS-1123", U, ("network.name", "e.g. 'net-a'"), spec=put("network.name", "Net_A")),
    Case("namespace name not DNS-1123", U, ("namespaces.names[0]", "e.g. 'a-b'"),
         spec=put("namespaces.names", ["A_B"])),
    Case("VM name prefix not DNS-1123", U, ("vms.namePrefix", "e.g. 'vm-x'"), spec=put("vms.namePrefix", "VM_x")),
    Case("system namespace", U, ("namespaces.names[0]", "kube-system", "choose another name"),
         spec=put("namespaces.names", ["kube-system"])),
    Case("namespace listed twice", U, ("namespaces.names[1]", "listed twice", "remove the duplicate"),
         spec=put("namespaces.names", ["dup", "dup"])),
    Case("credentialsSecret not a name", U, ("vms.credentialsSecret", "e.g. 'bad-secret'"),
         spec=put("vms.credentialsSecret", "Bad Secret!")),
    Case("three subnets", U, ("network.subnets", "3 items", "between 1 and 2"),
         spec=put("network.subnets", [{"cidr": "10.9.0.0/16"}, {"cidr": "fd00::/64"}, {"cidr": "fd01::/64"}])),
    Case("own subnets overlap (both IPv4)", U, ("network.subnets[1].cidr", "both IPv4", "remove one"),
         spec=put("network.subnets", [{"cidr": "10.9.0.0/16"}, {"cidr": "10.9.1.0/24"}])),
    Case("own subnets overlap (both IPv6)", U, ("network.subnets[1].cidr", "both IPv6", "remove one"),
         spec=put("network.subnets", [{"cidr": "fd00::/48"}, {"cidr": "fd00::/64"}])),
    Case("too many VMs for a Layer2 subnet", U, ("network.subnets[0].cidr", "10.9.0.0/29", "use a larger subnet"),
         spec=put("network.subnets", [{"cidr": "10.9.0.0/29"}]), sets=("vms.perNamespace=5",)),
    Case("run id too long", U, ("runId", "at most 40 characters"), spec=put("runId", "r" * 64)),
    # ---- command-line arguments ----
    Case("no -f", U, ("needs a rollout spec: -f SPEC",), spec_file=False),
    Case("-f names no file", U, ("does not exist", "check the path given to -f"), args=("-f", "{tmp}/nope.yaml")),
    Case("-f names a directory", U, ("is a directory", "give the spec's YAML file to -f"), args=("-f", "{tmp}")),
    Case("--run-id not DNS-1123", U, ("runId", "Bad_Run", "e.g. 'bad-run'"), args=("--run-id", "Bad_Run")),
    Case("--set without '='", U, ("vms.perNamespace", "has no '='", "key.path=value"), sets=("vms.perNamespace",)),
    Case("--set with an empty path segment", U, ("network..name", "is not valid", "e.g. vms.perNamespace=10"),
         sets=("network..name=x",)),
    Case("--set on an unknown path", U, ("vms.colour", "valid keys here: perNamespace"), sets=("vms.colour=red",)),
    Case("--set a bad value", U, ("vms.perNamespace", "not a whole number"), sets=("vms.perNamespace=many",)),
    Case("--set a value out of range names the --set", U,
         ("from --set vms.perNamespace=-2", "from the command-line arguments"), sets=("vms.perNamespace=-2",)),
    Case("unknown command", U, ("invalid choice: 'provisoin'", "choose from"), cmd="provisoin"),
    Case("unknown option", U, ("unrecognized arguments: --dry", "usage: udn-rollout"), args=("--dry",)),
    Case("option value of the wrong type", U, ("--sim-nodes", "invalid int value: 'many'"),
         args=("--sim-nodes", "many")),
    Case("--kubeconfig names no file", C, ("kubeconfig", "does not exist", "--kubeconfig PATH", "--sim"),
         cluster_args=False, args=("--kubeconfig", "{tmp}/missing.kubeconfig")),
    Case("--context names no context", C, ("context 'nope'", "--context NAME"), args=("--context", "nope")),
    Case("API server unreachable", C, ("cannot reach the cluster at https://127.0.0.1:", "ConnectionError"),
         cluster_args=False, args=("--kubeconfig", "{unreachable}")),
    # ---- cluster states (preflight: exit 3, nothing changed) ----
    Case("namespace exists without the label", P,
         ("exist without the " + PRIMARY + " label", "{ns1}", "can only be set when a namespace is created"),
         cmd="rollout", state=ns_without_label),
    Case("namespace has another primary network", P,
         ("already have a primary network: {ns0} (other-{uid})", "one primary network"),
         cmd="rollout", state=ns_with_other_primary),
    Case("namespace exists, not from this run", P, ("were not created by this run: {ns0}", "use other names"),
         state=ns_not_ours),
    Case("CIDR overlaps clusterNetwork", P, ("10.128.0.0/16", "clusterNetwork", "network.subnets"),
         cmd="rollout", sets=("network.subnets[0].cidr=10.128.0.0/16",)),
    Case("CIDR overlaps serviceNetwork", P, ("172.30.0.0/16", "serviceNetwork", "network.subnets"),
         sets=("network.subnets[0].cidr=172.30.0.0/16",)),
    Case("CIDR overlaps the join subnet", P, ("100.64.0.0/16", "join subnet", "network.subnets"),
         base="l3", sets=("network.subnets[0].cidr=100.64.0.0/16",)),
    Case("CIDR overlaps the UDN join subnet", P, ("100.65.0.0/24", "join subnet", "network.subnets"),
         sets=("network.subnets[0].cidr=100.65.0.0/24",)),
    Case("CIDR overlaps the transit subnet (Layer3)", P, ("100.88.0.0/16", "transit", "network.subnets"),
         base="l3", sets=("network.subnets[0].cidr=100.88.0.0/16",)),
    Case("CIDR overlaps the masquerade subnet", P, ("169.254.0.0/17", "masquerade", "network.subnets"),
         sets=("network.subnets[0].cidr=169.254.0.0/17",)),
    Case("IPv6 subnet on an IPv4-only cluster", P,
         ("IP families", "the cluster has no IPv6", "network.subnets", "does not support ipv6"),
         spec=put("network.subnets", [{"cidr": "10.9.0.0/16"}, {"cidr": "fd00:9::/64"}])),
    Case("another run holds the network's lock", P,
         ("run lock", "another run is writing", "run busy-{uid}", "Lease udn-rollout-{net}"),
         state=lease_held_by_another_run, cmd="rollout"),
    Case("the cluster's admission refuses the VMs (dry run)", P,
         ("admission", "VirtualMachine", "denied the request: VMs need a cost centre label", "nothing"),
         state=admission_denies("VirtualMachine", "VMs need a cost centre label"), cmd="rollout"),
    Case("the cluster's admission refuses the network (dry run)", P,
         ("admission", "ClusterUserDefinedNetwork {net}", "denied the request: no new networks this week"),
         state=admission_denies("ClusterUserDefinedNetwork", "no new networks this week")),
    Case("CUDN of the same name, other spec", P, ("ClusterUserDefinedNetwork {net}", "immutable", "network.name"),
         cmd="rollout", state=cudn_other_spec),
    Case("CUDN of the same name, other run", P, ("ClusterUserDefinedNetwork {net}", "another run", "runId"),
         state=cudn_of_another_run),
    Case("Layer3 node subnets fewer than nodes", P, ("yields 2 node subnets for 3 nodes", "hostSubnet"),
         base="l3", sets=("network.subnets[0].cidr=10.59.0.0/24", "network.subnets[0].hostSubnet=25")),
    Case("more VMs than the nodes hold", P, ("free VM slots", "add nodes or plan fewer VMs"),
         sets=("vms.perNamespace=400",)),
    Case("missing permission: create CUDNs", P,
         ("missing: create clusteruserdefinednetworks.k8s.ovn.org", "ClusterRole"),
         cmd="rollout", state=ALL_BUT_CREATE_CUDN),
    Case("missing CRDs: OpenShift 4.16 without UDNs", P,
         ("missing: clusteruserdefinednetworks.k8s.ovn.org", "ipamclaims.k8s.cni.cncf.io", "OpenShift 4.16.9",
          "4.18 or newer: upgrade"),
         cmd="rollout", cluster="old-ocp"),
    Case("churn: unknown action", U, ("churn.action", "'evict' is not valid: use one of migrate, restart, drain"),
         spec=put("churn", {"action": "evict"})),
    Case("churn: nodes without action drain", U, ("churn.nodes is for action drain", "set churn.action: drain"),
         spec=put("churn", {"nodes": "all"})),
    Case("churn: drain without nodes", U, ("churn.action drain needs churn.nodes", "'all', a count"),
         spec=put("churn", {"action": "drain"})),
    Case("churn: drain with a count of VMs", U, ("drain moves every VM of the run", "count", "churn.nodes"),
         spec=put("churn", {"action": "drain", "nodes": 1, "count": 2})),
    Case("churn: drain a node that does not exist", P,
         ("churn.nodes: no node named worker-99", "use names from `oc get nodes`"),
         cmd="churn", spec=put("churn", {"action": "drain", "nodes": ["worker-99"]})),
    Case("missing CRDs: no OpenShift Virtualization", P,
         ("virtualmachines.kubevirt.io", "no KubeVirt CR found", "install OpenShift Virtualization"),
         cmd="rollout", cluster="no-virt"),
]  # fmt: skip


def _write_spec(case: Case, ctx: Ctx) -> Path:
    path = ctx.tmp / "spec.yaml"
    if isinstance(case.spec, str):
        if case.spec == "\udcff":  # stands for bytes that are not UTF-8
            path.write_bytes(b"network:\n  name: \xff\xfe\n")
        else:
            path.write_text(case.spec)
        return path
    doc = copy.deepcopy(SEED_L3 if case.base == "l3" else SEED_L2)
    doc["runId"] = ctx.run_id
    doc["network"]["name"] = ctx.net
    doc["network"]["subnets"][0]["cidr"] = f"10.{next(_octets)}.0.0/16"
    doc["namespaces"] = {"names": list(ctx.namespaces)}
    doc["connectivity"] = {"pingCount": 1, "pingTimeoutSeconds": 1}
    if case.spec is not None:
        case.spec(doc)
    path.write_text(yaml.safe_dump(doc))
    return path


def _argv(case: Case, ctx: Ctx, spec_path: Path) -> list[str]:
    fill = {"tmp": str(ctx.tmp), "kubeconfig": str(ctx.sim.kubeconfig), "unreachable": str(ctx.unreachable)}
    argv = [case.cmd]
    if case.spec_file:
        argv += ["-f", str(spec_path)]
    if case.cluster_args:
        argv += ["--kubeconfig", str(ctx.sim.kubeconfig)]
    for kv in case.sets:
        argv += ["--set", kv]
    argv += [a.format(**fill) for a in case.args]
    return argv


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    case: Case,
    clusters: dict[str, SimCluster],
    closed_port_kubeconfig: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import tasks.kube.client

    monkeypatch.setenv("COLUMNS", "400")  # the checks table on one line per check
    monkeypatch.setattr(tasks.kube.client, "BACKOFF_BASE", 0.001)
    ctx = Ctx(uuid.uuid4().hex[:6], clusters[case.cluster], tmp_path, closed_port_kubeconfig)
    spec_path = _write_spec(case, ctx)
    cleanup = case.state(ctx) if case.state else None
    try:
        time.sleep(0.05 if case.state else 0)  # let the controllers settle what the state created
        before = {name: inventory(sim) for name, sim in clusters.items()}
        capsys.readouterr()
        try:
            code = cli.main(_argv(case, ctx, spec_path))
        except SystemExit as e:  # argparse refuses before main's own handling
            code = e.code
        captured = capsys.readouterr()
        after = {name: inventory(sim) for name, sim in clusters.items()}
    finally:
        if cleanup:
            cleanup()
    said = _normalise(captured.err + "\n" + captured.out)
    assert code == case.code, said
    assert "Traceback" not in said
    fill = {"uid": ctx.uid, "net": ctx.net, "ns0": ctx.namespaces[0], "ns1": ctx.namespaces[1]}
    for phrase in case.says:
        for key, value in fill.items():
            phrase = phrase.replace("{" + key + "}", value)
        assert _normalise(phrase) in said, f"{phrase!r} not in:\n{said}"
    if case.code == cli.EXIT_PREFLIGHT:
        assert "nothing was changed on the cluster" in said
    for name in clusters:
        assert after[name] == before[name], f"{case.id}: cluster {name} changed: " + ", ".join(
            str(k) for k in set(after[name]) ^ set(before[name])
        )


def test_the_catalogue_is_large_and_covers_every_kind_of_input() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    by_code = {code: sum(c.code == code for c in CASES) for code in (U, P, C)}
    assert by_code[U] >= 30 and by_code[P] >= 12 and by_code[C] >= 3, by_code
    assert {c.cluster for c in CASES} == {"main", "old-ocp", "no-virt"}
