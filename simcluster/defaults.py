"""Defaulting done by the real API server or by mutating webhooks before an object is stored."""

from __future__ import annotations

import base64
from typing import Any

from simcluster.kinds import ResourceType


def apply_defaults(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    md = obj.setdefault("metadata", {})
    if rt.kind == "Namespace":
        # kube-apiserver always sets this label; it is what CUDN selectors usually match on.
        md.setdefault("labels", {})["kubernetes.io/metadata.name"] = md.get("name", "")
        spec = obj.setdefault("spec", {})
        if old is None:
            spec.setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        else:
            obj["status"] = old.get("status", {"phase": "Active"})
    elif rt.kind == "Secret":
        string_data = obj.pop("stringData", None) or {}
        if string_data:
            data = obj.setdefault("data", {})
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
        if not obj.get("type"):
            obj["type"] = "Opaque"
    elif rt.kind == "VirtualMachineInstanceMigration":
        # KubeVirt's mutating webhook labels each migration with its VMI (see reference c).
        vmi = (obj.get("spec") or {}).get("vmiName")
        if vmi:
            md.setdefault("labels", {})["kubevirt.io/vmi-name"] = vmi
    elif rt.kind == "ConfigMap":
        pass
