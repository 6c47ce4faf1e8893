"""Helm-style ``--set a.b[0].c=value`` overrides applied to a parsed spec before it is validated."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, get_args, get_origin

import yaml

from tasks.spec.errors import SpecError, SpecProblem
from tasks.spec.messages import field_at, format_path, unwrap
from tasks.spec.rules import split_top_level


def _parse_set_path(path: str) -> list[str | int]:
    """Split ``a.b[0].c`` into keys and indexes; ``\\.`` keeps a dot inside a key (label keys)."""
    parts: list[str | int] = []
    key, i, bad = "", 0, False
    while i < len(path):
        ch = path[i]
        if ch == "\\" and i + 1 < len(path):
            key += path[i + 1]
            i += 2
            continue
        if ch == ".":
            bad = bad or (not key and (not parts or not isinstance(parts[-1], int)))
            if key:
                parts.append(key)
            key = ""
        elif ch == "[":
            end = path.find("]", i)
            index = path[i + 1 : end] if end > 0 else ""
            if not index.isdigit() or (not key and not parts):
                bad = True
                break
            if key:
                parts.append(key)
            parts.append(int(index))
            key, i = "", end
        elif ch == "]":
            bad = True
        else:
            key += ch
        i += 1
    if key:
        parts.append(key)
    elif path.endswith("."):
        bad = True
    if bad or not parts or isinstance(parts[0], int):
        raise ValueError(
            f"--set path {path!r} is not valid: write dotted camelCase keys with optional [index], "
            "e.g. vms.perNamespace=10 or network.subnets[0].cidr=10.200.0.0/16 (escape a dot in a key as \\.)"
        )
    return parts


def _is_text_field(path: Sequence[str | int]) -> bool:
    """Whether the spec field at ``path`` holds text, so "007" or "true" stay strings there."""
    _, typ = field_at(path)
    if get_origin(typ) is list:
        typ = unwrap(get_args(typ)[0])
    return typ is str


def _parse_set_value(raw: str, text: bool) -> Any:
    if raw == "null":  # as in Helm: removes the key, so the default applies
        return None
    if raw.startswith("{") and raw.endswith("}"):
        inner = raw[1:-1].strip()
        items = [i.strip() for i in split_top_level(inner)] if inner else []
        return [i if text else _yaml_scalar(i) for i in items]
    if text:
        return raw
    return _yaml_scalar(raw)


def _yaml_scalar(raw: str) -> Any:
    if raw == "":
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, str]:
    """Apply Helm-style ``a.b[0].c=value`` overrides to ``data`` in place (null removes the key).

    Returns which ``--set`` argument set each path (``"vms.perNamespace" → "--set vms.perNamespace=0"``),
    so a value that then fails validation is blamed on the argument, not on the spec file.
    """
    problems: list[SpecProblem] = []
    origins: dict[str, str] = {}
    for arg in overrides:
        for assignment in split_top_level(arg):
            if not assignment.strip():
                continue
            key, sep, raw = assignment.partition("=")
            key = key.strip()
            if not sep:
                problems.append(SpecProblem(key, assignment, f"--set {assignment!r} has no '=': write key.path=value"))
                continue
            try:
                path = _parse_set_path(key)
                _set_path(data, path, _parse_set_value(raw.strip(), _is_text_field(path)), key)
            except ValueError as exc:
                problems.append(SpecProblem(key, raw, str(exc), origin=f"--set {assignment.strip()}"))
                continue
            origins[format_path(path)] = f"--set {assignment.strip()}"
    if problems:
        raise SpecError(problems, "--set")
    return origins


def blame(problems: Iterable[SpecProblem], origins: dict[str, str]) -> list[SpecProblem]:
    """Problems whose path a ``--set`` wrote (or lies under one) name that argument as their origin."""
    out = []
    for p in problems:
        origin = next(
            (arg for path, arg in origins.items() if p.path == path or p.path.startswith((path + ".", path + "["))),
            "",
        )
        out.append(SpecProblem(p.path, p.value, p.message, origin) if origin and not p.origin else p)
    return out


def _set_path(data: dict[str, Any], path: list[str | int], value: Any, shown: str) -> None:
    node: Any = data
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        nxt = None if last else path[depth + 1]
        where = format_path(path[:depth]) or "the spec"
        if isinstance(part, int):
            if not isinstance(node, list):
                raise ValueError(f"--set {shown}: {where} is not a list, so [{part}] cannot be used")
            if part > len(node):
                raise ValueError(
                    f"--set {shown}: index {part} is past the end of {where} ({len(node)} items): "
                    f"use an index up to {len(node)}"
                )
            if part == len(node):
                node.append(None)
        elif not isinstance(node, dict):
            raise ValueError(f"--set {shown}: {where} is not a mapping, so .{part} cannot be used")
        if last:
            if value is None:
                if isinstance(node, dict):
                    node.pop(part, None)
                else:
                    node[part] = None
            else:
                node[part] = value
            return
        child = node[part] if isinstance(part, int) else node.get(part)
        if child is None:
            child = [] if isinstance(nxt, int) else {}
            node[part] = child
        node = child
