"""Render the objects of a run from the Jinja2 templates in ``manifests/``.

The templates are the single source of truth for the shape of every object: the flows create the
dicts returned here, and ``udn-rollout render`` writes the same objects as YAML an administrator can
review and ``oc apply -f``. Per-object Jinja + YAML parsing is far too slow for 10,000 VMs, so each
template is rendered once per run with placeholder names and then stamped per object.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from tasks.scope import CANARY_ROLE, CHURN_LABEL, ROLE_LABEL, canary_namespace
from tasks.spec import RolloutSpec
from tasks.templates import manifests_dir

__all__ = [
    "CANARY_VM",
    "PASSWORD_PLACEHOLDER",
    "generate_password",
    "render_canary_namespace",
    "render_canary_vm",
    "render_cudn",
    "render_migration",
    "render_namespace",
    "render_objects",
    "render_secret",
    "render_vm",
    "render_yaml",
    "write_manifests",
]

PASSWORD_PLACEHOLDER = "CHANGE-ME"
CANARY_VM = "canary"
TERMINATION_GRACE_PERIOD_SECONDS = 5  # fleet VMs hold no data; short grace keeps churn and teardown quick

_NS, _NAME, _INDEX = "zzudnns0", "zzudnname0", "zzudnindex0"
_SAFE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    """One environment, templates compiled once; undefined variables are errors, not empty strings."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(manifests_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    # JSON strings are valid YAML scalars: any value is quoted safely (no "yes"/"1e3" surprises).
    env.filters["q"] = lambda value: json.dumps(value, ensure_ascii=False)
    return env


def _render_text(template: str, context: dict[str, Any]) -> str:
    return _env().get_template(template).render(**context)


def _parse(text: str) -> dict[str, Any]:
    return yaml.load(text, Loader=_Loader)


# -- contexts: everything a template needs, computed in one place ------------------------------------


def _namespace_context(spec: RolloutSpec, name: str) -> dict[str, Any]:
    return {"name": name, "labels": spec.labels()}


def _secret_context(spec: RolloutSpec, namespace: str, password: str) -> dict[str, Any]:
    return {
        "name": spec.credentials_secret_name(),
        "namespace": namespace,
        "labels": spec.labels(),
        "password": password,
    }


def _cudn_context(spec: RolloutSpec) -> dict[str, Any]:
    net = spec.network
    return {
        "name": net.name,
        "labels": spec.labels(),
        "namespaces": spec.namespace_names(),
        "topology": net.topology,
        "subnets": net.subnets,
        "persistent_ips": bool(net.persistent_ips),
        "mtu": net.mtu,
        "join_subnets": net.join_subnets or [],
    }


def _vm_context(spec: RolloutSpec, namespace: str, name: str, index: int | str) -> dict[str, Any]:
    vms = spec.vms
    return {
        "name": name,
        "namespace": namespace,
        "index": str(index),
        "labels": spec.labels(),
        "spec_hash": spec.spec_hash(),
        "run_strategy": vms.run_strategy,
        "cpu": vms.cpu,
        "memory": vms.memory,
        "image": vms.image,
        "secret_name": spec.credentials_secret_name(),
        "node_selector": vms.node_selector or {},
        "ipv6": spec.has_ipv6(),
        "termination_grace_period_seconds": TERMINATION_GRACE_PERIOD_SECONDS,
    }


# -- stamping: render once with placeholders, then substitute per object ------------------------------


@dataclass
class _Stamp:
    """A template rendered once with placeholder names; ``text``/``obj`` fill in the real ones.

    Safe because placeholders only stand for DNS names, which need no quoting or escaping in
    either YAML or JSON; anything else falls back to a full render.
    """

    template: str
    context: dict[str, Any]
    yaml_text: str
    json_text: str

    @classmethod
    def build(cls, template: str, context: dict[str, Any]) -> _Stamp:
        text = _render_text(template, context)
        return cls(template, context, text, json.dumps(_parse(text)))

    def _subst(self, text: str, values: dict[str, str]) -> str:
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        return text

    def _safe(self, values: dict[str, str]) -> bool:
        return all(_SAFE.match(v) and not any(p in v for p in values) for v in values.values())

    def text(self, values: dict[str, str], real: dict[str, Any]) -> str:
        if self._safe(values):
            return self._subst(self.yaml_text, values)
        return _render_text(self.template, {**self.context, **real})

    def obj(self, values: dict[str, str], real: dict[str, Any]) -> dict[str, Any]:
        if self._safe(values):
            return json.loads(self._subst(self.json_text, values))
        return _parse(_render_text(self.template, {**self.context, **real}))


class _Stamps:
    """The per-run stamps of every template, built once for a render."""

    def __init__(self, spec: RolloutSpec, password: str) -> None:
        self.namespace = _Stamp.build("namespace.yaml.j2", _namespace_context(spec, _NS))
        self.secret = _Stamp.build("credentials-secret.yaml.j2", _secret_context(spec, _NS, password))
        self.vm = _Stamp.build("virtualmachine.yaml.j2", _vm_context(spec, _NS, _NAME, _INDEX))

    def namespace_values(self, ns: str) -> tuple[dict[str, str], dict[str, Any]]:
        return {_NS: ns}, {"name": ns}

    def secret_values(self, ns: str) -> tuple[dict[str, str], dict[str, Any]]:
        return {_NS: ns}, {"namespace": ns}

    def vm_values(self, ns: str, name: str, index: int) -> tuple[dict[str, str], dict[str, Any]]:
        return {_INDEX: str(index), _NAME: name, _NS: ns}, {
            "namespace": ns,
            "name": name,
            "index": str(index),
        }


# -- public API ------------------------------------------------------------------------------------


def render_namespace(spec: RolloutSpec, name: str) -> dict[str, Any]:
    """The Namespace ``name``, labelled for the primary UDN at creation and with the run labels."""
    return _parse(_render_text("namespace.yaml.j2", _namespace_context(spec, name)))


def render_cudn(spec: RolloutSpec) -> dict[str, Any]:
    """The ClusterUserDefinedNetwork selecting every namespace of the run by name."""
    return _parse(_render_text("cudn.yaml.j2", _cudn_context(spec)))


def render_secret(spec: RolloutSpec, namespace: str, password: str) -> dict[str, Any]:
    """The generated credential Secret in ``namespace`` (cloud-init user data with the password)."""
    _check_password(password)
    return _parse(_render_text("credentials-secret.yaml.j2", _secret_context(spec, namespace, password)))


def render_canary_namespace(spec: RolloutSpec) -> dict[str, Any]:
    """The isolation canary's namespace: the run's labels, role canary, no primary-network label."""
    labels = {**spec.labels(), ROLE_LABEL: CANARY_ROLE}
    return _parse(_render_text("canary-namespace.yaml.j2", {"name": canary_namespace(spec.run_id), "labels": labels}))


def render_canary_vm(spec: RolloutSpec) -> dict[str, Any]:
    """The isolation canary VM, on the default pod network of its own namespace."""
    labels = {**spec.labels(), ROLE_LABEL: CANARY_ROLE}
    context = {
        "name": CANARY_VM,
        "namespace": canary_namespace(spec.run_id),
        "labels": labels,
        "image": spec.vms.image,
        "termination_grace_period_seconds": TERMINATION_GRACE_PERIOD_SECONDS,
    }
    return _parse(_render_text("canary-vm.yaml.j2", context))


def render_migration(spec: RolloutSpec, namespace: str, vmi: str, churn_id: str) -> dict[str, Any]:
    """A VirtualMachineInstanceMigration of ``namespace/vmi``, labelled with the run and the churn."""
    labels = {**spec.labels(), CHURN_LABEL: churn_id}
    return _parse(_render_text("migration.yaml.j2", {"namespace": namespace, "vmi": vmi, "labels": labels}))


def render_vm(spec: RolloutSpec, namespace: str, name: str, index: int) -> dict[str, Any]:
    """The VirtualMachine ``namespace/name`` (index is its 1-based position, kept as a label)."""
    return _parse(_render_text("virtualmachine.yaml.j2", _vm_context(spec, namespace, name, index)))


def render_objects(spec: RolloutSpec, *, password: str | None = None) -> list[dict[str, Any]]:
    """Every object of the run, in creation order: namespaces, secrets, the CUDN, VMs.

    Secrets are included only when the spec does not reference an existing one. ``password`` is the
    console password; when None the Secrets carry PASSWORD_PLACEHOLDER, so flows must pass one.
    """
    password = PASSWORD_PLACEHOLDER if password is None else password
    _check_password(password)
    stamps = _Stamps(spec, password)
    namespaces = spec.namespace_names()
    out = [stamps.namespace.obj(*stamps.namespace_values(ns)) for ns in namespaces]
    if spec.generates_credentials():
        out.extend(stamps.secret.obj(*stamps.secret_values(ns)) for ns in namespaces)
    out.append(render_cudn(spec))
    out.extend(stamps.vm.obj(*stamps.vm_values(ns, name, i)) for ns, name, i in spec.vm_refs())
    return out


def render_vms(spec: RolloutSpec) -> list[dict[str, Any]]:
    """Every VirtualMachine of the run, in order (the fan-out's input; stamped, so 10,000 are cheap)."""
    stamps = _Stamps(spec, PASSWORD_PLACEHOLDER)
    return [stamps.vm.obj(*stamps.vm_values(ns, name, i)) for ns, name, i in spec.vm_refs()]


def generate_password(length: int = 16) -> str:
    """A random console password of letters and digits (easy to type on a serial console)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _check_password(password: str) -> None:
    if not password or "\n" in password or "\r" in password:
        raise ValueError("the console password must be one non-empty line")


def _header(spec: RolloutSpec, what: str) -> str:
    return (
        f"# {what} of udn-rollout run {spec.run_id} (network {spec.network.name}, spec hash "
        f"{spec.spec_hash()}).\n"
        "# Rendered by `udn-rollout render`; apply the directory with `oc apply -f DIR`.\n"
    )


def _credentials_note(password_is_placeholder: bool) -> str:
    if password_is_placeholder:
        return (
            f"# Replace every {PASSWORD_PLACEHOLDER} below with the console password for the VMs' default\n"
            "# user (fedora) before applying. Keep the edited file private.\n"
        )
    return "# Holds the console password in clear text: keep this file private and delete it after use.\n"


def _stream(docs: Iterator[str] | list[str]) -> str:
    return "---\n".join(docs)


def _files(spec: RolloutSpec, password: str, password_is_placeholder: bool) -> list[tuple[str, str]]:
    """(file name, content) pairs in apply order: 00 namespaces, 10 credentials, 20 CUDN, 30 VMs."""
    stamps = _Stamps(spec, password)
    namespaces = spec.namespace_names()
    files = [
        (
            "00-namespaces.yaml",
            _header(spec, "Namespaces")
            + _stream(stamps.namespace.text(*stamps.namespace_values(ns)) for ns in namespaces),
        )
    ]
    if spec.generates_credentials():
        files.append(
            (
                "10-credentials.yaml",
                _header(spec, "Console credential Secrets")
                + _credentials_note(password_is_placeholder)
                + _stream(stamps.secret.text(*stamps.secret_values(ns)) for ns in namespaces),
            )
        )
    files.append(
        (
            "20-cudn.yaml",
            _header(spec, "ClusterUserDefinedNetwork") + _render_text("cudn.yaml.j2", _cudn_context(spec)),
        )
    )
    names = spec.vm_names()
    if names:
        for ns in namespaces:
            body = _stream(stamps.vm.text(*stamps.vm_values(ns, name, i)) for i, name in enumerate(names, 1))
            files.append((f"30-vms-{ns}.yaml", _header(spec, f"VirtualMachines in {ns}") + body))
    return files


def _resolve_password(password: str | None, password_placeholder: bool) -> tuple[str, bool]:
    if password is not None:
        return password, False
    if password_placeholder:
        return PASSWORD_PLACEHOLDER, True
    return generate_password(), False


def render_yaml(spec: RolloutSpec, *, password: str | None = None, password_placeholder: bool = True) -> str:
    """All manifests as one multi-document YAML stream (for stdout or a single file)."""
    password, placeholder = _resolve_password(password, password_placeholder)
    _check_password(password)
    return _stream(content for _, content in _files(spec, password, placeholder))


def write_manifests(
    spec: RolloutSpec,
    out_dir: Path | None,
    password_placeholder: bool = True,
    *,
    password: str | None = None,
) -> list[Path] | str:
    """Write the numbered manifest files into ``out_dir`` and return their paths.

    With ``out_dir`` None, return the same manifests as one YAML stream instead. The credential
    Secrets carry PASSWORD_PLACEHOLDER unless ``password`` is given or ``password_placeholder`` is
    False (then a random password is generated and written into the file). Files of an earlier
    render of this layout that this render does not produce (VMs of namespaces no longer in the
    spec, a credentials file no longer needed) are removed so ``oc apply -f DIR`` stays exact.
    """
    if out_dir is None:
        return render_yaml(spec, password=password, password_placeholder=password_placeholder)
    password, placeholder = _resolve_password(password, password_placeholder)
    _check_password(password)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in _files(spec, password, placeholder):
        path = out_dir / name
        path.write_text(content, encoding="utf-8")
        if name.startswith("10-"):
            path.chmod(0o600)
        written.append(path)
    keep = {p.name for p in written}
    for stale in [*out_dir.glob("30-vms-*.yaml"), out_dir / "10-credentials.yaml"]:
        if stale.name not in keep and stale.exists():
            stale.unlink()
    return written
