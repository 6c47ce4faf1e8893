"""Fleet rollouts: one spec, several clusters at once, each cluster its own run.

What a fleet is made of, decided here so the command line and the Prefect form share it:

* **Targets** (:class:`FleetTarget`): :class:`~tasks.kube.ClusterParams` (kubeconfig, context, in-cluster)
  plus an optional name. The command line makes one per ``--context``.
* **Input checks** (:func:`plan_fleet`), before any cluster is contacted: at least one target, none
  given twice, every context present in its kubeconfig (the error lists the contexts there), no two
  targets pointing at one API server (two runs of one spec on one cluster would fight over its Lease).
  Any of these is bad input: nothing is done on any cluster (exit 2).
* **Per-cluster gates**, after the input checks: a kubeconfig entry that cannot be loaded, or a cluster
  that does not answer one quick authenticated call (:func:`check_reach`), is that cluster's failure
  (exit 4) and the others go on. Then each cluster's rollout starts with its own preflight, exactly as a
  single-cluster rollout does: a cluster whose preflight fails gets nothing written (exit 3) and is named
  in the summary, while the clusters that passed are written to. There is no fleet-wide barrier: with
  "write to the clusters that passed" a barrier would only make the fast clusters wait for the slowest
  preflight, and run every preflight twice.
* **Layout** (:func:`tasks.reports.fleet.cluster_reports_root`): ``<reports root>/<run-id>/`` holds
  ``fleet.md``/``.html``/``.json``; each cluster gets a reports root of its own,
  ``<run-id>/clusters/<cluster>/``, in which its run writes ``<run-id>/`` (and its run history) exactly
  as a single-cluster run writes under ``./reports``.
* **Outcomes** (:func:`outcome_of`): what a cluster's run ended with, as a plain
  :class:`~tasks.reports.fleet.ClusterOutcome`, from its result or its exception.
* **Where the runs go**: in this process (:func:`run_in_process`: threads, or Prefect tasks carrying
  subflows), or to a Prefect work pool as runs of a deployment (:func:`dispatch_to_pool`).
* **The summary** (:func:`finish_fleet`): the outcomes in the fleet's order, its reports and artifacts.

Prefect is imported only inside a Prefect flow run (:func:`cluster_tags`, :func:`run_in_process`,
:func:`dispatch_to_pool`, :func:`cluster_run_name`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from tasks.artifacts import publish_markdown, publish_table
from tasks.kube import ClusterConfigError, ClusterParams, Kube, KubeError
from tasks.orchestration import in_prefect_run, run_tags
from tasks.outcome import PreflightFailed, StepFailed
from tasks.reports.fleet import (
    EXIT_CLUSTER,
    EXIT_FAILED,
    ClusterOutcome,
    artifact_key,
    cluster_dirnames,
    cluster_reports_root,
    fleet_exit_code,
    fleet_headline,
    fleet_terminal,
    write_fleet_reports,
)

log = logging.getLogger(__name__)

#: clusters rolled out at once (more wait for a free slot); each runs its own thread pools inside
MAX_PARALLEL_CLUSTERS = 16
#: how long the quick reachability call may take per cluster
REACH_TIMEOUT_S = 10.0


class FleetTarget(ClusterParams):
    """One cluster of a fleet: how to reach it (as for a single rollout) and what to call it."""

    name: str | None = Field(
        None,
        title="Name",
        description="What the fleet report, the reports directory and the Prefect run names call this "
        "cluster; empty = the context name (or in-cluster, or the kubeconfig file's name).",
    )

    def cluster_params(self) -> ClusterParams:
        return ClusterParams(kubeconfig=self.kubeconfig, context=self.context, in_cluster=self.in_cluster)

    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.in_cluster:
            return "in-cluster"
        if self.context:
            return self.context
        if self.kubeconfig:
            stem = Path(self.kubeconfig).name
            for suffix in (".kubeconfig", ".yaml", ".yml", ".conf"):
                stem = stem.removesuffix(suffix)
            return stem or "cluster"
        return "current-context"

    def identity(self) -> tuple[str | None, str | None, bool]:
        kubeconfig = str(Path(self.kubeconfig).expanduser().resolve()) if self.kubeconfig else None
        return kubeconfig, self.context, self.in_cluster


class FleetInputError(ValueError):
    """The fleet's input is wrong (nothing was done on any cluster): the message names the flag and the fix."""


class ClusterFailed(Exception):
    """One cluster's run did not pass; carries its outcome (and fails its Prefect flow run)."""

    def __init__(self, outcome: ClusterOutcome) -> None:
        first = outcome.failures[0] if outcome.failures else "see its reports"
        super().__init__(f"cluster {outcome.cluster}: {outcome.status} (exit {outcome.exit_code}): {first}")
        self.outcome = outcome

    def __reduce__(self) -> tuple[Any, ...]:  # rebuilt from the outcome wherever Prefect copies it
        return (type(self), (self.outcome,))


@dataclass
class FleetResult:
    """A fleet's result: every cluster's outcome in the order given, and where the fleet report is."""

    run_id: str
    fleet_dir: str
    outcomes: list[ClusterOutcome] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def exit_code(self) -> int:
        return fleet_exit_code(self.outcomes)

    def ok(self) -> bool:
        return self.exit_code == 0

    def headline(self) -> str:
        return fleet_headline(self.run_id, self.outcomes)


class FleetFailed(Exception):
    """At least one cluster of the fleet did not pass (the others ran to their end); ``exit_code`` is the
    fleet's (the highest of the clusters'), ``result`` has every cluster's outcome."""

    def __init__(self, message: str, result: FleetResult) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.args[0], self.result))

    @property
    def exit_code(self) -> int:
        return self.result.exit_code


# ---- the plan: targets checked, named, placed ------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A cluster of the fleet as planned: its name, how the input called it, and where its reports go."""

    name: str
    label: str
    params: ClusterParams
    reports_root: Path
    context: str = ""
    server: str = ""


@dataclass
class FleetPlan:
    run_id: str
    fleet_dir: Path
    members: list[Member]
    early: dict[str, ClusterOutcome] = field(default_factory=dict)  # failed before their run started


#: how the command line and the Prefect form name the inputs, for the messages
CLI_FLAGS = {"context": "--context", "kubeconfig": "--kubeconfig", "fleet": "--context"}
FORM_FLAGS = {"context": "context", "kubeconfig": "kubeconfig", "fleet": "fleet"}


def kubeconfig_files(kubeconfig: str | None) -> list[Path]:
    """The kubeconfig files a target without in-cluster reads, as kubectl picks them (none: unknown)."""
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
        return [path] if path.is_file() else []
    env = os.environ.get("KUBECONFIG", "")
    if env.strip():
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip() and Path(p).expanduser().is_file()]
    home = Path("~/.kube/config").expanduser()
    return [home] if home.is_file() else []


def kubeconfig_contexts(files: Sequence[Path]) -> list[str] | None:
    """The context names of the files (None when they cannot be read: resolution will say why)."""
    names: list[str] = []
    try:
        for path in files:
            doc = yaml.safe_load(path.read_text()) or {}
            for ctx in doc.get("contexts") or []:
                if isinstance(ctx, dict) and ctx.get("name") and ctx["name"] not in names:
                    names.append(str(ctx["name"]))
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    return names


def plan_fleet(
    run_id: str,
    targets: Sequence[FleetTarget],
    fleet_dir: Path,
    *,
    labels: Sequence[str] | None = None,
    flags: Mapping[str, str] = FORM_FLAGS,
) -> FleetPlan:
    """Check the fleet's input (raising :class:`FleetInputError` with every problem) and place each cluster.

    ``labels`` say how the input named each target (``--context east``; default ``fleet[i]``); ``flags``
    name the inputs in the fixes. Resolving a kubeconfig reads files only: no cluster is contacted.
    """
    labels = list(labels or [f"fleet[{i}]" for i in range(len(targets))])
    if not targets:
        raise FleetInputError(
            f"{flags['fleet']}: no clusters given; name at least one (e.g. {flags['context']} east {flags['context']} west)"
        )
    problems: list[str] = []
    seen_target: dict[tuple[str | None, str | None, bool], str] = {}
    seen_name: dict[str, str] = {}
    names = [t.display_name() for t in targets]
    for target, label, name in zip(targets, labels, names, strict=True):
        key = target.identity()
        if key in seen_target:
            problems.append(
                f"{label} is given twice (also {seen_target[key]}): name each cluster once, drop the repeat"
            )
            continue
        seen_target[key] = label
        if name in seen_name:
            problems.append(
                f"{label} and {seen_name[name]} are both called {name!r}: give them distinct names (the name "
                "is their reports directory and their Prefect run name)"
            )
            continue
        seen_name[name] = label
        if target.context and not target.in_cluster:
            files = kubeconfig_files(target.kubeconfig)
            contexts = kubeconfig_contexts(files) if files else None
            if contexts is not None and target.context not in contexts:
                where = ", ".join(str(f) for f in files)
                problems.append(
                    f"{label}: no context {target.context!r} in kubeconfig {where} (its contexts: "
                    f"{', '.join(contexts) or 'none'}); use one of those, or {flags['kubeconfig']} the file that has it"
                )
    if problems:
        raise FleetInputError(
            "bad fleet input, nothing was done on any cluster:\n" + "\n".join(f"  - {p}" for p in problems)
        )

    dirnames = cluster_dirnames(names)
    members: list[Member] = []
    early: dict[str, ClusterOutcome] = {}
    by_server: dict[str, str] = {}
    for target, label, name in zip(targets, labels, names, strict=True):
        params = target.cluster_params()
        root = cluster_reports_root(fleet_dir, dirnames[name])
        context = "in-cluster" if target.in_cluster else (target.context or "")
        server = ""
        try:
            cfg, _, _ = params.target().resolve()
            server = str(cfg.host)
        except ClusterConfigError as e:
            early[name] = ClusterOutcome(name, context=context, exit_code=EXIT_CLUSTER, failures=[str(e)])
        if server:
            if server in by_server:
                problems.append(
                    f"{label} and {by_server[server]} both point at {server}: that is one cluster twice "
                    "(the two runs would fight over its lock); keep one of them"
                )
            by_server.setdefault(server, label)
        members.append(Member(name, label, params, root, context, server))
    if problems:
        raise FleetInputError(
            "bad fleet input, nothing was done on any cluster:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return FleetPlan(run_id=run_id, fleet_dir=fleet_dir, members=members, early=early)


# ---- reachability ----------------------------------------------------------------------------------


def reach(params: ClusterParams) -> str | None:
    """One authenticated call without retries; None when the cluster answered, else what went wrong and the fix."""
    try:
        kube = Kube(params.target(), qps=0, retries=0, timeout=REACH_TIMEOUT_S)
    except ClusterConfigError as e:
        return str(e)
    try:
        kube.check_access()
    except KubeError as e:
        if e.code == 401:
            return (
                f"the cluster at {kube.server} did not accept the credentials of {kube.source} ({e.message}); "
                "log in again (oc login) or pick another context"
            )
        if e.code == 403:
            return (
                f"the cluster at {kube.server} refused the account of {kube.source} ({e.message}); use another account"
            )
        return (
            f"cannot reach the cluster at {kube.server} ({kube.source}): {e.message}; check the server address "
            "and that the cluster is up"
        )
    finally:
        kube.close()
    return None


def check_reach(members: Sequence[Member]) -> dict[str, ClusterOutcome]:
    """The members that do not answer, as exit-4 outcomes (all checked at once, each within seconds)."""
    if not members:
        return {}
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_CLUSTERS, len(members)), thread_name_prefix="reach") as pool:
        answers = list(pool.map(lambda m: reach(m.params), members))
    return {
        m.name: ClusterOutcome(m.name, context=m.context, server=m.server, exit_code=EXIT_CLUSTER, failures=[problem])
        for m, problem in zip(members, answers, strict=True)
        if problem
    }


# ---- outcomes --------------------------------------------------------------------------------------


def _figures(result: Any) -> dict[str, Any]:
    """The rollout's headline figures (a RolloutResult's), mapped onto ClusterOutcome's fields."""
    headline = getattr(result, "headline_figures", None)
    if not callable(headline):
        return {}
    f = headline()
    names = {
        "vms": "vms",
        "vms_ready": "vms_ready",
        "probes": "probes",
        "probes_failing": "probes_failing",
        "migrated": "migrated",
        "ip_changed": "ip_changed",
        "stale_ip_hazards": "stale_ip_hazards",
    }
    return {field_: int(f[key]) for key, field_ in names.items() if f.get(key) is not None}


def outcome_of(
    name: str, *, result: Any = None, error: BaseException | None = None, reports: str = "", wall_s: float = 0.0
) -> ClusterOutcome:
    """A cluster's outcome from its rollout's result, or from what its rollout raised (never raises)."""
    if error is None:
        return ClusterOutcome(name, exit_code=0, reports=reports, wall_s=wall_s, **_figures(result))
    exit_code = EXIT_FAILED
    failures: list[str]
    if isinstance(error, StepFailed):
        exit_code = error.exit_code
        result = error.result
        failed_steps = list(getattr(result, "failed_steps", []) or [])
        if failed_steps:
            failures = failed_steps
        else:
            detail = result.problems() if result is not None else []
            extra = [p for p in error.problems if not p.startswith("reports: ")]
            if isinstance(error, PreflightFailed) and detail:
                failures = [*detail, *extra]  # the failed checks say it all; the status says "preflight failed"
            else:
                failures = [str(error.args[0]), *detail, *extra]
    elif isinstance(error, KubeError):
        exit_code = EXIT_CLUSTER
        failures = [f"the cluster answered {error.code} {error.reason}: {error.message}"]
    elif isinstance(error, ClusterConfigError):
        exit_code = EXIT_CLUSTER
        failures = [str(error)]
    else:
        failures = [f"{type(error).__name__}: {error}"]
    return ClusterOutcome(
        name, exit_code=exit_code, failures=failures, reports=reports, wall_s=wall_s, **_figures(result)
    )


def outcome_from_run_json(name: str, run_dir: Path, completed: bool) -> ClusterOutcome | None:
    """A cluster's outcome from its run's ``run.json`` (when its flow run published none): figures of the
    rollout step, failures of every step that failed. None when there is no such file."""
    import orjson

    path = run_dir / "run.json"
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    figures = (doc.get("figures") or {}).get("rollout") or {}
    failures = [p for s in doc.get("steps") or [] if not s.get("ok") for p in (s.get("problems") or [s.get("step")])]
    step_names = {s.get("step") for s in doc.get("steps") or []}
    code = 0 if completed and not failures else EXIT_FAILED
    if failures and step_names == {"preflight"}:
        code = 3
    out = ClusterOutcome.from_dict({**figures, "cluster": name, "reports": str(run_dir)})
    out.exit_code = code
    out.failures = [str(f) for f in failures]
    return out


# ---- output of clusters running side by side --------------------------------------------------------


class _PrefixedStream(io.TextIOBase):
    """Lines written from a thread that set a prefix get it (``[east] 4/4 VMs ready``); others pass through.
    Never a terminal, so progress bars fall back to lines instead of fighting over one screen."""

    def __init__(self, inner: Any, local: threading.local, lock: threading.Lock) -> None:
        self.inner = inner
        self.local = local
        self.lock = lock
        self.pending: dict[int, str] = {}

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        prefix = getattr(self.local, "prefix", None)
        if not prefix:
            with self.lock:
                self.inner.write(s)
            return len(s)
        me = threading.get_ident()
        text = self.pending.pop(me, "") + s
        *lines, rest = text.split("\n")
        if rest:
            self.pending[me] = rest
        if lines:
            with self.lock:
                self.inner.write("".join(f"{prefix}{line}\n" for line in lines))
        return len(s)

    def flush(self) -> None:
        with contextlib.suppress(Exception):
            self.inner.flush()


_LOCAL = threading.local()


@contextlib.contextmanager
def prefixed_output() -> Iterator[None]:
    """While clusters run side by side in this process: stdout and stderr prefix each thread's lines."""
    lock = threading.Lock()
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = _PrefixedStream(old_out, _LOCAL, lock)
    sys.stderr = _PrefixedStream(old_err, _LOCAL, lock)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = old_out, old_err


@contextlib.contextmanager
def output_prefix(name: str) -> Iterator[None]:
    """This thread's lines carry ``[name] `` (see :func:`prefixed_output`)."""
    before = getattr(_LOCAL, "prefix", None)
    _LOCAL.prefix = f"[{name}] "
    try:
        yield
    finally:
        _LOCAL.prefix = before


def run_threads(members: Sequence[Member], call: Callable[[Member], ClusterOutcome]) -> dict[str, ClusterOutcome]:
    """``call`` for every member at once, a thread each (at most :data:`MAX_PARALLEL_CLUSTERS` running).

    Daemon threads, joined in short waits: Ctrl-C reaches the main thread at once and ends the command
    (exit 130, as for one cluster); each cluster's Lease names this dead process, so a rerun takes over."""
    results: dict[str, ClusterOutcome] = {}
    slots = threading.BoundedSemaphore(MAX_PARALLEL_CLUSTERS)

    def one(m: Member) -> None:
        with slots, output_prefix(m.name):
            try:
                results[m.name] = call(m)
            except Exception as e:  # a cluster's failure must never stop the others
                log.exception("cluster %s", m.name)
                results[m.name] = outcome_of(m.name, error=e)

    threads = [threading.Thread(target=one, args=(m,), name=f"cluster-{m.name}", daemon=True) for m in members]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
    return {m.name: results[m.name] for m in members}


@contextlib.contextmanager
def cluster_tags(name: str, spec: Any = None) -> Iterator[None]:
    """Inside a Prefect run, every run started in the block is tagged with the cluster (and the run)."""
    if not in_prefect_run():
        yield
        return
    from prefect import tags

    with tags(f"cluster:{name}", *(run_tags(spec) if spec is not None else [])):
        yield


def run_in_process(members: Sequence[Member], call: Callable[[Member], ClusterOutcome]) -> dict[str, ClusterOutcome]:
    """Every member at once in this process: inside a Prefect run a Prefect task each (``cluster <name>``,
    carrying the cluster's run as a subflow), threads otherwise. ``call`` returns failures as outcomes."""
    if not in_prefect_run():
        return run_threads(members, call)
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    def carry(m: Member) -> ClusterOutcome:
        return call(m)

    carrier = task(name="cluster", cache_policy=NO_CACHE)(carry)
    futures = [(m, carrier.with_options(task_run_name=f"cluster {m.name}").submit(m)) for m in members]
    outcomes: dict[str, ClusterOutcome] = {}
    for m, future in futures:
        try:
            outcomes[m.name] = future.result()
        except Exception as e:  # the carrier returns failures; anything else is still only this cluster's
            outcomes[m.name] = outcome_of(m.name, error=e)
    return outcomes


def publish_outcome(run_id: str, outcome: ClusterOutcome) -> None:
    """A cluster's outcome as the table artifact ``fleet-cluster-<name>`` (how the fleet's run reads it back)."""
    publish_table(
        artifact_key(outcome.cluster), [outcome.table_row()], f"Fleet {run_id}: how cluster {outcome.cluster} ended"
    )


def finish_fleet(
    spec: Any,
    plan: FleetPlan,
    outcomes: Mapping[str, ClusterOutcome],
    fleet_dir: Path,
    wall_s: float,
    say: Callable[[str], None] = print,
) -> FleetResult:
    """The fleet's summary: outcomes in the fleet's order, ``fleet.md``/``.html``/``.json``, the ``fleet``
    and ``fleet-clusters`` artifacts, the terminal table; raises :class:`FleetFailed` unless all passed."""
    ordered = []
    for m in plan.members:
        o = outcomes[m.name]
        o.context = o.context or m.context
        o.server = o.server or m.server
        ordered.append(o)
    result = FleetResult(spec.run_id, str(fleet_dir), ordered, wall_s=wall_s)
    written = write_fleet_reports(fleet_dir, spec.run_id, ordered, spec.summary())
    publish_markdown("fleet", written["fleet.md"].read_text(), f"Fleet rollout {spec.run_id}")
    publish_table("fleet-clusters", [o.table_row() for o in ordered], f"Fleet rollout {spec.run_id}: per cluster")
    say(fleet_terminal(spec.run_id, ordered).rstrip("\n"))
    say(f"fleet report: {written['fleet.md']} (and fleet.html); each cluster's reports are linked from it")
    if not result.ok():
        raise FleetFailed(f"{result.headline()}; fleet report: {written['fleet.md']}", result)
    return result


# ---- to a Prefect work pool --------------------------------------------------------------------------


def member_run_name(run_id: str, cluster: str) -> str:
    return f"{run_id} · rollout · {cluster}"


def cluster_run_name() -> str:
    """The name of a cluster's run, read from its own parameters: ``<run-id> · rollout · <cluster>``."""
    from prefect.runtime import flow_run

    params = flow_run.parameters or {}
    spec = params.get("spec")
    run_id = spec.get("runId") if isinstance(spec, dict) else getattr(spec, "run_id", None)
    return member_run_name(run_id or "?", str(params.get("cluster_name") or "cluster"))


def member_parameters(spec: Any, m: Member, *, ping: bool, churn: bool) -> dict[str, Any]:
    """The parameters of a cluster's run of the rollout-cluster deployment (JSON, as the API takes them)."""
    return {
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        "cluster": m.params.model_dump(mode="json", by_alias=True, exclude_none=True),
        "cluster_name": m.name,
        "ping": ping,
        "churn": churn,
        "reports_dir": str(m.reports_root),
    }


def _artifact_outcome(client: Any, flow_run_id: Any, cluster: str) -> ClusterOutcome | None:
    import json

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), key=ArtifactFilterKey(any_=[artifact_key(cluster)])
        )
    )
    for a in artifacts:
        data = json.loads(a.data) if isinstance(a.data, str) else a.data
        if isinstance(data, list) and data and isinstance(data[0], dict):
            return ClusterOutcome.from_dict(data[0])
    return None


def dispatch_to_pool(
    spec: Any,
    members: Sequence[Member],
    deployment: str,
    *,
    ping: bool,
    churn: bool,
    tags: Sequence[str] = (),
    poll_s: float = 2.0,
    say: Callable[[str], None] = print,
) -> dict[str, ClusterOutcome]:
    """Send each member's rollout to ``deployment``'s work pool (``run_deployment``, one flow run per
    cluster, linked to this flow run), wait until every run has ended, and read each outcome back: the
    artifact its run published, else its ``run.json``, else its final state."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext
    from prefect.deployments import run_deployment

    ctx = FlowRunContext.get()
    parent = str(ctx.flow_run.id) if ctx and ctx.flow_run else ""
    runs: dict[str, Any] = {}
    outcomes: dict[str, ClusterOutcome] = {}
    for m in members:
        try:
            runs[m.name] = run_deployment(
                deployment,
                parameters=member_parameters(spec, m, ping=ping, churn=churn),
                timeout=0,
                flow_run_name=member_run_name(spec.run_id, m.name),
                tags=[*tags, f"cluster:{m.name}"],
                idempotency_key=f"{parent}:{m.name}" if parent else None,
                as_subflow=True,
            )
        except Exception as e:  # e.g. the deployment is not there: this cluster did not run, the others may
            outcomes[m.name] = ClusterOutcome(
                m.name,
                exit_code=EXIT_FAILED,
                failures=[
                    f"could not start a run of deployment {deployment} ({type(e).__name__}: {e}); deploy it "
                    "(prefect deploy -n rollout-cluster) or set member_deployment to another, or empty to run here"
                ],
            )
            say(f"{m.name}: not sent: {outcomes[m.name].failures[0]}")
            continue
        say(f"{m.name}: sent to the work pool of {deployment} as flow run {runs[m.name].name!r}")
    by_name = {m.name: m for m in members}
    seen: dict[str, str] = {}
    last_note = time.monotonic()
    with get_client(sync_client=True) as client:
        pending = set(runs)
        while pending:
            for name in sorted(pending):
                fr = client.read_flow_run(runs[name].id)
                runs[name] = fr
                state = str(fr.state.name) if fr.state else "unknown"
                worker = (fr.labels or {}).get("prefect.worker.name", "")
                if seen.get(name) != state:
                    seen[name] = state
                    say(f"{name}: flow run {fr.name!r} {state}" + (f" (worker {worker})" if worker else ""))
                if fr.state is not None and fr.state.is_final():
                    pending.discard(name)
            if pending:
                if time.monotonic() - last_note > 60:
                    last_note = time.monotonic()
                    waiting = ", ".join(f"{n} ({seen.get(n)})" for n in sorted(pending))
                    say(f"still waiting for {waiting}; a Scheduled run waits for a worker of {deployment}'s work pool")
                time.sleep(poll_s)
        for name, fr in runs.items():
            m = by_name[name]
            completed = bool(fr.state and fr.state.is_completed())
            out = _artifact_outcome(client, fr.id, name) or outcome_from_run_json(
                name, m.reports_root / spec.run_id, completed
            )
            if out is None:
                message = fr.state.message if fr.state and fr.state.message else "no outcome published"
                out = ClusterOutcome(name, exit_code=0 if completed else EXIT_FAILED)
                if not completed:
                    out.failures = [f"flow run {fr.name} ended {fr.state.name if fr.state else '?'}: {message}"]
            if not completed and out.exit_code == 0:
                out.exit_code = EXIT_FAILED
                out.failures.append(f"flow run {fr.name} ended {fr.state.name if fr.state else '?'}")
            out.flow_run = fr.name
            out.worker = (fr.labels or {}).get("prefect.worker.name", "")
            outcomes[name] = out
    return outcomes
