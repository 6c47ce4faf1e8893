"""KubeVirt validation: CRD structure (422 from kube-apiserver) and virt-api webhook causes.

Source: kubevirt/kubevirt v1.5.3 (OpenShift Virtualization 4.19 is KubeVirt 1.5):
``pkg/virt-api/webhooks/validating-webhook/admitters/{vms-admitter,vmi-create-admitter,
vmi-update-admitter,migration-create-admitter}.go`` and ``pkg/network/admitter``. Only the checks
that a udn-rollout workload can trip are modelled; each keeps the upstream message, cause type and
field. Two upstream facts that surprise:

* Memory is mandatory only when a *VMI* is created (vmi-create-admitter). The VM webhook accepts a
  template without memory; the VM controller's VMI creation is what gets refused.
* No webhook checks that a ``binding: {name: X}`` plugin is registered in the KubeVirt CR. An
  unknown plugin fails later, when virt-controller renders the launcher pod, with
  :data:`BINDING_PLUGIN_NOT_FOUND` (``pkg/network/multus/annotation.go``). Use
  :func:`binding_plugin_error` from the simulated VMI controller.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, NamedTuple

from .fielderrors import DUPLICATE, INVALID, NOT_SUPPORTED, REQUIRED, go_quote
from .schema import Schema, arr, boolean, obj, string

VM_WEBHOOK = "virtualmachine-validator.kubevirt.io"
VMI_CREATE_WEBHOOK = "virtualmachineinstances-create-validator.kubevirt.io"
VMI_UPDATE_WEBHOOK = "virtualmachineinstances-update-validator.kubevirt.io"
MIGRATION_CREATE_WEBHOOK = "migration-create-validator.kubevirt.io"

DEFAULT_BINDING_PLUGINS: frozenset[str] = frozenset({"l2bridge"})
VALID_RUN_STRATEGIES = ("Halted", "Manual", "Always", "RerunOnFailure", "Once")
RUNNING_AND_RUNSTRATEGY = (
    "Running and RunStrategy are mutually exclusive. Note that Running is deprecated, please use RunStrategy instead"
)
RUNSTRATEGY_REQUIRED = "RunStrategy must be specified"
CLOUD_INIT_MAX_LEN = 2048
BINDING_PLUGIN_NOT_FOUND = "unable to find the network binding plugin '{}' in Kubevirt configuration"
_QUANTITY = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_IFACE_NAME_RE = re.compile(r"^[A-Za-z0-9-_]+$")
_IFACE_MODELS = frozenset({"e1000", "e1000e", "igb", "ne2k_pci", "pcnet", "rtl8139", "virtio"})
_IFACE_STATES = frozenset({"", "absent", "down", "up"})
_BINDING_METHODS = ("bridge", "slirp", "masquerade", "sriov", "macvtap", "passt")
_VOLUME_SOURCES = (
    "persistentVolumeClaim",
    "sysprep",
    "cloudInitNoCloud",
    "cloudInitConfigDrive",
    "containerDisk",
    "ephemeral",
    "emptyDisk",
    "hostDisk",
    "dataVolume",
    "configMap",
    "secret",
    "downwardAPI",
    "serviceAccount",
    "downwardMetrics",
    "memoryDump",
)


class Cause(NamedTuple):
    """A metav1.StatusCause as a KubeVirt webhook returns it (message has no field prefix)."""

    type: str
    message: str
    field: str = ""


# --- CRD structural schemas (the subset of validations_generated.go that matters here) ---------
def _vmi_spec() -> Schema:
    named = obj({"name": string()}, required=("name",))
    interface = obj({"name": string(), "binding": named}, required=("name",))
    network = obj(
        {"name": string(), "multus": obj({"networkName": string()}, required=("networkName",))},
        required=("name",),
    )
    volume = obj(
        {"name": string(), "containerDisk": obj({"image": string()}, required=("image",))},
        required=("name",),
    )
    devices = obj(
        {
            "disks": arr(named, max_items=256),
            "interfaces": arr(interface, max_items=256),
        }
    )
    domain = obj({"devices": devices, "memory": obj({"guest": string(pattern=_QUANTITY)})}, required=("devices",))
    return obj(
        {"domain": domain, "networks": arr(network, max_items=256), "volumes": arr(volume, max_items=256)},
        required=("domain",),
    )


_META = {"apiVersion": string(), "kind": string(), "metadata": obj()}
VM_SCHEMA = obj(
    {
        **_META,
        "spec": obj(
            {
                "running": boolean(),
                "runStrategy": string(),
                "template": obj({"metadata": obj(), "spec": _vmi_spec()}),
            },
            required=("template",),
        ),
    },
    required=("spec",),
)
VMI_SCHEMA = obj({**_META, "spec": _vmi_spec()}, required=("spec",))
VMIM_SCHEMA = obj({**_META, "spec": obj({"vmiName": string()})}, required=("spec",))


# --- helpers ---------------------------------------------------------------------------------
def _d(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list:
    return value if isinstance(value, list) else []


def _quantity_nonzero(value: Any) -> bool:
    """resource.Quantity.Value() != 0 (any non-zero mantissa rounds up to at least one byte)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value != 0
    if not isinstance(value, str):
        return False
    m = re.match(r"^[+-]?([0-9]*\.?[0-9]*)", value.strip())
    digits = (m.group(1) if m else "").replace(".", "")
    return any(c != "0" for c in digits)


# --- network validator (pkg/network/admitter, Validate order) ---------------------------------
def network_causes(path: str, spec: dict) -> list[Cause]:
    """Interfaces vs networks checks shared by the VM and VMI webhooks."""
    causes: list[Cause] = []
    networks = [_d(n) for n in _l(spec.get("networks"))]
    ifaces = [_d(i) for i in _l(_d(_d(spec.get("domain")).get("devices")).get("interfaces"))]
    ipath = f"{path}.domain.devices.interfaces"

    pods = [n for n in networks if "pod" in n and n["pod"] is not None]
    multus_default = [n for n in networks if _d(n.get("multus")).get("default") is True]
    if len(pods) > 1:
        causes.append(
            Cause(
                DUPLICATE,
                f"more than one interface is connected to a pod network in {path}.interfaces",
                f"{path}.interfaces",
            )
        )
    if len(multus_default) > 1:
        causes.append(Cause(INVALID, "Multus CNI should only have one default network", f"{path}.networks"))
    if pods and multus_default:
        causes.append(
            Cause(
                INVALID,
                "Pod network cannot be defined when Multus default network is defined",
                f"{path}.networks",
            )
        )
    for i, n in enumerate(networks):
        has_pod, has_multus = n.get("pod") is not None, n.get("multus") is not None
        if not has_pod and not has_multus:
            causes.append(Cause(REQUIRED, "should have a network type", f"{path}.networks[{i}]"))
        elif has_pod and has_multus:
            causes.append(Cause(REQUIRED, "should have only one network type", f"{path}.networks[{i}]"))
    for i, n in enumerate(networks):
        if n.get("multus") is not None and not _d(n.get("multus")).get("networkName"):
            causes.append(Cause(REQUIRED, "CNI delegating plugin must have a networkName", f"{path}.networks[{i}]"))
            break
    for i, iface in enumerate(ifaces):
        state = iface.get("state") or ""
        if state not in _IFACE_STATES:
            causes.append(
                Cause(
                    INVALID,
                    f"logical {iface.get('name', '')} interface state value is unsupported: {state}",
                    f"{ipath}[{i}].state",
                )
            )
    by_name = {n.get("name"): n for n in networks}
    for i, iface in enumerate(ifaces):
        if iface.get("binding") is not None and any(iface.get(m) is not None for m in _BINDING_METHODS):
            causes.append(
                Cause(
                    INVALID,
                    f"logical {iface.get('name', '')} interface cannot have both binding plugin and "
                    "interface binding method",
                    f"{ipath}[{i}].binding",
                )
            )
        net = by_name.get(iface.get("name"), {})
        if iface.get("masquerade") is not None and net.get("pod") is None:
            causes.append(
                Cause(INVALID, "Masquerade interface only implemented with pod network", f"{ipath}[{i}].name")
            )
    seen: set[Any] = set()
    for i, n in enumerate(networks):
        if n.get("name") in seen:
            causes.append(
                Cause(
                    DUPLICATE,
                    f"Network with name {_go_q(n.get('name'))} already exists, every network must have a unique name",
                    f"{path}.networks[{i}].name",
                )
            )
        seen.add(n.get("name"))
    iface_names = {i.get("name") for i in ifaces}
    for i, n in enumerate(networks):
        if n.get("name") not in iface_names:
            p = f"{path}.networks[{i}].name"
            causes.append(Cause(REQUIRED, f"{p} '{n.get('name', '')}' not found.", p))
    seen = set()
    for i, iface in enumerate(ifaces):
        if iface.get("name") in seen:
            causes.append(
                Cause(
                    DUPLICATE,
                    "Only one interface can be connected to one specific network",
                    f"{ipath}[{i}].name",
                )
            )
        seen.add(iface.get("name"))
    for i, iface in enumerate(ifaces):
        if iface.get("name") not in by_name:
            p = f"{ipath}[{i}].name"
            causes.append(Cause(INVALID, f"{p} '{iface.get('name', '')}' not found.", p))
    for i, iface in enumerate(ifaces):
        p = f"{ipath}[{i}].name"
        if not _IFACE_NAME_RE.match(str(iface.get("name", ""))):
            causes.append(
                Cause(
                    INVALID,
                    "Network interface name can only contain alphabetical characters, numbers, dashes (-) or "
                    "underscores (_)",
                    p,
                )
            )
        model = iface.get("model") or ""
        if model and model not in _IFACE_MODELS:
            causes.append(
                Cause(
                    NOT_SUPPORTED,
                    f"interface {p} uses model {model} that is not supported.",
                    f"{ipath}[{i}].model",
                )
            )
    return causes


def _go_q(value: Any) -> str:
    return go_quote(str(value if value is not None else ""))


# --- volumes (validateVolumes) -----------------------------------------------------------------
def _b64_len(data: str) -> int | None:
    try:
        return len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return None


def volume_causes(path: str, spec: dict) -> list[Cause]:
    """Unique names, exactly one source, cloud-init data sources and the 2048-byte limits."""
    causes: list[Cause] = []
    vpath = f"{path}.volumes"
    names: dict[Any, int] = {}
    for idx, vol in enumerate(_d(v) for v in _l(spec.get("volumes"))):
        name = vol.get("name")
        if name in names:
            causes.append(
                Cause(
                    INVALID,
                    f"{vpath}[{idx}] and {vpath}[{names[name]}] must not have the same Name.",
                    f"{vpath}[{idx}].name",
                )
            )
        else:
            names[name] = idx
        if vol.get("dataVolume") is not None and not _d(vol.get("dataVolume")).get("name"):
            causes.append(Cause(REQUIRED, "DataVolume 'name' must be set", f"{vpath}[{idx}].name"))
        if sum(1 for s in _VOLUME_SOURCES if vol.get(s) is not None) != 1:
            causes.append(Cause(INVALID, f"{vpath}[{idx}] must have exactly one source type set", f"{vpath}[{idx}]"))
        for kind in ("cloudInitNoCloud", "cloudInitConfigDrive"):
            if vol.get(kind) is not None:
                causes.extend(_cloud_init_causes(f"{vpath}[{idx}].{kind}", kind, _d(vol.get(kind))))
                break
    return causes


def _data_source_causes(
    p: str, kind: str, src: dict, field: str, secret_ref: str, many: str, what: str, secret_type: str
) -> tuple[int, list[Cause]]:
    """One cloud-init data kind (user or network data): how many sources are set, and their causes."""
    causes: list[Cause] = []
    count = length = 0
    if _d(src.get(secret_ref)).get("name"):
        count += 1
    b64 = f"{field}Base64"
    if src.get(b64):
        count += 1
        n = _b64_len(str(src[b64]))
        if n is None:
            causes.append(Cause(INVALID, f"{p}.{b64}.{kind}.{b64} is not a valid base64 value.", f"{p}.{b64}"))
        length = n or 0
    if src.get(field):
        count += 1
        length = len(str(src[field]).encode())
    if count > 1:
        causes.append(Cause(INVALID, f"{p} must have only one {many} set.", p))
    if length > CLOUD_INIT_MAX_LEN:
        causes.append(
            Cause(
                INVALID,
                f"{p} {what} exceeds {CLOUD_INIT_MAX_LEN} byte limit. Should use {secret_type} for larger data.",
                p,
            )
        )
    return count, causes


def _cloud_init_causes(p: str, kind: str, src: dict) -> list[Cause]:
    user_count, causes = _data_source_causes(
        p, kind, src, "userData", "secretRef", "userdatasource", "userdata", "UserDataSecretRef"
    )
    net_count, net_causes = _data_source_causes(
        p, kind, src, "networkData", "networkDataSecretRef", "networkdata source", "networkdata", "NetworkDataSecretRef"
    )
    causes += net_causes
    if user_count == 0 and net_count == 0:
        causes.append(Cause(INVALID, f"{p} must have at least one userdatasource or one networkdatasource set.", p))
    return causes


def vmi_spec_causes(path: str, spec: dict) -> list[Cause]:
    """ValidateVirtualMachineInstanceSpec, reduced to networks and volumes (shared by VM and VMI)."""
    return network_causes(path, spec) + volume_causes(path, spec)


def memory_causes(path: str, spec: dict) -> list[Cause]:
    """ValidateVirtualMachineInstanceMandatoryFields (VMI create only). The cause has no field."""
    domain = _d(spec.get("domain"))
    if _quantity_nonzero(_d(_d(domain.get("resources")).get("requests")).get("memory")):
        return []
    memory = domain.get("memory")
    if memory is None or (_d(memory).get("guest") is None and _d(memory).get("hugepages") is None):
        return [
            Cause(
                REQUIRED,
                f"no memory requested, at least one of '{path}.domain.memory.guest', "
                f"'{path}.domain.memory.hugepages.size' or "
                f"'{path}.domain.resources.requests.memory' must be set",
            )
        ]
    return []


def volume_disk_causes(path: str, spec: dict) -> list[Cause]:
    """validateVirtualMachineInstanceSpecVolumeDisks (VMI create only; upstream says 'domain.volumes')."""
    devices = _d(_d(spec.get("domain")).get("devices"))
    names = {_d(d).get("name") for d in _l(devices.get("disks"))} | {
        _d(f).get("name") for f in _l(devices.get("filesystems"))
    }
    causes = []
    for idx, vol in enumerate(_d(v) for v in _l(spec.get("volumes"))):
        if vol.get("memoryDump") is not None or vol.get("name") in names:
            continue
        p = f"{path}.domain.volumes[{idx}].name"
        causes.append(Cause(INVALID, f"{p} '{vol.get('name', '')}' not found.", p))
    return causes


def run_strategy_causes(spec: dict) -> list[Cause]:
    """validateRunStrategy of vms-admitter.go."""
    causes = []
    running, strategy = spec.get("running"), spec.get("runStrategy")
    if running is not None and strategy is not None:
        causes.append(Cause(INVALID, RUNNING_AND_RUNSTRATEGY, "spec.running"))
    if running is None and strategy is None:
        causes.append(Cause(INVALID, RUNSTRATEGY_REQUIRED, "spec.running"))
    if strategy is not None and strategy not in VALID_RUN_STRATEGIES:
        causes.append(Cause(INVALID, f"Invalid RunStrategy ({strategy})", "spec.runStrategy"))
    return causes


def vm_causes(vm: dict) -> list[Cause]:
    """virtualmachine-validator: ValidateVirtualMachineSpec (template, networks, volumes, runStrategy)."""
    spec = _d(vm.get("spec"))
    template = spec.get("template")
    if template is None:
        return [Cause(REQUIRED, "missing virtual machine template.", "spec.template")]
    causes = vmi_spec_causes("spec.template.spec", _d(_d(template).get("spec")))
    return causes + run_strategy_causes(spec)


def vmi_create_causes(vmi: dict) -> list[Cause]:
    """virtualmachineinstances-create-validator, in upstream order."""
    spec = _d(vmi.get("spec"))
    return vmi_spec_causes("spec", spec) + volume_disk_causes("spec", spec) + memory_causes("spec", spec)


def vmi_update_causes(vmi: dict, old: dict) -> list[Cause]:
    """virtualmachineinstances-update-validator for a non-KubeVirt user: the spec is frozen."""
    if vmi.get("spec") != old.get("spec"):
        return [Cause(NOT_SUPPORTED, "update of VMI object is restricted")]
    return []


def vmim_create_causes(vmim: dict) -> list[Cause]:
    """migration-create-validator: ValidateVirtualMachineInstanceMigrationSpec."""
    if not _d(vmim.get("spec")).get("vmiName"):
        return [Cause(REQUIRED, "vmiName is missing", "spec.vmiName")]
    return []


def binding_plugin_error(vmi_spec: dict, registered: frozenset[str] | set[str] = DEFAULT_BINDING_PLUGINS) -> str | None:
    """The launcher-pod render error for the first interface whose binding plugin is not registered."""
    for iface in _l(_d(_d(vmi_spec.get("domain")).get("devices")).get("interfaces")):
        name = _d(_d(iface).get("binding")).get("name")
        if name is not None and name not in registered:
            return BINDING_PLUGIN_NOT_FOUND.format(name)
    return None
