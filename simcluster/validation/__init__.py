"""Pure validation for the simulated API server: what a real OpenShift 4.19 cluster rejects, and how.

``validate`` gives the 422 field errors that kube-apiserver itself produces (ObjectMeta, the CRD
structural schemas and their CEL rules); ``invalid_status`` turns them into the Status body.
``admit`` runs validating admission (the UDN namespace-label policy, KubeVirt's webhooks) and raises
:class:`AdmissionDenied`, whose ``status()`` is the body to send (see ``admission`` for codes).
Nothing here does I/O; upstream sources are named in each submodule.
"""

from __future__ import annotations

from .admission import AdmissionDenied, admit, admit_migration
from .fielderrors import FieldError, invalid_status
from .kubevirt import DEFAULT_BINDING_PLUGINS, VM_SCHEMA, VMI_SCHEMA, VMIM_SCHEMA, binding_plugin_error
from .names import validate_object_meta
from .ovn import CUDN_SCHEMA, IPAMCLAIM_SCHEMA, NAD_SCHEMA, UDN_SCHEMA
from .schema import Schema, validate_custom_resource

__all__ = [
    "DEFAULT_BINDING_PLUGINS",
    "KINDS",
    "AdmissionDenied",
    "FieldError",
    "admit",
    "admit_migration",
    "binding_plugin_error",
    "invalid_status",
    "validate",
]

# resource -> (schema, namespaced)
_CUSTOM: dict[str, tuple[Schema, bool]] = {
    "clusteruserdefinednetworks.k8s.ovn.org": (CUDN_SCHEMA, False),
    "userdefinednetworks.k8s.ovn.org": (UDN_SCHEMA, True),
    "network-attachment-definitions.k8s.cni.cncf.io": (NAD_SCHEMA, True),
    "ipamclaims.k8s.cni.cncf.io": (IPAMCLAIM_SCHEMA, True),
    "virtualmachines.kubevirt.io": (VM_SCHEMA, True),
    "virtualmachineinstances.kubevirt.io": (VMI_SCHEMA, True),
    "virtualmachineinstancemigrations.kubevirt.io": (VMIM_SCHEMA, True),
}

#: resource -> (kind, group), for invalid_status().
KINDS: dict[str, tuple[str, str]] = {
    "namespaces": ("Namespace", ""),
    "clusteruserdefinednetworks.k8s.ovn.org": ("ClusterUserDefinedNetwork", "k8s.ovn.org"),
    "userdefinednetworks.k8s.ovn.org": ("UserDefinedNetwork", "k8s.ovn.org"),
    "network-attachment-definitions.k8s.cni.cncf.io": ("NetworkAttachmentDefinition", "k8s.cni.cncf.io"),
    "ipamclaims.k8s.cni.cncf.io": ("IPAMClaim", "k8s.cni.cncf.io"),
    "virtualmachines.kubevirt.io": ("VirtualMachine", "kubevirt.io"),
    "virtualmachineinstances.kubevirt.io": ("VirtualMachineInstance", "kubevirt.io"),
    "virtualmachineinstancemigrations.kubevirt.io": ("VirtualMachineInstanceMigration", "kubevirt.io"),
}


def validate(resource: str, obj: dict, old: dict | None = None) -> list[FieldError]:
    """Field errors kube-apiserver would return (422) for a create (``old`` None) or an update.

    The caller must already have put the request's namespace into ``metadata.namespace`` and, for
    ``generateName``, may have filled ``metadata.name`` (as the apiserver does before validating).
    Unknown resources get the generic ObjectMeta checks only (DNS-1123 subdomain names).
    """
    res = resource.lower()
    if res == "namespaces":
        return validate_object_meta(obj, namespaced=False, dns_label=True)
    custom = _CUSTOM.get(res)
    if custom is None:
        return validate_object_meta(obj, namespaced=None)
    schema, namespaced = custom
    meta_errors = validate_object_meta(obj, namespaced=namespaced)
    return validate_custom_resource(schema, obj, old, meta_errors)
