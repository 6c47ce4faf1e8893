"""Provisioning: namespaces labelled at creation, the credentials Secret, the ClusterUserDefinedNetwork,
then proof that OVN-Kubernetes rendered the network into every namespace.

Idempotent: every object has a deterministic name and this run's labels, so a rerun of the same run
id adopts what exists and creates what is missing; an object with the right name that is not this
run's is an error, never silently taken over.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

import yaml

from tasks.kube import Kube, KubeError
from tasks.render import generate_password, render_cudn, render_namespace, render_secret
from tasks.spec import MANAGED_BY_LABEL, MANAGED_BY_VALUE, RUN_LABEL, RolloutSpec

CUDN_API = ("k8s.ovn.org/v1", "ClusterUserDefinedNetwork")
NAD_API = ("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition")
PASSWORD_KEY = "userdata"


class ProvisionError(Exception):
    """Provisioning could not complete; `problems` says what, per object or namespace."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    def __str__(self) -> str:
        lines = [self.args[0], *[f"  - {p}" for p in self.problems]]
        return "\n".join(lines)


@dataclass
class ProvisionResult:
    created: list[str] = field(default_factory=list)  # "Kind/name" (or ns/name) created by this call
    adopted: list[str] = field(default_factory=list)  # existed from this run already
    network_ready_s: float | None = None
    conditions: list[dict[str, Any]] = field(default_factory=list)
    nads: list[str] = field(default_factory=list)


def is_ours(obj: dict[str, Any], spec: RolloutSpec) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return labels.get(RUN_LABEL) == spec.run_id and labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE


def _ref(obj: dict[str, Any]) -> str:
    md = obj["metadata"]
    return f"{obj['kind']}/{md['namespace'] + '/' if md.get('namespace') else ''}{md['name']}"


def ensure(kube: Kube, obj: dict[str, Any], spec: RolloutSpec, result: ProvisionResult) -> dict[str, Any]:
    """Create `obj`, or adopt it when it exists with this run's labels; anything else is an error."""
    live, created = kube.create_or_get(obj)
    if created:
        result.created.append(_ref(obj))
    elif is_ours(live, spec):
        result.adopted.append(_ref(obj))
    else:
        raise ProvisionError(
            f"{_ref(obj)} already exists and was not created by run {spec.run_id}",
            ["udn-rollout never takes over objects it did not create: rename, or delete it"],
        )
    return live


def ensure_namespaces(kube: Kube, spec: RolloutSpec, result: ProvisionResult) -> None:
    problems = []
    for name in spec.namespace_names():
        try:
            ns = ensure(kube, render_namespace(spec, name), spec, result)
        except ProvisionError as e:
            problems.append(str(e.args[0]))
            continue
        if "k8s.ovn.org/primary-user-defined-network" not in (ns["metadata"].get("labels") or {}):
            problems.append(f"namespace {name} lacks the primary-network label (it cannot be added later)")
    if problems:
        raise ProvisionError("namespaces could not be prepared", problems)


def run_password(kube: Kube, spec: RolloutSpec) -> str:
    """The run's console password: read back from an existing Secret of this run, else a new one."""
    for ns in spec.namespace_names():
        secret = kube.get("v1", "Secret", spec.credentials_secret_name(), ns)
        if secret is not None and is_ours(secret, spec):
            data = (secret.get("data") or {}).get(PASSWORD_KEY)
            if data:
                # The #cloud-config is YAML and the template quotes the password: read it as YAML, or a
                # resumed run hands the quotes on as part of the password to the Secrets it still makes.
                try:
                    doc = yaml.safe_load(base64.b64decode(data).decode())
                except (ValueError, yaml.YAMLError):
                    doc = None
                password = doc.get("password") if isinstance(doc, dict) else None
                if isinstance(password, str) and password:
                    return password
    return generate_password()


def ensure_credentials(kube: Kube, spec: RolloutSpec, password: str, result: ProvisionResult) -> None:
    if not spec.generates_credentials():
        missing = [
            ns for ns in spec.namespace_names() if kube.get("v1", "Secret", spec.credentials_secret_name(), ns) is None
        ]
        if missing:
            raise ProvisionError(
                f"the credentials Secret {spec.credentials_secret_name()} is missing",
                [f"create it in namespace {ns} (key userdata: a #cloud-config with password:)" for ns in missing],
            )
        return
    for ns in spec.namespace_names():
        ensure(kube, render_secret(spec, ns, password), spec, result)


def ensure_network(kube: Kube, spec: RolloutSpec, result: ProvisionResult) -> dict[str, Any]:
    want = render_cudn(spec)
    live, created = kube.create_or_get(want)
    if created:
        result.created.append(_ref(want))
        return live
    if not is_ours(live, spec):
        raise ProvisionError(
            f"ClusterUserDefinedNetwork {spec.network.name} exists and is not this run's", ["pick another network.name"]
        )
    if (live.get("spec") or {}).get("network") != want["spec"]["network"]:
        raise ProvisionError(
            f"ClusterUserDefinedNetwork {spec.network.name} exists with a different network spec",
            [
                "spec.network is immutable: tear the run down (udn-rollout teardown) and recreate, "
                "or restore the original network settings in the spec"
            ],
        )
    if (live.get("spec") or {}).get("namespaceSelector") != want["spec"]["namespaceSelector"]:
        live = kube.patch(
            *CUDN_API, spec.network.name, {"spec": {"namespaceSelector": want["spec"]["namespaceSelector"]}}
        )
    result.adopted.append(_ref(want))
    return live


def _condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def _counted(lines: list[str]) -> list[str]:
    """Identical lines once, in order, with how many times they came: OVN-Kubernetes joins one error
    per selected namespace, so a bad subnet on 100 namespaces is the same line 100 times (pure)."""
    counts: dict[str, int] = {}
    for line in lines:
        counts[line] = counts.get(line, 0) + 1
    return [line if n == 1 else f"{line} (× {n})" for line, n in counts.items()]


def network_state(cudn: dict[str, Any] | None, namespaces: list[str]) -> tuple[str, list[str]]:
    """("ready" | "failed" | "pending", problems) from the CUDN's conditions (pure)."""
    created = _condition(cudn, "NetworkCreated")
    alloc = _condition(cudn, "NetworkAllocationSucceeded")
    problems: list[str] = []
    if created is not None and created.get("status") == "False":
        problems += _counted([line for line in str(created.get("message", "")).split("\n") if line])
    if alloc is not None and alloc.get("status") == "False":
        problems.append(f"{alloc.get('reason')}: {alloc.get('message')}")
    if problems:
        return "failed", problems
    if created is not None and created.get("status") == "True":
        message = str(created.get("message", ""))
        missing = [ns for ns in namespaces if ns not in message]
        if not missing:
            return "ready", []
        return "pending", [f"no NetworkAttachmentDefinition yet in {', '.join(missing)}"]
    return "pending", ["the network has no NetworkCreated condition yet"]


def wait_network_ready(kube: Kube, spec: RolloutSpec, timeout: float, result: ProvisionResult) -> None:
    """Wait by watch until NetworkCreated is True for every namespace and each has its NAD."""
    namespaces = spec.namespace_names()
    started = time.monotonic()
    last: list[dict[str, Any]] = []

    def done(obj: dict[str, Any] | None) -> bool:
        state, _ = network_state(obj, namespaces)
        last[:] = [obj] if obj else []
        return state != "pending"

    try:
        cudn = kube.wait_for(*CUDN_API, spec.network.name, condition=done, timeout=timeout)
    except TimeoutError:
        cudn = last[0] if last else kube.get(*CUDN_API, spec.network.name)
    state, problems = network_state(cudn, namespaces)
    result.conditions = list(((cudn or {}).get("status") or {}).get("conditions") or [])
    if state != "ready":
        raise ProvisionError(
            f"the network {spec.network.name} is not ready after {time.monotonic() - started:.0f}s"
            if state == "pending"
            else f"OVN-Kubernetes rejected the network {spec.network.name}",
            problems,
        )
    nads, _ = kube.list(*NAD_API, label_selector="k8s.ovn.org/user-defined-network")
    have = {n["metadata"]["namespace"] for n in nads if n["metadata"]["name"] == spec.network.name}
    missing = [ns for ns in namespaces if ns not in have]
    if missing:
        raise ProvisionError("NetworkAttachmentDefinitions are missing", [f"namespace {ns}" for ns in missing])
    result.nads = sorted(f"{ns}/{spec.network.name}" for ns in have if ns in namespaces)
    result.network_ready_s = time.monotonic() - started


def provision(kube: Kube, spec: RolloutSpec, *, timeout: float = 300.0) -> ProvisionResult:
    """Namespaces → credentials → network → wait until rendered everywhere."""
    result = ProvisionResult()
    ensure_namespaces(kube, spec, result)
    ensure_credentials(kube, spec, run_password(kube, spec), result)
    ensure_network(kube, spec, result)
    try:
        wait_network_ready(kube, spec, timeout, result)
    except KubeError as e:
        raise ProvisionError(f"watching the network failed: {e}") from e
    return result
