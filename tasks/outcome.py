"""What a step hands back: a typed result that knows its verdict, its figures and its report parts.

Every step of the runbook returns a subclass of :class:`StepResult`; :func:`tasks.reports.publish.report`
turns any of them into files, Prefect artifacts, terminal lines and the exit decision, so no page
carries reporting code of its own. A failed step raises its :class:`StepFailed` subclass, which
carries the exit code the command line ends with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from tasks.reports.state import RunParts

EXIT_FAILED = 1  # a step ran and failed (VMs not ready, unreachable pairs, failed migrations)
EXIT_PREFLIGHT = 3  # preflight failed: nothing was changed on the cluster
MAX_DETAIL_LINES = 10


class StepFailed(Exception):
    """A step ran and did not succeed; ``problems`` says what, the reports say the rest."""

    exit_code: ClassVar[int] = EXIT_FAILED

    def __init__(self, message: str, problems: list[str] | None = None, *, result: StepResult | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])
        self.result = result

    def __str__(self) -> str:
        return "\n".join([str(self.args[0]), *(f"  - {p}" for p in self.problems)])


class PreflightFailed(StepFailed):
    """At least one check failed; nothing was written to the cluster."""

    exit_code = EXIT_PREFLIGHT

    @property
    def checks(self) -> list[Any]:
        """The preflight's checks (when it failed as a whole, not on one late check)."""
        return list(getattr(self.result, "checks", []))


class ProvisionError(StepFailed):
    """Provisioning could not complete; ``problems`` says what, per object or namespace."""


class FanoutFailed(StepFailed):
    """Some VMs did not become Ready; the inventory says which and why."""


class ConnectivityFailed(StepFailed):
    """Pairs that should reach each other did not, or an isolation probe was answered."""


class ChurnFailed(StepFailed):
    """Some moves failed or did not finish, or the VMs did not answer afterwards as the cluster predicts."""


class RolloutFailed(StepFailed):
    """A step after provisioning failed; the reports say what, and the run can be resumed."""


class TeardownIncomplete(StepFailed):
    """Some objects were still there when the timeout passed."""


@dataclass
class Artifact:
    """A Prefect artifact: a table (DataFrame or records), or Markdown (text, or a report file's text)."""

    key: str
    description: str
    table: Any = None
    markdown: str = ""
    markdown_file: str = ""  # a file of the run's report directory, published as Markdown


@dataclass
class StepResult:
    """The base of every step's result; subclasses fill in what they know."""

    step: ClassVar[str] = "step"
    failure: ClassVar[type[StepFailed]] = StepFailed
    report_file: ClassVar[str] = ""  # the report a person opens first, named after the headline
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)  # said after the headline, e.g. what was skipped

    def ok(self) -> bool:
        return True

    def figures(self) -> dict[str, Any]:
        return {"wall_s": round(self.wall_s, 2)}

    def problems(self) -> list[str]:
        """Every problem (for run.json), one line each."""
        return []

    def details(self) -> list[str]:
        """Lines shown under the headline when the step failed (the first few problems by default)."""
        return self.problems()

    def headline(self) -> str:
        """One line for the terminal and the flow run's log."""
        return f"{self.step}: {'ok' if self.ok() else 'FAILED'} in {self.wall_s:.1f}s"

    def failure_message(self) -> str:
        """The failed run's state message: the cause in one line."""
        problems = self.problems()
        return f"{self.step} failed: " + (problems[0] if problems else "see the reports")

    def parts(self) -> RunParts:
        """What goes into the run's report directory besides the step's summary."""
        return RunParts()

    def artifacts(self) -> list[Artifact]:
        return []
