"""The simulated cluster's API under bad requests (issue 9, item 6): property-based fuzzing (hypothesis)
over raw HTTPS. Malformed JSON and YAML, random JSON for every kind's create, random merge, JSON and
strategic merge patches, oversized bodies, wrong content types, bad selectors and query parameters,
bad paths. Every answer must be a proper 2xx, or a 4xx with a `Status` body whose code matches —
never a 5xx, never a dropped connection — no error may be logged by the server or its controllers,
and afterwards the server still serves and a known object is unchanged."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import ssl
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simcluster import ClusterConfig, SimCluster, kinds
from simcluster.api import MAX_BODY

FUZZ_NS = "fuzz"
KEEP_NS = "fuzz-keep"
SETTINGS = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
MANY = settings(SETTINGS, max_examples=400)
CREATABLE = [rt for rt in kinds.ALL if "create" in rt.verbs and rt.kind != "SelfSubjectAccessReview"]
PATCHABLE = [rt for rt in kinds.ALL if "patch" in rt.verbs]


class Raw:
    """One HTTPS request per call, bytes in, (status, content type, bytes) out; a dropped connection raises."""

    def __init__(self, sim: SimCluster) -> None:
        kc = yaml.safe_load(sim.kubeconfig.read_text())
        url = urllib.parse.urlsplit(kc["clusters"][0]["cluster"]["server"])
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 443
        self.token = kc["users"][0]["user"]["token"]
        self.ctx = ssl.create_default_context()
        self.ctx.load_verify_locations(
            cadata=base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
        )

    def __call__(
        self, method: str, path: str, body: bytes | None = None, ctype: str | None = "application/json"
    ) -> tuple[int, str, bytes]:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=20)
        try:
            headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
            if ctype is not None:
                headers["Content-Type"] = ctype
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type") or "", resp.read()
        finally:
            conn.close()


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimCluster]:
    with SimCluster(config=ClusterConfig(nodes=2, profile="instant")) as sim:
        yield sim


@pytest.fixture(scope="module")
def raw(cluster: SimCluster) -> Raw:
    return Raw(cluster)


@pytest.fixture(scope="module")
def server_errors() -> Iterator[ErrorLog]:
    """Errors the server or its controllers log (an internal error is logged before it becomes a 500)."""
    handler = ErrorLog()
    loggers = [logging.getLogger("simcluster"), logging.getLogger("aiohttp")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@pytest.fixture(scope="module")
def keep(raw: Raw) -> dict[str, Any]:
    """Namespaces for the fuzzing, and a ConfigMap no request of this file may change."""
    for ns in (FUZZ_NS, KEEP_NS):
        status, _, body = raw("POST", "/api/v1/namespaces", _json({"metadata": {"name": ns}}))
        assert status == 201, body
    cm = {"metadata": {"name": "sentinel", "labels": {"app": "keep"}}, "data": {"k": "v"}}
    status, _, body = raw("POST", f"/api/v1/namespaces/{KEEP_NS}/configmaps", _json(cm))
    assert status == 201, body
    return json.loads(body)


@pytest.fixture(scope="module")
def targets(raw: Raw, keep: dict[str, Any]) -> dict[str, str]:
    """One object per patchable kind to patch at (URL path by kind)."""
    out = {}
    for rt in PATCHABLE:
        if rt.kind in ("Namespace", "Node", "KubeVirt", "ClusterVersion", "Network", "VirtualMachineInstanceMigration"):
            continue  # cluster-wide singletons and nodes: patched below through their own objects only
        name = f"target-{rt.plural}"
        path = _collection(rt)
        status, _, body = raw(
            "POST", path, _json({"apiVersion": rt.api_version, "kind": rt.kind, **_minimal(rt, name)})
        )
        assert status == 201, (rt.kind, body)
        out[rt.kind] = f"{path}/{name}"
    return out


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _collection(rt: kinds.ResourceType, ns: str = FUZZ_NS) -> str:
    return rt.base_path + (f"/namespaces/{ns}" if rt.namespaced else "") + f"/{rt.plural}"


def _minimal(rt: kinds.ResourceType, name: str) -> dict[str, Any]:
    """A valid object of each kind."""
    md = {"name": name}
    if rt.kind == "ClusterUserDefinedNetwork":
        return {
            "metadata": md,
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "nowhere"}},
                "network": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["10.77.0.0/24"]}},
            },
        }
    if rt.kind == "UserDefinedNetwork":
        return {
            "metadata": md,
            "spec": {"topology": "Layer2", "layer2": {"role": "Secondary", "subnets": ["10.78.0.0/24"]}},
        }
    if rt.kind == "NetworkAttachmentDefinition":
        return {"metadata": md, "spec": {"config": json.dumps({"cniVersion": "0.4.0", "name": name, "type": "bridge"})}}
    if rt.kind == "VirtualMachine":
        return {
            "metadata": md,
            "spec": {
                "runStrategy": "Halted",
                "template": {"spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "64Mi"}}}}},
            },
        }
    if rt.kind == "VirtualMachineInstanceMigration":
        return {"metadata": md, "spec": {"vmiName": "nobody"}}
    if rt.kind == "VirtualMachineInstance":
        return {"metadata": md, "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "64Mi"}}}}}
    if rt.kind == "IPAMClaim":
        return {"metadata": md, "spec": {"network": "n", "interface": "eth0"}}
    if rt.kind == "Event":
        return {"metadata": md, "involvedObject": {"kind": "Pod", "name": "x", "namespace": FUZZ_NS}, "reason": "R"}
    if rt.kind == "Pod":
        return {"metadata": md, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    if rt.kind == "Secret":
        return {"metadata": md, "stringData": {"a": "b"}}
    return {"metadata": md, "data": {"a": "b"}} if rt.kind == "ConfigMap" else {"metadata": md}


def assert_proper(answer: tuple[int, str, bytes], what: str = "") -> dict[str, Any] | None:
    """2xx, or 4xx with a Status body of the same code. Returns the decoded Status for errors."""
    status, ctype, body = answer
    assert status < 500, f"{what}: {status} {body[:500]!r}"
    if status < 400:
        return None
    assert ctype.startswith("application/json"), f"{what}: {status} with content type {ctype!r}: {body[:200]!r}"
    doc = json.loads(body)
    assert doc.get("kind") == "Status" and doc.get("apiVersion") == "v1", f"{what}: {doc}"
    assert doc.get("status") == "Failure" and doc.get("code") == status, f"{what}: {doc}"
    assert isinstance(doc.get("message"), str) and doc["message"], f"{what}: {doc}"
    assert isinstance(doc.get("reason"), str), f"{what}: {doc}"
    return doc


# ---- strategies -----------------------------------------------------------------------------------
json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
FIELDS = ["apiVersion", "kind", "metadata", "spec", "status", "data", "name", "labels", "finalizers", "ownerReferences"]
keys = st.sampled_from(FIELDS) | st.text(max_size=12)
k8s_like = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)
names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True) | st.text(max_size=30)


@st.composite
def objects(draw: st.DrawFn, rt: kinds.ResourceType) -> Any:
    """Random JSON, or an object of the right kind with random metadata and spec."""
    if draw(st.booleans()):
        return draw(k8s_like)
    obj: dict[str, Any] = {"apiVersion": rt.api_version, "kind": rt.kind}
    md = draw(
        st.dictionaries(
            st.sampled_from(
                ["labels", "annotations", "finalizers", "ownerReferences", "generateName", "namespace", "uid"]
            ),
            k8s_like,
            max_size=3,
        )
    )
    md["name"] = f"fz-{draw(names)}" if draw(st.booleans()) else draw(names)
    obj["metadata"] = md if draw(st.integers(0, 9)) else draw(k8s_like)
    for key in draw(
        st.lists(st.sampled_from(["spec", "status", "data", "stringData", "type", "involvedObject"]), max_size=3)
    ):
        obj[key] = draw(k8s_like)
    return obj


json_patch_ops = st.lists(
    st.fixed_dictionaries(
        {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test"]) | st.text(max_size=6)},
        optional={
            "path": st.sampled_from(
                [
                    "/metadata/labels/x",
                    "/spec",
                    "/data/a",
                    "/metadata",
                    "",
                    "/",
                    "/-",
                    "/metadata/labels/~1y",
                    "/a/0/b",
                    "/data/~2",
                ]
            )
            | st.text(max_size=15),
            "from": st.sampled_from(["/data/a", "/metadata/name", "/nope", ""]) | st.text(max_size=10),
            "value": k8s_like,
        },
    )
    | k8s_like,
    max_size=5,
)
CONTENT_TYPES = [
    "application/json",
    "application/yaml",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
    "text/plain",
    "application/xml",
    "multipart/form-data; boundary=x",
    "application/json; charset=utf-16",
    "",
    "*/*",
    "application/x-www-form-urlencoded",
    "image/png",
]
selector_chars = st.text(alphabet="abc=!,()~-_./ xyz0123456789 inotexists'\"\\", max_size=30)


# ---- the properties ---------------------------------------------------------------------------
@SETTINGS
@given(rt=st.sampled_from(CREATABLE), body=st.binary(max_size=200), yaml_body=st.booleans())
def test_malformed_bodies_on_create(raw: Raw, keep: dict, server_errors: ErrorLog, rt, body, yaml_body) -> None:
    ctype = "application/yaml" if yaml_body else "application/json"
    assert_proper(raw("POST", _collection(rt), body, ctype), f"POST {rt.kind} {body!r}")


@SETTINGS
@given(rt=st.sampled_from(CREATABLE), text=st.text(max_size=120))
def test_malformed_yaml_documents(raw: Raw, keep: dict, server_errors: ErrorLog, rt, text) -> None:
    broken = "metadata:\n  name: [" + text + "\n\t- :" if text else "{"
    doc = assert_proper(raw("POST", _collection(rt), broken.encode(), "application/yaml"), f"YAML {broken!r}")
    assert doc is not None and doc["code"] in (400, 422), doc


@MANY
@given(data=st.data())
def test_random_objects_for_every_kind(raw: Raw, keep: dict, server_errors: ErrorLog, data) -> None:
    rt = data.draw(st.sampled_from(CREATABLE))
    obj = data.draw(objects(rt))
    ctype = data.draw(st.sampled_from(["application/json", "application/yaml"]))
    body = json.dumps(obj).encode() if ctype == "application/json" else yaml.safe_dump(obj).encode()
    answer = raw("POST", _collection(rt), body, ctype)
    assert_proper(answer, f"create {rt.kind} {obj!r}")
    if answer[0] < 300 and rt.kind not in ("Namespace", "Node"):  # a valid one went in: take it out again
        created = json.loads(answer[2])["metadata"]
        raw("DELETE", f"{_collection(rt, created.get('namespace') or FUZZ_NS)}/{urllib.parse.quote(created['name'])}")


@MANY
@given(data=st.data())
def test_random_patches(raw: Raw, targets: dict[str, str], server_errors: ErrorLog, data) -> None:
    kind = data.draw(st.sampled_from(sorted(targets)))
    ctype = data.draw(st.sampled_from(CONTENT_TYPES[2:6]))
    if ctype == "application/json-patch+json":
        patch: Any = data.draw(json_patch_ops)
    else:
        patch = data.draw(st.dictionaries(keys, k8s_like, max_size=4) | k8s_like)
    body = yaml.safe_dump(patch).encode() if ctype.endswith("yaml") else json.dumps(patch).encode()
    query = data.draw(st.sampled_from(["", "?dryRun=All", "?fieldManager=fuzz", "?dryRun=Nope", "?force=true"]))
    assert_proper(raw("PATCH", targets[kind] + query, body, ctype), f"PATCH {kind} {ctype} {patch!r}")
    # A random update (PUT) of the same object: any body, the object's URL.
    if data.draw(st.booleans()):
        assert_proper(raw("PUT", targets[kind], json.dumps(data.draw(k8s_like)).encode()), f"PUT {kind}")


@SETTINGS
@given(
    rt=st.sampled_from(CREATABLE),
    ctype=st.sampled_from(CONTENT_TYPES)
    | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    method=st.sampled_from(["POST", "PUT", "PATCH"]),
    body=st.binary(max_size=64),
)
def test_content_types(raw: Raw, targets: dict[str, str], server_errors: ErrorLog, rt, ctype, method, body) -> None:
    path = _collection(rt) if method == "POST" else targets.get(rt.kind, _collection(rt) + "/nobody")
    doc = assert_proper(raw(method, path, body, ctype), f"{method} {path} as {ctype!r}")
    known = ctype.split(";")[0].strip().lower() in {c.split(";")[0] for c in CONTENT_TYPES[:7]} | {
        "text/yaml",
        "application/x-yaml",
        "application/octet-stream",
    }
    if doc is not None and not known and ctype.strip() and method == "POST":
        assert doc["code"] == 415, (ctype, doc)


@SETTINGS
@given(
    rt=st.sampled_from([rt for rt in kinds.ALL if "list" in rt.verbs]),
    label=selector_chars,
    field=selector_chars,
    limit=st.sampled_from(["-1", "0", "abc", "1e9", "", "99999999999999999999"]) | st.text(max_size=5),
    rv=st.sampled_from(["abc", "-1", "0", "", "99999999999"]) | st.text(max_size=5),
    cont=st.sampled_from(["", "abc", "eyJ4Ijox", "%%%"]) | st.text(max_size=10),
    watch=st.sampled_from(["maybe", "false", "0", "", "yes", "TRUE"]),
    timeout=st.sampled_from(["x", "-1", "", "1e400", "nan"]),
)
def test_selectors_and_query_parameters(
    raw: Raw, keep: dict, server_errors: ErrorLog, rt, label, field, limit, rv, cont, watch, timeout
) -> None:
    q = urllib.parse.urlencode(
        {
            "labelSelector": label,
            "fieldSelector": field,
            "limit": limit,
            "resourceVersion": rv,
            "continue": cont,
            "watch": watch,
            "timeoutSeconds": timeout,
        }
    )
    assert_proper(raw("GET", f"{_collection(rt)}?{q}"), f"list {rt.kind}?{q}")


@SETTINGS
@given(
    rt=st.sampled_from([rt for rt in kinds.ALL if "watch" in rt.verbs]),
    rv=st.sampled_from(["abc", "-5", "1.5", "0x10", "١٢"]),
    timeout=st.sampled_from(["x", "1s", "nan", "inf", "-inf", "1e400", "-1"]),
    label=selector_chars,
)
def test_bad_watch_requests_answer_at_once(
    raw: Raw, keep: dict, server_errors: ErrorLog, rt, rv, timeout, label
) -> None:
    q = urllib.parse.urlencode(
        {"watch": "true", "resourceVersion": rv, "timeoutSeconds": timeout, "labelSelector": label}
    )
    status, ctype, body = raw("GET", f"{_collection(rt)}?{q}")
    assert_proper((status, ctype, body), f"watch {rt.kind}?{q}")
    if status == 200:  # a watch that was accepted must have ended by itself (timeout <= 0)
        assert timeout in ("-1", "-inf"), (q, body[:200])


path_segments = st.lists(
    st.sampled_from(
        [
            "api",
            "apis",
            "v1",
            "namespaces",
            FUZZ_NS,
            "configmaps",
            "kubevirt.io",
            "status",
            "..",
            "",
            "%00",
            "subresources.kubevirt.io",
            "console",
            "virtualmachineinstances",
            "openapi",
            "v3",
            "simcluster",
            "version",
        ]
    )
    | st.text(max_size=12),
    max_size=8,
)


@MANY
@given(
    segments=path_segments,
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]),
    body=st.binary(max_size=32),
)
def test_bad_paths(raw: Raw, keep: dict, server_errors: ErrorLog, segments, method, body) -> None:
    path = "/" + "/".join(urllib.parse.quote(s, safe="") for s in segments)
    if method == "DELETE" and all(
        s in ("api", "apis", "v1", "namespaces", FUZZ_NS, KEEP_NS, "configmaps", "") for s in segments
    ):
        return  # would delete the fixtures' own objects: a valid request, not a bad one
    if path.rstrip("/") in (
        "/simcluster/v1/policy",
        "/simcluster/v1/faults",
        "/simcluster/v1/compact",
        "/simcluster/v1/save",
    ):
        return  # the admin knobs are not part of the Kubernetes API
    status, ctype, answer = raw(method, path, body if method in ("POST", "PUT", "PATCH") else None)
    if method == "HEAD":
        assert status < 500, (path, status)
        return
    if status == 200 and not ctype.startswith("application/json"):
        return  # /healthz and friends answer plain text
    assert_proper((status, ctype, answer), f"{method} {path}")


def test_oversized_bodies_are_413(raw: Raw, targets: dict[str, str], server_errors: ErrorLog) -> None:
    blob = {"metadata": {"name": "huge"}, "data": {"a": "x" * (MAX_BODY + 10)}}
    just_over = json.dumps(blob).encode()
    far_over = json.dumps({"metadata": {"name": "huger"}, "data": {"a": "x" * (MAX_BODY * 2)}}).encode()
    for method, path in (
        ("POST", f"/api/v1/namespaces/{FUZZ_NS}/configmaps"),
        ("PUT", targets["ConfigMap"]),
        ("PATCH", targets["ConfigMap"]),
    ):
        for body in (just_over, far_over):
            ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
            doc = assert_proper(raw(method, path, body, ctype), f"{method} {len(body)} bytes")
            assert doc is not None and doc["code"] == 413 and doc["reason"] == "RequestEntityTooLarge", doc
    status, _, _ = raw("GET", f"/api/v1/namespaces/{FUZZ_NS}/configmaps/huge")
    assert status == 404


def test_fixed_bad_requests(raw: Raw, keep: dict, server_errors: ErrorLog) -> None:
    """The named cases of the brief, each with the code kube-apiserver gives."""
    cms = f"/api/v1/namespaces/{FUZZ_NS}/configmaps"
    cases = [
        ("POST", cms, b"{not json", "application/json", 400),
        ("POST", cms, b"metadata: [unclosed", "application/yaml", 400),
        ("POST", cms, b'{"metadata": {"name": "a"}}', "text/plain", 415),
        ("POST", cms, b"[1, 2]", "application/json", 400),
        ("GET", f"{cms}?labelSelector=a%20in%20(b", None, None, 400),
        ("GET", f"{cms}?labelSelector=%3D%3D%3D", None, None, 400),
        ("GET", f"{cms}?fieldSelector=spec.nope%3Dx", None, None, 400),
        ("GET", f"{cms}?limit=abc", None, None, 400),
        ("GET", f"{cms}?watch=true&timeoutSeconds=x", None, None, 400),
        ("GET", f"{cms}?watch=true&resourceVersion=abc&timeoutSeconds=1", None, None, 400),
        ("GET", "/apis/no.such.group/v1/things", None, None, 404),
        ("GET", "/api/v1/namespaces/fuzz/nothings", None, None, 404),
        ("DELETE", "/api/v1/nodes/worker-0/unknownsub", None, None, 404),
        ("POST", f"{cms}/named", b"{}", "application/json", 405),
    ]
    for method, path, body, ctype, code in cases:
        doc = assert_proper(raw(method, path, body, ctype), f"{method} {path}")
        assert doc is not None and doc["code"] == code, (method, path, doc)


def test_still_serving_and_nothing_logged(
    raw: Raw, cluster: SimCluster, keep: dict[str, Any], server_errors: ErrorLog
) -> None:
    """Runs last in this file: the server answers, the sentinel is untouched, nothing crashed."""
    status, _, body = raw("GET", "/version")
    assert status == 200 and json.loads(body)["gitVersion"]
    status, _, body = raw("GET", "/api/v1/namespaces?limit=500")
    assert status == 200 and {KEEP_NS, FUZZ_NS} <= {n["metadata"]["name"] for n in json.loads(body)["items"]}
    status, _, body = raw("GET", f"/api/v1/namespaces/{KEEP_NS}/configmaps/sentinel")
    assert status == 200 and json.loads(body) == keep
    status, _, body = raw("GET", "/apis/kubevirt.io/v1/virtualmachines?limit=1")
    assert status == 200
    name = f"after-{uuid.uuid4().hex[:6]}"
    status, _, body = raw("POST", f"/api/v1/namespaces/{KEEP_NS}/configmaps", _json({"metadata": {"name": name}}))
    assert status == 201, body
    assert cluster.stats()["requestsServed"] > 500
    assert server_errors.records == [], "\n".join(server_errors.records[:5])


@pytest.mark.parametrize(
    ("ctype", "status"),
    [
        (";", 415),  # no media type: Go's mime.ParseMediaType fails, so no serializer matches
        (" ; ", 415),
        ("application/json;x", 415),  # a parameter without a value does not parse either
        ("; charset=utf-8", 415),
        ("application/json;;", 201),  # trailing semicolons are ignored
        ("application/json; charset=utf-8", 201),
        (None, 201),  # no header at all: the server's default, JSON
    ],
)
def test_unparsable_content_type_is_415_as_kube_apiserver_answers(
    raw: Raw, keep: dict[str, Any], ctype: str | None, status: int
) -> None:
    """kube-apiserver (apiserver handlers/negotiation NegotiateInputSerializerForMediaType) answers a
    Content-Type whose media type does not parse with 415 UnsupportedMediaType, and a missing one as JSON."""
    name = f"ct-{abs(hash(ctype)) % 10**8}"
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}).encode()
    got, _, data = raw("POST", f"/api/v1/namespaces/{FUZZ_NS}/configmaps", body, ctype)
    assert got == status, (ctype, data[:200])
    if status == 415:
        assert json.loads(data)["reason"] == "UnsupportedMediaType"
    else:
        raw("DELETE", f"/api/v1/namespaces/{FUZZ_NS}/configmaps/{name}")
