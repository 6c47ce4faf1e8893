"""The HTTP layer of the simulated cluster: kube-apiserver's REST semantics over the store.

One catch-all route parses the URL the way kube-apiserver does (`/api/v1/...`,
`/apis/<group>/<version>/...`, namespaced or not, optional name and subresource) and dispatches on
the verb. Discovery, OpenAPI, server-side printing (`as=Table`) and watch streams are here too;
behaviour (networks, VMs, consoles) lives in controllers, which may register subresource handlers.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from aiohttp import web
from multidict import CIMultiDict

from simcluster import discovery, errors, kinds, patch, protobuf, tables, validation
from simcluster.defaults import apply_defaults
from simcluster.errors import ApiError
from simcluster.faults import Faults
from simcluster.kinds import ResourceType
from simcluster.policy import Policy
from simcluster.selectors import allowed_fields, parse_field_selector, parse_label_selector
from simcluster.store import Event, Store, deep_copy, now_rfc3339
from simcluster.validation import fields
from simcluster.validation.fielderrors import invalid

log = logging.getLogger("simcluster.api")

MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's limit for a single object
JSON = "application/json"

SubresourceHandler = Callable[[web.Request, ResourceType, str, str], Awaitable[web.StreamResponse]]
AdmissionHook = Callable[[ResourceType, str, dict[str, Any], dict[str, Any] | None], None]


@dataclass
class Target:
    """A parsed resource URL."""

    rt: ResourceType | None
    group: str
    version: str
    plural: str
    namespace: str
    name: str
    subresource: str


@dataclass
class ServerOptions:
    token: str | None
    version: dict[str, str]
    bookmark_interval: float = 5.0
    watch_backlog: int = 200_000
    hidden_kinds: frozenset[str] = frozenset()  # CRDs this cluster lacks (ClusterConfig.missing_crds)


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def _response(
    obj: Any, status: int = 200, content_type: str = JSON, headers: dict[str, str] | CIMultiDict[str] | None = None
) -> web.Response:
    return web.Response(body=_dumps(obj), status=status, content_type=content_type, headers=headers)


def _warning_headers(warnings: list[str]) -> CIMultiDict[str] | None:
    """One ``Warning`` header per warning, as kube-apiserver sends them."""
    if not warnings:
        return None
    out: CIMultiDict[str] = CIMultiDict()
    for w in warnings:
        out.add("Warning", fields.warning_header(w))
    return out


def _field_validation(query: Any, options_kind: str) -> str:
    """The request's ``fieldValidation`` (``Warn`` when absent, as since Kubernetes 1.23)."""
    value = query.get("fieldValidation", "")
    if value not in fields.DIRECTIVES:
        supported = ", ".join(json.dumps(v) for v in fields.DIRECTIVES)
        body = f"Unsupported value: {json.dumps(value)}: supported values: {supported}"
        raise ApiError(
            422,
            "Invalid",
            f'{options_kind}.meta.k8s.io "" is invalid: fieldValidation: {body}',
            {
                "group": "meta.k8s.io",
                "kind": options_kind,
                "causes": [{"reason": "FieldValueNotSupported", "message": body, "field": "fieldValidation"}],
            },
        )
    return value or fields.WARN


def error_response(err: ApiError) -> web.Response:
    return _response(err.status(), err.code, headers=err.headers)


class ApiServer:
    """Routes requests to the store, applying defaulting, validation, admission and policy."""

    def __init__(
        self, store: Store, options: ServerOptions, policy: Policy | None = None, faults: Faults | None = None
    ):
        self.store = store
        self.options = options
        self.policy = policy or Policy()
        self.faults = faults or Faults()
        self.subresources: dict[tuple[str, str, str], SubresourceHandler] = {}
        self.admission_hooks: list[AdmissionHook] = []
        self.admin_routes: dict[tuple[str, str], Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}
        self.requests_served = 0
        self.open_watches = 0  # watch streams being served now (admin stats)
        self._closing = asyncio.Event()

    # ---- wiring --------------------------------------------------------------------------
    def register_subresource(self, group: str, plural: str, sub: str, handler: SubresourceHandler) -> None:
        self.subresources[(group, plural, sub)] = handler

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY + 1024, middlewares=[self._middleware])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def close(self) -> None:
        self._closing.set()

    # ---- request pipeline ----------------------------------------------------------------
    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.requests_served += 1
        path = request.path
        public = path in ("/healthz", "/readyz", "/livez", "/version")
        if self.options.token and not public:
            auth = request.headers.get("Authorization", "")
            if not (auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip(), self.options.token)):
                return error_response(errors.unauthorized())
        if not path.startswith("/simcluster/"):
            try:
                await self.faults.before_request(request)
            except ApiError as e:
                return error_response(e)
        try:
            return await handler(request)
        except ApiError as e:
            return error_response(e)
        except web.HTTPRequestEntityTooLarge:  # aiohttp's own limit (client_max_size): a Status too
            return error_response(errors.too_large(MAX_BODY))
        except web.HTTPException as e:  # aiohttp's own answers (e.g. a path its router cannot match)
            if e.status < 400:
                raise
            return error_response(ApiError(e.status, e.reason.replace(" ", ""), e.text or e.reason))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:  # a bug in the simulator must still answer like a server, and be visible
            log.exception("internal error serving %s %s", request.method, request.path)
            return error_response(errors.internal(f"simcluster: {type(e).__name__}: {e}"))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if path == "/version":
            return _response(self.options.version)
        if path.startswith("/simcluster/"):
            handler = self.admin_routes.get((request.method, path))
            if handler is None:
                raise ApiError(404, "NotFound", f"no simcluster admin endpoint {request.method} {path}")
            return await handler(request)
        hidden = self.options.hidden_kinds
        if path.startswith("/openapi"):
            return discovery.openapi(path, request, hidden)
        parts = path.strip("/").split("/")
        if parts == ["api"]:
            return _response(discovery.core_versions(request))
        if parts == ["apis"]:
            return discovery.groups_response(request, hidden)
        if parts[0] == "api" and len(parts) == 2:
            return _response(discovery.resource_list("", parts[1], hidden))
        if parts[0] == "apis" and len(parts) == 2:
            return _response(discovery.group(parts[1], hidden))
        if parts[0] == "apis" and len(parts) == 3:
            return _response(discovery.resource_list(parts[1], parts[2], hidden))
        target = self._parse(parts)
        return await self._serve(request, target)

    def _parse(self, parts: list[str]) -> Target:
        if parts[0] == "api" and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        elif len(rest) == 2 and rest[0] == "namespaces":
            # /api/v1/namespaces/<name> is the namespace object itself
            return Target(kinds.NAMESPACE, "", version, "namespaces", "", rest[1], "")
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        sub = "/".join(rest[2:]) if len(rest) > 2 else ""
        if group == "" and plural == "namespaces" and namespace and not name:
            # /api/v1/namespaces/<ns>/status|finalize
            return Target(kinds.NAMESPACE, "", version, "namespaces", "", namespace, rest[0])
        rt = kinds.BY_PATH.get((group, version, plural))
        hidden = self.options.hidden_kinds
        if rt is not None and rt.key in hidden:
            rt = None  # a CRD this cluster lacks: not routed, as if never installed
        if rt is None and (group, plural, sub) not in self.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if rt is None and group == kinds.SUBRESOURCE_GROUP and not kinds.serves_subresources(hidden):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if rt is not None and namespace and not rt.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return Target(rt, group, version, plural, namespace, name, sub)

    def _authorize(self, verb: str, t: Target, group: str | None = None) -> None:
        g = t.group if group is None else group
        resource = t.plural + (f"/{t.subresource}" if t.subresource else "")
        if not self.policy.allows(verb, g, resource, t.namespace):
            raise ApiError(
                403,
                "Forbidden",
                self.policy.forbidden_message(verb, g, resource, t.namespace, t.name),
                {"name": t.name, "group": g, "kind": t.plural},
            )

    async def _serve(self, request: web.Request, t: Target) -> web.StreamResponse:
        method = request.method
        if (t.group, t.plural, t.subresource) in self.subresources and t.subresource:
            verb = {"GET": "get", "PUT": "update", "POST": "create", "PATCH": "patch"}.get(method, method.lower())
            self._authorize(verb, t)
            rt = t.rt or kinds.BY_PATH.get(("kubevirt.io", "v1", t.plural))
            assert rt is not None
            return await self.subresources[(t.group, t.plural, t.subresource)](request, rt, t.namespace, t.name)
        rt = t.rt
        assert rt is not None
        if t.subresource and t.subresource not in rt.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        q = request.query
        if method == "GET":
            watching = q.get("watch") in ("true", "1")
            if t.name and not watching:
                self._authorize("get", t)
                return self._get(request, rt, t)
            self._authorize("watch" if watching else "list", t)
            if watching:
                return await self._watch(request, rt, t)
            return self._list(request, rt, t)
        if "dryRun" in q and q.get("dryRun") not in ("All", ""):
            raise errors.bad_request(f"Invalid dryRun value: {q.get('dryRun')}")
        if method == "POST":
            if t.name and not t.subresource:
                raise errors.method_not_allowed()
            if rt.kind != "SelfSubjectAccessReview":  # system:basic-user lets every user ask what it may do
                self._authorize("create", t)
            if "create" not in rt.verbs:
                raise errors.method_not_allowed()
            if rt.kind == "SelfSubjectAccessReview":
                return self._access_review(await self._body(request))
            directive = _field_validation(q, "CreateOptions")
            return self._create(rt, t, await self._body(request), dry_run=q.get("dryRun") == "All", directive=directive)
        if method == "PUT":
            self._authorize("update", t)
            if "update" not in rt.verbs or not t.name:
                raise errors.method_not_allowed()
            directive = _field_validation(q, "UpdateOptions")
            return self._update(rt, t, await self._body(request), dry_run=q.get("dryRun") == "All", directive=directive)
        if method == "PATCH":
            self._authorize("patch", t)
            if "patch" not in rt.verbs or not t.name:
                raise errors.method_not_allowed()
            return await self._patch(request, rt, t)
        if method == "DELETE":
            if not t.name:
                self._authorize("deletecollection", t)
                return await self._delete_collection(request, rt, t)
            self._authorize("delete", t)
            if "delete" not in rt.verbs:
                raise errors.method_not_allowed()
            return await self._delete(request, rt, t)
        raise errors.method_not_allowed()

    # ---- bodies --------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if len(raw) > MAX_BODY:
            raise errors.too_large(MAX_BODY)
        return decode_body(raw, content_type(request))

    # ---- verbs ---------------------------------------------------------------------------
    def _get(self, request: web.Request, rt: ResourceType, t: Target) -> web.Response:
        obj = self.store.get(rt, t.namespace, t.name)
        if _wants_table(request):
            return _response(
                tables.table(
                    rt,
                    [obj],
                    obj["metadata"]["resourceVersion"],
                    include=request.query.get("includeObject", "Metadata"),
                ),
                content_type=JSON,
            )
        return _response(obj)

    def _selectors(self, request: web.Request, rt: ResourceType) -> tuple[Any, Any]:
        q = request.query
        return (
            parse_label_selector(q.get("labelSelector")),
            parse_field_selector(q.get("fieldSelector"), allowed_fields(rt.plural)),
        )

    def _list(self, request: web.Request, rt: ResourceType, t: Target) -> web.Response:
        q = request.query
        lpred, fpred = self._selectors(request, rt)
        try:
            limit = int(q.get("limit") or 0)
        except ValueError as e:
            raise errors.bad_request(f"invalid limit: {q.get('limit')}") from e
        items, rv, cont, remaining = self.store.list(
            rt, t.namespace or None, lpred, fpred, max(limit, 0), q.get("continue") or None
        )
        if _wants_table(request):
            return _response(tables.table(rt, items, rv, cont, q.get("includeObject", "Metadata")))
        md: dict[str, Any] = {"resourceVersion": rv}
        if cont:
            md["continue"] = cont
        if remaining is not None:
            md["remainingItemCount"] = remaining
        body = {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": md, "items": items}
        return web.Response(body=_dumps(body), content_type=JSON)

    def _check_namespace(self, rt: ResourceType, t: Target, obj: dict[str, Any]) -> str:
        md = obj.setdefault("metadata", {})
        if not rt.namespaced:
            md.pop("namespace", None)
            return ""
        body_ns = md.get("namespace")
        if body_ns and t.namespace and body_ns != t.namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        ns = t.namespace or body_ns or ""
        if not ns:
            raise errors.bad_request("an empty namespace may not be set during creation")
        md["namespace"] = ns
        return ns

    def _check_kind(self, rt: ResourceType, obj: Any) -> None:
        if not isinstance(obj, dict):
            raise errors.bad_request(f"Object 'Kind' is missing in '{str(obj)[:100]}'")
        kind = obj.get("kind")
        api_version = obj.get("apiVersion")
        if kind and kind != rt.kind:
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type {rt.kind}): couldn't get version/kind; json parse error: kind {kind!r} does not match {rt.kind!r}"
            )
        if api_version and api_version != rt.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
            )
        _check_top_types(rt, obj)
        md = obj.get("metadata")
        if md is None and "metadata" in obj:
            obj["metadata"] = {}  # `metadata: null` decodes as no metadata, as in kube-apiserver
        elif md is not None and not isinstance(md, dict):
            raise errors.bad_request("metadata must be an object")
        elif md is not None:
            _check_meta_types(md)

    def _validate(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, op: str) -> None:
        errs = validation.validate(rt.key, obj, old)
        if errs:
            name = obj.get("metadata", {}).get("name") or obj.get("metadata", {}).get("generateName", "")
            status = validation.invalid_status(rt.kind, rt.group, name, errs)
            raise ApiError(422, "Invalid", status["message"], status.get("details"))
        try:
            validation.admit(rt.key, obj, old, op)
            for hook in self.admission_hooks:
                hook(rt, op, obj, old)
        except validation.AdmissionDenied as e:
            raise ApiError(
                getattr(e, "code", 403),
                getattr(e, "reason", "Forbidden"),
                e.message,
                e.details or {"name": obj.get("metadata", {}).get("name", ""), "group": rt.group, "kind": rt.plural},
            ) from e

    def create_object(
        self, rt: ResourceType, obj: dict[str, Any], namespace: str = "", dry_run: bool = False
    ) -> dict[str, Any]:
        """The create pipeline, shared by POST and server-side apply."""
        t = Target(rt, rt.group, rt.version, rt.plural, namespace, "", "")
        self._check_kind(rt, obj)
        ns = self._check_namespace(rt, t, obj)
        md = obj["metadata"]
        if not md.get("name") and not md.get("generateName"):
            raise ApiError(
                422,
                "Invalid",
                f'{rt.kind}{"." + rt.group if rt.group else ""} "" is invalid: metadata.name: Required value: name or generateName is required',
                {
                    "kind": rt.plural,
                    "group": rt.group,
                    "causes": [
                        {
                            "reason": "FieldValueRequired",
                            "message": "Required value: name or generateName is required",
                            "field": "metadata.name",
                        }
                    ],
                },
            )
        if ns:
            nso = self.store.try_get(kinds.NAMESPACE, "", ns)
            if nso is None:
                raise errors.not_found(kinds.NAMESPACE, ns)
            if nso["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{rt.plural}{"." + rt.group if rt.group else ""} "{md.get("name", "")}" is forbidden: unable to create new content in namespace {ns} because it is being terminated',
                    {
                        "name": md.get("name", ""),
                        "group": rt.group,
                        "kind": rt.plural,
                        "causes": [
                            {
                                "reason": "NamespaceTerminating",
                                "message": f"namespace {ns} is being terminated",
                                "field": "metadata.namespace",
                            }
                        ],
                    },
                )
        for k in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation"):
            md.pop(k, None)
        if not md.get("name"):
            md["name"] = self.store.generate_name(rt, ns, md["generateName"])
        apply_defaults(rt, obj, None)
        self._validate(rt, obj, None, "CREATE")
        denial = self.faults.admission_deny.get(rt.kind)
        if denial is not None:  # a cluster's own policy webhook refusing the kind (dry runs included)
            raise errors.forbidden(
                rt, md["name"], f'admission webhook "policy.simcluster.example" denied the request: {denial}'
            )
        if dry_run:
            md["creationTimestamp"] = now_rfc3339()
            return obj
        return self.store.create(rt, obj)

    def _unknown_fields(
        self, rt: ResourceType, body: dict[str, Any], old: dict[str, Any] | None, directive: str, patch: bool = False
    ) -> list[str]:
        """fieldValidation: fields the kind does not declare (beyond those `old` already had) fail the
        request (Strict) or are dropped from `body` (Warn, Ignore); returns the warnings to send."""
        unknown = fields.unknown_fields(rt.key, body)
        if unknown and old is not None:
            before = set(fields.unknown_fields(rt.key, old))
            unknown = [p for p in unknown if p not in before]
        if not unknown:
            return []
        if directive == fields.STRICT:
            detail = fields.strict_error(unknown)
            if patch:
                status = validation.invalid_status("", "", "", [invalid("patch", orjson.dumps(body).decode(), detail)])
                raise ApiError(422, "Invalid", status["message"], status["details"])
            kind, api_version = body.get("kind"), str(body.get("apiVersion") or "")
            if kind:
                version = api_version.rsplit("/", 1)[-1]
                raise errors.bad_request(
                    f"{kind} in version {json.dumps(version)} cannot be handled as a {rt.kind}: {detail}"
                )
            raise errors.bad_request(f"the object provided is unrecognized (must be of type {rt.kind}): {detail}")
        fields.prune(rt.key, body, set(unknown))
        return [f"unknown field {json.dumps(p)}" for p in unknown] if directive == fields.WARN else []

    def _create(
        self, rt: ResourceType, t: Target, obj: Any, dry_run: bool, directive: str = fields.WARN
    ) -> web.Response:
        self._check_kind(rt, obj)
        warnings = self._unknown_fields(rt, obj, None, directive)
        created = self.create_object(rt, obj, t.namespace, dry_run)
        return _response(created, 201, headers=_warning_headers(warnings))

    def update_object(
        self, rt: ResourceType, t: Target, new: dict[str, Any], *, check_rv: bool = True, dry_run: bool = False
    ) -> dict[str, Any]:
        """The update pipeline: status subresource rules, immutable metadata, generation, validation."""
        old = self.store.get(rt, t.namespace, t.name)
        self._check_kind(rt, new)
        md = new.setdefault("metadata", {})
        if md.get("name") and md["name"] != t.name:
            raise errors.bad_request(
                f"the name of the object ({md['name']}) does not match the name on the URL ({t.name})"
            )
        md["name"] = t.name
        if rt.namespaced:
            if md.get("namespace") and md["namespace"] != t.namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            md["namespace"] = t.namespace
        rv = md.get("resourceVersion")
        if check_rv and rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, t.name)
        if md.get("uid") and md["uid"] != old["metadata"]["uid"]:
            raise errors.conflict(
                rt,
                t.name,
                f"Precondition failed: UID in precondition: {md['uid']}, UID in object meta: {old['metadata']['uid']}",
            )
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        omd = old["metadata"]
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if k in omd:
                md[k] = omd[k]
            else:
                md.pop(k, None)
        if t.subresource == "status":
            merged = deep_copy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        elif t.subresource == "finalize" and rt.kind == "Namespace":
            merged = deep_copy(old)
            merged["spec"] = new.get("spec", {})
            new = merged
        elif "status" in rt.subresources and rt.kind != "Namespace":
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if omd.get("deletionTimestamp"):
            # finalizers may only be removed once deletion started
            added = set(new["metadata"].get("finalizers") or []) - set(omd.get("finalizers") or [])
            if added:
                raise ApiError(
                    422,
                    "Invalid",
                    f'{rt.kind} "{t.name}" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {sorted(added)!r}',
                )
        if rt.has_generation and t.subresource != "status" and _spec_of(new) != _spec_of(old):
            new["metadata"]["generation"] = int(omd.get("generation", 1)) + 1
        apply_defaults(rt, new, old)
        self._validate(rt, new, old, "UPDATE")
        if dry_run:
            return new
        if _same(new, old):
            return old  # a no-op update does not bump resourceVersion, as with etcd
        return self.store.replace(rt, new)

    def _update(
        self, rt: ResourceType, t: Target, obj: Any, dry_run: bool, directive: str = fields.WARN
    ) -> web.Response:
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request must be an object")
        old = self.store.try_get(rt, t.namespace, t.name)
        warnings = self._unknown_fields(rt, obj, old, directive)
        return _response(self.update_object(rt, t, obj, dry_run=dry_run), headers=_warning_headers(warnings))

    async def _patch(self, request: web.Request, rt: ResourceType, t: Target) -> web.Response:
        ctype = content_type(request)
        raw = await request.read()
        if len(raw) > MAX_BODY:
            raise errors.too_large(MAX_BODY)
        body = decode_body(raw, ctype if ctype != "application/apply-patch+yaml" else "application/yaml")
        dry_run = request.query.get("dryRun") == "All"
        directive = _field_validation(request.query, "PatchOptions")
        existing = self.store.try_get(rt, t.namespace, t.name)
        if ctype == "application/apply-patch+yaml":
            if not isinstance(body, dict):
                raise errors.bad_request("apply patch must be an object")
            if existing is None:
                self._check_kind(rt, body)
                body.setdefault("metadata", {})["name"] = t.name
                return _response(self.create_object(rt, body, t.namespace, dry_run), 201)
            new = patch.merge_patch(deep_copy(existing), body)
        elif existing is None:
            raise errors.not_found(rt, t.name)
        elif ctype == "application/merge-patch+json":
            new = patch.merge_patch(deep_copy(existing), body)
        elif ctype == "application/json-patch+json":
            new = patch.json_patch(existing, body)
        elif ctype == "application/strategic-merge-patch+json":
            if rt.is_crd:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                )
            new = patch.strategic_merge_patch(existing, body)
        else:
            raise errors.unsupported_media_type(ctype)
        if not isinstance(new, dict):
            raise errors.bad_request("the patch produced something that is not an object")
        self._check_kind(rt, new)  # the patched object decodes like a body: metadata an object, …
        warnings = self._unknown_fields(rt, new, existing, directive, patch=True)
        patch_md = body.get("metadata") if isinstance(body, dict) else None
        rv_in_patch = isinstance(patch_md, dict) and patch_md.get("resourceVersion")
        if not rv_in_patch:
            new.setdefault("metadata", {})["resourceVersion"] = existing["metadata"]["resourceVersion"]
        return _response(
            self.update_object(rt, t, new, check_rv=True, dry_run=dry_run), headers=_warning_headers(warnings)
        )

    async def _delete(self, request: web.Request, rt: ResourceType, t: Target) -> web.Response:
        opts: dict[str, Any] = {}
        raw = await request.read()
        if raw.strip():
            opts = decode_body(raw, content_type(request) or JSON) or {}
            if not isinstance(opts, dict):
                raise errors.bad_request("DeleteOptions must be an object")
        policy = request.query.get("propagationPolicy") or opts.get("propagationPolicy") or ""
        if policy and policy not in ("Orphan", "Background", "Foreground"):
            raise ApiError(
                422,
                "Invalid",
                f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan", "nil"',
            )
        obj = self.store.get(rt, t.namespace, t.name)
        pre = opts.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
            raise errors.conflict(
                rt,
                t.name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {obj['metadata']['uid']}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise errors.conflict(
                rt,
                t.name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {obj['metadata']['resourceVersion']}",
            )
        try:
            for hook in self.admission_hooks:
                hook(rt, "DELETE", obj, obj)
        except validation.AdmissionDenied as e:
            raise ApiError(getattr(e, "code", 403), getattr(e, "reason", "Forbidden"), e.message, e.details) from e
        if request.query.get("dryRun") == "All" or opts.get("dryRun"):
            return _response(obj)
        return _response(self.delete_object(rt, t.namespace, t.name, policy))

    def delete_object(self, rt: ResourceType, namespace: str, name: str, policy: str = "") -> dict[str, Any]:
        if rt.kind == "Namespace":
            return self._delete_namespace(name)
        extra: list[str] = []
        if policy == "Foreground":
            extra.append("foregroundDeletion")
        elif policy == "Orphan":
            extra.append("orphan")
        return self.store.delete(rt, namespace, name, extra)

    def _delete_namespace(self, name: str) -> dict[str, Any]:
        old = self.store.get(kinds.NAMESPACE, "", name)
        if old["metadata"].get("deletionTimestamp"):
            return old
        if not (old.get("spec") or {}).get("finalizers") and not old["metadata"].get("finalizers"):
            return self.store.delete(kinds.NAMESPACE, "", name)
        obj = deep_copy(old)
        obj["metadata"]["deletionTimestamp"] = now_rfc3339()
        obj["metadata"]["deletionGracePeriodSeconds"] = 0
        obj["status"] = {"phase": "Terminating"}
        return self.store.replace(kinds.NAMESPACE, obj)

    async def _delete_collection(self, request: web.Request, rt: ResourceType, t: Target) -> web.Response:
        if "deletecollection" not in rt.verbs:
            raise errors.method_not_allowed()
        lpred, fpred = self._selectors(request, rt)
        items, _, _, _ = self.store.list(rt, t.namespace or None, lpred, fpred)
        policy = request.query.get("propagationPolicy") or ""
        deleted = []
        for obj in list(items):
            md = obj["metadata"]
            try:
                deleted.append(self.delete_object(rt, md.get("namespace", ""), md["name"], policy))
            except ApiError as e:
                if e.code != 404:
                    raise
        return _response(
            {
                "kind": rt.list_kind,
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": deleted,
            }
        )

    def _access_review(self, body: Any) -> web.Response:
        if not isinstance(body, dict):
            raise errors.bad_request("SelfSubjectAccessReview must be an object")
        spec = body.get("spec") or {}
        ra = spec.get("resourceAttributes")
        nra = spec.get("nonResourceAttributes")
        if ra:
            resource = ra.get("resource", "") + (f"/{ra['subresource']}" if ra.get("subresource") else "")
            allowed = self.policy.allows(ra.get("verb", ""), ra.get("group", ""), resource, ra.get("namespace", ""))
        elif nra:
            allowed = self.policy.allow_all
        else:
            raise ApiError(
                422,
                "Invalid",
                'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified',
            )
        status: dict[str, Any] = {"allowed": allowed}
        if allowed:
            status["reason"] = "RBAC: allowed by simcluster policy"
        out = {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status,
        }
        return _response(out, 201)

    # ---- watch ---------------------------------------------------------------------------
    async def _watch(self, request: web.Request, rt: ResourceType, t: Target) -> web.StreamResponse:
        q = request.query
        lpred, fpred = self._selectors(request, rt)
        if t.name:
            name, base = t.name, fpred

            def fpred(o: dict[str, Any]) -> bool:
                return o["metadata"]["name"] == name and (base is None or base(o))

        rv_param = q.get("resourceVersion", "")
        send_initial = q.get("sendInitialEvents") == "true"
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        raw_timeout = q.get("timeoutSeconds") or ""
        if raw_timeout and not _INT64.fullmatch(raw_timeout):  # an int64, as kube parses it: no nan, inf or 1.5
            raise errors.bad_request(f"invalid timeoutSeconds: {raw_timeout}")
        timeout = float(min(int(raw_timeout), 2**31)) if raw_timeout else 1800.0
        as_table = _wants_table(request)
        include = q.get("includeObject", "Metadata")
        since: int | None
        if send_initial or rv_param in ("", "0"):
            since = None
        elif _UINT.fullmatch(rv_param):
            since = int(rv_param)
        else:  # resource versions are unsigned integers in ASCII (int() would take "-5" and "١٢")
            raise errors.bad_request(f"invalid resource version: {rv_param}")
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": JSON if not as_table else "application/json;as=Table;g=meta.k8s.io;v=v1",
                "Cache-Control": "no-cache, private",
            },
        )
        resp.enable_chunked_encoding()
        try:
            sub, backlog = self.store.subscribe(
                rt, t.namespace or None, lpred, fpred, since, max_backlog=self.options.watch_backlog
            )
        except ApiError as e:
            await resp.prepare(request)
            await resp.write(_dumps({"type": "ERROR", "object": e.status()}) + b"\n")
            await resp.write_eof()
            return resp
        await resp.prepare(request)
        first_table = [True]

        def encode(ev: Event) -> bytes:
            obj: Any = ev.obj
            if as_table:
                obj = tables.table(
                    rt, [ev.obj], ev.obj["metadata"]["resourceVersion"], include=include, with_columns=first_table[0]
                )
                first_table[0] = False
            return _dumps({"type": ev.type, "object": obj}) + b"\n"

        def bookmark(initial_end: bool = False) -> bytes:
            md: dict[str, Any] = {"resourceVersion": str(self.store.resource_version)}
            if initial_end:
                md["annotations"] = {"k8s.io/initial-events-end": "true"}
            return (
                _dumps({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": md}})
                + b"\n"
            )

        deadline = time.monotonic() + timeout
        cut_at = self.faults.watch_cut_deadline()
        self.open_watches += 1
        try:
            if backlog:
                await resp.write(b"".join(encode(ev) for ev in backlog))
            if send_initial and bookmarks:
                await resp.write(bookmark(initial_end=True))
            next_bookmark = time.monotonic() + self.options.bookmark_interval
            while not self._closing.is_set():
                now = time.monotonic()
                end = min(deadline, cut_at or deadline)
                if now >= end:
                    break
                wait = min(end - now, max(next_bookmark - now, 0.01) if bookmarks else end - now)
                if sub.queue.empty():
                    try:
                        async with asyncio.timeout(wait):  # no task per wait, unlike wait_for
                            ev = await sub.queue.get()
                    except TimeoutError:
                        if bookmarks and time.monotonic() >= next_bookmark:
                            await resp.write(bookmark())
                            next_bookmark = time.monotonic() + self.options.bookmark_interval
                        continue
                else:
                    ev = sub.queue.get_nowait()
                if ev is None:  # fell too far behind: the server ends the watch, the client relists
                    break
                chunk = [encode(ev)]
                ended = False
                while not sub.queue.empty() and len(chunk) < 512:
                    nxt = sub.queue.get_nowait()
                    if nxt is None:
                        ended = True
                        break
                    chunk.append(encode(nxt))
                await resp.write(b"".join(chunk))
                if ended:
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.open_watches -= 1
            self.store.unsubscribe(sub)
        try:
            await resp.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return resp


def _check_top_types(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Top-level fields decode into typed fields too: null is absent; `spec`/`status` must be objects
    (a 400 decoding error for built-in kinds, the schema's 422 for custom resources); a Secret's or a
    ConfigMap's data maps strings to strings."""
    for key in [k for k, v in obj.items() if v is None and k not in ("apiVersion", "kind")]:
        del obj[key]
    for key in ("spec", "status"):
        if key in obj and not isinstance(obj[key], dict):
            got = {list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}.get(
                type(obj[key]), "value"
            )
            if rt.is_crd:
                name = (obj.get("metadata") or {}).get("name", "") if isinstance(obj.get("metadata"), dict) else ""
                raise ApiError(
                    422,
                    "Invalid",
                    f'{rt.kind}.{rt.group} "{name}" is invalid: {key}: Invalid value: "{got}": {key} in body must be of type object: "{got}"',
                    {"name": name, "group": rt.group, "kind": rt.kind},
                )
            raise errors.bad_request(
                f"json: cannot unmarshal {got} into Go struct field {rt.kind}.{key} of type object"
            )
    if rt.kind in ("Secret", "ConfigMap"):
        for key in ("data", "stringData", "binaryData"):
            if key in obj and not (isinstance(obj[key], dict) and all(isinstance(v, str) for v in obj[key].values())):
                raise errors.bad_request(
                    f"json: cannot unmarshal {type(obj[key]).__name__} into Go struct field {rt.kind}.{key} of type map[string]string"
                )


_INT64 = re.compile(r"-?[0-9]{1,18}")
_UINT = re.compile(r"[0-9]{1,19}")
_META_STRINGS = (
    "name",
    "generateName",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
)


def _check_meta_types(md: dict[str, Any]) -> None:
    """ObjectMeta decodes into typed fields: null is the zero value, a wrong type is a 400 (as the Go
    decoder answers), so nothing downstream meets `labels: null` or `finalizers: 5`."""

    def bad(field_: str, want: str) -> ApiError:
        return errors.bad_request(
            f"json: cannot unmarshal {type(md[field_]).__name__} into Go struct field ObjectMeta.metadata.{field_} of type {want}"
        )

    for key in [k for k, v in md.items() if v is None]:
        del md[key]
    for key in _META_STRINGS:
        if key in md and not isinstance(md[key], str):
            raise bad(key, "string")
    for key in ("labels", "annotations"):
        if key in md and not (isinstance(md[key], dict) and all(isinstance(v, str) for v in md[key].values())):
            raise bad(key, "map[string]string")
    if "finalizers" in md and not (
        isinstance(md["finalizers"], list) and all(isinstance(f, str) for f in md["finalizers"])
    ):
        raise bad("finalizers", "[]string")
    if "ownerReferences" in md and not (
        isinstance(md["ownerReferences"], list) and all(isinstance(r, dict) for r in md["ownerReferences"])
    ):
        raise bad("ownerReferences", "[]v1.OwnerReference")
    for key in ("generation", "deletionGracePeriodSeconds"):
        if key in md and (isinstance(md[key], bool) or not isinstance(md[key], int)):
            raise bad(key, "int64")


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: what a generation counts changes of."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    a2 = dict(a)
    b2 = dict(b)
    a2["metadata"] = {k: v for k, v in a["metadata"].items() if k != "resourceVersion"}
    b2["metadata"] = {k: v for k, v in b["metadata"].items() if k != "resourceVersion"}
    return a2 == b2


def _wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "as=Table" in accept


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# Go's mime.ParseMediaType: type[/subtype], then "; key=value" parameters (value a token or a quoted
# string); trailing semicolons are ignored, anything else makes the media type unparsable.
_MEDIA_TYPE = re.compile(
    rf"\s*({_TOKEN}(?:/{_TOKEN})?)\s*(?:;\s*{_TOKEN}\s*=\s*(?:{_TOKEN}|\"(?:[^\"\\]|\\.)*\")\s*)*(?:;\s*)*"
)


def content_type(request: web.Request) -> str:
    """The media type as sent (aiohttp's `content_type` turns an unparsable one into
    application/octet-stream, which would then be read as JSON instead of answered with 415).

    As kube-apiserver negotiates it (apiserver ``handlers/negotiation``
    ``NegotiateInputSerializerForMediaType``): no header at all means the default, JSON; a header whose
    media type does not parse (``mime.ParseMediaType``: e.g. ``;`` or ``; charset=x``) matches no
    serializer, so the request is answered 415 UnsupportedMediaType, never decoded as JSON.
    """
    header = request.headers.get("Content-Type", "").strip()
    if not header:
        return ""
    m = _MEDIA_TYPE.fullmatch(header)
    return m.group(1).lower() if m else header


def decode_body(raw: bytes, ctype: str) -> Any:
    """JSON or YAML bodies, as kube-apiserver accepts them; anything else is 415."""
    if ";" in ctype:  # content_type() strips parameters from what parses: this did not (";", "a/b;x")
        raise errors.unsupported_media_type(ctype)
    ctype = ctype.strip()
    if ctype in (
        "",
        "application/json",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/octet-stream",
    ):
        try:
            return orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError as e:
            raise errors.bad_request(f"the body of the request could not be decoded as JSON: {e}") from e
    if ctype in ("application/yaml", "application/x-yaml", "text/yaml", "application/apply-patch+yaml"):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise errors.bad_request(f"the body of the request could not be decoded as YAML: {e}") from e
    if ctype == "application/vnd.kubernetes.protobuf":
        return protobuf.decode(raw)
    raise errors.unsupported_media_type(ctype)
