"""A small structural OpenAPI v3 validator plus CEL-rule hooks, shaped like apiextensions-apiserver.

kube-apiserver validates a custom resource in this order (customResourceStrategy.Validate):
ObjectMeta, then the structural schema (kube-openapi), then the ``x-kubernetes-validations`` CEL
rules. If any earlier error is blocking (Required, NotSupported, TooLong, TooMany, TypeInvalid),
the CEL rules are skipped and one fieldless error says so. CEL rules here are plain Python
predicates that mirror each upstream expression; their failures print the schema type of the node
(``Invalid value: "object"``), as kube does.

Not modelled: unknown-field pruning/strict decoding, defaults, validation ratcheting on update,
list-type map/set invariants. Null values are treated as absent (the server prunes them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .fielderrors import (
    NOT_SUPPORTED,
    REQUIRED,
    TOO_LONG,
    TOO_MANY,
    TYPE_INVALID,
    FieldError,
    go_quote,
    invalid,
    not_supported,
    required,
    too_long,
    too_many,
    type_invalid,
)

SKIPPED_RULES = (
    "some validation rules were not checked because the object was invalid; correct the existing "
    "errors to complete validation"
)
_BLOCKING = frozenset({NOT_SUPPORTED, REQUIRED, TOO_LONG, TOO_MANY, TYPE_INVALID})


@dataclass(frozen=True, slots=True)
class Rule:
    """One x-kubernetes-validations entry.

    ``check(self)`` (or ``check(self, oldSelf)`` when ``transition``) returns True when the rule holds.
    ``field_path`` is the rule's optional ``fieldPath`` (e.g. ``.excludeSubnets``).
    """

    message: str
    check: Callable[..., bool]
    transition: bool = False
    field_path: str = ""


@dataclass(frozen=True, slots=True)
class Schema:
    """One node of a structural schema (only the keywords the modelled CRDs use)."""

    type: str = ""
    properties: dict[str, Schema] = field(default_factory=dict)
    items: Schema | None = None
    additional: Schema | None = None
    required: tuple[str, ...] = ()
    enum: tuple[Any, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    min_properties: int | None = None
    pattern: str | None = None
    rules: tuple[Rule, ...] = ()

    def has_rules(self) -> bool:
        """True when any node carries CEL rules (kube builds a CEL validator only then)."""
        hit = _HAS_RULES.get(id(self))
        if hit is not None:
            return hit[1]
        kids = list(self.properties.values())
        if self.items is not None:
            kids.append(self.items)
        if self.additional is not None:
            kids.append(self.additional)
        cached = bool(self.rules) or any(k.has_rules() for k in kids)
        _HAS_RULES[id(self)] = (self, cached)  # keep the node alive so its id stays unique
        return cached


# Memo of has_rules() by node identity (Schema holds a dict, so it is not hashable).
_HAS_RULES: dict[int, tuple[Schema, bool]] = {}


# --- builders, so schemas read close to the CRD YAML -------------------------------------------
def obj(props: dict[str, Schema] | None = None, *, required: tuple[str, ...] = (), **kw: Any) -> Schema:
    return Schema(type="object", properties=props or {}, required=required, **kw)


def arr(items: Schema, **kw: Any) -> Schema:
    return Schema(type="array", items=items, **kw)


def string(**kw: Any) -> Schema:
    return Schema(type="string", **kw)


def integer(**kw: Any) -> Schema:
    return Schema(type="integer", **kw)


def boolean() -> Schema:
    return Schema(type="boolean")


def string_map() -> Schema:
    return Schema(type="object", additional=Schema(type="string"))


def label_selector() -> Schema:
    """metav1.LabelSelector as controller-gen renders it."""
    expr = obj(
        {"key": string(), "operator": string(), "values": arr(string())},
        required=("key", "operator"),
    )
    return obj({"matchExpressions": arr(expr), "matchLabels": string_map()})


def json_type(value: Any) -> str:
    """The OpenAPI type name kube-openapi reports for a decoded JSON value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


_pattern_cache: dict[str, re.Pattern[str]] = {}


def _matches(pattern: str, value: str) -> bool:
    rx = _pattern_cache.get(pattern)
    if rx is None:
        rx = _pattern_cache[pattern] = re.compile(pattern)
    return rx.search(value) is not None


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def structural(s: Schema, value: Any, path: str, errs: list[FieldError]) -> None:
    """kube-openapi's schema checks, converted to field errors as apiextensions does."""
    if value is None:
        return
    actual = json_type(value)
    if s.type and s.type != actual and not (s.type == "number" and actual == "integer"):
        errs.append(type_invalid(path, actual, f"{path} in body must be of type {s.type}: {go_quote(actual)}"))
        return
    if actual == "object":
        if s.min_properties is not None and len(value) < s.min_properties:
            errs.append(invalid(path, len(value), f"{path} in body should have at least {s.min_properties} properties"))
            return
        for key in s.required:
            if value.get(key) is None:
                errs.append(required(_child(path, key)))
        for key, sub in s.properties.items():
            if key in value:
                structural(sub, value[key], _child(path, key), errs)
        if s.additional is not None:
            for key, v in value.items():
                if key not in s.properties:
                    structural(s.additional, v, _child(path, key), errs)
    elif actual == "array":
        n = len(value)
        if s.min_items is not None and n < s.min_items:
            errs.append(invalid(path, n, f"{path} in body should have at least {s.min_items} items"))
        if s.max_items is not None and n > s.max_items:
            errs.append(too_many(path, n, s.max_items))
        if s.items is not None:
            for i, item in enumerate(value):
                structural(s.items, item, f"{path}[{i}]", errs)
    elif actual == "string":
        if s.max_length is not None and len(value) > s.max_length:
            errs.append(too_long(path, s.max_length))
        if s.min_length is not None and len(value) < s.min_length:
            errs.append(invalid(path, value, f"{path} in body should be at least {s.min_length} chars long"))
        if s.pattern is not None and not _matches(s.pattern, value):
            errs.append(invalid(path, value, f"{path} in body should match '{s.pattern}'"))
    elif actual in ("integer", "number"):
        if s.minimum is not None and value < s.minimum:
            errs.append(invalid(path, value, f"{path} in body should be greater than or equal to {s.minimum}"))
        if s.maximum is not None and value > s.maximum:
            errs.append(invalid(path, value, f"{path} in body should be less than or equal to {s.maximum}"))
    if s.enum and value not in s.enum:
        errs.append(not_supported(path, value, [str(v) for v in s.enum]))


def cel(s: Schema, value: Any, old: Any, path: str, errs: list[FieldError]) -> None:
    """Evaluate the CEL rules top-down: a node's own rules, then its children's."""
    if value is None:
        return
    for rule in s.rules:
        if rule.transition:
            if old is None or rule.check(value, old):
                continue
        elif rule.check(value):
            continue
        where = path + rule.field_path if rule.field_path else path
        errs.append(invalid(where, s.type or json_type(value), rule.message))
    if isinstance(value, dict):
        old_map = old if isinstance(old, dict) else {}
        for key, sub in s.properties.items():
            if key in value and sub.has_rules():
                cel(sub, value[key], old_map.get(key), _child(path, key), errs)
    elif isinstance(value, list) and s.items is not None and s.items.has_rules():
        # Atomic lists are not correlatable: items see no oldSelf.
        for i, item in enumerate(value):
            cel(s.items, item, None, f"{path}[{i}]", errs)


def validate_custom_resource(
    s: Schema, obj_: dict, old: dict | None, meta_errors: list[FieldError]
) -> list[FieldError]:
    """ObjectMeta errors + schema errors + CEL errors, or the skipped-rules note when blocked."""
    errs = list(meta_errors)
    structural(s, obj_, "", errs)
    if s.has_rules():
        if any(e.type in _BLOCKING for e in errs):
            errs.append(invalid("<nil>", None, SKIPPED_RULES))
        else:
            cel(s, obj_, old, "", errs)
    return errs
