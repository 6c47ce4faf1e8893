"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

Strategic merge follows the parts of the Kubernetes rules that the served core kinds need: maps
merge recursively, `null` deletes, lists with a known merge key merge item by item, `merge`
primitive lists (finalizers) form a union, `$patch: replace|delete` and
`$deleteFromPrimitiveList` directives work, and `$setElementOrder`/`$retainKeys` are accepted.
"""

from __future__ import annotations

import copy
from typing import Any

from simcluster.errors import ApiError

# (list field name) → merge key, for the lists of the core kinds served here. None: union of primitives.
_MERGE_KEYS: dict[str, str | None] = {
    "ownerReferences": "uid",
    "finalizers": None,
    "conditions": "type",
    "addresses": "type",
    "taints": "key",
    "containers": "name",
    "volumes": "name",
    "env": "name",
    "ports": "containerPort",
    "images": "",  # atomic
}


def _invalid(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _walk(doc: Any, tokens: list[str], path: str) -> Any:
    cur = doc
    for t in tokens:
        if isinstance(cur, dict):
            if t not in cur:
                raise _invalid(
                    f'the server rejected our request due to an error in our request: doc is missing path: "{path}"'
                )
            cur = cur[t]
        elif isinstance(cur, list):
            try:
                cur = cur[int(t)]
            except (ValueError, IndexError) as e:
                raise _invalid(
                    f'the server rejected our request due to an error in our request: doc is missing path: "{path}"'
                ) from e
        else:
            raise _invalid(
                f'the server rejected our request due to an error in our request: doc is missing path: "{path}"'
            )
    return cur


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902: add, remove, replace, move, copy, test."""
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ApiError(
                400,
                "BadRequest",
                "the server rejected our request due to an error in our request: Unexpected kind: unknown",
            )
        kind, path = op["op"], op["path"]
        if not isinstance(kind, str) or not isinstance(path, str) or (path and not path.startswith("/")):
            raise _invalid(
                f"the server rejected our request due to an error in our request: invalid JSON pointer or operation in {op!r}"
            )
        tokens = [_unescape(t) for t in path.split("/")[1:]] if path else []

        def value(op: dict[str, Any] = op, kind: str = kind) -> Any:
            if "value" not in op:
                raise _invalid(
                    f"the server rejected our request due to an error in our request: missing value for {kind} operation"
                )
            return copy.deepcopy(op["value"])

        if kind == "test":
            if _walk(doc, tokens, path) != op.get("value"):
                raise _invalid(
                    f"the server rejected our request due to an error in our request: testing value {path} failed: test failed"
                )
            continue
        if kind in ("move", "copy"):
            src = op.get("from")
            if not isinstance(src, str) or (src and not src.startswith("/")):
                raise _invalid(
                    f"the server rejected our request due to an error in our request: {kind} operation needs a 'from' JSON pointer"
                )
            stoks = [_unescape(t) for t in src.split("/")[1:]]
            moved = copy.deepcopy(_walk(doc, stoks, src))
            if kind == "move":
                doc = _remove(doc, stoks, src)
            doc = _add(doc, tokens, path, moved)
        elif kind == "add":
            doc = _add(doc, tokens, path, value())
        elif kind == "remove":
            doc = _remove(doc, tokens, path)
        elif kind == "replace":
            _walk(doc, tokens, path)
            if not tokens:
                doc = value()
            else:
                parent = _walk(doc, tokens[:-1], path)
                parent[int(tokens[-1]) if isinstance(parent, list) else tokens[-1]] = value()
        else:
            raise ApiError(
                400,
                "BadRequest",
                f"the server rejected our request due to an error in our request: Unexpected kind: {kind}",
            )
    return doc


def _add(doc: Any, tokens: list[str], path: str, val: Any) -> Any:
    if not tokens:
        return val
    parent = _walk(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(val)
        else:
            try:
                idx = int(last)
            except ValueError as e:
                raise _invalid(
                    f'the server rejected our request due to an error in our request: add operation does not apply: doc is missing path: "{path}"'
                ) from e
            if idx < 0 or idx > len(parent):
                raise _invalid(
                    f'the server rejected our request due to an error in our request: add operation does not apply: doc is missing path: "{path}"'
                )
            parent.insert(idx, val)
    elif isinstance(parent, dict):
        parent[last] = val
    else:
        raise _invalid(
            f'the server rejected our request due to an error in our request: add operation does not apply: doc is missing path: "{path}"'
        )
    return doc


def _remove(doc: Any, tokens: list[str], path: str) -> Any:
    if not tokens:  # the whole document cannot be removed
        raise _invalid(
            f'the server rejected our request due to an error in our request: remove operation does not apply: doc is missing path: "{path}"'
        )
    parent = _walk(doc, tokens[:-1], path)
    last = tokens[-1]
    try:
        if isinstance(parent, list):
            del parent[int(last)]
        else:
            del parent[last]
    except (KeyError, IndexError, ValueError, TypeError) as e:
        raise _invalid(
            f'the server rejected our request due to an error in our request: remove operation does not apply: doc is missing path: "{path}"'
        ) from e
    return doc


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge patch for the core kinds this server serves."""
    return _smp(copy.deepcopy(target), patch, None)


def _smp(target: Any, patch: Any, field: str | None) -> Any:
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        if patch.get("$patch") == "delete":
            return None
        result = dict(target) if isinstance(target, dict) else {}
        for k, v in patch.items():
            if k.startswith("$setElementOrder/") or k in ("$retainKeys", "$patch"):
                continue
            if k.startswith("$deleteFromPrimitiveList/"):
                name = k.split("/", 1)[1]
                if not isinstance(v, list):
                    raise ApiError(400, "BadRequest", f"invalid patch: {k} must be a list, got {type(v).__name__}")
                remove = set(map(str, v))
                current = result.get(name)
                result[name] = [x for x in current if str(x) not in remove] if isinstance(current, list) else []
                continue
            if v is None:
                result.pop(k, None)
                continue
            if isinstance(v, list):
                result[k] = _merge_list(result.get(k), v, k)
            else:
                merged = _smp(result.get(k), v, k)
                if merged is None:
                    result.pop(k, None)
                else:
                    result[k] = merged
        return result
    return copy.deepcopy(patch)


def _merge_list(current: Any, patch: list[Any], field: str) -> list[Any]:
    if field not in _MERGE_KEYS or _MERGE_KEYS[field] == "" or not isinstance(current, list):
        return [p for p in (_strip(x) for x in patch) if p is not None]
    key = _MERGE_KEYS[field]
    if key is None:  # union of primitives, keeping order
        out = list(current)
        for item in patch:
            if item not in out:
                out.append(item)
        return out
    out = [copy.deepcopy(x) for x in current]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            continue
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_strip(item))
        else:
            out[idx] = _smp(out[idx], item, field)
    return out


def _strip(item: Any) -> Any:
    if isinstance(item, dict):
        if item.get("$patch") == "delete":
            return None
        return {k: v for k, v in item.items() if not k.startswith("$")}
    return item
