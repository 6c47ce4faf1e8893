"""Live progress of a step, where the user is looking: the terminal and the Prefect UI.

In a terminal a rich progress bar (count, rate, ETA) on stderr; without one, a line every few seconds
(logs, CI). Inside a Prefect run a progress artifact is moved along as well (``tasks.artifacts``,
inert outside a run), so the UI shows the same figure. One object serves both, so a step reports
progress once and never branches on where it runs.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from tasks.artifacts import ProgressHandle, progress_artifact

LINE_EVERY_S = 5.0  # without a terminal: a line at most this often
QUIET_START_S = 2.0  # ... and none for a step that is over within this long


class StepProgress:
    """Count ``done`` of ``total`` for one label; thread-safe; use as a context manager."""

    def __init__(self, label: str, total: int, *, key: str | None = None, unit: str = "") -> None:
        self.label = label
        self.total = max(int(total), 0)
        self.unit = unit
        self.done = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._last_line = 0.0
        self._last_done = -1
        self._tty = sys.stderr.isatty()
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._artifact: ProgressHandle | None = progress_artifact(key, label) if key else None

    def __enter__(self) -> StepProgress:
        if self._tty and self.total:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=Console(file=sys.stderr),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, rate="")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, done: int, total: int | None = None) -> None:
        """Set the count (and, if it changed, the total)."""
        with self._lock:
            if total is not None and total != self.total:
                self.total = max(int(total), 0)
                if self._bar is not None and self._task is not None:
                    self._bar.update(self._task, total=self.total)
            self.done = done
            rate = self.rate()
            if self._bar is not None and self._task is not None:
                self._bar.update(self._task, completed=done, rate=f"{rate:.1f}{self.unit}/s")
            elif not self._tty and done != self._last_done:
                now = time.monotonic()
                quiet_start = now - self.started < QUIET_START_S and not self._last_line
                finished = bool(self.total and done >= self.total and self._last_line)
                if not quiet_start and (now - self._last_line >= LINE_EVERY_S or finished):
                    self._last_line = now
                    self._last_done = done
                    left = self._eta(rate)
                    sys.stderr.write(
                        f"{self.label}: {done}/{self.total} ({rate:.1f}{self.unit}/s"
                        f"{f', about {left:.0f}s left' if left is not None else ''})\n"
                    )
                    sys.stderr.flush()
            if self._artifact is not None and self.total:
                self._artifact.update(100.0 * done / self.total)

    def advance(self, n: int = 1) -> None:
        with self._lock:
            done = self.done + n
        self.update(done)

    def _eta(self, rate: float) -> float | None:
        if not self.total or rate <= 0 or self.done >= self.total:
            return None
        return (self.total - self.done) / rate

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.stop()
                self._bar = None


def step_progress(label: str, total: int, *, key: str | None = None, unit: str = "") -> StepProgress:
    """A :class:`StepProgress`; ``key`` names its Prefect progress artifact (lowercase, dashes)."""
    return StepProgress(label, total, key=key, unit=unit)
