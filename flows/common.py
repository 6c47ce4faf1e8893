"""What every flow shares: how to reach the cluster, where a run's reports go, progress output."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tasks.kube import ClusterTarget, Kube, shared_kube
from tasks.spec import RolloutSpec
from udn_rollout.process import collect_between_steps, tune_gc

REPORTS_ROOT_ENV = "UDN_ROLLOUT_REPORTS"


class ClusterParams(BaseModel):
    """How to reach the cluster, as `oc`/`kubectl` users expect (a Prefect parameter too)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    kubeconfig: str | None = Field(
        None,
        title="Kubeconfig",
        description="Path to a kubeconfig; empty = "
        "$KUBECONFIG, then ~/.kube/config, then the in-cluster service account.",
    )
    context: str | None = Field(None, title="Context", description="kubeconfig context; empty = current context.")
    in_cluster: bool = Field(
        False, title="In cluster", description="Use the pod's service account (Prefect Kubernetes work pool)."
    )

    def target(self) -> ClusterTarget:
        return ClusterTarget(kubeconfig=self.kubeconfig, context=self.context, in_cluster=self.in_cluster)


def connect(cluster: ClusterParams | None, spec: RolloutSpec) -> Kube:
    """The run's API client, paced by the spec's fan-out settings.

    Also tunes the process's garbage collector and collects what the previous step left
    (`udn_rollout.process`): a flow run that a Prefect worker starts does not come through the CLI,
    and it holds the same cluster's worth of objects.
    """
    collect_between_steps()
    tune_gc()
    f = spec.fanout
    return shared_kube((cluster or ClusterParams()).target(), qps=f.qps, burst=f.burst, max_in_flight=f.max_in_flight)


def reports_dir(spec: RolloutSpec) -> Path:
    """`reports/<run-id>/` under the working directory (or $UDN_ROLLOUT_REPORTS)."""
    root = Path(os.environ.get(REPORTS_ROOT_ENV) or "reports")
    out = root / spec.run_id
    out.mkdir(parents=True, exist_ok=True)
    return out


def spec_summary(spec: RolloutSpec) -> dict[str, object]:
    """The spec facts every report header shows."""
    return {
        "runId": spec.run_id,
        "network": spec.network.name,
        "topology": spec.network.topology,
        "subnets": [s.cidr for s in spec.network.subnets],
        "namespaces": len(spec.namespace_names()),
        "vmsPerNamespace": spec.vms.per_namespace,
        "totalVMs": spec.total_vms(),
        "qps": spec.fanout.qps,
        "burst": spec.fanout.burst,
        "maxInFlight": spec.fanout.max_in_flight,
    }


class TerminalProgress:
    """A one-line progress bar on stderr when it is a terminal, periodic lines otherwise."""

    def __init__(self, label: str, total: int, every: float = 2.0) -> None:
        self.label = label
        self.total = max(total, 1)
        self.every = every
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self._lock = threading.Lock()
        self._done = -1
        self.started = time.monotonic()

    def update(self, done: int, total: int | None = None) -> None:
        if total:
            self.total = max(total, 1)
        with self._lock:
            now = time.monotonic()
            if done == self._done or (now - self._last < (0.2 if self.tty else self.every) and done < self.total):
                return
            self._done, self._last = done, now
            pct = 100.0 * done / self.total
            elapsed = now - self.started
            if self.tty:
                width = 30
                filled = int(width * done / self.total)
                bar = "#" * filled + "-" * (width - filled)
                sys.stderr.write(f"\r{self.label} [{bar}] {done}/{self.total} ({pct:.0f}%) {elapsed:.0f}s")
                if done >= self.total:
                    sys.stderr.write("\n")
            else:
                sys.stderr.write(f"{self.label}: {done}/{self.total} ({pct:.0f}%) after {elapsed:.0f}s\n")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.tty and self._done < self.total:
            sys.stderr.write("\n")
            sys.stderr.flush()


def cluster_lock(kube: Kube) -> contextlib.AbstractContextManager[object]:
    """Keep two runs off one cluster: a Prefect global concurrency limit of 1 per API server, taken
    once per run (strict), when runs are recorded on a Prefect server; a no-op otherwise."""
    if not os.environ.get("PREFECT_API_URL"):
        return contextlib.nullcontext()
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency

    name = "udn-rollout-" + "".join(ch if ch.isalnum() else "-" for ch in kube.server.split("://")[-1]).strip("-")
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1)
    # a short lease: a run killed with SIGKILL cannot renew it, so its successor waits a minute, not five
    return concurrency(name, occupy=1, strict=True, timeout_seconds=3600, lease_duration=60)


def say(message: str) -> None:
    """Tell the user: on stdout for the command line, and in the flow run's log for the Prefect UI."""
    print(message, flush=True)
    try:
        from prefect.context import get_run_context
        from prefect.logging import get_run_logger

        if get_run_context() is not None:
            get_run_logger().info(message)
    except Exception:  # outside a run (plain function calls in tests): stdout is enough
        pass
