"""Fleet: the same rollout on several clusters at once, each cluster its own run (its own Lease, reports
and exit status), then one summary. Threads without a Prefect API; Prefect tasks carrying subflows with
one; flow runs of the ``rollout-cluster`` deployment sent to the work pool when ``member_deployment`` is
set. One cluster failing never stops the others; exit 0 when all passed, else the highest code. The
checks made before any cluster is touched and the reports' layout: :mod:`tasks.fleet`.
"""

from __future__ import annotations

import time

from tasks.fleet import MAX_PARALLEL_CLUSTERS as _MAX_PARALLEL
from tasks.fleet import (
    ClusterFailed,
    FleetResult,
    FleetTarget,
    Member,
    check_reach,
    cluster_run_name,
    cluster_tags,
    dispatch_to_pool,
    finish_fleet,
    outcome_of,
    output_prefix,
    plan_fleet,
    prefixed_output,
    publish_outcome,
    run_in_process,
)
from tasks.kube import ClusterParams
from tasks.orchestration import in_prefect_run, run_tags, say, step
from tasks.reports.fleet import ClusterOutcome
from tasks.reports.publish import reports_root
from tasks.spec import RolloutSpec


@step("rollout-cluster", workers=4, run_name=cluster_run_name)
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
    with cluster_tags(name):
        try:
            result = rollout(spec, cluster, ping=ping, churn=churn, reports_dir=reports_dir)
            outcome = outcome_of(name, result=result, reports=str(run_dir))
        except Exception as e:  # the cluster's failure is its outcome; the fleet goes on
            outcome = outcome_of(name, error=e, reports=str(run_dir) if run_dir.is_dir() else "")
    outcome.wall_s = round(time.monotonic() - started, 1)
    outcome.context = "in-cluster" if cluster.in_cluster else (cluster.context or "")
    publish_outcome(spec.run_id, outcome)
    if not outcome.ok:
        raise ClusterFailed(outcome)
    return outcome


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

    outcomes = dict(plan.early)  # bad kubeconfig entries, then clusters that do not answer
    outcomes.update(check_reach([m for m in plan.members if m.name not in outcomes]))
    for name, o in outcomes.items():
        say(f"{name}: {o.status}, left out: {o.failures[0] if o.failures else ''}")
    todo = [m for m in plan.members if m.name not in outcomes]

    def here(m: Member) -> ClusterOutcome:
        with output_prefix(m.name), cluster_tags(m.name, spec):
            try:
                return rollout_cluster(
                    spec, m.params, cluster_name=m.name, ping=ping, churn=churn, reports_dir=str(m.reports_root)
                )
            except ClusterFailed as e:
                return e.outcome

    if todo and member_deployment:
        if not in_prefect_run():
            raise ValueError("member_deployment sends each cluster to a work pool: it needs a Prefect API")
        outcomes.update(
            dispatch_to_pool(spec, todo, member_deployment, ping=ping, churn=churn, tags=run_tags(spec), say=say)
        )
    elif todo:
        with prefixed_output():
            outcomes.update(run_in_process(todo, here))
    return finish_fleet(spec, plan, outcomes, fleet_dir, time.monotonic() - started, say=say)
