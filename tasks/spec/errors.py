"""What is wrong with a spec: every problem, each with where it is and how to fix it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong with a spec: where (camelCase path as written), what value, and how to fix it."""

    path: str
    value: Any
    message: str
    origin: str = ""  # where the value came from when not the spec file, e.g. "--set vms.perNamespace=0"

    def __str__(self) -> str:
        where = f" (from {self.origin})" if self.origin else ""
        return f"{self.path or '(spec)'}{where}: {self.message}"


class SpecError(Exception):
    """Raised for any invalid spec; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[SpecProblem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" in {self.source}" if self.source else ""
        if self.source in ("--set", "the command-line arguments"):
            where = " from the command-line arguments"
        n = len(self.problems)
        head = f"invalid rollout spec{where} ({n} problem{'s' if n != 1 else ''}):"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])
