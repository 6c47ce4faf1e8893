"""Label and field selectors with kube-apiserver's syntax and error messages.

Parsed once per request into a predicate, so a list of 20,000 objects costs one cheap call each.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from simcluster.errors import bad_request

Predicate = Callable[[Mapping[str, str]], bool]
FieldPredicate = Callable[[Mapping[str, Any]], bool]


def _has(k: str) -> Predicate:
    return lambda labels: k in labels


def _lacks(k: str) -> Predicate:
    return lambda labels: k not in labels


def _equals(k: str, v: str) -> Predicate:
    return lambda labels: labels.get(k) == v


def _differs(k: str, v: str) -> Predicate:
    return lambda labels: labels.get(k) != v


def _one_of(k: str, vs: frozenset[str]) -> Predicate:
    return lambda labels: labels.get(k) in vs


def _none_of(k: str, vs: frozenset[str]) -> Predicate:
    return lambda labels: labels.get(k) not in vs


def _never(labels: Mapping[str, str]) -> bool:
    return False


def _field_equals(f: str, v: str) -> FieldPredicate:
    return lambda o: _get_path(o, f) == v


def _field_differs(f: str, v: str) -> FieldPredicate:
    return lambda o: _get_path(o, f) != v


_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|>|<|[^\s!=,()<>]+)")
_KEYWORDS = {"in", "notin"}


def _tokens(text: str) -> list[str]:
    pos, out = 0, []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            if text[pos:].strip() == "":
                break
            raise bad_request(f"unable to parse requirement: invalid label selector {text!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _label_value_ok(v: str) -> bool:
    return v == "" or bool(re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", v))


def parse_label_selector(text: str | None) -> Predicate | None:
    """Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h,n>3` into a predicate; None means match everything."""
    if not text or not text.strip():
        return None
    toks = _tokens(text)
    reqs: list[Predicate] = []
    i = 0

    def err(msg: str) -> Exception:
        return bad_request(f"unable to parse requirement: {msg}")

    while i < len(toks):
        neg = False
        if toks[i] == "!":
            neg = True
            i += 1
        if i >= len(toks):
            raise err("found '', expected: identifier")
        key = toks[i]
        if key in {",", "(", ")", "=", "==", "!=", "<", ">"}:
            raise err(f"found '{key}', expected: !, identifier, or 'end of string'")
        i += 1
        if neg:
            reqs.append(_lacks(key))
        elif i >= len(toks) or toks[i] == ",":
            reqs.append(_has(key))
        else:
            op = toks[i]
            i += 1
            if op in ("=", "==", "!="):
                value = ""
                if i < len(toks) and toks[i] not in {",", "(", ")"}:
                    value = toks[i]
                    i += 1
                if not _label_value_ok(value):
                    raise err(
                        f"values[0][{key}]: Invalid value: {value!r}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
                    )
                if op == "!=":
                    reqs.append(_differs(key, value))
                else:
                    reqs.append(_equals(key, value))
            elif op in _KEYWORDS:
                if i >= len(toks) or toks[i] != "(":
                    raise err(f"found '{toks[i] if i < len(toks) else ''}', expected: '('")
                i += 1
                values: set[str] = set()
                while i < len(toks) and toks[i] != ")":
                    if toks[i] != ",":
                        values.add(toks[i])
                    i += 1
                if i >= len(toks):
                    raise err("found '', expected: ')'")
                i += 1
                if op == "in":
                    if not values:
                        raise err("for 'in', 'notin' operators, values set can't be empty")
                    reqs.append(_one_of(key, frozenset(values)))
                else:
                    reqs.append(_none_of(key, frozenset(values)))
            elif op in ("<", ">"):
                if i >= len(toks):
                    raise err("found '', expected: integer")
                try:
                    bound = int(toks[i])
                except ValueError as e:
                    raise err(f"for 'Gt', 'Lt' operators, the value must be an integer: {toks[i]}") from e
                i += 1

                def cmp(labels: Mapping[str, str], k: str = key, b: int = bound, gt: bool = op == ">") -> bool:
                    try:
                        v = int(labels[k])
                    except (KeyError, ValueError):
                        return False
                    return v > b if gt else v < b

                reqs.append(cmp)
            else:
                raise err(f"found '{op}', expected: in, notin, =, ==, !=, gt, lt")
        if i < len(toks):
            if toks[i] != ",":
                raise err(f"found '{toks[i]}', expected: ',' or 'end of string'")
            i += 1
    return lambda labels: all(r(labels) for r in reqs)


def selector_from_match(sel: Mapping[str, Any] | None) -> Predicate | None:
    """A metav1.LabelSelector (matchLabels + matchExpressions) as a predicate. An empty selector matches all."""
    if not sel:
        return None
    reqs: list[Predicate] = []
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append(_equals(k, v))
    for expr in sel.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), frozenset(expr.get("values") or ())
        if op == "In":
            reqs.append(_one_of(key, values))
        elif op == "NotIn":
            reqs.append(_none_of(key, values))
        elif op == "Exists":
            reqs.append(_has(key))
        elif op == "DoesNotExist":
            reqs.append(_lacks(key))
        else:
            reqs.append(_never)
    return lambda labels: all(r(labels) for r in reqs)


def _get_path(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text: str | None, allowed: frozenset[str]) -> Callable[[Mapping[str, Any]], bool] | None:
    """Parse `metadata.name=x,status.phase!=Running`; fields outside `allowed` are a 400 like the real server."""
    if not text or not text.strip():
        return None
    reqs: list[Callable[[Mapping[str, Any]], bool]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([^=!]+?)\s*(==|!=|=)\s*(.*)", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if field not in allowed:
            raise bad_request(f"field label not supported: {field}")
        if op == "!=":
            reqs.append(_field_differs(field, value))
        else:
            reqs.append(_field_equals(field, value))
    return lambda o: all(r(o) for r in reqs)


BASE_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
EXTRA_FIELDS: dict[str, frozenset[str]] = {
    "events": frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    "secrets": frozenset({"type"}),
    "pods": frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    "namespaces": frozenset({"status.phase"}),
    "nodes": frozenset({"spec.unschedulable"}),
}


def allowed_fields(plural: str) -> frozenset[str]:
    return BASE_FIELDS | EXTRA_FIELDS.get(plural, frozenset())
