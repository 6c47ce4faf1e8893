"""Probing while the fleet comes up: the ping matrix overlapped with the fan-out (issue 20).

On a real cluster a rollout's fan-out is bounded by how fast KubeVirt starts VMs, and for most of it
the tool only waits. Meanwhile every VM that has become Ready can already be probed: it logs in, looks
at its guest (``ip -j addr``) and pings the ``k`` VMs that became Ready just before it
(:func:`tasks.probeplan.ready_peers`), and the isolation canary (VMs Ready before the canary runs ping
it in a short session of their own once it does: none waits for it). When the fan-out is
over, the connectivity step takes what ran here and adds only what the sampled plan's guarantees still
need (:func:`tasks.probeplan.complete_plan`): the first ``k`` VMs' sends, the last ``k`` VMs' receives
and the node and namespace pairs nobody probed — a few dozen console sessions instead of one per VM.

Only for a sampled plan: a full mesh needs every pair, so probing early would open every session twice.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any

from tasks.connectivity import EarlyRound, Key, probe_source, run_credentials
from tasks.console import REGISTRY
from tasks.guest import GuestView, vmi_addresses, vmi_ready
from tasks.kube import ClusterParams, Kube
from tasks.kube.resources import VMI
from tasks.kube.watch import WatchEvent
from tasks.orchestration import say
from tasks.probeplan import Probe, Target, VMEndpoint, ready_peers
from tasks.progress import step_progress
from tasks.render import CANARY_VM
from tasks.spec import RolloutSpec

log = logging.getLogger(__name__)


def early_probing_applies(spec: RolloutSpec) -> bool:
    """True when the rollout's plan will be sampled and the spec asks for probing during the fan-out."""
    c = spec.connectivity
    if c.mode == "off" or not c.probe_while_fanning_out or c.mode == "full":
        return False
    return c.mode == "sampled" or len(spec.vm_refs()) > c.full_mesh_threshold


class EarlyProber:
    """Follows the run's VMIs by watch; each one that becomes Ready (Running, Ready condition, an
    address) is queued for a console session that looks at its guest and pings its ready peers."""

    def __init__(self, kube: Kube, spec: RolloutSpec) -> None:
        self.kube = kube
        self.spec = spec
        self.scope = spec.scope()
        c = spec.connectivity
        self.k = c.peers_per_vm
        self.round = EarlyRound()
        self._order: list[VMEndpoint] = []
        self._seen: set[Key] = set()
        self._lock = threading.Lock()
        self._missed_canary: list[VMEndpoint] = []  # probed before the canary ran
        self._closing = threading.Event()
        self._futures: list[Future[None]] = []
        self._pool = ThreadPoolExecutor(max_workers=c.max_sessions, thread_name_prefix="early-console")
        self._informers: list[Any] = []
        self._credentials: tuple[str, str] | None = None
        self._started = 0.0

    def start(self) -> EarlyProber:
        self._started = time.monotonic()
        try:
            self._credentials = run_credentials(self.kube, self.spec)
        except Exception as e:  # the ping step meets the same problem and reports it as its failure
            log.warning("not probing while the fleet comes up: %s", e)
            self._closing.set()
            return self
        self._informers = [self.kube.informer(VMI, label_selector=self.scope.selector, on_event=self._vmi_event)]
        if self.spec.connectivity.isolation_canary:
            self._informers.append(
                self.kube.informer(
                    VMI,
                    self.scope.canary_namespace,
                    field_selector=f"metadata.name={CANARY_VM}",
                    on_event=self._canary_event,
                )
            )
        return self

    def _canary_event(self, ev: WatchEvent) -> None:
        """The canary's address once it runs, so that sources can ping it."""
        if ev.type in ("RELISTED", "DELETED"):
            return
        st = ev.object.get("status") or {}
        ips = vmi_addresses(ev.object)
        if st.get("phase") != "Running" or not ips:
            return
        ns = self.scope.canary_namespace
        canary = Target(ips[0], f"canary {ns}/{CANARY_VM} (default network)", ns, st.get("nodeName"))
        with self._lock:
            if self._closing.is_set() or self.round.canary is not None:
                return
            self.round.canary = canary
            missed, self._missed_canary = self._missed_canary, []
            # the VMs probed before the canary ran ping it now, in a short session of their own
            self._futures.extend(self._pool.submit(self._probe_canary, src) for src in missed)

    def _vmi_event(self, ev: WatchEvent) -> None:
        if ev.type in ("RELISTED", "DELETED") or not self.scope.in_fleet(ev.object):
            return
        st = ev.object.get("status") or {}
        ips = vmi_addresses(ev.object)
        if not vmi_ready(ev.object) or not ips:
            return
        ep = VMEndpoint(
            ev.object["metadata"]["namespace"], ev.object["metadata"]["name"], st.get("nodeName", ""), ips[0]
        )
        with self._lock:
            if ep.key in self._seen or self._closing.is_set():
                return
            self._seen.add(ep.key)
            self._order.append(ep)
            peers = ready_peers(self._order, self.k)
            self._futures.append(self._pool.submit(self._probe, ep, peers))

    def _probe(self, src: VMEndpoint, peers: list[VMEndpoint]) -> None:
        """One session: look at the guest, ping the ready peers, and the canary once it runs."""
        probes = [Probe(src, p) for p in peers]
        with self._lock:
            canary = self.round.canary
            if canary is None and self.spec.connectivity.isolation_canary:
                self._missed_canary.append(src)  # its canary probe follows when the canary runs
        if canary is not None and canary.ip != src.ip:
            probes.append(Probe(src, canary, kind="isolation", expect="silent"))
        self._run(src, probes, peers, look=True)

    def _probe_canary(self, src: VMEndpoint) -> None:
        canary = self.round.canary
        if canary is not None and canary.ip != src.ip:
            self._run(src, [Probe(src, canary, kind="isolation", expect="silent")], [], look=False)

    def _run(self, src: VMEndpoint, probes: list[Probe], peers: list[VMEndpoint], *, look: bool) -> None:
        c = self.spec.connectivity
        views: dict[Key, GuestView] = {}
        assert self._credentials is not None
        results = probe_source(
            self.kube,
            src.key,
            probes,
            {e.key: e for e in (src, *peers)},
            self._credentials,
            ping_count=c.ping_count,
            ping_timeout=c.ping_timeout_seconds,
            ping_interval=c.ping_interval_seconds,
            connect_timeout=120.0,
            retry_interval=1.0,
            registry=REGISTRY,
            views=views if look else None,
        )
        with self._lock:
            self.round.probes.extend(probes)
            self.round.results.extend(results)
            self.round.views.update(views)

    def finish(self) -> EarlyRound:
        """Stop taking new VMs, let the sessions under way end, and return what ran."""
        with self._lock:
            self._closing.set()
        for informer in self._informers:
            informer.stop()
        with self._lock:
            futures = list(self._futures)
        left = sum(not f.done() for f in futures)
        if left:
            say(f"finishing {left} of {len(futures)} console sessions begun while the fleet came up")
            with step_progress("VMs probed early", len(futures), key="early-probes", unit=" VMs") as bar:
                for n, _ in enumerate(as_completed(futures), 1):
                    bar.update(n, len(futures))
        self._pool.shutdown(wait=True)
        for f in futures:
            if f.exception() is not None:  # probe_source never raises; a bug here must not pass silently
                log.error("early probing of a VM failed: %s", f.exception())
        self.round.wall_s = time.monotonic() - self._started
        return self.round


#: Rounds finished in this process, by run and cluster (a fleet rolls one run id out to several
#: clusters from one process), until the run's connectivity step takes its own.
_HANDOVER: dict[tuple[str, str], EarlyRound] = {}
_HANDOVER_LOCK = threading.Lock()


def _handover_key(spec: RolloutSpec, cluster: ClusterParams | None) -> tuple[str, str]:
    return spec.run_id, cluster.model_dump_json() if cluster is not None else ""


def hand_over(spec: RolloutSpec, cluster: ClusterParams | None, early: EarlyRound) -> None:
    """Leave a finished round for this run's connectivity step on this cluster."""
    with _HANDOVER_LOCK:
        _HANDOVER[_handover_key(spec, cluster)] = early


def take_early_round(spec: RolloutSpec, cluster: ClusterParams | None) -> EarlyRound | None:
    """The probes that ran while this run's fleet came up on this cluster, once."""
    with _HANDOVER_LOCK:
        return _HANDOVER.pop(_handover_key(spec, cluster), None)


__all__ = ["EarlyProber", "EarlyRound", "early_probing_applies", "hand_over", "take_early_round"]
