"""Restart churn: the seed's first cause of a Layer3 VM's new address — "restart of a VM/pod and
scheduling on another node" — done as an administrator does it, with ``virtctl stop`` and ``virtctl
start``.

Those commands PUT the VirtualMachine's ``stop`` and ``start`` subresources (subresources.kubevirt.io),
and so does this module: the subresources work whatever the VM's runStrategy (virt-api turns them into
the runStrategy change it allows — Always ↔ Halted, or a state change request for Manual), and stopping
first, then waiting until the VMI is gone, separates the old pod from the new one so the report can say
where each was. (The ``restart`` subresource would recreate the VMI at once; stop/start is the runbook.)

Where the VM lands is the scheduler's choice. To make "another node" likely, the node each VM ran on is
cordoned while its VMs start again (:mod:`tasks.cordon` — marked, and lifted even on failure), one node
at a time so the cluster keeps its capacity; with a single schedulable node nothing is cordoned and the
report says the VM could only come back where it was.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tasks.cordon import cordoned, unschedulable
from tasks.downtime import DowntimeMonitor
from tasks.guest import vmi_ready
from tasks.kube import Kube, KubeError, WaitTimeout
from tasks.kube.resources import NODE, VM_ACTIONS, VMI
from tasks.model import Downtime, MoveResult, VMSnapshot
from tasks.reports.common import iso_utc, natsorted

#: Restarts at once within one node when churn.maxParallel is 0.
DEFAULT_PARALLEL = 10


def _ready(vmi: dict[str, Any] | None, old_uid: str) -> bool:
    return vmi is not None and vmi["metadata"].get("uid") != old_uid and vmi_ready(vmi)


def _failed(vmi: dict[str, Any] | None, old_uid: str) -> bool:
    return (
        vmi is not None
        and vmi["metadata"].get("uid") != old_uid
        and (vmi.get("status") or {}).get("phase")
        in (
            "Failed",
            "Succeeded",
        )
    )


def schedulable_nodes(kube: Kube) -> list[str]:
    nodes, _ = kube.list(NODE)
    out = []
    for n in nodes:
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (n.get("status") or {}).get("conditions") or []
        )
        if ready and not unschedulable(n):
            out.append(n["metadata"]["name"])
    return natsorted(out)


class RestartRunner:
    """Stops and starts VMs node by node, each node cordoned while its VMs come back."""

    def __init__(
        self,
        kube: Kube,
        run_id: str,
        *,
        timeout: float,
        max_parallel: int = 0,
        monitor: DowntimeMonitor | None = None,
    ) -> None:
        self.kube = kube
        self.run_id = run_id
        self.timeout = timeout
        self.parallel = max_parallel or DEFAULT_PARALLEL
        self.monitor = monitor
        self.cordoned: list[str] = []  # nodes this run cordoned (and lifted again)
        self.notes: list[str] = []  # how placement went, in words, for the report

    def run(self, chosen: list[VMSnapshot], on_progress: Callable[[int, int], None] | None = None) -> list[MoveResult]:
        by_node: dict[str, list[VMSnapshot]] = {}
        for s in chosen:
            by_node.setdefault(s.node, []).append(s)
        results: list[MoveResult] = []
        for node in natsorted(by_node):
            others = [n for n in schedulable_nodes(self.kube) if n != node]
            hold = cordoned(self.kube, node, self.run_id) if node and others else contextlib.nullcontext(False)
            with hold as ours:
                if ours:
                    self.cordoned.append(node)
                elif not others:
                    self.notes.append(f"{node}: no other schedulable node, so its VMs could only come back there")
                else:
                    self.notes.append(f"{node}: unschedulable already (left as it was)")
                workers = min(self.parallel, len(by_node[node]))
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="restart") as pool:
                    for r in pool.map(self.restart_one, by_node[node]):
                        results.append(r)
                        if on_progress is not None:
                            on_progress(len(results), len(chosen))
        return sorted(results, key=lambda r: (r.namespace, r.vm))

    def restart_one(self, s: VMSnapshot) -> MoveResult:
        key = (s.namespace, s.name)
        started = time.time()
        t0 = time.monotonic()
        if self.monitor is not None:
            self.monitor.begin(key, s.ip)
        phase, reason, node_after, ip_after = "Failed", "", "", ""
        try:
            old = self.kube.get(VMI, s.name, s.namespace) or {"metadata": {}}
            old_uid = str(old["metadata"].get("uid", ""))
            self.kube.action(VM_ACTIONS, s.name, s.namespace, "stop")
            self.kube.wait_for(
                VMI,
                s.name,
                s.namespace,
                condition=lambda o: o is None or o["metadata"].get("uid") != old_uid,
                timeout=self.timeout,
            )
            self.kube.action(VM_ACTIONS, s.name, s.namespace, "start")
            left = max(1.0, self.timeout - (time.monotonic() - t0))
            vmi = self.kube.wait_for(
                VMI, s.name, s.namespace, condition=lambda o: _ready(o, old_uid) or _failed(o, old_uid), timeout=left
            )
            st = (vmi or {}).get("status") or {}
            node_after = str(st.get("nodeName", ""))
            ip_after = str(((st.get("interfaces") or [{}])[0]).get("ipAddress", ""))
            if _ready(vmi, old_uid):
                phase = "Succeeded"
            else:
                reason = f"the VM did not start again: VMI phase {st.get('phase')}"
        except WaitTimeout as e:
            phase = "Timeout"
            reason = f"not running again within {self.timeout:g}s ({e})"
        except KubeError as e:
            reason = f"{e.code} {e.reason}: {e.message}"
        ended = time.time()
        downtime = Downtime(note="not measured")
        if self.monitor is not None:
            downtime = self.monitor.end(key, ip_after)
        return MoveResult(
            s.namespace,
            s.name,
            "stop/start",
            phase,
            source_node=s.node,
            target_node=node_after,
            started=iso_utc(started),
            ended=iso_utc(ended),
            duration_s=round(ended - started, 3),
            failure_reason=reason,
            action="restart",
            ip_before=s.ip,
            ip_after=ip_after,
            downtime=downtime,
        )
