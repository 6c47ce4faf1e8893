"""The Prefect deployments: the same four that prefect.yaml declares, served from one process with
`prefect.serve` for users without a work pool (`udn-rollout serve`)."""

from __future__ import annotations

from prefect import serve
from prefect.schedules import Cron

from flows.churn import churn
from flows.rollout import rollout, rollout_from_file
from flows.teardown import teardown

DEPLOYMENTS = ("rollout-scheduled", "rollout-on-demand", "churn-report", "teardown")


def deployments(cron: str = "0 2 * * *", spec_file: str = "specs/scheduled.yaml") -> list[object]:
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
    ]


def serve_all(cron: str = "0 2 * * *", spec_file: str = "specs/scheduled.yaml") -> int:
    """Serve every deployment until interrupted (needs PREFECT_API_URL for the UI to trigger runs)."""
    serve(*deployments(cron, spec_file), limit=2)
    return 0
