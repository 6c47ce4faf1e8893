"""Field errors and 422 Status objects, printed exactly as kube-apiserver 1.32 prints them.

OpenShift 4.19 ships Kubernetes 1.32, whose ``field.Error.ErrorBody`` quotes string values with
``%q``, prints numbers and booleans bare, prints a nil value as ``"null"`` and leaves the value out
for Required, Forbidden, TooLong and Internal errors. Clients (kubectl, our own flows) match on
these strings, so they are reproduced byte for byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
DUPLICATE = "FieldValueDuplicate"
TYPE_INVALID = "FieldValueTypeInvalid"
NOT_FOUND = "FieldValueNotFound"
INTERNAL = "InternalError"

_TYPE_TEXT = {
    NOT_FOUND: "Not found",
    REQUIRED: "Required value",
    DUPLICATE: "Duplicate value",
    INVALID: "Invalid value",
    NOT_SUPPORTED: "Unsupported value",
    FORBIDDEN: "Forbidden",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
    INTERNAL: "Internal error",
    TYPE_INVALID: "Invalid value",
}
_VALUELESS = frozenset({REQUIRED, FORBIDDEN, TOO_LONG, INTERNAL})

_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
_GO_ESCAPES.update({"\t": "\\t", "\v": "\\v"})


def go_quote(s: str) -> str:
    """Go's ``%q`` for a string: kube quotes bad values this way, not the JSON way."""
    out = ['"']
    for ch in s:
        esc = _GO_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch.isprintable():
            out.append(ch)
        else:
            cp = ord(ch)
            out.append(f"\\x{cp:02x}" if cp < 0x80 else (f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"))
    out.append('"')
    return "".join(out)


def go_value(value: Any) -> str:
    """Print a bad value as Kubernetes 1.32's ErrorBody does (simple types bare, strings quoted)."""
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, str):
        return go_quote(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class FieldError:
    """One validation failure, as k8s.io/apimachinery's field.Error."""

    field: str
    type: str
    detail: str
    value: object = None

    def body(self) -> str:
        """The message without the ``field: `` prefix (what a Status cause carries)."""
        text = _TYPE_TEXT.get(self.type, f"<unknown error {go_quote(self.type)}>")
        if self.type not in _VALUELESS:
            text = f"{text}: {go_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def render(self) -> str:
        """``field: body``, exactly as field.Error.Error()."""
        return f"{self.field}: {self.body()}"


# Constructors named after field.Required / field.Invalid / ... so call sites read like upstream.
def required(path: str, detail: str = "") -> FieldError:
    return FieldError(path, REQUIRED, detail, "")


def invalid(path: str, value: object, detail: str) -> FieldError:
    return FieldError(path, INVALID, detail, value)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(path, FORBIDDEN, detail, "")


def duplicate(path: str, value: object) -> FieldError:
    return FieldError(path, DUPLICATE, "", value)


def not_supported(path: str, value: object, valid: list[str] | tuple[str, ...]) -> FieldError:
    detail = "supported values: " + ", ".join(go_quote(str(v)) for v in valid) if valid else ""
    return FieldError(path, NOT_SUPPORTED, detail, value)


def too_long(path: str, max_length: int) -> FieldError:
    """apimachinery v0.32 TooLong: always "bytes" (the singular form came later)."""
    detail = f"may not be more than {max_length} bytes" if max_length >= 0 else "value is too long"
    return FieldError(path, TOO_LONG, detail, "<value omitted>")


def too_many(path: str, actual: int, maximum: int) -> FieldError:
    """apimachinery v0.32 TooMany: always "items"."""
    detail = f"must have at most {maximum} items" if maximum >= 0 else "has too many items"
    return FieldError(path, TOO_MANY, detail, actual)


def type_invalid(path: str, value: object, detail: str) -> FieldError:
    return FieldError(path, TYPE_INVALID, detail, value)


def aggregate_message(errors: list[FieldError]) -> str:
    """utilerrors.Aggregate of an ErrorList: duplicates dropped, several ones in brackets."""
    seen: set[str] = set()
    msgs: list[str] = []
    for e in errors:
        m = e.render()
        if m not in seen:
            seen.add(m)
            msgs.append(m)
    if len(msgs) == 1:
        return msgs[0]
    return "[" + ", ".join(msgs) + "]"


def invalid_status(kind: str, group: str, name: str, errors: list[FieldError]) -> dict:
    """The 422 body of apierrors.NewInvalid (keys in the order kube serialises them)."""
    qualified = f"{kind}.{group}" if group else kind
    message = f"{qualified} {go_quote(name)} is invalid"
    if errors:
        message += ": " + aggregate_message(errors)
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    causes = []
    for e in errors:
        cause: dict[str, str] = {"reason": e.type, "message": e.body()}
        if e.field:
            cause["field"] = e.field
        causes.append(cause)
    if causes:
        details["causes"] = causes
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Invalid",
        "details": details,
        "code": 422,
    }
