"""Pydantic's validation errors, told the way a person reads a spec: camelCase paths and a fix for each."""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError

from tasks.spec.errors import SpecError, SpecProblem
from tasks.spec.model import RolloutSpec
from tasks.spec.rules import show

_MISSING_FIXES = {
    "network": "add a network section: name, topology and subnets",
    "network.name": "name the ClusterUserDefinedNetwork, e.g. name: udn-cluster-primary-l2",
    "network.subnets": "add the network's subnets, e.g. subnets: [{cidr: 10.200.0.0/16}]",
    "cidr": "give the subnet as a CIDR, e.g. cidr: 10.200.0.0/16",
}
_MISPLACED = {
    ("network", "cidr"): "the CIDR goes in a subnet: network.subnets[0].cidr",
    ("network", "hostSubnet"): "hostSubnet goes on each subnet: network.subnets[0].hostSubnet",
    ("network", "ipam"): "use network.persistentIPs: true (Layer2) instead of ipam",
    ("network", "layer2"): "write the network flat: topology: Layer2 plus subnets, mtu, persistentIPs",
    ("network", "layer3"): "write the network flat: topology: Layer3 plus subnets, mtu",
}
_SECRET_KEYS = {"password", "passwd", "userdata", "clouduserdata", "cloudinit", "sshkey", "credentials"}
_TYPE_FIXES = {
    "int_parsing": "is not a whole number: write a number such as {example}",
    "int_type": "is not a whole number: write a number such as {example}",
    "int_from_float": "is not a whole number: drop the fraction",
    "float_parsing": "is not a number: write a number such as {example}",
    "float_type": "is not a number: write a number such as {example}",
    "bool_parsing": "is not true or false: write true or false",
    "bool_type": "is not true or false: write true or false",
    "string_type": "is not text: put it in quotes (YAML reads yes/no/on/off as booleans and digits as numbers)",
    "list_type": "must be a list: write [a, b] or one '- item' per line",
    "dict_type": "must be a mapping: write key: value lines under it",
    "model_type": "must be a mapping: write key: value lines under it",
    "model_attributes_type": "must be a mapping: write key: value lines under it",
    "finite_number": "must be a finite number",
}


def format_path(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("["):
            out += part
        else:
            out += f".{part}" if out else part
    return out


def unwrap(annotation: Any) -> Any:
    """Strip Optional/Annotated so the model walk sees the model or container type."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _lookup_field(model: type[BaseModel], key: str) -> tuple[str, Any] | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return name, info
    return None


def field_at(loc: Sequence[str | int]) -> tuple[Any, Any]:
    """Walk RolloutSpec along ``loc``: (FieldInfo of the last key, the value's type), None if unknown."""
    info: Any = None
    current: Any = RolloutSpec
    for part in loc:
        current = unwrap(current)
        if isinstance(part, int):
            if get_origin(current) is not list:
                return None, None
            current = get_args(current)[0]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            found = _lookup_field(current, part)
            if not found:
                return None, None
            info = found[1]
            current = info.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None, None
    return info, unwrap(current)


def _bounds(info: Any) -> tuple[Any, Any]:
    """(lower, upper) numeric bounds declared on a field, for "use a value between" fixes."""
    lo: Any = None
    hi: Any = None
    for meta in getattr(info, "metadata", []):
        if isinstance(meta, annotated_types.Ge):
            lo = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            lo = meta.gt
        elif isinstance(meta, annotated_types.Le):
            hi = meta.le
        elif isinstance(meta, annotated_types.Lt):
            hi = meta.lt
    return lo, hi


def _norm_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def _unknown_key_message(loc: tuple[str | int, ...], key: str) -> str:
    parent_path = tuple(p for p in loc[:-1] if not isinstance(p, int))
    if _norm_key(key) in _SECRET_KEYS:
        return (
            f"{key!r} is not allowed: passwords and cloud-init never go in the spec; put them in a Secret "
            "and set vms.credentialsSecret, or leave it empty to have one generated per run"
        )
    hint = _MISPLACED.get((parent_path[-1] if parent_path else "", key))
    if hint:
        return f"unknown key {key!r}: {hint}"
    _, typ = field_at(loc[:-1])
    holder = typ if isinstance(typ, type) and issubclass(typ, BaseModel) else None
    if holder is None:
        return f"unknown key {key!r}: remove it"
    valid = [info.alias or name for name, info in holder.model_fields.items()]
    by_norm = {_norm_key(v): v for v in valid}
    match = by_norm.get(_norm_key(key))
    if not match:
        close = difflib.get_close_matches(_norm_key(key), list(by_norm), n=1, cutoff=0.6)
        match = by_norm[close[0]] if close else None
    if match:
        return f"unknown key {key!r}: did you mean {match!r}?"
    return f"unknown key {key!r}: remove it (valid keys here: {', '.join(valid)})"


def _problem_from_error(err: Any) -> list[SpecProblem]:
    loc = tuple(err["loc"])
    path = format_path(loc)
    leaf = next((p for p in reversed(loc) if isinstance(p, str)), "value")
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "udn_spec":
        subs = ctx.get("problems")
        if not subs:
            return [SpecProblem(path, value, ctx["message"])]
        out = []
        for sub, sub_value, message in subs:
            if ctx.get("absolute"):
                full = sub
            elif sub.startswith("["):
                full = path + sub
            else:
                full = f"{path}.{sub}" if path else sub
            out.append(SpecProblem(full, sub_value, message))
        return out
    if kind == "missing":
        fix = _MISSING_FIXES.get(path) or _MISSING_FIXES.get(leaf, "add it")
        return [SpecProblem(path, None, f"{leaf} is required: {fix}")]
    if kind == "extra_forbidden":
        return [SpecProblem(path, value, _unknown_key_message(loc, str(loc[-1])))]
    info, typ = field_at(loc)
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        lo, hi = _bounds(info)
        lo = ctx.get("ge", ctx.get("gt")) if lo is None else lo
        hi = ctx.get("le", ctx.get("lt")) if hi is None else hi
        if kind == "greater_than" and hi is None:
            fix = f"use a value greater than {lo}"
        elif lo is not None and hi is not None:
            fix = f"use a value between {lo} and {hi}"
        elif lo is not None:
            fix = f"use {lo} or more"
        else:
            fix = f"use {hi} or less"
        if kind == "greater_than" and lo is not None and hi is not None:
            fix = f"use a value greater than {lo} and at most {hi}"
        return [SpecProblem(path, value, f"{leaf} {show(value)} is out of range: {fix}")]
    if kind == "literal_error":
        options = [str(a) for a in get_args(typ)] if get_origin(typ) is Literal else []
        text = ", ".join(options) or ctx.get("expected", "")
        guess = next((o for o in options if str(value).lower() == o.lower()), None)
        fix = f"did you mean {guess!r}?" if guess else f"use one of {text}"
        return [SpecProblem(path, value, f"{leaf} {show(value)} is not valid: {fix}")]
    if kind in ("too_short", "too_long"):
        lo, hi = _len_bound(info, "min_length"), _len_bound(info, "max_length")
        rng = f"between {lo or 0} and {hi}" if hi is not None else f"at least {lo}"
        size = len(value) if isinstance(value, list | dict | str) else "?"
        return [SpecProblem(path, value, f"{leaf} has {size} items: give {rng}")]
    if kind == "string_too_short":
        return [SpecProblem(path, value, f"{leaf} must not be empty")]
    if kind == "string_too_long":
        return [SpecProblem(path, value, f"{leaf} is too long: use at most {ctx.get('max_length')} characters")]
    if kind in _TYPE_FIXES:
        example = getattr(info, "default", None)
        if example is None or not isinstance(example, int | float) or isinstance(example, bool):
            example = 1
        fix = _TYPE_FIXES[kind].format(example=example)
        return [SpecProblem(path, value, f"{leaf} {show(value)} {fix}")]
    return [SpecProblem(path, value, f"{leaf}: {err.get('msg', 'invalid value')}")]


def _len_bound(info: Any, attr: str) -> Any:
    for meta in getattr(info, "metadata", []):
        if hasattr(meta, attr):
            return getattr(meta, attr)
    return None


def problems_from_validation_error(error: ValidationError) -> list[SpecProblem]:
    """Translate pydantic's errors into SpecProblems with camelCase paths and fixes."""
    out: list[SpecProblem] = []
    for err in error.errors():
        out.extend(_problem_from_error(err))
    return out


def validate_spec(data: Any, source: str | None = None) -> RolloutSpec:
    """Validate plain data (a parsed YAML document) into a RolloutSpec, or raise SpecError."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise SpecError(
            [SpecProblem("", data, f"the spec must be a mapping with at least a network section, not {kind}")],
            source,
        )
    try:
        return RolloutSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems_from_validation_error(exc), source) from None
