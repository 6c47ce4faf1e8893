"""Reading a spec: the YAML file, ``--set`` overrides and ``--run-id``, then validation.

YAML is read defensively: a key given twice is an error naming both lines (PyYAML would keep the
last silently — another network, another VM count), and alias expansion is bounded, so a "billion
laughs" document is rejected at once instead of costing minutes of CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tasks.spec.errors import SpecError, SpecProblem
from tasks.spec.messages import validate_spec
from tasks.spec.model import RolloutSpec
from tasks.spec.overrides import apply_overrides, blame

#: At most this many nodes may be reached through aliases (a spec has a few hundred nodes at most).
MAX_ALIAS_NODES = 10_000
MAX_SPEC_BYTES = 1024 * 1024


class SpecYAMLError(yaml.YAMLError):
    """A YAML document that is valid YAML but not acceptable as a spec (duplicate keys, alias bombs)."""

    def __init__(self, message: str, mark: Any = None) -> None:
        super().__init__(message)
        self.problem = message
        self.problem_mark = mark


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and bounds what aliases expand to."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._alias_nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            anchor = event.anchor
            if anchor in self.anchors:
                self._alias_nodes += _size(self.anchors[anchor])
                if self._alias_nodes > MAX_ALIAS_NODES:
                    raise SpecYAMLError(
                        f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?): write the values "
                        "out, or use fewer aliases",
                        event.start_mark,
                    )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # an unhashable key: the base class reports it
                if first is not None:
                    raise SpecYAMLError(
                        f"key {key!r} is given twice, on line {first.line + 1} and line {key_node.start_mark.line + 1}: "
                        "keep one (YAML would silently use the last)",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _size(node: Any, cap: int = MAX_ALIAS_NODES + 1) -> int:
    """Nodes under ``node`` (counting through nested aliases), stopping once past ``cap``."""
    total, stack = 0, [node]
    while stack and total <= cap:
        n = stack.pop()
        total += 1
        if isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack.extend((k, v))
    return total


def parse_yaml(text: str) -> list[Any]:
    """The documents of a spec file, strictly read (see the module docstring)."""
    return [d for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]


def load_spec(path: str | Path | None, overrides: Sequence[str] = (), run_id: str | None = None) -> RolloutSpec:
    """Read a spec file (or start empty), apply ``--set`` overrides and ``--run-id``, then validate.

    Raises SpecError for every problem: unreadable file, YAML syntax (with line and column), bad
    overrides, and each invalid field.
    """
    source = str(path) if path is not None else None
    data: Any = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(
                [SpecProblem("", str(p), f"spec file {str(p)!r} does not exist: check the path given to -f")]
            ) from None
        except IsADirectoryError:
            raise SpecError(
                [SpecProblem("", str(p), f"{str(p)!r} is a directory: give the spec's YAML file to -f")]
            ) from None
        except UnicodeDecodeError as exc:
            raise SpecError(
                [
                    SpecProblem(
                        "",
                        str(p),
                        f"spec file {str(p)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8 YAML",
                    )
                ]
            ) from None
        except OSError as exc:
            raise SpecError([SpecProblem("", str(p), f"cannot read spec file {str(p)!r}: {exc}")]) from None
        if len(text.encode("utf-8", "replace")) > MAX_SPEC_BYTES:
            raise SpecError(
                [SpecProblem("", str(p), f"spec file {str(p)!r} is larger than 1 MiB: a spec is a page of YAML")]
            )
        try:
            docs = parse_yaml(text)
        except yaml.YAMLError as exc:
            raise SpecError([SpecProblem("", None, _yaml_error_message(exc))], source) from None
        if len(docs) > 1:
            raise SpecError(
                [SpecProblem("", None, f"the file holds {len(docs)} YAML documents: keep one spec per file")],
                source,
            )
        data = docs[0] if docs else {}
    if not isinstance(data, dict):
        return validate_spec(data, source)
    origins = apply_overrides(data, overrides)
    if run_id is not None:
        data.pop("run_id", None)
        data["runId"] = run_id
        origins["runId"] = f"--run-id {run_id}"
    try:
        return validate_spec(data, source)
    except SpecError as e:
        problems = blame(e.problems, origins)
        only_args = all(p.origin for p in problems)
        raise SpecError(problems, "the command-line arguments" if only_args else source) from None


def _yaml_error_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    if isinstance(exc, SpecYAMLError):
        return f"{where}{problem}"
    detail = f"{problem} ({context})" if context else problem
    return f"YAML syntax error at {where}{detail}: fix the indentation or quoting there"
