"""Discovery and OpenAPI documents: how clients learn which kinds exist and how to talk to them.

kubectl and the Python DynamicClient read `/api`, `/apis` and each group-version's resource list;
`kubectl apply` reads `/openapi/v3` to learn that the server validates fields itself.
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any

import orjson
from aiohttp import web

from simcluster import kinds
from simcluster.errors import ApiError
from simcluster.kinds import ResourceType

_SUB_VERBS = {
    "status": ["get", "patch", "update"],
    "finalize": ["update"],
    "proxy": ["create", "delete", "get", "patch", "update"],
    "eviction": ["create"],
}
# Subresources whose kind is not the parent's, as kube-apiserver lists them: `pods/eviction` takes a
# policy/v1 Eviction (kubectl drain's CheckEvictionSupport looks for exactly this entry).
_SUB_KIND = {"eviction": ("policy", "v1", "Eviction")}


def _server_address(request: web.Request | None) -> list[dict[str, str]]:
    host = request.host if request is not None else "127.0.0.1"
    return [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]


def core_versions(request: web.Request | None) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": _server_address(request)}


def _group_entry(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def groups_response(request: web.Request, hidden: frozenset[str] = frozenset()) -> web.Response:
    body = {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_entry(n, vs) for n, vs in kinds.groups(hidden).items()],
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def group(name: str, hidden: frozenset[str] = frozenset()) -> dict[str, Any]:
    versions = kinds.groups(hidden).get(name)
    if versions is None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(name, versions)}


def _storage_hash(rt: ResourceType) -> str:
    return hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).hexdigest()[:11]


@cache
def resource_list(group: str, version: str, hidden: frozenset[str] = frozenset()) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    if group == kinds.SUBRESOURCE_GROUP and version == kinds.SUBRESOURCE_VERSION and kinds.serves_subresources(hidden):
        for name, kind, verbs in kinds.KUBEVIRT_SUBRESOURCES:
            resources.append({"name": name, "singularName": "", "namespaced": True, "kind": kind, "verbs": list(verbs)})
    else:
        found = False
        for rt in kinds.served(hidden):
            if rt.group != group or rt.version != version:
                continue
            found = True
            entry: dict[str, Any] = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": sorted(rt.verbs),
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            entry["storageVersionHash"] = _storage_hash(rt)
            resources.append(entry)
            for sub in rt.subresources:
                sub_entry: dict[str, Any] = {
                    "name": f"{rt.plural}/{sub}",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                }
                if sub in _SUB_KIND:
                    g, v, k = _SUB_KIND[sub]
                    sub_entry.update({"group": g, "version": v, "kind": k})
                else:
                    sub_entry["kind"] = rt.kind
                sub_entry["verbs"] = _SUB_VERBS.get(sub, ["get"])
                resources.append(sub_entry)
        if not found:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


# ---- OpenAPI v3 -----------------------------------------------------------------------------
_OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string"},
        "uid": {"type": "string"},
        "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"},
        "creationTimestamp": {"type": "string", "format": "date-time"},
        "deletionTimestamp": {"type": "string", "format": "date-time"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {
            "type": "array",
            "items": {"type": "string"},
            "x-kubernetes-patch-strategy": "merge",
            "x-kubernetes-list-type": "set",
        },
        "ownerReferences": {
            "type": "array",
            "x-kubernetes-patch-merge-key": "uid",
            "x-kubernetes-patch-strategy": "merge",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["uid"],
            "items": {
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "name": {"type": "string"},
                    "uid": {"type": "string"},
                    "controller": {"type": "boolean"},
                    "blockOwnerDeletion": {"type": "boolean"},
                },
            },
        },
        "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    },
}


def _schema_name(rt: ResourceType) -> str:
    if rt.group == "":
        return f"io.k8s.api.core.v1.{rt.kind}"
    if rt.group == "apiextensions.k8s.io":
        return f"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.{rt.kind}"
    rev = ".".join(reversed(rt.group.split(".")))
    return f"{rev}.{rt.version}.{rt.kind}"


def _gvk(rt: ResourceType) -> dict[str, str]:
    return {"group": rt.group, "version": rt.version, "kind": rt.kind}


def _schema(rt: ResourceType) -> dict[str, Any]:
    props: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {
            "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}],
            "default": {},
        },
        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    }
    if rt.kind in ("ConfigMap", "Secret"):
        props["data"] = {"type": "object", "additionalProperties": {"type": "string"}}
        props["stringData"] = {"type": "object", "additionalProperties": {"type": "string"}}
        props["type"] = {"type": "string"}
        props["binaryData"] = {"type": "object", "additionalProperties": {"type": "string"}}
        props["immutable"] = {"type": "boolean"}
    if rt.kind == "Event":
        for f in (
            "reason",
            "message",
            "type",
            "firstTimestamp",
            "lastTimestamp",
            "eventTime",
            "action",
            "reportingComponent",
            "reportingInstance",
        ):
            props[f] = {"type": "string"}
        props["count"] = {"type": "integer"}
        props["involvedObject"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        props["source"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {"type": "object", "properties": props, "x-kubernetes-group-version-kind": [_gvk(rt)]}


def _operation(rt: ResourceType, verb: str, action: str) -> dict[str, Any]:
    params = [
        {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
    ]
    if action in ("post", "put", "patch"):
        params.append({"name": "fieldValidation", "in": "query", "schema": {"type": "string"}})
    return {
        "operationId": f"{verb}{rt.kind}",
        "parameters": params,
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{_schema_name(rt)}"}}},
            }
        },
        "x-kubernetes-action": {"post": "post", "put": "put", "patch": "patch", "get": "get", "delete": "delete"}[
            action
        ],
        "x-kubernetes-group-version-kind": _gvk(rt),
    }


@cache
def _gv_document(group: str, version: str, hidden: frozenset[str] = frozenset()) -> bytes:
    rts = [rt for rt in kinds.served(hidden) if rt.group == group and rt.version == version]
    if not rts:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": _OBJECT_META}
    for rt in rts:
        schemas[_schema_name(rt)] = _schema(rt)
        prefix = rt.base_path + ("/namespaces/{namespace}" if rt.namespaced else "")
        coll = f"{prefix}/{rt.plural}"
        item = f"{coll}/{{name}}"
        if "create" in rt.verbs:
            paths[coll] = {"post": _operation(rt, "create", "post"), "get": _operation(rt, "list", "get")}
        if "get" in rt.verbs:
            ops: dict[str, Any] = {"get": _operation(rt, "read", "get")}
            if "update" in rt.verbs:
                ops["put"] = _operation(rt, "replace", "put")
            if "patch" in rt.verbs:
                ops["patch"] = _operation(rt, "patch", "patch")
            if "delete" in rt.verbs:
                ops["delete"] = _operation(rt, "delete", "delete")
            paths[item] = ops
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.7"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    return orjson.dumps(doc)


def _gv_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


@cache
def _v3_root(hidden: frozenset[str] = frozenset()) -> bytes:
    paths: dict[str, Any] = {}
    seen: set[tuple[str, str]] = set()
    for rt in kinds.served(hidden):
        if (rt.group, rt.version) in seen:
            continue
        seen.add((rt.group, rt.version))
        h = hashlib.sha512(_gv_document(rt.group, rt.version, hidden)).hexdigest()[:32].upper()
        key = _gv_key(rt.group, rt.version)
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={h}"}
    return orjson.dumps({"paths": paths})


def openapi(path: str, request: web.Request, hidden: frozenset[str] = frozenset()) -> web.Response:
    if path in ("/openapi/v3", "/openapi/v3/"):
        return web.Response(body=_v3_root(hidden), content_type="application/json")
    if path.startswith("/openapi/v3/"):
        rest = path[len("/openapi/v3/") :].strip("/").split("/")
        if rest[0] == "api" and len(rest) == 2:
            body = _gv_document("", rest[1], hidden)
        elif rest[0] == "apis" and len(rest) == 3:
            body = _gv_document(rest[1], rest[2], hidden)
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return web.Response(body=body, content_type="application/json")
    raise ApiError(404, "NotFound", "the server could not find the requested resource")
