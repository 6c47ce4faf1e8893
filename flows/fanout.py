"""Fan-out: the runbook's step 4 — create the VMs, wait until they run, write down each IP — for
hundreds to tens of thousands of VMs, with bounded load on the API server and one watch per kind."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.common import ClusterParams, TerminalProgress, connect, reports_dir, say, spec_summary
from tasks.artifacts import progress, publish_markdown, publish_table
from tasks.fanout import CreateOutcome, FanoutResult, ReadinessTracker, create_batch
from tasks.kube import Kube
from tasks.model import StepSummary
from tasks.provision import CUDN_API, network_state
from tasks.render import render_vms
from tasks.reports import inventory_frame, latency_quantiles, write_run_reports
from tasks.spec import RolloutSpec

BATCH_WORKERS = 4  # Prefect task threads; concurrency proper lives inside each batch


class FanoutFailed(Exception):
    """Some VMs did not become Ready; the inventory says which and why."""


@task(name="create VM batch", cache_policy=NO_CACHE)
def create_vm_batch(
    kube: Kube, objs: list[dict[str, Any]], spec_hash: str, run_id: str, threads: int
) -> list[CreateOutcome]:
    return create_batch(kube, objs, spec_hash, run_id, threads)


def _check_network(kube: Kube, spec: RolloutSpec) -> None:
    state, problems = network_state(kube.get(*CUDN_API, spec.network.name), spec.namespace_names())
    if state != "ready":
        raise FanoutFailed(
            f"the network {spec.network.name} is not ready ({'; '.join(problems)}): run "
            "`udn-rollout provision` (or `rollout`) first"
        )


@flow(name="fanout", log_prints=False, task_runner=ThreadPoolTaskRunner(max_workers=BATCH_WORKERS))
def fanout(spec: RolloutSpec, cluster: ClusterParams | None = None) -> FanoutResult:
    """Create every VM of the spec (resuming a run that was cut short) and wait until all are Ready.

    Args:
        spec: The rollout spec.
        cluster: How to reach the cluster.
    """
    kube = connect(cluster, spec)
    _check_network(kube, spec)
    objs = render_vms(spec)
    total = len(objs)
    bar = TerminalProgress("VMs ready", total)
    tracker_progress = progress("fanout-progress", f"VMs of run {spec.run_id} Ready")

    def tick(ready: int, expected: int) -> None:
        bar.update(ready, expected)
        tracker_progress.update(100.0 * ready / max(expected, 1))

    tracker = ReadinessTracker(kube, spec)
    started = time.monotonic()
    tracker.start()
    size = spec.fanout.batch_size_for(total)
    batches = [objs[i : i + size] for i in range(0, total, size)]
    threads = max(1, spec.fanout.max_in_flight // BATCH_WORKERS)
    outcomes: dict[tuple[str, str], CreateOutcome] = {}
    try:
        futures = create_vm_batch.map(
            kube=unmapped(kube),
            objs=batches,
            spec_hash=unmapped(spec.spec_hash()),
            run_id=unmapped(spec.run_id),
            threads=unmapped(threads),
        )
        for fut in as_completed(futures):
            for oc in fut.result():
                outcomes[(oc.namespace, oc.name)] = oc
        create_s = time.monotonic() - started
        ok_keys = [k for k, oc in outcomes.items() if not oc.error]
        all_ready = tracker.wait_all_ready(spec.fanout.ready_timeout_seconds, ok_keys, tick=tick)
        records = tracker.records(outcomes)
    finally:
        tracker.stop()
        bar.finish()
    wall = time.monotonic() - started
    created = sum(1 for oc in outcomes.values() if oc.created_at and not oc.adopted and not oc.error)
    adopted = sum(1 for oc in outcomes.values() if oc.adopted)
    errors = [oc for oc in outcomes.values() if oc.error]
    result = FanoutResult(
        records=records,
        outcomes=list(outcomes.values()),
        wall_s=wall,
        create_s=create_s,
        created=created,
        adopted=adopted,
        errors=errors,
        all_ready=all_ready and not errors,
        requests=kube.stats.requests,
        achieved_qps=(created / create_s) if create_s else 0.0,
    )
    out = reports_dir(spec)
    figures = {
        "wall_s": round(wall, 2),
        "create_s": round(create_s, 2),
        "created": created,
        "adopted": adopted,
        "create_rate_per_s": round(result.achieved_qps, 1),
        "configured_qps": spec.fanout.qps,
        "ready": sum(r.ready for r in records),
        "total": total,
        "api_requests": kube.stats.requests,
    }
    write_run_reports(
        out,
        run_id=spec.run_id,
        spec_summary=spec_summary(spec),
        figures={"fanout": figures},
        steps=[
            StepSummary(
                "fanout",
                result.all_ready,
                figures,
                [f"{r.namespace}/{r.name}: {r.reason}" for r in records if not r.ready],
            )
        ],
        records=records,
    )
    quantiles = latency_quantiles(records)
    publish_table("vm-inventory", inventory_frame(records), f"VMs of run {spec.run_id}")
    publish_table("vm-latency", quantiles.reset_index(), "VM start-up latency quantiles (ms)")
    publish_markdown("provisioning", (out / "provisioning.md").read_text(), "Provisioning report")
    ready = sum(r.ready for r in records)
    say(
        f"{ready}/{total} VMs ready in {wall:.1f}s ({created} created, {adopted} adopted, "
        f"create rate {result.achieved_qps:.1f}/s against qps {spec.fanout.qps})"
    )
    if not result.all_ready:
        bad = [r for r in records if not r.ready]
        for r in bad[:10]:
            say(f"  not ready: {r.namespace}/{r.name}: {r.reason}")
        raise FanoutFailed(f"{len(bad)} of {total} VMs are not Ready (see {out / 'inventory.csv'})")
    return result
