"""Unknown fields, found the way kube-apiserver finds them for ``fieldValidation``.

kube-apiserver decodes a request body into its type: a built-in kind through its Go struct (strict JSON
decoding reports each field the struct lacks), a custom resource through the CRD's structural schema
(pruning reports each field the schema does not declare, except under
``x-kubernetes-preserve-unknown-fields``). What happens then depends on the request's
``fieldValidation`` (Kubernetes API reference, "fieldValidation" query parameter; GA since 1.27):

* ``Strict``: the request fails, 400 BadRequest, ``<Kind> in version "<v>" cannot be handled as a
  <Kind>: strict decoding error: unknown field "spec.x"`` for create and update
  (apiserver ``handlers/rest.go`` ``transformDecodeError``), 422 ``patch: Invalid value: …`` for a
  patch (``handlers/patch.go``);
* ``Warn`` (the default since 1.23 when the parameter is absent): the fields are dropped and each is
  named in a ``Warning`` response header;
* ``Ignore``: the fields are dropped silently.

This module knows which fields each kind declares (``tree_for``): ObjectMeta and the few built-in
kinds a client of this project writes are spelled out here; the OVN-K CRDs come from the schemas in
``simcluster.validation.ovn``; KubeVirt's CRDs from ``data/kubevirt-v1.5.2-fields.json``, derived
from KubeVirt v1.5.2's generated CRD schemas (``data/make_field_trees.py``). Kinds without a tree
(Pod, Node, Event, the OpenShift config kinds) are not checked. Duplicate JSON keys are not detected.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from .schema import Schema

Tree = Any  # 0 (a scalar) | {"p": {field: Tree}, "i": Tree, "a": Tree, "x": 1}

STRICT, WARN, IGNORE = "Strict", "Warn", "Ignore"
DIRECTIVES = ("", IGNORE, STRICT, WARN)

_ANY: Tree = {"x": 1}
_STR_MAP: Tree = {"a": 0}
_OWNER_REF: Tree = {"p": dict.fromkeys(("apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"), 0)}
_MANAGED_FIELDS: Tree = {
    "p": {
        **dict.fromkeys(("manager", "operation", "apiVersion", "time", "fieldsType", "subresource"), 0),
        "fieldsV1": _ANY,
    }
}
OBJECT_META: Tree = {
    "p": {
        **dict.fromkeys(
            (
                "name",
                "generateName",
                "namespace",
                "selfLink",
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ),
            0,
        ),
        "labels": _STR_MAP,
        "annotations": _STR_MAP,
        "ownerReferences": {"i": _OWNER_REF},
        "finalizers": {"i": 0},
        "managedFields": {"i": _MANAGED_FIELDS},
    }
}
_CONDITION: Tree = {
    "p": dict.fromkeys(("type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"), 0)
}
_NS_CONDITION: Tree = {"p": dict.fromkeys(("type", "status", "reason", "message", "lastTransitionTime"), 0)}


def _root(**fields: Tree) -> Tree:
    return {"p": {"apiVersion": 0, "kind": 0, "metadata": OBJECT_META, **fields}}


def from_schema(s: Schema) -> Tree:
    """The field tree of one of the simulator's structural schemas (``validation.schema.Schema``)."""
    if s.type == "array":
        return {"i": from_schema(s.items)} if s.items is not None else {"i": 0}
    if s.type == "object" or s.properties or s.additional is not None:
        out: dict[str, Any] = {}
        if s.properties or s.additional is None:
            out["p"] = {k: from_schema(v) for k, v in s.properties.items()}
        if s.additional is not None:
            out["a"] = from_schema(s.additional)
        return out
    return 0


@cache
def _kubevirt() -> dict[str, Tree]:
    path = Path(__file__).with_name("data") / "kubevirt-v1.5.2-fields.json"
    trees: dict[str, Tree] = json.loads(path.read_text())
    for tree in trees.values():
        tree["p"]["metadata"] = OBJECT_META  # the root ObjectMeta is decoded strictly, not pruned
    return trees


@cache
def tree_for(resource: str) -> Tree | None:
    """The declared fields of a resource (``plural.group``), or None when the simulator does not check it."""
    from .ovn import CUDN_SCHEMA, NAD_SCHEMA, UDN_SCHEMA

    status = {"p": {"conditions": {"i": _CONDITION}}}
    if resource == "namespaces":
        return _root(
            spec={"p": {"finalizers": {"i": 0}}},
            status={"p": {"phase": 0, "conditions": {"i": _NS_CONDITION}}},
        )
    if resource == "secrets":
        return _root(data=_STR_MAP, stringData=_STR_MAP, type=0, immutable=0)
    if resource == "configmaps":
        return _root(data=_STR_MAP, binaryData=_STR_MAP, immutable=0)
    if resource in ("clusteruserdefinednetworks.k8s.ovn.org", "userdefinednetworks.k8s.ovn.org"):
        schema = CUDN_SCHEMA if resource.startswith("cluster") else UDN_SCHEMA
        return _root(spec=from_schema(schema.properties["spec"]), status=status)
    if resource == "network-attachment-definitions.k8s.cni.cncf.io":
        return _root(spec=from_schema(NAD_SCHEMA.properties["spec"]))
    if resource == "ipamclaims.k8s.cni.cncf.io":
        return _root(
            spec={"p": {"interface": 0, "network": 0}},
            status={"p": {"conditions": {"i": _CONDITION}, "ips": {"i": 0}, "ownerPod": {"p": {"name": 0}}}},
        )
    kubevirt = {
        "virtualmachines.kubevirt.io": "virtualmachine",
        "virtualmachineinstances.kubevirt.io": "virtualmachineinstance",
        "virtualmachineinstancemigrations.kubevirt.io": "virtualmachineinstancemigration",
        "kubevirts.kubevirt.io": "kubevirt",
    }.get(resource)
    if kubevirt is not None:
        return _kubevirt()[kubevirt]
    return None


def unknown_fields(resource: str, obj: Any) -> list[str]:
    """Paths (``spec.template.spec.bogus``, ``spec.items[0].x``) of fields the kind does not declare, sorted
    (the order pruning reports them in)."""
    tree = tree_for(resource)
    out: list[str] = []
    if tree is not None:
        _walk(tree, obj, "", out, None)
    return sorted(out)


def prune(resource: str, obj: Any, paths: set[str] | None = None) -> list[str]:
    """Drop unknown fields from `obj` in place (only those in `paths` when given); return the dropped paths."""
    tree = tree_for(resource)
    found: list[str] = []
    drops: list[tuple[dict[str, Any], str]] = []
    if tree is not None:
        _walk(tree, obj, "", found, drops)
    dropped = []
    for (parent, key), path in zip(drops, found, strict=True):
        if paths is None or path in paths:
            parent.pop(key, None)
            dropped.append(path)
    return dropped


def _walk(t: Tree, v: Any, path: str, out: list[str], drops: list[tuple[dict[str, Any], str]] | None) -> None:
    if not isinstance(t, dict) or v is None:
        return
    if isinstance(v, dict):
        props = t.get("p")
        add = t.get("a")
        keep = "x" in t
        for key, sub in v.items():
            child = f"{path}.{key}" if path else str(key)
            if props is not None and key in props:
                _walk(props[key], sub, child, out, drops)
            elif add is not None:
                _walk(add, sub, child, out, drops)
            elif not keep and props is not None:
                out.append(child)
                if drops is not None:
                    drops.append((v, key))
    elif isinstance(v, list) and "i" in t:
        for i, item in enumerate(v):
            _walk(t["i"], item, f"{path}[{i}]", out, drops)


def strict_error(paths: list[str]) -> str:
    """runtime.NewStrictDecodingError's text."""
    return "strict decoding error: " + ", ".join(f"unknown field {json.dumps(p)}" for p in paths)


def warning_header(text: str) -> str:
    """A ``Warning`` header value (RFC 7234 warn-code 299, as kube-apiserver sends warnings)."""
    return "299 - " + json.dumps(text)
