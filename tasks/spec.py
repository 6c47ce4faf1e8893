"""The rollout spec: one pydantic model shared by the CLI (YAML + ``--set``) and Prefect (form parameters).

Everything a run does is derived from this model, so it rejects every value that would fail later on
the cluster (often only as a status condition, after the immutable network spec was written), and each
rejection names the field as the user wrote it and says how to fix it.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import re
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from tasks.capacity import reserved_addresses, usable_addresses

__all__ = [
    "MANAGED_BY_LABEL",
    "PRIMARY_UDN_LABEL",
    "RUN_LABEL",
    "SPEC_HASH_ANNOTATION",
    "VM_INDEX_LABEL",
    "ChurnSpec",
    "ConnectivitySpec",
    "FanoutSpec",
    "NamespacesSpec",
    "NetworkSpec",
    "RolloutSpec",
    "SpecError",
    "SpecProblem",
    "SubnetSpec",
    "VMRef",
    "VMsSpec",
    "apply_overrides",
    "load_spec",
    "problems_from_validation_error",
    "validate_spec",
]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "udn-rollout"
RUN_LABEL = "udn-rollout.io/run"
VM_INDEX_LABEL = "udn-rollout.io/vm-index"
SPEC_HASH_ANNOTATION = "udn-rollout.io/spec-hash"
PRIMARY_UDN_LABEL = "k8s.ovn.org/primary-user-defined-network"

RUN_ID_MAX = 40  # leaves room for derived names such as "udn-rollout-<runId>-credentials"
MAX_TOTAL_VMS = 100_000  # the scale the tool is designed and benchmarked for
MIN_MEMORY_BYTES = 64 * 1024**2

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_QUANTITY = re.compile(r"^(?P<num>[0-9]+(?:\.[0-9]+)?)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_QUANTITY_FACTORS = {
    None: 1,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    r"^(?:[a-zA-Z0-9]+(?:[.-][a-zA-Z0-9]+)*(?::[0-9]+)?/)?"
    rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
_SYSTEM_NAMESPACES = ("default", "openshift")
_SYSTEM_NAMESPACE_PREFIXES = ("kube-", "openshift-")


# --------------------------------------------------------------------------------------------------
# errors


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong with a spec: where (camelCase path as written), what value, and how to fix it."""

    path: str
    value: Any
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(spec)'}: {self.message}"


class SpecError(Exception):
    """Raised for any invalid spec; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[SpecProblem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" in {self.source}" if self.source else ""
        n = len(self.problems)
        head = f"invalid rollout spec{where} ({n} problem{'s' if n != 1 else ''}):"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


def _fail(message: str, **extra: Any) -> PydanticCustomError:
    """An error whose text is exactly ``message`` (no "Value error," prefix), for the formatter."""
    return PydanticCustomError("udn_spec", "{message}", {"message": message, **extra})


def _show(value: Any) -> str:
    """Render a bad value for a message: short, and quoted when it is text."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 70 else text[:67] + "..."


def _suggest_label(value: str, max_len: int = 63) -> str:
    """A DNS-1123 label close to ``value``, offered as the fix."""
    s = re.sub(r"[^a-z0-9-]+", "-", str(value).lower())
    s = re.sub(r"-{2,}", "-", s).strip("-")[:max_len].strip("-")
    return s or "example"


def _label_problem(value: str, what: str, max_len: int = 63) -> str | None:
    """Why ``value`` is not a DNS-1123 label (namespace, VM and run names are), or None."""
    if not value:
        return f"{what} must not be empty: use lowercase letters, digits and '-'"
    if len(value) > max_len:
        return (
            f"{what} {_show(value)} is {len(value)} characters long: use at most {max_len}, "
            f"e.g. {_suggest_label(value, max_len)!r}"
        )
    if not _DNS_LABEL.match(value):
        return (
            f"{what} {_show(value)} is not a DNS-1123 label: use lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit, e.g. {_suggest_label(value, max_len)!r}"
        )
    return None


def _subdomain_problem(value: str, what: str, max_len: int) -> str | None:
    """Why ``value`` is not a DNS-1123 subdomain (object names such as the CUDN's), or None."""
    if not value:
        return f"{what} must not be empty"
    if len(value) > max_len:
        return f"{what} {_show(value)} is {len(value)} characters long: use at most {max_len}"
    if not _DNS_SUBDOMAIN.match(value):
        fixed = ".".join(_suggest_label(part) for part in value.split(".") if part)
        return (
            f"{what} {_show(value)} is not a valid Kubernetes name: use lowercase letters, digits, "
            f"'-' and '.', starting and ending with a letter or digit, e.g. {fixed!r}"
        )
    return None


def _label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and _subdomain_problem(prefix, "prefix", 253):
        return f"label key {_show(key)} has an invalid prefix: use a DNS name such as 'example.com/'"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return (
            f"label key {_show(key)} is invalid: use at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit, optionally after a 'dns.prefix/'"
        )
    return None


def _label_value_problem(value: str) -> str | None:
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        return (
            f"label value {_show(value)} is invalid: use at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit (or leave it empty)"
        )
    return None


def _parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse a CIDR, explaining host bits and missing prefixes, because OVN-K rejects both later."""
    if "/" not in text:
        raise _fail(f"{_show(text)} has no prefix length: write it as a CIDR, e.g. {text}/16")
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise _fail(f"{_show(text)} is not a CIDR: write it like 10.200.0.0/16 or fd00:10:200::/48") from None
    if ipaddress.ip_address(text.split("/")[0]) != net.network_address:
        raise _fail(f"{_show(text)} has host bits set: use the masked network {net.with_prefixlen}")
    return net


def _check_cidr(value: str) -> str:
    """Normalise a CIDR string (compressed form) after checking it parses and has no host bits."""
    return _parse_network(value.strip()).with_prefixlen


Cidr = Annotated[str, AfterValidator(_check_cidr)]


def _usable_addresses(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    """VM addresses in ``net``: the same arithmetic the preflight's capacity report uses."""
    return usable_addresses(net.prefixlen, net.version)


def _parse_quantity(value: str) -> int:
    """Bytes in a Kubernetes memory quantity; the error shows the accepted forms."""
    m = _QUANTITY.match(value)
    if not m:
        hint = ""
        lowered = re.match(r"^([0-9.]+)\s*([kmgtpe])i?b?$", value.strip(), re.IGNORECASE)
        if lowered:
            hint = f" (did you mean {lowered.group(1)}{lowered.group(2).upper()}i?)"
        raise _fail(f"memory {_show(value)} is not a Kubernetes quantity{hint}: write it like 1Gi, 512Mi or 2048Mi")
    factor = _QUANTITY_FACTORS[m.group("suffix")]
    return int(float(m.group("num")) * factor)


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside (), [] and {} (label selectors and --set lists both need this)."""
    parts, depth, cur, escaped = [], 0, [], False
    for ch in text:
        if escaped:
            cur.append(ch if ch == sep else "\\" + ch)  # other escapes are for the path parser
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "([{":
            depth += 1
            cur.append(ch)
        elif ch in ")]}":
            depth -= 1
            cur.append(ch)
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


_SELECTOR_SET = re.compile(r"^\s*(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s+\((?P<vals>[^()]*)\)\s*$")
_SELECTOR_EQ = re.compile(r"^\s*(?P<key>[^\s!=()]+)\s*(?P<op>==|=|!=)\s*(?P<val>[^\s!=()]*)\s*$")
_SELECTOR_EXISTS = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=()]+)\s*$")


def _selector_problem(selector: str) -> str | None:
    """Why a label selector string would be rejected by the API server, or None."""
    if not selector.strip():
        return "selector is empty: write a label selector such as 'app=web' or 'tier in (a,b)'"
    for req in _split_top_level(selector):
        m = _SELECTOR_SET.match(req) or _SELECTOR_EQ.match(req) or _SELECTOR_EXISTS.match(req)
        if not m:
            return (
                f"selector part {_show(req.strip())} is not a label requirement: use key=value, key!=value, "
                "key in (a,b), key notin (a,b), key or !key, separated by commas"
            )
        problem = _label_key_problem(m.group("key"))
        values = []
        if "vals" in m.groupdict():
            values = [v.strip() for v in m.group("vals").split(",")]
        elif "val" in m.groupdict():
            values = [m.group("val")]
        for v in values:
            problem = problem or _label_value_problem(v)
        if problem:
            return f"selector {_show(selector)}: {problem}"
    return None


# --------------------------------------------------------------------------------------------------
# models


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
        problem = _subdomain_problem(v, "network name", 63)
        if problem:
            raise _fail(problem)
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
                if _usable_addresses(net) < 1:
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
            raise _fail("; ".join(p[2] for p in problems), problems=problems)
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
    """Which namespaces the network selects: an explicit list, or ``<prefix>-<i>`` for i in a range."""

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
        description="Namespaces are named <prefix>-<i>. Empty = the run id.",
        max_length=57,
    )
    count: int | None = Field(
        None,
        title="Count",
        description="How many <prefix>-<i> namespaces (default 2 when names is not given).",
        ge=1,
        le=10_000,
    )
    start: int = Field(1, title="First index", description="Index of the first <prefix>-<i> namespace.", ge=0)

    @field_validator("names")
    @classmethod
    def _names_valid(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        problems, seen = [], set()
        for i, name in enumerate(v):
            problem = _label_problem(name, "namespace name") or _system_namespace_problem(name)
            if not problem and name in seen:
                problem = f"namespace {name!r} is listed twice: remove the duplicate"
            seen.add(name)
            if problem:
                problems.append((f"[{i}]", name, problem))
        if problems:
            raise _fail("; ".join(p[2] for p in problems), problems=problems)
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix_valid(cls, v: str) -> str:
        problem = v and _label_problem(v, "namespace prefix", 57)
        if problem:
            raise _fail(problem)
        return v

    @model_validator(mode="after")
    def _one_form(self) -> NamespacesSpec:
        if self.names is not None:
            # Compare with the defaults, not fields_set: the Prefect form submits every default.
            extra = [k for k, default in (("prefix", ""), ("count", None), ("start", 1)) if getattr(self, k) != default]
            if extra:
                raise _fail(
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


def _system_namespace_problem(name: str) -> str | None:
    if name in _SYSTEM_NAMESPACES or name.startswith(_SYSTEM_NAMESPACE_PREFIXES):
        return (
            f"namespace {name!r} is a system namespace (it exists without the primary-network label, "
            "which cannot be added later): choose another name"
        )
    return None


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
        description="VMs are named <namePrefix>-<i> in each namespace, i from 1 (no zero padding, so names "
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
        "namespace. Empty = udn-rollout creates one per run, udn-rollout-<runId>-credentials, from a "
        "password given at run time. Passwords never go in the spec.",
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
        if _parse_quantity(v) < MIN_MEMORY_BYTES:
            raise _fail(f"memory {v!r} is too small to boot a VM: use at least 64Mi (Fedora wants 1Gi)")
        return v

    @field_validator("name_prefix")
    @classmethod
    def _prefix_valid(cls, v: str) -> str:
        problem = _label_problem(v, "namePrefix", 57)
        if problem:
            raise _fail(problem)
        return v

    @field_validator("image")
    @classmethod
    def _image_valid(cls, v: str) -> str:
        if not _IMAGE.match(v):
            raise _fail(
                f"image {_show(v)} is not an image reference: write it like "
                "quay.io/containerdisks/fedora:latest (lowercase repository, optional :tag or @sha256:digest)"
            )
        return v

    @field_validator("credentials_secret")
    @classmethod
    def _secret_valid(cls, v: str) -> str:
        problem = v and _subdomain_problem(v, "credentialsSecret", 253)
        if problem:
            raise _fail(problem + " (or leave it empty to have one generated per run)")
        return v

    @field_validator("node_selector")
    @classmethod
    def _selector_valid(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for key, value in (v or {}).items():
            problem = _label_key_problem(key) or _label_value_problem(value)
            if problem:
                raise _fail(f"nodeSelector: {problem}", problems=[(key, value, problem)])
        return v

    def names(self) -> list[str]:
        """VM names inside one namespace, in index order."""
        return [f"{self.name_prefix}-{i}" for i in range(1, self.per_namespace + 1)]


class FanoutSpec(_Model):
    """How hard VM creation may push the API server."""

    qps: float = Field(
        50.0, title="QPS", description="Sustained API requests per second (token bucket).", gt=0, le=10_000
    )
    burst: int = Field(100, title="Burst", description="Token bucket size (requests at once).", ge=1, le=100_000)
    max_in_flight: int = Field(
        64, title="Max requests in flight", description="Concurrent API requests at most.", ge=1, le=10_000
    )
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
    max_sessions: int = Field(
        32, title="Max console sessions", description="Serial console sessions open at once.", ge=1, le=10_000
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
    """Which VMs to live-migrate: at most one of fraction, count, selector, drainNode."""

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
        900, title="Timeout (s)", description="How long to wait for migrations to finish.", ge=1, le=86_400
    )

    @field_validator("selector")
    @classmethod
    def _selector_valid(cls, v: str | None) -> str | None:
        problem = v is not None and _selector_problem(v)
        if problem:
            raise _fail(problem)
        return v

    @field_validator("drain_node")
    @classmethod
    def _node_valid(cls, v: str | None) -> str | None:
        problem = v is not None and _subdomain_problem(v, "drainNode", 253)
        if problem:
            raise _fail(problem)
        return v

    @model_validator(mode="after")
    def _at_most_one(self) -> ChurnSpec:
        chosen = [k for k in ("fraction", "count", "selector", "drain_node") if getattr(self, k) is not None]
        if len(chosen) > 1:
            names = [to_camel(k) for k in chosen]
            raise _fail(
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
    index: int


class RolloutSpec(_Model):
    """A whole run: network, namespaces, VMs, and how fan-out, connectivity and churn behave."""

    run_id: str = Field(
        "",
        title="Run ID",
        description="Names and labels this run's objects (DNS-1123 label, at most 40 characters). Empty = "
        "generated as <network-name>-<yyyymmdd-hhmmss>; reuse an id to resume a run.",
        max_length=RUN_ID_MAX,
    )
    network: NetworkSpec = Field(title="Network", description="The ClusterUserDefinedNetwork to create.")
    namespaces: NamespacesSpec = Field(
        default_factory=NamespacesSpec,
        title="Namespaces",
        description="Namespaces the network selects (created with the primary-network label).",
    )
    vms: VMsSpec = Field(default_factory=VMsSpec, title="VMs", description="VirtualMachines per namespace.")
    fanout: FanoutSpec = Field(default_factory=FanoutSpec, title="Fan-out", description="Rate limits for creating VMs.")
    connectivity: ConnectivitySpec = Field(
        default_factory=ConnectivitySpec,
        title="Connectivity",
        description="Ping matrix and isolation checks.",
    )
    churn: ChurnSpec = Field(default_factory=ChurnSpec, title="Churn", description="Live-migration churn.")

    @field_validator("run_id")
    @classmethod
    def _run_id_valid(cls, v: str) -> str:
        problem = v and _label_problem(v, "runId", RUN_ID_MAX)
        if problem:
            raise _fail(problem + " (or leave it empty to have one generated)")
        return v

    @model_validator(mode="after")
    def _whole_spec_rules(self) -> RolloutSpec:
        if not self.run_id:
            self.run_id = self.generate_run_id(self.network.name)
        problems: list[tuple[str, Any, str]] = []
        names = self.namespace_names()
        if self.namespaces.names is None:
            last = names[-1]
            problem = _label_problem(last, "namespace name") or _system_namespace_problem(names[0])
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
                usable = _usable_addresses(sub.ip_network())
                if 0 < usable < total:
                    problems.append(
                        (
                            f"network.subnets[{i}].cidr",
                            sub.cidr,
                            f"{sub.cidr} has {usable} addresses for VMs but the spec plans {total} VMs: "
                            f"use a larger subnet (e.g. /{_prefix_for(total, sub.ip_network().version)}) "
                            "or fewer VMs",
                        )
                    )
        if problems:
            raise _fail("; ".join(p[2] for p in problems), problems=problems, absolute=True)
        return self

    # -- derived values ---------------------------------------------------------------------------

    @classmethod
    def generate_run_id(cls, network_name: str, now: datetime | None = None) -> str:
        """A fresh run id ``<network-name>-<yyyymmdd-hhmmss>`` (UTC), cut so it stays ≤ 40 characters."""
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
        base = _suggest_label(network_name.replace(".", "-"), RUN_ID_MAX - len(stamp) - 1)
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
        return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, RUN_LABEL: self.run_id}

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

    def to_yaml(self) -> str:
        """The spec as a YAML document that loads back to an equal spec."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)


def _prefix_for(total: int, version: int) -> int:
    """Longest prefix whose subnet holds ``total`` VMs, for the "use a larger subnet" fix."""
    bits = 32 if version == 4 else 128
    return bits - max(2, (total + reserved_addresses(version) - 1).bit_length())


# --------------------------------------------------------------------------------------------------
# turning pydantic errors into SpecProblems

_MISSING_FIXES = {
    "network": "add a network section: name, topology and subnets",
    "network.name": "name the ClusterUserDefinedNetwork, e.g. name: udn-cluster-primary-l2",
    "network.subnets": "add the network's subnets, e.g. subnets: [{cidr: 10.200.0.0/16}]",
    "cidr": "give the subnet as a CIDR, e.g. cidr: 10.200.0.0/16",
}
_MISPLACED = {
    ("network", "cidr"): "the CIDR goes in a subnet: network.subnets[0].cidr",
    ("network", "hostSubnet"): "hostSubnet goes on each subnet: network.subnets[0].hostSubnet",
    ("network", "ipam"): "use network.persistentIPs: true (Layer2) instead of ipam",
    ("network", "layer2"): "write the network flat: topology: Layer2 plus subnets, mtu, persistentIPs",
    ("network", "layer3"): "write the network flat: topology: Layer3 plus subnets, mtu",
}
_SECRET_KEYS = {"password", "passwd", "userdata", "clouduserdata", "cloudinit", "sshkey", "credentials"}
_TYPE_FIXES = {
    "int_parsing": "is not a whole number: write a number such as {example}",
    "int_type": "is not a whole number: write a number such as {example}",
    "int_from_float": "is not a whole number: drop the fraction",
    "float_parsing": "is not a number: write a number such as {example}",
    "float_type": "is not a number: write a number such as {example}",
    "bool_parsing": "is not true or false: write true or false",
    "bool_type": "is not true or false: write true or false",
    "string_type": "is not text: put it in quotes (YAML reads yes/no/on/off as booleans and digits as numbers)",
    "list_type": "must be a list: write [a, b] or one '- item' per line",
    "dict_type": "must be a mapping: write key: value lines under it",
    "model_type": "must be a mapping: write key: value lines under it",
    "model_attributes_type": "must be a mapping: write key: value lines under it",
    "finite_number": "must be a finite number",
}


def _format_path(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("["):
            out += part
        else:
            out += f".{part}" if out else part
    return out


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/Annotated so the model walk sees the model or container type."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _lookup_field(model: type[BaseModel], key: str) -> tuple[str, Any] | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return name, info
    return None


def _field_at(loc: Sequence[str | int]) -> tuple[Any, Any]:
    """Walk RolloutSpec along ``loc``: (FieldInfo of the last key, the value's type), None if unknown."""
    info: Any = None
    current: Any = RolloutSpec
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            if get_origin(current) is not list:
                return None, None
            current = get_args(current)[0]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            found = _lookup_field(current, part)
            if not found:
                return None, None
            info = found[1]
            current = info.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None, None
    return info, _unwrap(current)


def _bounds(info: Any) -> tuple[Any, Any]:
    """(lower, upper) numeric bounds declared on a field, for "use a value between" fixes."""
    lo = hi = None
    for meta in getattr(info, "metadata", []):
        if isinstance(meta, annotated_types.Ge):
            lo = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            lo = meta.gt
        elif isinstance(meta, annotated_types.Le):
            hi = meta.le
        elif isinstance(meta, annotated_types.Lt):
            hi = meta.lt
    return lo, hi


def _norm_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def _unknown_key_message(loc: tuple[str | int, ...], key: str) -> str:
    parent_path = tuple(p for p in loc[:-1] if not isinstance(p, int))
    if _norm_key(key) in _SECRET_KEYS:
        return (
            f"{key!r} is not allowed: passwords and cloud-init never go in the spec; put them in a Secret "
            "and set vms.credentialsSecret, or leave it empty to have one generated per run"
        )
    hint = _MISPLACED.get((parent_path[-1] if parent_path else "", key))
    if hint:
        return f"unknown key {key!r}: {hint}"
    _, typ = _field_at(loc[:-1])
    holder = typ if isinstance(typ, type) and issubclass(typ, BaseModel) else None
    if holder is None:
        return f"unknown key {key!r}: remove it"
    valid = [info.alias or name for name, info in holder.model_fields.items()]
    by_norm = {_norm_key(v): v for v in valid}
    match = by_norm.get(_norm_key(key))
    if not match:
        close = difflib.get_close_matches(_norm_key(key), list(by_norm), n=1, cutoff=0.6)
        match = by_norm[close[0]] if close else None
    if match:
        return f"unknown key {key!r}: did you mean {match!r}?"
    return f"unknown key {key!r}: remove it (valid keys here: {', '.join(valid)})"


def _problem_from_error(err: dict[str, Any]) -> list[SpecProblem]:
    loc = tuple(err["loc"])
    path = _format_path(loc)
    leaf = next((p for p in reversed(loc) if isinstance(p, str)), "value")
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "udn_spec":
        subs = ctx.get("problems")
        if not subs:
            return [SpecProblem(path, value, ctx["message"])]
        out = []
        for sub, sub_value, message in subs:
            if ctx.get("absolute"):
                full = sub
            elif sub.startswith("["):
                full = path + sub
            else:
                full = f"{path}.{sub}" if path else sub
            out.append(SpecProblem(full, sub_value, message))
        return out
    if kind == "missing":
        fix = _MISSING_FIXES.get(path) or _MISSING_FIXES.get(leaf, "add it")
        return [SpecProblem(path, None, f"{leaf} is required: {fix}")]
    if kind == "extra_forbidden":
        return [SpecProblem(path, value, _unknown_key_message(loc, str(loc[-1])))]
    info, typ = _field_at(loc)
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        lo, hi = _bounds(info)
        lo = ctx.get("ge", ctx.get("gt")) if lo is None else lo
        hi = ctx.get("le", ctx.get("lt")) if hi is None else hi
        if kind == "greater_than" and hi is None:
            fix = f"use a value greater than {lo}"
        elif lo is not None and hi is not None:
            fix = f"use a value between {lo} and {hi}"
        elif lo is not None:
            fix = f"use {lo} or more"
        else:
            fix = f"use {hi} or less"
        if kind == "greater_than" and lo is not None and hi is not None:
            fix = f"use a value greater than {lo} and at most {hi}"
        return [SpecProblem(path, value, f"{leaf} {_show(value)} is out of range: {fix}")]
    if kind == "literal_error":
        options = [str(a) for a in get_args(typ)] if get_origin(typ) is Literal else []
        text = ", ".join(options) or ctx.get("expected", "")
        guess = next((o for o in options if str(value).lower() == o.lower()), None)
        fix = f"did you mean {guess!r}?" if guess else f"use one of {text}"
        return [SpecProblem(path, value, f"{leaf} {_show(value)} is not valid: {fix}")]
    if kind in ("too_short", "too_long"):
        lo, hi = _len_bound(info, "min_length"), _len_bound(info, "max_length")
        rng = f"between {lo or 0} and {hi}" if hi is not None else f"at least {lo}"
        size = len(value) if isinstance(value, list | dict | str) else "?"
        return [SpecProblem(path, value, f"{leaf} has {size} items: give {rng}")]
    if kind == "string_too_short":
        return [SpecProblem(path, value, f"{leaf} must not be empty")]
    if kind == "string_too_long":
        return [SpecProblem(path, value, f"{leaf} is too long: use at most {ctx.get('max_length')} characters")]
    if kind in _TYPE_FIXES:
        example = getattr(info, "default", None)
        if example is None or not isinstance(example, int | float) or isinstance(example, bool):
            example = 1
        fix = _TYPE_FIXES[kind].format(example=example)
        return [SpecProblem(path, value, f"{leaf} {_show(value)} {fix}")]
    return [SpecProblem(path, value, f"{leaf}: {err.get('msg', 'invalid value')}")]


def _len_bound(info: Any, attr: str) -> Any:
    for meta in getattr(info, "metadata", []):
        if hasattr(meta, attr):
            return getattr(meta, attr)
    return None


def problems_from_validation_error(error: ValidationError) -> list[SpecProblem]:
    """Translate pydantic's errors into SpecProblems with camelCase paths and fixes."""
    out: list[SpecProblem] = []
    for err in error.errors():
        out.extend(_problem_from_error(err))
    return out


def validate_spec(data: Any, source: str | None = None) -> RolloutSpec:
    """Validate plain data (a parsed YAML document) into a RolloutSpec, or raise SpecError."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise SpecError(
            [SpecProblem("", data, f"the spec must be a mapping with at least a network section, not {kind}")],
            source,
        )
    try:
        return RolloutSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems_from_validation_error(exc), source) from None


# --------------------------------------------------------------------------------------------------
# loading and --set overrides


def _parse_set_path(path: str) -> list[str | int]:
    """Split ``a.b[0].c`` into keys and indexes; ``\\.`` keeps a dot inside a key (label keys)."""
    parts: list[str | int] = []
    key, i, bad = "", 0, False
    while i < len(path):
        ch = path[i]
        if ch == "\\" and i + 1 < len(path):
            key += path[i + 1]
            i += 2
            continue
        if ch == ".":
            bad = bad or (not key and (not parts or not isinstance(parts[-1], int)))
            if key:
                parts.append(key)
            key = ""
        elif ch == "[":
            end = path.find("]", i)
            index = path[i + 1 : end] if end > 0 else ""
            if not index.isdigit() or (not key and not parts):
                bad = True
                break
            if key:
                parts.append(key)
            parts.append(int(index))
            key, i = "", end
        elif ch == "]":
            bad = True
        else:
            key += ch
        i += 1
    if key:
        parts.append(key)
    elif path.endswith("."):
        bad = True
    if bad or not parts or isinstance(parts[0], int):
        raise ValueError(
            f"--set path {path!r} is not valid: write dotted camelCase keys with optional [index], "
            "e.g. vms.perNamespace=10 or network.subnets[0].cidr=10.200.0.0/16 (escape a dot in a key as \\.)"
        )
    return parts


def _is_text_field(path: Sequence[str | int]) -> bool:
    """Whether the spec field at ``path`` holds text, so "007" or "true" stay strings there."""
    _, typ = _field_at(path)
    if get_origin(typ) is list:
        typ = _unwrap(get_args(typ)[0])
    return typ is str


def _parse_set_value(raw: str, text: bool) -> Any:
    if raw == "null":  # as in Helm: removes the key, so the default applies
        return None
    if raw.startswith("{") and raw.endswith("}"):
        inner = raw[1:-1].strip()
        items = [i.strip() for i in _split_top_level(inner)] if inner else []
        return [i if text else _yaml_scalar(i) for i in items]
    if text:
        return raw
    return _yaml_scalar(raw)


def _yaml_scalar(raw: str) -> Any:
    if raw == "":
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply Helm-style ``a.b[0].c=value`` overrides to ``data`` in place (null removes the key)."""
    problems: list[SpecProblem] = []
    for arg in overrides:
        for assignment in _split_top_level(arg):
            if not assignment.strip():
                continue
            key, sep, raw = assignment.partition("=")
            key = key.strip()
            if not sep:
                problems.append(SpecProblem(key, assignment, f"--set {assignment!r} has no '=': write key.path=value"))
                continue
            try:
                path = _parse_set_path(key)
                _set_path(data, path, _parse_set_value(raw.strip(), _is_text_field(path)), key)
            except ValueError as exc:
                problems.append(SpecProblem(key, raw, str(exc)))
    if problems:
        raise SpecError(problems, "--set")
    return data


def _set_path(data: dict[str, Any], path: list[str | int], value: Any, shown: str) -> None:
    node: Any = data
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        nxt = None if last else path[depth + 1]
        where = _format_path(path[:depth]) or "the spec"
        if isinstance(part, int):
            if not isinstance(node, list):
                raise ValueError(f"--set {shown}: {where} is not a list, so [{part}] cannot be used")
            if part > len(node):
                raise ValueError(
                    f"--set {shown}: index {part} is past the end of {where} ({len(node)} items): "
                    f"use an index up to {len(node)}"
                )
            if part == len(node):
                node.append(None)
        elif not isinstance(node, dict):
            raise ValueError(f"--set {shown}: {where} is not a mapping, so .{part} cannot be used")
        if last:
            if value is None:
                if isinstance(node, dict):
                    node.pop(part, None)
                else:
                    node[part] = None
            else:
                node[part] = value
            return
        child = node[part] if isinstance(part, int) else node.get(part)
        if child is None:
            child = [] if isinstance(nxt, int) else {}
            node[part] = child
        node = child


def load_spec(path: str | Path | None, overrides: Sequence[str] = (), run_id: str | None = None) -> RolloutSpec:
    """Read a spec file (or start empty), apply ``--set`` overrides and ``--run-id``, then validate.

    Raises SpecError for every problem: unreadable file, YAML syntax (with line and column), bad
    overrides, and each invalid field.
    """
    source = str(path) if path is not None else None
    data: Any = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(
                [SpecProblem("", str(p), f"spec file {str(p)!r} does not exist: check the path given to -f")]
            ) from None
        except IsADirectoryError:
            raise SpecError(
                [SpecProblem("", str(p), f"{str(p)!r} is a directory: give the spec's YAML file to -f")]
            ) from None
        except UnicodeDecodeError as exc:
            raise SpecError(
                [
                    SpecProblem(
                        "",
                        str(p),
                        f"spec file {str(p)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8 YAML",
                    )
                ]
            ) from None
        except OSError as exc:
            raise SpecError([SpecProblem("", str(p), f"cannot read spec file {str(p)!r}: {exc}")]) from None
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            raise SpecError([SpecProblem("", None, _yaml_error_message(exc))], source) from None
        if len(docs) > 1:
            raise SpecError(
                [SpecProblem("", None, f"the file holds {len(docs)} YAML documents: keep one spec per file")],
                source,
            )
        data = docs[0] if docs else {}
    if not isinstance(data, dict):
        return validate_spec(data, source)
    apply_overrides(data, overrides)
    if run_id is not None:
        data.pop("run_id", None)
        data["runId"] = run_id
    return validate_spec(data, source)


def _yaml_error_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    detail = f"{problem} ({context})" if context else problem
    return f"YAML syntax error at {where}{detail}: fix the indentation or quoting there"
