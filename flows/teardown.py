"""Teardown: a safe way back — delete what one run created, in finalizer order, and nothing else."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import ClusterParams, connect, say
from tasks.artifacts import publish_markdown
from tasks.kube import Kube
from tasks.spec import RolloutSpec
from tasks.teardown import TeardownPlan, TeardownResult, execute, plan


class TeardownIncomplete(Exception):
    """Some objects were still there when the timeout passed."""


@task(name="plan teardown", cache_policy=NO_CACHE)
def plan_teardown(kube: Kube, spec: RolloutSpec) -> TeardownPlan:
    return plan(kube, spec)


@task(name="delete", cache_policy=NO_CACHE)
def delete_all(kube: Kube, spec: RolloutSpec, p: TeardownPlan, timeout: float) -> TeardownResult:
    return execute(kube, spec, p, timeout=timeout)


@flow(name="teardown", log_prints=False)
def teardown(
    spec: RolloutSpec, cluster: ClusterParams | None = None, dry_run: bool = False, timeout_seconds: float = 600
) -> TeardownResult:
    """Delete the run's VMs, migrations, namespaces and network (only objects with this run's labels).

    Args:
        spec: The rollout spec of the run (its runId and network name decide what goes).
        cluster: How to reach the cluster.
        dry_run: List what would be deleted and delete nothing.
        timeout_seconds: How long to wait for finalizers to let go.
    """
    kube = connect(cluster, spec)
    p = plan_teardown(kube, spec)
    for line in p.lines():
        say(("would delete " if dry_run else "delete ") + line)
    for line in p.left_alone:
        say(f"left alone: {line}")
    if not p.lines():
        say(f"nothing labelled with run {spec.run_id} is left")
    if dry_run:
        return TeardownResult(plan=p)
    result = delete_all(kube, spec, p, timeout_seconds)
    md = "\n".join(
        [
            f"# Teardown of run `{spec.run_id}`",
            "",
            f"Deleted {len(result.deleted)} objects in {result.seconds:.1f}s.",
            "",
            *[f"- left alone: {x}" for x in p.left_alone],
            *[f"- still present: {x}" for x in result.remaining],
        ]
    )
    publish_markdown("teardown", md, "Teardown")
    say(f"deleted {len(result.deleted)} objects in {result.seconds:.1f}s")
    if result.remaining:
        raise TeardownIncomplete("still present after the timeout: " + "; ".join(result.remaining))
    return result
