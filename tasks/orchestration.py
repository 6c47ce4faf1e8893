"""How the runbook's pages and units of work run: as Prefect flows and tasks, or in-process.

The logic has one code path. A page (``flows/*.py``) is declared with :func:`step` and calls its units
of work (``tasks/*.py``), declared with :func:`unit`. When a Prefect API is configured
(``PREFECT_API_URL``, or the active Prefect profile), or when the call happens inside a Prefect run,
a page runs as a Prefect flow (a subflow when nested, named ``<run-id> · <step>`` and tagged) and its
units as Prefect tasks, so the UI records everything. Otherwise both are plain calls in this process:
no Prefect import and no temporary Prefect server, which cost more (12–18 s) than the whole work of
``preflight``, ``teardown --dry-run`` or a small fan-out.

Batches run on a bounded pool either way (``Unit.map``); concurrency proper (the API rate limit, the
in-flight cap) lives inside the batches, shared process-wide by :mod:`tasks.kube`.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import os
import sys
import threading
import tomllib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

log = logging.getLogger("udn_rollout")

#: Prefect task threads per flow run, and the in-process pool of ``Unit.map``: batches, not VMs.
BATCH_WORKERS = 4

# ---- where runs are recorded ---------------------------------------------------------------------


def in_prefect_run() -> bool:
    """True inside a Prefect flow or task run. Never imports Prefect when nothing has imported it yet
    (then no run can be active), and never raises."""
    if "prefect" not in sys.modules:
        return False
    try:
        from prefect.context import get_run_context

        get_run_context()
    except Exception:
        return False
    return True


def prefect_api_url() -> str | None:
    """The Prefect API runs are recorded on, without importing Prefect: ``PREFECT_API_URL``, else the
    active profile of ``$PREFECT_PROFILES_PATH`` (default ``$PREFECT_HOME/profiles.toml``); once Prefect
    is imported (a test harness, a worker), its own settings."""
    if "prefect.settings" in sys.modules:
        with contextlib.suppress(Exception):
            from prefect.settings import get_current_settings

            url = get_current_settings().api.url
            return str(url) if url else None
    env = os.environ.get("PREFECT_API_URL")
    if env is not None:
        return env or None
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml")
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or doc.get("active") or "ephemeral"
    url = ((doc.get("profiles") or {}).get(active) or {}).get("PREFECT_API_URL")
    return str(url) if url else None


def records_in_prefect() -> bool:
    """Whether a page called now runs as a Prefect flow (see the module docstring)."""
    return in_prefect_run() or prefect_api_url() is not None


# ---- the process -----------------------------------------------------------------------------------

GC_THRESHOLDS = (100_000, 50, 100)
_gc_lock = threading.Lock()


def tune_gc() -> None:
    """Raise the collector's thresholds and, the first time, move what start-up made out of its sight.

    The tool keeps a cluster's worth of API objects as plain dicts (informer caches, VM records): tens
    of thousands of containers without reference cycles, which CPython's default collector rescans
    over and over (about a sixth of the client's CPU on a 5,000-VM fan-out, BENCHMARKS.md). Freezing
    once only: frozen objects are never collected, so freezing at every step would also freeze
    whatever garbage the previous step had not yet handed to the collector.
    """
    with _gc_lock:
        if gc.get_threshold() != GC_THRESHOLDS:
            gc.set_threshold(*GC_THRESHOLDS)
            gc.freeze()


def collect_between_steps() -> None:
    """A full collection where a pause is harmless (a step starting): with the raised thresholds full
    passes are rare, and cyclic garbage a previous step left would otherwise stay for the process's life."""
    gc.collect()


# ---- telling the user -----------------------------------------------------------------------------


def say(message: str) -> None:
    """Tell the user: on stdout for the command line, and in the flow run's log for the Prefect UI."""
    print(message, flush=True)
    if in_prefect_run():
        with contextlib.suppress(Exception):
            from prefect.logging import get_run_logger

            get_run_logger().info(message)


# ---- units of work --------------------------------------------------------------------------------


class Unit(Generic[P, R]):
    """A unit of work: a Prefect task inside a Prefect run, a plain call otherwise (see :func:`unit`)."""

    def __init__(self, fn: Callable[P, R], name: str) -> None:
        self.fn = fn
        self.name = name
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        self._prefect_task: Any = None

    def __repr__(self) -> str:
        return f"Unit({self.name!r})"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if in_prefect_run():
            result: R = self.prefect_task(*args, **kwargs)
            return result
        return self.fn(*args, **kwargs)

    @property
    def prefect_task(self) -> Any:
        if self._prefect_task is None:
            from prefect import task
            from prefect.cache_policies import NO_CACHE

            self._prefect_task = task(name=self.name, cache_policy=NO_CACHE)(self.fn)
        return self._prefect_task

    def map(self, items: Iterable[Any], **common: Any) -> list[R]:
        """One call per item (the function's first parameter), the other arguments shared; results in
        the items' order. At most :data:`BATCH_WORKERS` run at once, as Prefect tasks or threads."""
        items = list(items)
        if not items:
            return []
        if in_prefect_run():
            from prefect import unmapped

            first = next(iter(inspect.signature(self.fn).parameters))
            futures = self.prefect_task.map(**{first: items}, **{k: unmapped(v) for k, v in common.items()})
            return [f.result() for f in futures]
        call: Callable[..., R] = self.fn
        with ThreadPoolExecutor(max_workers=min(BATCH_WORKERS, len(items)), thread_name_prefix=self.name) as pool:
            return list(pool.map(lambda item: call(item, **common), items))


def unit(name: str) -> Callable[[Callable[P, R]], Unit[P, R]]:
    """Declare a unit of work (a Prefect task when running under Prefect), named for the UI."""

    def wrap(fn: Callable[P, R]) -> Unit[P, R]:
        return Unit(fn, name)

    return wrap


# ---- pages --------------------------------------------------------------------------------------------


def run_tags(spec: Any) -> list[str]:
    """The tags of every Prefect run of a rollout: its run id, network and topology."""
    return [
        "udn-rollout",
        f"run:{spec.run_id}",
        f"network:{spec.network.name}",
        f"topology:{spec.network.topology}",
    ]


def _run_name(title: str) -> Callable[[], str]:
    def name() -> str:
        from prefect.runtime import flow_run

        spec = (flow_run.parameters or {}).get("spec")
        run_id = spec.get("runId") if isinstance(spec, dict) else getattr(spec, "run_id", None)
        return f"{run_id} · {title}" if run_id else title

    return name


def flow_run_url(flow_run_id: Any) -> str | None:
    """The Prefect UI's page of a flow run, when the API it was recorded on has a UI."""
    from prefect.settings import get_current_settings

    ui = get_current_settings().ui_url
    return f"{str(ui).rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


def _announce(flow: Any, flow_run: Any, state: Any) -> None:
    """Say where the Prefect UI shows a top-level run (a subflow shows inside its parent)."""
    if getattr(flow_run, "parent_task_run_id", None) is None:
        url = flow_run_url(flow_run.id)
        if url:
            print(f"Prefect: flow run {flow_run.name!r}: {url}", flush=True)


class Step(Generic[P, R]):
    """A page of the runbook: a Prefect flow when runs are recorded in Prefect, a plain call otherwise."""

    def __init__(
        self, fn: Callable[P, R], name: str, title: str, workers: int, run_name: Callable[[], str] | None = None
    ) -> None:
        self.fn = fn
        self.name = name
        self.title = title
        self.workers = workers
        self.run_name = run_name
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        self.__name__ = fn.__name__
        self._flow: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Step({self.name!r})"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        collect_between_steps()
        tune_gc()
        if not records_in_prefect():
            return self.fn(*args, **kwargs)
        from prefect import tags

        spec = kwargs.get("spec", args[0] if args else None)
        with tags(*run_tags(spec)) if hasattr(spec, "run_id") else contextlib.nullcontext():
            result: R = self.flow(*args, **kwargs)
        return result

    @property
    def flow(self) -> Any:
        """The Prefect flow of this page (built on first use; a deployment's entrypoint)."""
        with self._lock:
            if self._flow is None:
                from prefect import flow
                from prefect.task_runners import ThreadPoolTaskRunner

                runner: Any = ThreadPoolTaskRunner(max_workers=self.workers)
                self._flow = flow(
                    name=self.name,
                    flow_run_name=self.run_name or _run_name(self.title),
                    log_prints=False,
                    task_runner=runner,
                    on_running=[_announce],
                )(self.fn)
            return self._flow


def step(
    name: str,
    title: str | None = None,
    *,
    workers: int = BATCH_WORKERS,
    run_name: Callable[[], str] | None = None,
) -> Callable[[Callable[P, R]], Step[P, R]]:
    """Declare a page of the runbook; ``title`` names its runs (``<run-id> · <title>``) in the UI, unless
    ``run_name`` (called inside the run, e.g. reading its parameters) names them."""

    def wrap(fn: Callable[P, R]) -> Step[P, R]:
        return Step(fn, name, title or name, workers, run_name)

    return wrap
