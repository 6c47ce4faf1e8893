"""The rollout spec: one pydantic model shared by the CLI (YAML + ``--set``) and Prefect (form parameters).

Everything a run does is derived from this model, so it rejects every value that would fail later on
the cluster (see :mod:`tasks.spec.rules`), and each rejection names the field as the user wrote it and
says how to fix it (see :mod:`tasks.spec.messages`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic.alias_generators import to_camel

from tasks.scope import RunScope, run_labels
from tasks.spec.rules import (
    IMAGE,
    MIN_MEMORY_BYTES,
    Cidr,
    fail,
    label_key_problem,
    label_problem,
    label_value_problem,
    memory_bytes,
    prefix_for,
    selector_problem,
    show,
    subdomain_problem,
    suggest_label,
    system_namespace_problem,
    usable_in,
)

RUN_ID_MAX = 40  # leaves room for derived names such as "udn-rollout-<runId>-credentials"
MAX_TOTAL_VMS = 100_000  # the scale the tool is designed and benchmarked for


class _Model(BaseModel):
    """camelCase in YAML and in the Prefect form, snake_case in Python; unknown keys are errors."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SubnetSpec(_Model):
    """One subnet of the network; a network has one per IP family."""

    cidr: Cidr = Field(
        title="CIDR",
        description="Network address and prefix, e.g. 10.200.0.0/16 (IPv4) or fd00:10:200::/48 (IPv6). "
        "Must not overlap the cluster, service, join (100.64/16, 100.65/16), transit (100.88/16) "
        "or masquerade (169.254.0.0/17) subnets.",
        max_length=43,
        examples=["10.200.0.0/16"],
    )
    host_subnet: int | None = Field(
        None,
        title="Host subnet prefix (Layer3)",
        description="Layer3 only: prefix length of the per-node subnet carved from the CIDR. "
        "Default 24 for IPv4 (any value from the CIDR's prefix + 1 to 29), always 64 for IPv6. "
        "Must be unset for Layer2.",
        ge=1,
        le=127,
    )

    @model_validator(mode="before")
    @classmethod
    def _cidr_shorthand(cls, data: Any) -> Any:
        """Accept ``- 10.0.0.0/16`` as well, the way the CRD's layer2.subnets is written."""
        return {"cidr": data} if isinstance(data, str) else data

    def ip_network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """The parsed CIDR (validated already)."""
        return ipaddress.ip_network(self.cidr)


class NetworkSpec(_Model):
    """The ClusterUserDefinedNetwork; immutable once created, so every rule is checked up front."""

    name: str = Field(
        title="Network name",
        description="Name of the ClusterUserDefinedNetwork (and of the NetworkAttachmentDefinition in "
        "each namespace). DNS-1123 subdomain, at most 63 characters.",
        min_length=1,
        max_length=63,
        examples=["udn-cluster-primary-l2"],
    )
    topology: Literal["Layer3", "Layer2"] = Field(
        "Layer2",
        title="Topology",
        description="Layer2: one flat subnet across nodes; VM IPs persist across live migration (the "
        "topology OpenShift supports for VMs). Layer3: a subnet per node (hostSubnet); a VM's IP "
        "changes when it moves node.",
    )
    subnets: list[SubnetSpec] = Field(
        title="Subnets",
        description="One IPv4 subnet, optionally plus one IPv6 subnet (dual stack).",
        min_length=1,
        max_length=2,
    )
    mtu: int | None = Field(
        None,
        title="MTU",
        description="MTU of the network; unset = the cluster's OVN-Kubernetes MTU (usually 1400). "
        "At least 1280 when an IPv6 subnet is used.",
        ge=576,
        le=65536,
    )
    persistent_ips: bool | None = Field(
        None,
        alias="persistentIPs",
        title="Persistent IPs (Layer2)",
        description="Layer2 only: keep each VM's IP for its lifetime, across restarts and live migration "
        "(ipam.lifecycle: Persistent). Default true for Layer2; Layer3 cannot persist IPs.",
    )
    join_subnets: list[Cidr] | None = Field(
        None,
        title="Join subnets",
        description="Optional join subnets (one per IP family); unset = OVN-Kubernetes' default "
        "100.65.0.0/16 and fd99::/64.",
        min_length=1,
        max_length=2,
    )

    @field_validator("name")
    @classmethod
    def _name_is_dns(cls, v: str) -> str:
        problem = subdomain_problem(v, "network name", 63)
        if problem:
            raise fail(problem)
        return v

    @model_validator(mode="after")
    def _topology_rules(self) -> NetworkSpec:
        problems: list[tuple[str, Any, str]] = []
        nets = [s.ip_network() for s in self.subnets]
        if len(nets) == 2 and nets[0].version == nets[1].version:
            problems.append(
                (
                    "subnets[1].cidr",
                    self.subnets[1].cidr,
                    f"subnets {nets[0]} and {nets[1]} are both IPv{nets[0].version}: a network takes "
                    "one IPv4 and at most one IPv6 subnet (dual stack); remove one",
                )
            )
        for i, (sub, net) in enumerate(zip(self.subnets, nets, strict=True)):
            where = f"subnets[{i}]"
            if self.topology == "Layer3":
                problems.extend(self._layer3_subnet(where, sub, net))
            else:
                if sub.host_subnet is not None:
                    problems.append(
                        (
                            f"{where}.hostSubnet",
                            sub.host_subnet,
                            "hostSubnet is for Layer3 only (Layer2 is one flat subnet across nodes): "
                            "remove it, or set topology: Layer3",
                        )
                    )
                if usable_in(net) < 1:
                    longest = 29 if net.version == 4 else 126
                    problems.append(
                        (
                            f"{where}.cidr",
                            sub.cidr,
                            f"{net} leaves no address for VMs (network, gateway .1, management .2"
                            f"{' and broadcast' if net.version == 4 else ''} are reserved): use a prefix "
                            f"of /{longest} or shorter",
                        )
                    )
        if self.topology == "Layer3" and self.persistent_ips:
            problems.append(
                (
                    "persistentIPs",
                    True,
                    "persistentIPs is for Layer2 only (a Layer3 VM takes its IP from its node's subnet): "
                    "remove it, or set topology: Layer2",
                )
            )
        if self.topology == "Layer2" and self.persistent_ips is None:
            self.persistent_ips = True
        if self.mtu is not None and self.mtu < 1280 and any(n.version == 6 for n in nets):
            problems.append(("mtu", self.mtu, f"mtu {self.mtu} is too small for IPv6: use 1280 or more"))
        if self.join_subnets:
            joins = [ipaddress.ip_network(j) for j in self.join_subnets]
            if len(joins) == 2 and joins[0].version == joins[1].version:
                problems.append(
                    (
                        "joinSubnets[1]",
                        self.join_subnets[1],
                        f"join subnets {joins[0]} and {joins[1]} are both IPv{joins[0].version}: "
                        "give at most one per IP family",
                    )
                )
            for j, join in enumerate(joins):
                for i, net in enumerate(nets):
                    if join.version == net.version and join.overlaps(net):
                        problems.append(
                            (
                                f"joinSubnets[{j}]",
                                self.join_subnets[j],
                                f"join subnet {join} overlaps subnets[{i}] {net}: choose a join subnet "
                                "outside the network's subnets",
                            )
                        )
        if problems:
            raise fail("; ".join(p[2] for p in problems), problems=problems)
        return self

    def _layer3_subnet(
        self, where: str, sub: SubnetSpec, net: ipaddress.IPv4Network | ipaddress.IPv6Network
    ) -> list[tuple[str, Any, str]]:
        """Layer3 node-subnet rules; fills in the default hostSubnet so rendering is explicit."""
        if net.version == 6:
            if net.prefixlen >= 64:
                return [
                    (
                        f"{where}.cidr",
                        sub.cidr,
                        f"{net} is too small for Layer3: IPv6 node subnets are /64, so use a prefix "
                        "shorter than /64, e.g. /48",
                    )
                ]
            if sub.host_subnet not in (None, 64):
                return [
                    (
                        f"{where}.hostSubnet",
                        sub.host_subnet,
                        f"hostSubnet {sub.host_subnet} is not supported for IPv6: OVN-Kubernetes only "
                        "uses /64 node subnets; set 64 or leave it out",
                    )
                ]
            sub.host_subnet = 64
            return []
        lo, hi = net.prefixlen + 1, 29
        if lo > hi:
            return [
                (
                    f"{where}.cidr",
                    sub.cidr,
                    f"{net} is too small for Layer3: node subnets of /29 or larger must fit, so use a "
                    "prefix of /28 or shorter",
                )
            ]
        if sub.host_subnet is None:
            if not lo <= 24 <= hi:
                return [
                    (
                        f"{where}.hostSubnet",
                        None,
                        f"hostSubnet defaults to 24, which does not fit {net}: set hostSubnet to a "
                        f"value between {lo} and {hi}",
                    )
                ]
            sub.host_subnet = 24
        elif not lo <= sub.host_subnet <= hi:
            return [
                (
                    f"{where}.hostSubnet",
                    sub.host_subnet,
                    f"hostSubnet {sub.host_subnet} is out of range: use a value between {lo} and {hi} "
                    f"for {net} (longer than the CIDR's prefix, and /29 at most so each node has "
                    "addresses left after .0, .1, .2 and broadcast)",
                )
            ]
        return []


class NamespacesSpec(_Model):
    """Which namespaces the network selects: an explicit list, or PREFIX-N for N in a range."""

    names: list[str] | None = Field(
        None,
        title="Namespace names",
        description="Explicit namespace names (DNS-1123 labels, unique). Give either names or prefix + count.",
        min_length=1,
        max_length=10_000,
    )
    prefix: str = Field(
        "",
        title="Name prefix",
        description="Namespaces are named PREFIX-1, PREFIX-2, … Empty = the run id.",
        max_length=57,
    )
    count: int | None = Field(
        None,
        title="Count",
        description="How many PREFIX-N namespaces (default 2 when names is not given).",
        ge=1,
        le=10_000,
    )
    start: int = Field(1, title="First index", description="Index of the first PREFIX-N namespace.", ge=0)

    @field_validator("names")
    @classmethod
    def _names_valid(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        problems, seen = [], set()
        for i, name in enumerate(v):
            problem = label_problem(name, "namespace name") or system_namespace_problem(name)
            if not problem and name in seen:
                problem = f"namespace {name!r} is listed twice: remove the duplicate"
            seen.add(name)
            if problem:
                problems.append((f"[{i}]", name, problem))
        if problems:
            raise fail("; ".join(p[2] for p in problems), problems=problems)
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix_valid(cls, v: str) -> str:
        problem = v and label_problem(v, "namespace prefix", 57)
        if problem:
            raise fail(problem)
        return v

    @model_validator(mode="after")
    def _one_form(self) -> NamespacesSpec:
        if self.names is not None:
            # Compare with the defaults, not fields_set: the Prefect form submits every default.
            extra = [k for k, default in (("prefix", ""), ("count", None), ("start", 1)) if getattr(self, k) != default]
            if extra:
                raise fail(
                    f"give either names or prefix + count, not both: remove {', '.join(extra)} or remove names",
                    problems=[
                        (
                            extra[0],
                            getattr(self, extra[0]),
                            f"{extra[0]} cannot be combined with names: give either names, or prefix + "
                            f"count (remove {extra[0]} or names)",
                        )
                    ],
                )
        elif self.count is None:
            self.count = 2
        return self

    def resolve(self, run_id: str) -> list[str]:
        """The namespace names, in order (``prefix`` defaults to the run id)."""
        if self.names is not None:
            return list(self.names)
        prefix = self.prefix or run_id
        assert self.count is not None
        return [f"{prefix}-{i}" for i in range(self.start, self.start + self.count)]


class VMsSpec(_Model):
    """The VirtualMachines created in every namespace; credentials only by Secret reference."""

    per_namespace: int = Field(
        2,
        title="VMs per namespace",
        description="VirtualMachines to create in each namespace.",
        ge=0,
        le=10_000,
    )
    name_prefix: str = Field(
        "rhel8-vm",
        title="VM name prefix",
        description="VMs are named NAMEPREFIX-1, NAMEPREFIX-2, … in each namespace (no zero padding, so names "
        "stay the same when perNamespace grows).",
        min_length=1,
        max_length=57,
    )
    image: str = Field(
        "quay.io/containerdisks/fedora:latest",
        title="Container disk image",
        description="containerDisk image booted by every VM.",
        min_length=1,
        max_length=512,
    )
    cpu: int = Field(1, title="vCPUs", description="CPU cores per VM.", ge=1, le=64)
    memory: str = Field(
        "1Gi",
        title="Memory",
        description="Memory request per VM as a Kubernetes quantity (e.g. 1Gi, 512Mi); at least 64Mi.",
        min_length=1,
        max_length=32,
    )
    run_strategy: Literal["Always", "Halted", "Manual", "RerunOnFailure", "Once"] = Field(
        "Always", title="Run strategy", description="VirtualMachine spec.runStrategy."
    )
    credentials_secret: str = Field(
        "",
        title="Credentials Secret",
        description="Name of an existing Secret (key 'userdata': a #cloud-config) present in every "
        "namespace. Empty = udn-rollout creates one per run, udn-rollout-RUNID-credentials, with a "
        "generated password. Passwords never go in the spec.",
        max_length=253,
    )
    node_selector: dict[str, str] | None = Field(
        None,
        title="Node selector",
        description="Optional nodeSelector for the VMs (label key: value).",
    )

    @field_validator("memory", mode="before")
    @classmethod
    def _memory_number(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("memory")
    @classmethod
    def _memory_valid(cls, v: str) -> str:
        if memory_bytes(v) < MIN_MEMORY_BYTES:
            raise fail(f"memory {v!r} is too small to boot a VM: use at least 64Mi (Fedora wants 1Gi)")
        return v

    @field_validator("name_prefix")
    @classmethod
    def _prefix_valid(cls, v: str) -> str:
        problem = label_problem(v, "namePrefix", 57)
        if problem:
            raise fail(problem)
        return v

    @field_validator("image")
    @classmethod
    def _image_valid(cls, v: str) -> str:
        if not IMAGE.match(v):
            raise fail(
                f"image {show(v)} is not an image reference: write it like "
                "quay.io/containerdisks/fedora:latest (lowercase repository, optional :tag or @sha256:digest)"
            )
        return v

    @field_validator("credentials_secret")
    @classmethod
    def _secret_valid(cls, v: str) -> str:
        problem = v and subdomain_problem(v, "credentialsSecret", 253)
        if problem:
            raise fail(problem + " (or leave it empty to have one generated per run)")
        return v

    @field_validator("node_selector")
    @classmethod
    def _selector_valid(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for key, value in (v or {}).items():
            problem = label_key_problem(key) or label_value_problem(value)
            if problem:
                raise fail(f"nodeSelector: {problem}", problems=[(key, value, problem)])
        return v

    def names(self) -> list[str]:
        """VM names inside one namespace, in index order."""
        return [f"{self.name_prefix}-{i}" for i in range(1, self.per_namespace + 1)]


class ApiSpec(_Model):
    """How hard the tool may push the Kubernetes API server, in every step (one budget per process)."""

    qps: float = Field(
        50.0,
        title="QPS",
        description="Sustained API requests per second, for every step (token bucket, like client-go's).",
        gt=0,
        le=10_000,
    )
    burst: int = Field(
        100,
        title="Burst",
        description="Token bucket size: how many requests may go at once before qps paces them, so a "
        "short run can exceed qps on average.",
        ge=1,
        le=100_000,
    )
    max_in_flight: int = Field(
        64, title="Max requests in flight", description="Concurrent API requests at most.", ge=1, le=10_000
    )


class LockSpec(_Model):
    """Where the run's lock lives: a Lease per network, so two runs never write one network or namespace."""

    namespace: str = Field(
        "default",
        title="Lock namespace",
        description="An existing namespace for the run's Lease (every run on the cluster must use the same).",
        min_length=1,
        max_length=63,
    )
    lease_seconds: int = Field(
        30,
        title="Lease duration (s)",
        description="A holder that stops renewing for this long (a killed run) is taken over.",
        ge=10,
        le=3600,
    )

    @field_validator("namespace")
    @classmethod
    def _namespace_valid(cls, v: str) -> str:
        problem = label_problem(v, "lock namespace")
        if problem:
            raise fail(problem)
        return v


class FanoutSpec(_Model):
    """How the VMs are created and how long to wait for them."""

    ready_timeout_seconds: int = Field(
        900,
        title="Ready timeout (s)",
        description="How long to wait for every VM to be Ready before failing.",
        ge=1,
        le=86_400,
    )
    batch_size: int = Field(
        0,
        title="Batch size",
        description="VMs per Prefect task; 0 = automatic (a few tens of tasks per run).",
        ge=0,
        le=100_000,
    )

    def batch_size_for(self, total: int, target_batches: int = 32) -> int:
        """Effective batch size: tens of tasks per run, never one per VM (Prefect overhead)."""
        if self.batch_size:
            return self.batch_size
        return max(1, -(-total // target_batches))


#: Keys that moved from ``fanout`` to ``api`` (they always limited every step, not only fan-out).
MOVED_TO_API = ("qps", "burst", "maxInFlight")


class ConnectivitySpec(_Model):
    """The ping matrix and isolation probes run over serial consoles."""

    mode: Literal["auto", "full", "sampled", "off"] = Field(
        "auto",
        title="Mode",
        description="auto = full mesh up to fullMeshThreshold VMs, sampled above; off = skip.",
    )
    peers_per_vm: int = Field(
        8,
        title="Peers per VM",
        description="Sampled mode: probes each VM sends and receives at least.",
        ge=1,
        le=1_000,
    )
    ping_count: int = Field(3, title="Pings per probe", description="ping -c.", ge=1, le=100)
    ping_timeout_seconds: int = Field(2, title="Ping timeout (s)", description="ping -W.", ge=1, le=60)
    ping_interval_seconds: float = Field(
        0.2,
        title="Ping interval (s)",
        description="ping -i: 0.2 s (the smallest iputils allows a user who is not root) makes a 3-ping probe "
        "take 0.4 s instead of 2 s; 1 is ping's own default.",
        ge=0.2,
        le=10,
    )
    max_sessions: int = Field(
        32,
        title="Max console sessions",
        description="Serial console sessions open at once. kube-apiserver's long-running check names no "
        "aggregated API's subresource (kubernetes/kubernetes#83200), so each open console may hold an "
        "in-flight request seat: size this by the API server's capacity, not only by the fleet.",
        ge=1,
        le=10_000,
    )
    probe_while_fanning_out: bool = Field(
        False,
        title="Probe while the fleet comes up",
        description="Rollout with a sampled plan: probe each VM as soon as it is Ready (it pings the VMs "
        "Ready just before it), while the fan-out goes on; the ping step then adds only what the plan's "
        "coverage still needs. Pays off when the cluster's start rate is the limit and maxSessions keeps "
        "pace with it (about 7 sessions per VM/s); off = probe after the whole fleet is up.",
    )
    isolation_canary: bool = Field(
        True,
        title="Isolation canary",
        description="Also probe addresses that must not answer (a VM outside the network).",
    )
    full_mesh_threshold: int = Field(
        50,
        title="Full mesh threshold",
        description="auto mode: full mesh when the run has at most this many VMs.",
        ge=0,
        le=10_000,
    )


class ChurnSpec(_Model):
    """What moves the run's VMs, and which: live migration, a restart (stop/start), or a rolling drain.

    migrate and restart choose VMs by at most one of fraction, count, selector, drainNode; drain moves
    every VM of the run off each of ``nodes`` in turn.
    """

    action: Literal["migrate", "restart", "drain"] = Field(
        "migrate",
        title="Action",
        description="migrate: live-migrate the chosen VMs (virtctl migrate). restart: stop and start them "
        "(virtctl stop/start), each one's node cordoned meanwhile so it comes back elsewhere. drain: cordon "
        "and drain `nodes` one at a time as an upgrade does; KubeVirt live-migrates the VMs off.",
    )
    nodes: Literal["all"] | int | list[str] | None = Field(
        None,
        title="Nodes to drain",
        description="drain only: 'all', a count (the nodes holding most of the run's VMs), or node names.",
    )

    fraction: float | None = Field(
        None,
        title="Fraction",
        description="Share of the run's VMs to migrate, 0..1 (default 0.25 when nothing else is chosen).",
        ge=0,
        le=1,
    )
    count: int | None = Field(None, title="Count", description="Number of VMs to migrate.", ge=1, le=MAX_TOTAL_VMS)
    selector: str | None = Field(
        None,
        title="Label selector",
        description="Migrate the run's VMs matching this label selector, e.g. 'udn-rollout.io/vm-index in (1,2)'.",
        max_length=1024,
    )
    drain_node: str | None = Field(
        None,
        title="Drain node",
        description="Migrate every VM of the run off this node.",
        max_length=253,
    )
    max_parallel: int = Field(
        0,
        title="Max parallel migrations",
        description="0 = the cluster's limits (5 per cluster, 1 outbound per node on OpenShift).",
        ge=0,
        le=10_000,
    )
    timeout_seconds: int = Field(
        900,
        title="Timeout (s)",
        description="How long to wait for the moves to finish (for drain: per node).",
        ge=1,
        le=86_400,
    )
    downtime: bool = Field(
        True,
        title="Measure downtime",
        description="While each VM moves, a VM that stays pings it over its console (ping -D) and the "
        "report gives the last reply before, the first after, at which address, and the packets lost.",
    )
    ping_interval_seconds: float = Field(
        0.2, title="Ping interval (s)", description="Interval of the downtime pings.", ge=0.01, le=5
    )
    reply_wait_seconds: int = Field(
        60,
        title="Reply wait (s)",
        description="After a move, how long to wait for its first reply before calling it unreachable.",
        ge=1,
        le=3600,
    )

    @field_validator("nodes")
    @classmethod
    def _nodes_valid(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise fail("nodes must be 'all', a count or a list of node names, not true/false")
        if isinstance(v, int) and v < 1:
            raise fail(f"nodes must be at least 1 (or 'all'), not {v}")
        if isinstance(v, list):
            if not v:
                raise fail("nodes is an empty list: give node names, a count, or 'all'")
            for name in v:
                problem = subdomain_problem(name, "nodes", 253)
                if problem:
                    raise fail(problem)
            if len(set(v)) != len(v):
                twice = sorted({n for n in v if v.count(n) > 1})
                raise fail(f"nodes lists {', '.join(twice)} more than once: name each node once")
        return v

    @field_validator("selector")
    @classmethod
    def _selector_valid(cls, v: str | None) -> str | None:
        problem = v is not None and selector_problem(v)
        if problem:
            raise fail(problem)
        return v

    @field_validator("drain_node")
    @classmethod
    def _node_valid(cls, v: str | None) -> str | None:
        problem = v is not None and subdomain_problem(v, "drainNode", 253)
        if problem:
            raise fail(problem)
        return v

    @model_validator(mode="after")
    def _at_most_one(self) -> ChurnSpec:
        chosen = [k for k in ("fraction", "count", "selector", "drain_node") if getattr(self, k) is not None]
        if self.action == "drain":
            if chosen:
                listed = ", ".join(to_camel(k) for k in chosen)
                raise fail(
                    f"churn.action drain moves every VM of the run off the drained nodes, so {listed} has no "
                    "meaning here: remove it, and choose the nodes with churn.nodes",
                    problems=[
                        (
                            to_camel(chosen[0]),
                            getattr(self, chosen[0]),
                            f"drain moves every VM of the run off the drained nodes, so {listed} has no meaning "
                            "here: remove it, and choose the nodes with churn.nodes",
                        )
                    ],
                )
            if self.nodes is None:
                raise fail(
                    "churn.action drain needs churn.nodes: 'all', a count (e.g. 2) or node names "
                    "(e.g. [worker-1, worker-2])",
                    problems=[
                        (
                            "nodes",
                            None,
                            "churn.action drain needs churn.nodes: 'all', a count (e.g. 2) or node names "
                            "(e.g. [worker-1, worker-2])",
                        )
                    ],
                )
            return self
        if self.nodes is not None:
            raise fail(
                f"churn.nodes is for action drain, but the action is {self.action}: set churn.action: drain, "
                "or use drainNode to migrate the VMs of one node",
                problems=[
                    (
                        "nodes",
                        self.nodes,
                        f"churn.nodes is for action drain, but the action is {self.action}: set churn.action: "
                        "drain, or use drainNode to migrate the VMs of one node",
                    )
                ],
            )
        if len(chosen) > 1:
            names = [to_camel(k) for k in chosen]
            raise fail(
                f"churn takes at most one of fraction, count, selector, drainNode, but {' and '.join(names)} "
                "are set: keep one",
                problems=[(names[1], getattr(self, chosen[1]), f"{' and '.join(names)} are both set: keep one")],
            )
        if not chosen:
            self.fraction = 0.25
        return self

    def choice(self) -> tuple[str, Any]:
        """(kind, value) of the selection rule, kind in fraction | count | selector | drainNode."""
        for key in ("fraction", "count", "selector", "drain_node"):
            value = getattr(self, key)
            if value is not None:
                return to_camel(key), value
        return "fraction", 0.25


class VMRef(NamedTuple):
    """One planned VM: where it lives, its name and its 1-based index within the namespace."""

    namespace: str
    name: str
    position: int  # 1-based, within the namespace


class RolloutSpec(_Model):
    """A whole run: network, namespaces, VMs, and how fan-out, connectivity and churn behave."""

    run_id: str = Field(
        "",
        title="Run ID",
        description="Names and labels this run's objects (DNS-1123 label, at most 40 characters). Empty = "
        "generated from the network name and the UTC time, e.g. udn-nightly-l2-20261206-020000; reuse an id "
        "to resume a run.",
        max_length=RUN_ID_MAX,
    )
    network: NetworkSpec = Field(title="Network", description="The ClusterUserDefinedNetwork to create.")
    namespaces: NamespacesSpec = Field(
        default_factory=NamespacesSpec,
        title="Namespaces",
        description="Namespaces the network selects (created with the primary-network label).",
    )
    vms: VMsSpec = Field(default_factory=VMsSpec, title="VMs", description="VirtualMachines per namespace.")
    api: ApiSpec = Field(
        default_factory=ApiSpec, title="API limits", description="Load the tool may put on the API server."
    )
    lock: LockSpec = Field(default_factory=LockSpec, title="Lock", description="Where the run's Lease lives.")
    fanout: FanoutSpec = Field(default_factory=FanoutSpec, title="Fan-out", description="VM creation and readiness.")
    connectivity: ConnectivitySpec = Field(
        default_factory=ConnectivitySpec,
        title="Connectivity",
        description="Ping matrix and isolation checks.",
    )
    churn: ChurnSpec = Field(default_factory=ChurnSpec, title="Churn", description="Live-migration churn.")

    _notices: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _moved_keys(cls, data: Any, handler: Any) -> Any:
        """Accept ``fanout.qps``/``burst``/``maxInFlight`` as ``api.*``, with a deprecation notice."""
        moved: list[str] = []
        if isinstance(data, dict) and isinstance(data.get("fanout"), dict):
            fanout = dict(data["fanout"])
            taken = {k: fanout.pop(k) for k in MOVED_TO_API if k in fanout}
            if "max_in_flight" in fanout:
                taken["maxInFlight"] = fanout.pop("max_in_flight")
            if taken:
                api = dict(data["api"]) if isinstance(data.get("api"), dict) else {}
                for key, value in taken.items():
                    api.setdefault(key, value)
                data = {**data, "fanout": fanout, "api": api}
                moved = sorted(taken)
        spec = handler(data)
        if moved:
            spec._notices.append(
                f"fanout.{', fanout.'.join(moved)}: deprecated, these limit every step's API requests; "
                f"write them as api.{', api.'.join(moved)}"
            )
        return spec

    @property
    def notices(self) -> list[str]:
        """Deprecations met while reading the spec, for the CLI to show."""
        return list(self._notices)

    @field_validator("run_id")
    @classmethod
    def _run_id_valid(cls, v: str) -> str:
        problem = v and label_problem(v, "runId", RUN_ID_MAX)
        if problem:
            raise fail(problem + " (or leave it empty to have one generated)")
        return v

    @model_validator(mode="after")
    def _whole_spec_rules(self) -> RolloutSpec:
        if not self.run_id:
            self.run_id = self.generate_run_id(self.network.name)
        problems: list[tuple[str, Any, str]] = []
        names = self.namespace_names()
        if self.namespaces.names is None:
            last = names[-1]
            problem = label_problem(last, "namespace name") or system_namespace_problem(names[0])
            if problem:
                field = "prefix" if self.namespaces.prefix else "count"
                problems.append((f"namespaces.{field}", getattr(self.namespaces, field), problem))
        total = self.total_vms()
        if total > MAX_TOTAL_VMS:
            problems.append(
                (
                    "vms.perNamespace",
                    self.vms.per_namespace,
                    f"{self.vms.per_namespace} VMs × {len(names)} namespaces = {total} VMs, more than the "
                    f"{MAX_TOTAL_VMS} udn-rollout plans for: lower perNamespace or the namespace count",
                )
            )
        if self.network.topology == "Layer2":
            for i, sub in enumerate(self.network.subnets):
                usable = usable_in(sub.ip_network())
                if 0 < usable < total:
                    problems.append(
                        (
                            f"network.subnets[{i}].cidr",
                            sub.cidr,
                            f"{sub.cidr} has {usable} addresses for VMs but the spec plans {total} VMs: "
                            f"use a larger subnet (e.g. /{prefix_for(total, sub.ip_network().version)}) "
                            "or fewer VMs",
                        )
                    )
        if problems:
            raise fail("; ".join(p[2] for p in problems), problems=problems, absolute=True)
        return self

    # -- derived values ---------------------------------------------------------------------------

    @classmethod
    def generate_run_id(cls, network_name: str, now: datetime | None = None) -> str:
        """A fresh run id ``<network-name>-<yyyymmdd-hhmmss>`` (UTC), cut so it stays ≤ 40 characters."""
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
        base = suggest_label(network_name.replace(".", "-"), RUN_ID_MAX - len(stamp) - 1)
        return f"{base}-{stamp}" if base != "example" else f"run-{stamp}"

    def namespace_names(self) -> list[str]:
        """Namespaces of this run, in order."""
        return self.namespaces.resolve(self.run_id)

    def vm_names(self) -> list[str]:
        """VM names inside each namespace (the same in every namespace)."""
        return self.vms.names()

    def vm_refs(self) -> list[VMRef]:
        """Every planned VM, namespace by namespace, in index order."""
        names = self.vm_names()
        return [VMRef(ns, name, i) for ns in self.namespace_names() for i, name in enumerate(names, 1)]

    def total_vms(self) -> int:
        """How many VMs the run plans."""
        return self.vms.per_namespace * len(self.namespace_names())

    def labels(self) -> dict[str, str]:
        """Labels every object of this run carries (teardown and watches select on them)."""
        return run_labels(self.run_id)

    def summary(self) -> dict[str, Any]:
        """The spec facts every report header shows."""
        return {
            "runId": self.run_id,
            "network": self.network.name,
            "topology": self.network.topology,
            "subnets": [s.cidr for s in self.network.subnets],
            "namespaces": len(self.namespace_names()),
            "vmsPerNamespace": self.vms.per_namespace,
            "totalVMs": self.total_vms(),
            "qps": self.api.qps,
            "burst": self.api.burst,
            "maxInFlight": self.api.max_in_flight,
        }

    def scope(self) -> RunScope:
        """What this run may touch (see :mod:`tasks.scope`)."""
        return RunScope(self.run_id, frozenset(self.namespace_names()), self.network.name)

    def generates_credentials(self) -> bool:
        """True when udn-rollout must create the credential Secret (none was referenced)."""
        return not self.vms.credentials_secret

    def credentials_secret_name(self) -> str:
        """The Secret the VMs' cloud-init reads: the referenced one, or this run's generated one."""
        return self.vms.credentials_secret or f"udn-rollout-{self.run_id}-credentials"

    def has_ipv6(self) -> bool:
        """Whether the network is dual stack (the guest then also needs DHCPv6)."""
        return any(s.ip_network().version == 6 for s in self.network.subnets)

    def spec_hash(self) -> str:
        """Short stable hash of what defines a VM; a differing annotation on a live VM means drift."""
        shape = {
            "image": self.vms.image,
            "cpu": self.vms.cpu,
            "memory": self.vms.memory,
            "runStrategy": self.vms.run_strategy,
            "credentialsSecret": self.credentials_secret_name(),
            "nodeSelector": dict(sorted((self.vms.node_selector or {}).items())),
            "ipv6": self.has_ipv6(),
        }
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """The spec as YAML/JSON-ready camelCase data (defaults filled in, unset options left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
