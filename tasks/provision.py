"""Provisioning: namespaces labelled at creation, the credentials Secret, the ClusterUserDefinedNetwork,
then proof that OVN-Kubernetes rendered the network into every namespace.

Idempotent: every object has a deterministic name and this run's labels, so a rerun of the same run id
adopts what exists and creates what is missing; an object with the right name that is not this run's
is an error, never silently taken over. The namespaced objects whose admission preflight could not
judge (their namespace did not exist) are dry-run as soon as the namespaces exist, before the network
and any VM; a refusal removes the namespaces this call created and ends the run as a failed preflight.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

import yaml

from tasks.kube import Kube, KubeError, WaitTimeout
from tasks.kube.resources import CUDN, NAD, NAMESPACE, SECRET
from tasks.orchestration import say, unit
from tasks.outcome import Artifact, PreflightFailed, ProvisionError, StepResult
from tasks.preflight import admission_objects, dry_run
from tasks.render import generate_password, render_cudn, render_namespace, render_secret
from tasks.scope import PRIMARY_UDN_LABEL
from tasks.spec import RolloutSpec

PASSWORD_KEY = "userdata"


@dataclass
class ProvisionResult(StepResult):
    step = "provision"
    created: list[str] = field(default_factory=list)  # "Kind ns/name" created by this call
    adopted: list[str] = field(default_factory=list)  # existed from this run already
    network_ready_s: float | None = None
    conditions: list[dict[str, Any]] = field(default_factory=list)
    nads: list[str] = field(default_factory=list)
    network: str = ""

    def figures(self) -> dict[str, Any]:
        return {
            "namespaces": len(self.nads),
            "created": len(self.created),
            "adopted": len(self.adopted),
            "network_ready_s": round(self.network_ready_s or 0, 2),
            "wall_s": round(self.wall_s, 2),
        }

    def headline(self) -> str:
        return (
            f"network {self.network} ready in {len(self.nads)} namespaces "
            f"({len(self.created)} objects created, {len(self.adopted)} adopted)"
        )

    def artifacts(self) -> list[Artifact]:
        md = "\n".join(
            [
                "# Provisioning",
                "",
                f"Network `{self.network}` ready in {self.network_ready_s or 0:.1f}s in {len(self.nads)} namespaces.",
                "",
                f"Created: {len(self.created)}, adopted from this run: {len(self.adopted)}.",
            ]
        )
        return [Artifact("provision", "Provisioning", markdown=md)]


def _ref(obj: dict[str, Any]) -> str:
    """``Kind/ns/name`` (``Kind/name`` when cluster-scoped), how provisioning lists what it made."""
    md = obj["metadata"]
    return f"{obj['kind']}/{md['namespace'] + '/' if md.get('namespace') else ''}{md['name']}"


def ensure(kube: Kube, obj: dict[str, Any], spec: RolloutSpec, result: ProvisionResult) -> dict[str, Any]:
    """Create ``obj``, or adopt it when it exists and is this run's; anything else is an error."""
    live, created = kube.create_or_get(obj)
    if created:
        result.created.append(_ref(obj))
    elif spec.scope().owns(live):
        result.adopted.append(_ref(obj))
    else:
        raise ProvisionError(
            f"{_ref(obj)} already exists and was not created by run {spec.run_id}",
            ["udn-rollout never takes over objects it did not create: rename, or delete it"],
        )
    return live


@unit("create namespaces")
def ensure_namespaces(kube: Kube, spec: RolloutSpec, result: ProvisionResult) -> None:
    problems = []
    for name in spec.namespace_names():
        try:
            ns = ensure(kube, render_namespace(spec, name), spec, result)
        except ProvisionError as e:
            problems.append(str(e.args[0]))
            continue
        if PRIMARY_UDN_LABEL not in (ns["metadata"].get("labels") or {}):
            problems.append(f"namespace {name} lacks the primary-network label (it cannot be added later)")
    if problems:
        raise ProvisionError("namespaces could not be prepared", problems)


@unit("check admission of namespaced objects")
def check_namespaced_admission(kube: Kube, spec: RolloutSpec, result: ProvisionResult) -> None:
    """Dry-run the Secret and a VM now that a namespace exists; on a refusal, take back the namespaces
    this call created (they hold nothing yet) and fail as the preflight would have."""
    names = spec.namespace_names()
    if not names:
        return
    refused = [d for d in (dry_run(kube, o) for o in admission_objects(spec, names[0])) if not d.ok]
    if not refused:
        return
    removed = []
    for created in list(result.created):
        kind, _, name = created.partition("/")
        if kind == "Namespace" and kube.delete(NAMESPACE, name):
            removed.append(name)
            result.created.remove(created)
    raise PreflightFailed(
        "preflight failed: the API server refused objects of the run: "
        + "; ".join(f"{d.object}: {d.message}" for d in refused)
        + (f" — the namespaces this run had just created were removed again ({', '.join(removed)})" if removed else ""),
        ["nothing else was written: no network, no Secret, no VM"],
    )


def run_password(kube: Kube, spec: RolloutSpec) -> str:
    """The run's console password: read back from an existing Secret of this run, else a new one."""
    for ns in spec.namespace_names():
        secret = kube.get(SECRET, spec.credentials_secret_name(), ns)
        if secret is not None and spec.scope().owns(secret):
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


@unit("create credentials")
def ensure_credentials(kube: Kube, spec: RolloutSpec, result: ProvisionResult) -> None:
    if not spec.generates_credentials():
        missing = [ns for ns in spec.namespace_names() if kube.get(SECRET, spec.credentials_secret_name(), ns) is None]
        if missing:
            raise ProvisionError(
                f"the credentials Secret {spec.credentials_secret_name()} is missing",
                [f"create it in namespace {ns} (key userdata: a #cloud-config with password:)" for ns in missing],
            )
        return
    password = run_password(kube, spec)
    for ns in spec.namespace_names():
        ensure(kube, render_secret(spec, ns, password), spec, result)


@unit("create network")
def ensure_network(kube: Kube, spec: RolloutSpec, result: ProvisionResult) -> dict[str, Any]:
    want = render_cudn(spec)
    live, created = kube.create_or_get(want)
    if created:
        result.created.append(_ref(want))
        return live
    if not spec.scope().owns(live):
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
        live = kube.patch(CUDN, spec.network.name, {"spec": {"namespaceSelector": want["spec"]["namespaceSelector"]}})
    result.adopted.append(_ref(want))
    return live


def _condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
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


@unit("wait for the network in every namespace")
def wait_network_ready(kube: Kube, spec: RolloutSpec, timeout: float, result: ProvisionResult) -> None:
    """Wait by watch until NetworkCreated is True for every namespace and each has its NAD."""
    namespaces = spec.namespace_names()
    started = time.monotonic()

    def done(obj: dict[str, Any] | None) -> bool:
        return network_state(obj, namespaces)[0] != "pending"

    try:
        cudn = kube.wait_for(CUDN, spec.network.name, condition=done, timeout=timeout)
    except WaitTimeout as e:
        cudn = e.last or kube.get(CUDN, spec.network.name)
    except KubeError as e:
        raise ProvisionError(f"watching the network failed: {e}") from e
    state, problems = network_state(cudn, namespaces)
    result.conditions = list(((cudn or {}).get("status") or {}).get("conditions") or [])
    if state != "ready":
        raise ProvisionError(
            f"the network {spec.network.name} is not ready after {time.monotonic() - started:.0f}s"
            if state == "pending"
            else f"OVN-Kubernetes rejected the network {spec.network.name}",
            problems,
        )
    nads, _ = kube.list(NAD, label_selector="k8s.ovn.org/user-defined-network")
    have = {n["metadata"]["namespace"] for n in nads if n["metadata"]["name"] == spec.network.name}
    missing = [ns for ns in namespaces if ns not in have]
    if missing:
        raise ProvisionError("NetworkAttachmentDefinitions are missing", [f"namespace {ns}" for ns in missing])
    result.nads = sorted(f"{ns}/{spec.network.name}" for ns in have if ns in namespaces)
    result.network_ready_s = time.monotonic() - started


def require_network_ready(kube: Kube, spec: RolloutSpec) -> None:
    """Fail at once, with the fix, when the run's network is not ready (a step run on its own)."""
    state, problems = network_state(kube.get(CUDN, spec.network.name), spec.namespace_names())
    if state != "ready":
        raise ProvisionError(
            f"the network {spec.network.name} is not ready ({'; '.join(problems)}): run "
            "`udn-rollout provision` (or `rollout`) first"
        )


def run_provision(kube: Kube, spec: RolloutSpec, *, network_timeout: float = 300.0) -> ProvisionResult:
    """Namespaces → admission of namespaced objects → credentials → network → wait until rendered everywhere."""
    started = time.monotonic()
    result = ProvisionResult(network=spec.network.name)
    n = len(spec.namespace_names())
    say(f"provisioning {n} namespace{'s' if n != 1 else ''}, credentials and network {spec.network.name}")
    ensure_namespaces(kube, spec, result)
    check_namespaced_admission(kube, spec, result)
    ensure_credentials(kube, spec, result)
    ensure_network(kube, spec, result)
    wait_network_ready(kube, spec, network_timeout, result)
    result.wall_s = time.monotonic() - started
    return result
