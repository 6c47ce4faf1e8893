"""Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).

kubectl 1.3x sends built-in kinds (a Namespace from `kubectl create ns`, a SelfSubjectAccessReview
from `kubectl auth can-i`, DeleteOptions) as protobuf, as it may with any real API server. The
server answers in JSON, which clients accept; only request bodies need decoding, and only for the
built-in kinds served here. Field numbers follow k8s.io/api's generated.proto files.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from simcluster.errors import ApiError

MAGIC = b"k8s\x00"
_ZERO_TIME = -62135596800  # Go's time.Time{} in Unix seconds (0001-01-01T00:00:00Z)

# A schema maps field number → (json name, kind). Kinds: "string", "bytes", "int", "bool", "time",
# a nested schema name, "map:<value kind>", or "repeated:<kind>".
Schema = dict[int, tuple[str, str]]

SCHEMAS: dict[str, Schema] = {
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "Unknown": {
        1: ("typeMeta", "TypeMeta"),
        2: ("raw", "bytes"),
        3: ("contentEncoding", "string"),
        4: ("contentType", "string"),
    },
    "Time": {1: ("seconds", "int"), 2: ("nanos", "int")},
    "OwnerReference": {
        1: ("kind", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("controller", "bool"),
        7: ("blockOwnerDeletion", "bool"),
    },
    "ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        4: ("selfLink", "string"),
        5: ("uid", "string"),
        6: ("resourceVersion", "string"),
        7: ("generation", "int"),
        8: ("creationTimestamp", "time"),
        9: ("deletionTimestamp", "time"),
        10: ("deletionGracePeriodSeconds", "int"),
        11: ("labels", "map:string"),
        12: ("annotations", "map:string"),
        13: ("ownerReferences", "repeated:OwnerReference"),
        14: ("finalizers", "repeated:string"),
    },
    "NamespaceSpec": {1: ("finalizers", "repeated:string")},
    "NamespaceStatus": {1: ("phase", "string")},
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec"), 3: ("status", "NamespaceStatus")},
    "ConfigMap": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "map:string"),
        3: ("binaryData", "map:bytes"),
        4: ("immutable", "bool"),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "map:bytes"),
        3: ("type", "string"),
        4: ("stringData", "map:string"),
        5: ("immutable", "bool"),
    },
    "ResourceAttributes": {
        1: ("namespace", "string"),
        2: ("verb", "string"),
        3: ("group", "string"),
        4: ("version", "string"),
        5: ("resource", "string"),
        6: ("subresource", "string"),
        7: ("name", "string"),
    },
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
    "SelfSubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes"),
        2: ("nonResourceAttributes", "NonResourceAttributes"),
    },
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectAccessReviewSpec")},
    "Preconditions": {1: ("uid", "string"), 2: ("resourceVersion", "string")},
    "DeleteOptions": {
        1: ("gracePeriodSeconds", "int"),
        2: ("preconditions", "Preconditions"),
        3: ("orphanDependents", "bool"),
        4: ("propagationPolicy", "string"),
        5: ("dryRun", "repeated:string"),
    },
    # policy/v1 (and v1beta1) Eviction, which kubectl drain posts to pods/{name}/eviction
    "Eviction": {1: ("metadata", "ObjectMeta"), 2: ("deleteOptions", "DeleteOptions")},
    "ObjectReference": {
        1: ("kind", "string"),
        2: ("namespace", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("resourceVersion", "string"),
        7: ("fieldPath", "string"),
    },
    "EventSource": {1: ("component", "string"), 2: ("host", "string")},
    "Event": {
        1: ("metadata", "ObjectMeta"),
        2: ("involvedObject", "ObjectReference"),
        3: ("reason", "string"),
        4: ("message", "string"),
        5: ("source", "EventSource"),
        6: ("firstTimestamp", "time"),
        7: ("lastTimestamp", "time"),
        8: ("count", "int"),
        9: ("type", "string"),
        12: ("action", "string"),
        14: ("reportingComponent", "string"),
        15: ("reportingInstance", "string"),
    },
}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        val: Any
        if wire == 0:
            val, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated field")
            val, pos = buf[pos : pos + n], pos + n
        elif wire == 1:
            val, pos = buf[pos : pos + 8], pos + 8
        elif wire == 5:
            val, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((num, wire, val))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar(kind: str, val: Any) -> Any:
    if kind == "string":
        return bytes(val).decode()
    if kind == "bytes":
        return base64.b64encode(bytes(val)).decode()
    if kind == "int":
        return _signed(val)
    if kind == "bool":
        return bool(val)
    if kind == "time":
        t = decode_message("Time", bytes(val))
        return dt.datetime.fromtimestamp(t.get("seconds", 0), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return decode_message(kind, bytes(val))


def decode_message(schema_name: str, buf: bytes) -> dict[str, Any]:
    schema = SCHEMAS[schema_name]
    out: dict[str, Any] = {}
    for num, _wire, val in _fields(buf):
        if num not in schema:
            continue
        name, kind = schema[num]
        if kind.startswith("map:"):
            entry = {n: v for n, _w, v in _fields(bytes(val))}
            key = bytes(entry.get(1, b"")).decode()
            out.setdefault(name, {})[key] = _scalar(kind[4:], entry.get(2, b""))
        elif kind.startswith("repeated:"):
            out.setdefault(name, []).append(_scalar(kind[9:], val))
        elif kind == "string" and not val:
            continue  # Go writes every string field; JSON omits the empty ones (omitempty)
        elif kind == "time" and decode_message("Time", bytes(val)).get("seconds", 0) == _ZERO_TIME:
            continue  # a zero metav1.Time is null in JSON, i.e. absent
        else:
            out[name] = _scalar(kind, val)
    return out


def decode(raw: bytes) -> dict[str, Any]:
    """A protobuf request body as the JSON object it stands for; 415 for kinds not served here."""
    if not raw.startswith(MAGIC):
        raise ApiError(
            400, "BadRequest", "the body of the request is not a Kubernetes protobuf message (missing k8s prefix)"
        )
    try:
        unknown = decode_message("Unknown", raw[len(MAGIC) :])
        tm = unknown.get("typeMeta", {})
        kind = tm.get("kind", "")
        if kind not in SCHEMAS or kind in ("Unknown", "TypeMeta", "Time"):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"protobuf bodies of kind {kind!r} are not supported by this server; send application/json",
            )
        body = decode_message(kind, base64.b64decode(unknown.get("raw", "")))
    except (ValueError, KeyError, UnicodeDecodeError) as e:
        raise ApiError(400, "BadRequest", f"the body of the request could not be decoded as protobuf: {e}") from e
    obj: dict[str, Any] = {"apiVersion": tm.get("apiVersion", "v1"), "kind": kind}
    obj.update(body)
    return obj
