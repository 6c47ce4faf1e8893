"""The Prefect face of the runbook: the flows that ``prefect.yaml`` names as entrypoints, and the same
deployments served from one process with ``prefect.serve`` (``udn-rollout serve``).

``rollout-fleet`` rolls one spec out to several clusters: with a work pool (prefect.yaml) it sends each
cluster's run to the pool as a run of ``rollout-cluster`` (``run_deployment``), so the pool's workers
share the clusters out; served from one process it runs them side by side in that process."""

from __future__ import annotations

from typing import Any

from flows.churn import churn as churn_step
from flows.fleet import rollout_cluster as rollout_cluster_step
from flows.fleet import rollout_fleet as rollout_fleet_step
from flows.rollout import rollout as rollout_step
from flows.rollout import rollout_from_file as rollout_from_file_step
from flows.teardown import teardown as teardown_step

# The entrypoints (prefect.yaml): Prefect flows built from the pages, so UI runs and CLI runs share one path.
rollout = rollout_step.flow
rollout_from_file = rollout_from_file_step.flow
churn = churn_step.flow
teardown = teardown_step.flow
rollout_fleet = rollout_fleet_step.flow
rollout_cluster = rollout_cluster_step.flow

DEPLOYMENTS = ("rollout-scheduled", "rollout-on-demand", "churn-report", "teardown", "rollout-fleet", "rollout-cluster")

#: What the on-demand form opens with (as in prefect.yaml): a network that clashes with nothing by default.
ON_DEMAND_EXAMPLE = {
    "network": {"name": "udn-on-demand-l2", "topology": "Layer2", "subnets": [{"cidr": "10.220.0.0/16"}]},
    "namespaces": {"prefix": "on-demand", "count": 2},
}


def deployments(cron: str = "0 2 * * *", spec_file: str = "specs/scheduled.yaml") -> list[Any]:
    from prefect.schedules import Cron

    return [
        rollout_from_file.to_deployment(
            name="rollout-scheduled",
            schedules=[Cron(cron)],
            parameters={"spec_file": spec_file, "teardown_after": True},
            description="Scheduled bulk rollout of the spec file in the repository",
            tags=["udn-rollout", "bulk"],
            concurrency_limit=1,
        ),
        rollout.to_deployment(
            name="rollout-on-demand",
            parameters={"spec": ON_DEMAND_EXAMPLE},
            description="On-demand rollout: the form is the rollout spec",
            tags=["udn-rollout"],
            concurrency_limit=1,
        ),
        churn.to_deployment(
            name="churn-report",
            description="Live-migration churn report for an existing run",
            tags=["udn-rollout", "report"],
        ),
        teardown.to_deployment(name="teardown", description="Delete what a run created", tags=["udn-rollout"]),
        # Served from one process there is no work pool to send clusters to: they run side by side here.
        rollout_fleet.to_deployment(
            name="rollout-fleet",
            parameters={"spec": ON_DEMAND_EXAMPLE, "member_deployment": ""},
            description="The spec on several clusters at once, each its own run (served: side by side in this process)",
            tags=["udn-rollout", "fleet"],
        ),
        rollout_cluster.to_deployment(
            name="rollout-cluster",
            description="One cluster's rollout within a fleet",
            tags=["udn-rollout", "fleet"],
        ),
    ]


def serve_all(cron: str = "0 2 * * *", spec_file: str = "specs/scheduled.yaml") -> int:
    """Serve every deployment until interrupted (needs PREFECT_API_URL for the UI to trigger runs)."""
    from prefect import serve

    serve(*deployments(cron, spec_file), limit=2)
    return 0
