"""Fleet: the same rollout on several clusters at once — each cluster its own run, with its own lock
(the Lease in that cluster), its own reports and its own exit status — and one summary of them all.

Where each cluster's run goes:

* without a Prefect API: a thread per cluster in this process (the command line's
  ``rollout --context A --context B``);
* with one (``PREFECT_API_URL``), from the command line or ``udn-rollout serve``: a Prefect task per
  cluster carrying the cluster's run as a subflow, ``<run-id> · rollout · <cluster>``, tagged
  ``cluster:<cluster>``, all in this process;
* from the ``rollout-fleet`` deployment (``member_deployment`` set): each cluster's run is a flow run of
  the ``rollout-cluster`` deployment, sent to its work pool with ``run_deployment``, so the pool's workers
  share the clusters out; this flow run waits for them and reads each outcome back.

One cluster failing never stops the others. The fleet's exit status is 0 when every cluster passed,
otherwise the highest of the clusters' codes. See :mod:`tasks.fleet` for the checks made before any
cluster is touched and for the reports' layout.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

from tasks.artifacts import publish_markdown, publish_table
from tasks.fleet import MAX_PARALLEL_CLUSTERS as _MAX_PARALLEL
from tasks.fleet import (
    ClusterFailed,
    FleetFailed,
    FleetResult,
    FleetTarget,
    Member,
    check_reach,
    dispatch_to_pool,
    member_run_name,
    outcome_of,
    output_prefix,
    plan_fleet,
    prefixed_output,
    run_threads,
)
from tasks.kube import ClusterParams
from tasks.orchestration import Step, in_prefect_run, run_tags, say, step
from tasks.reports.fleet import ClusterOutcome, artifact_key, fleet_terminal, write_fleet_reports
from tasks.reports.publish import reports_root
from tasks.spec import RolloutSpec

P = ParamSpec("P")
R = TypeVar("R")


# ---- one cluster's run ----------------------------------------------------------------------------------


def _cluster_run_name() -> str:
    from prefect.runtime import flow_run

    params = flow_run.parameters or {}
    spec = params.get("spec")
    run_id = spec.get("runId") if isinstance(spec, dict) else getattr(spec, "run_id", None)
    return member_run_name(run_id or "?", str(params.get("cluster_name") or "cluster"))


class _ClusterStep(Step[P, R]):
    """A page whose Prefect runs are named after the cluster: ``<run-id> · rollout · <cluster>``."""

    _named: Any = None

    @property
    def flow(self) -> Any:
        base = super().flow
        if self._named is None:
            self._named = base.with_options(flow_run_name=_cluster_run_name)
        return self._named


def _cluster_step(name: str) -> Callable[[Callable[P, R]], _ClusterStep[P, R]]:
    def wrap(fn: Callable[P, R]) -> _ClusterStep[P, R]:
        return _ClusterStep(fn, name, name, 4)

    return wrap


@contextlib.contextmanager
def _cluster_tags(name: str, spec: RolloutSpec | None = None) -> Iterator[None]:
    """Inside a Prefect run, every run started in the block is tagged with the cluster (and the run)."""
    if not in_prefect_run():
        yield
        return
    from prefect import tags

    with tags(f"cluster:{name}", *(run_tags(spec) if spec is not None else [])):
        yield


@_cluster_step("rollout-cluster")
def rollout_cluster(
    spec: RolloutSpec,
    cluster: ClusterParams,
    cluster_name: str = "",
    ping: bool = True,
    churn: bool = True,
    reports_dir: str | None = None,
) -> ClusterOutcome:
    """One cluster's rollout within a fleet (the rollout-fleet deployment sends these to the work pool).

    The whole rollout — preflight, network, VMs, ping matrix, churn, reports — on one cluster, its outcome
    published as the table artifact ``fleet-cluster-<name>``; the run fails when the cluster's rollout did.

    Args:
        spec: The rollout spec, the same for every cluster of the fleet.
        cluster: How to reach this cluster.
        cluster_name: What the fleet calls this cluster (its run name, tag and reports directory).
        ping: Run the connectivity ping matrix.
        churn: Run the live-migration churn step.
        reports_dir: This cluster's reports root; its run writes <reports_dir>/<run-id>/.
    """
    from flows.rollout import rollout

    name = cluster_name or cluster.context or "cluster"
    run_dir = reports_root(reports_dir) / spec.run_id
    started = time.monotonic()
    with _cluster_tags(name):
        try:
            result = rollout(spec, cluster, ping=ping, churn=churn, reports_dir=reports_dir)
            outcome = outcome_of(name, result=result, reports=str(run_dir))
        except Exception as e:  # the cluster's failure is its outcome; the fleet goes on
            outcome = outcome_of(name, error=e, reports=str(run_dir) if run_dir.is_dir() else "")
    outcome.wall_s = round(time.monotonic() - started, 1)
    outcome.context = "in-cluster" if cluster.in_cluster else (cluster.context or "")
    publish_table(artifact_key(name), [outcome.table_row()], f"Fleet {spec.run_id}: how cluster {name} ended")
    if not outcome.ok:
        raise ClusterFailed(outcome)
    return outcome


def _run_cluster(spec: RolloutSpec, member: Member, ping: bool, churn: bool) -> ClusterOutcome:
    """A cluster's run in this process (a thread, or a Prefect task), its failure returned as its outcome."""
    with output_prefix(member.name), _cluster_tags(member.name, spec):
        try:
            return rollout_cluster(
                spec,
                member.params,
                cluster_name=member.name,
                ping=ping,
                churn=churn,
                reports_dir=str(member.reports_root),
            )
        except ClusterFailed as e:
            return e.outcome


def _run_here(spec: RolloutSpec, members: list[Member], ping: bool, churn: bool) -> dict[str, ClusterOutcome]:
    """Every member at once in this process: Prefect tasks carrying subflows inside a Prefect run, threads otherwise."""
    if not in_prefect_run():
        return run_threads(members, lambda m: _run_cluster(spec, m, ping, churn))
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    carrier = task(name="cluster", cache_policy=NO_CACHE)(_run_cluster)
    futures = [
        (m, carrier.with_options(task_run_name=f"cluster {m.name}").submit(spec, m, ping, churn)) for m in members
    ]
    outcomes: dict[str, ClusterOutcome] = {}
    for m, future in futures:
        try:
            outcomes[m.name] = future.result()
        except Exception as e:  # the carrier returns failures; anything else is still only this cluster's
            outcomes[m.name] = outcome_of(m.name, error=e)
    return outcomes


# ---- the fleet ----------------------------------------------------------------------------------------


@step("rollout-fleet", "fleet", workers=_MAX_PARALLEL)
def rollout_fleet(
    spec: RolloutSpec,
    fleet: list[FleetTarget],
    ping: bool = True,
    churn: bool = True,
    reports_dir: str | None = None,
    member_deployment: str = "",
) -> FleetResult:
    """Roll the spec out to every cluster of the fleet at once, each as its own run, and summarise.

    Args:
        spec: The rollout spec, the same for every cluster (one run id: a rerun resumes each cluster).
        fleet: The clusters: a kubeconfig context each (with the kubeconfig file when not the default),
            or the in-cluster service account; a name when the context's is unwieldy.
        ping: Run the connectivity ping matrix on each cluster.
        churn: Run the live-migration churn step on each cluster.
        reports_dir: Reports root on the machine running this; the fleet writes <root>/<run-id>/fleet.md and
            each cluster <root>/<run-id>/clusters/<cluster>/<run-id>/. Empty = ./reports.
        member_deployment: The deployment that runs each cluster's rollout, as flow/deployment (the
            rollout-fleet deployment sets rollout-cluster/rollout-cluster, so the work pool's workers
            share the clusters out); empty = every cluster in this flow run's process.
    """
    started = time.monotonic()
    fleet_dir = reports_root(reports_dir) / spec.run_id
    plan = plan_fleet(spec.run_id, fleet, fleet_dir)
    names = [m.name for m in plan.members]
    say(f"fleet {spec.run_id}: {len(names)} clusters at once ({', '.join(names)}); fleet report in {fleet_dir}")
    outcomes = dict(plan.early)
    outcomes.update(check_reach([m for m in plan.members if m.name not in outcomes]))
    for name, o in outcomes.items():
        say(f"{name}: {o.status}, left out: {o.failures[0] if o.failures else ''}")
    todo = [m for m in plan.members if m.name not in outcomes]
    if todo and member_deployment:
        if not in_prefect_run():
            raise ValueError("member_deployment sends each cluster to a work pool: it needs a Prefect API")
        outcomes.update(
            dispatch_to_pool(spec, todo, member_deployment, ping=ping, churn=churn, tags=run_tags(spec), say=say)
        )
    elif todo:
        with prefixed_output():
            outcomes.update(_run_here(spec, todo, ping, churn))
    ordered = []
    for m in plan.members:
        o = outcomes[m.name]
        o.context = o.context or m.context
        o.server = o.server or m.server
        ordered.append(o)
    result = FleetResult(spec.run_id, str(fleet_dir), ordered, wall_s=time.monotonic() - started)
    written = write_fleet_reports(fleet_dir, spec.run_id, ordered, spec.summary())
    publish_markdown("fleet", written["fleet.md"].read_text(), f"Fleet rollout {spec.run_id}")
    publish_table("fleet-clusters", [o.table_row() for o in ordered], f"Fleet rollout {spec.run_id}: per cluster")
    say(fleet_terminal(spec.run_id, ordered).rstrip("\n"))
    say(f"fleet report: {written['fleet.md']} (and fleet.html); each cluster's reports are linked from it")
    if not result.ok():
        raise FleetFailed(f"{result.headline()}; fleet report: {written['fleet.md']}", result)
    return result
