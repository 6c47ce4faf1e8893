"""A lock in the cluster: one ``coordination.k8s.io/v1`` Lease per network, held while a run writes.

Two runs must never write the same network or the same namespaces at once (the loser would pass its
preflight, fail half-way and leave objects behind). A Prefect concurrency limit only works when every
run goes through one Prefect server; a Lease works for every client of the cluster. It is taken the way
client-go's leader election takes one (``tools/leaderelection/resourcelock/leaselock.go``): create it,
or update an expired one carrying the resourceVersion read (a concurrent taker gets 409). The holder
renews it while the run lives and deletes it when the run ends. The Lease names the run, host and pid,
and lists the run's namespaces, so a run on another network that shares a namespace is refused too.
A holder that stopped renewing (a killed run) is taken over, with a warning; on the same host a dead
pid is known at once, so a rerun of a killed run does not wait for the lease to expire.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tasks.kube import Kube, KubeError
from tasks.kube.resources import LEASE
from tasks.scope import MANAGED_BY_LABEL, MANAGED_BY_VALUE

log = logging.getLogger(__name__)

LOCK_LABEL = "udn-rollout.io/lock"
NETWORK_ANNOTATION = "udn-rollout.io/network"
NAMESPACES_ANNOTATION = "udn-rollout.io/namespaces"
RUN_ANNOTATION = "udn-rollout.io/run"
DEFAULT_LEASE_SECONDS = 30


class LockHeld(Exception):
    """Another live run holds the network or one of the namespaces; ``holders`` names it."""

    def __init__(self, holders: list[Holder]) -> None:
        self.holders = holders
        super().__init__("; ".join(h.describe() for h in holders))


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, read back from it."""

    lease: str
    run_id: str
    host: str
    pid: int
    network: str
    namespaces: frozenset[str]
    renewed: datetime | None
    duration_s: int
    acquired: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.renewed is None or now > self.renewed + timedelta(seconds=self.duration_s)

    def dead_here(self) -> bool:
        """Held from this host by a process that no longer exists."""
        if self.host != socket.gethostname() or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def stale(self, now: datetime) -> bool:
        return self.expired(now) or self.dead_here()

    def describe(self) -> str:
        when = self.renewed.isoformat(timespec="seconds") if self.renewed else "never"
        return (
            f"run {self.run_id} (host {self.host}, pid {self.pid}) holds Lease {self.lease} for network "
            f"{self.network}, last renewed {when}"
        )


def lease_name(network: str) -> str:
    """``udn-rollout-<network>``, a valid object name (dots kept, at most 253 characters)."""
    return f"udn-rollout-{re.sub(r'[^a-z0-9.-]', '-', network.lower())}"[:253].rstrip("-.")


def identity(run_id: str) -> str:
    return f"{run_id}@{socket.gethostname()}:{os.getpid()}"


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    with contextlib.suppress(ValueError):
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return None


def _micro(dt: datetime) -> str:
    """A MicroTime as the API server writes it."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def holder_of(lease: Mapping[str, Any]) -> Holder:
    """Read a Lease the tool wrote (pure)."""
    md = lease.get("metadata") or {}
    ann = md.get("annotations") or {}
    spec = lease.get("spec") or {}
    ident = str(spec.get("holderIdentity") or "")
    run_id, _, where = ident.partition("@")
    host, _, pid = where.rpartition(":")
    namespaces = frozenset(n for n in str(ann.get(NAMESPACES_ANNOTATION, "")).split(",") if n)
    return Holder(
        lease=str(md.get("name", "")),
        run_id=ann.get(RUN_ANNOTATION) or run_id,
        host=host,
        pid=int(pid) if pid.isdigit() else 0,
        network=str(ann.get(NETWORK_ANNOTATION, "")),
        namespaces=namespaces,
        renewed=_time(spec.get("renewTime")) if ident else None,
        duration_s=int(spec.get("leaseDurationSeconds") or DEFAULT_LEASE_SECONDS),
        acquired=_time(spec.get("acquireTime")),
    )


def conflicts(
    leases: Iterable[Mapping[str, Any]], run_id: str, network: str, namespaces: Iterable[str], now: datetime
) -> tuple[list[Holder], list[Holder]]:
    """(live holders in the way, stale holders that would be taken over) for a run (pure).

    In the way: another run's live lease on the same network or sharing a namespace; the same run id
    held by another live process (two copies of one run) counts too.
    """
    mine = frozenset(namespaces)
    me = identity(run_id)
    blocking: list[Holder] = []
    stale: list[Holder] = []
    for lease in leases:
        h = holder_of(lease)
        if not h.run_id or f"{h.run_id}@{h.host}:{h.pid}" == me:
            continue
        if h.network != network and not (h.namespaces & mine):
            continue
        (stale if h.stale(now) else blocking).append(h)
    return blocking, stale


class RunLock:
    """Hold the run's Lease for the duration of a ``with`` block, renewing it in a daemon thread."""

    def __init__(
        self,
        kube: Kube,
        *,
        run_id: str,
        network: str,
        namespaces: Iterable[str],
        lock_namespace: str,
        duration_s: int = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.kube = kube
        self.run_id = run_id
        self.network = network
        self.namespaces = sorted(set(namespaces))
        self.lock_namespace = lock_namespace
        self.duration_s = duration_s
        self.name = lease_name(network)
        self.identity = identity(run_id)
        self.warnings: list[str] = []
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held = False

    def _body(self, now: datetime, transitions: int, rv: str | None = None) -> dict[str, Any]:
        md: dict[str, Any] = {
            "name": self.name,
            "namespace": self.lock_namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, LOCK_LABEL: "true"},
            "annotations": {
                RUN_ANNOTATION: self.run_id,
                NETWORK_ANNOTATION: self.network,
                NAMESPACES_ANNOTATION: ",".join(self.namespaces),
            },
        }
        if rv:
            md["resourceVersion"] = rv
        return {
            "apiVersion": LEASE.api_version,
            "kind": LEASE.kind,
            "metadata": md,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration_s,
                "acquireTime": _micro(now),
                "renewTime": _micro(now),
                "leaseTransitions": transitions,
            },
        }

    def others(self) -> list[dict[str, Any]]:
        leases, _ = self.kube.list(LEASE, self.lock_namespace, label_selector=f"{LOCK_LABEL}=true")
        return leases

    def acquire(self) -> None:
        """Take the lease or raise :class:`LockHeld`; stale holders are taken over with a warning."""
        now = datetime.now(UTC)
        blocking, stale = conflicts(self.others(), self.run_id, self.network, self.namespaces, now)
        if blocking:
            raise LockHeld(blocking)
        for h in stale:
            self.warnings.append(f"taking over from {h.describe()}: it stopped renewing")
            if h.lease != self.name:
                with contextlib.suppress(KubeError):
                    self.kube.delete(LEASE, h.lease, self.lock_namespace)
        current = self.kube.get(LEASE, self.name, self.lock_namespace)
        try:
            if current is None:
                self.kube.create(self._body(now, 0))
            else:
                h = holder_of(current)
                ours = (current.get("spec") or {}).get("holderIdentity") == self.identity
                if not ours and not h.stale(now) and h.run_id:
                    raise LockHeld([h])
                transitions = int((current.get("spec") or {}).get("leaseTransitions") or 0) + (0 if ours else 1)
                self.kube.replace(self._body(now, transitions, current["metadata"].get("resourceVersion")))
        except KubeError as e:
            if e.code == 409:  # another run created or took it between our read and our write
                latest = self.kube.get(LEASE, self.name, self.lock_namespace)
                raise LockHeld([holder_of(latest)] if latest else []) from None
            raise
        self._held = True
        # Two runs on different networks sharing a namespace can each take their own lease at once:
        # both see both now, and the earlier one (then the smaller name) keeps going.
        blocking, _ = conflicts(self.others(), self.run_id, self.network, self.namespaces, datetime.now(UTC))
        rivals = [h for h in blocking if h.lease != self.name and (h.acquired or now, h.lease) <= (now, self.name)]
        if rivals:
            self.release()
            raise LockHeld(rivals)
        self._thread = threading.Thread(target=self._renew, name="udn-rollout-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.duration_s / 3):
            try:
                current = self.kube.get(LEASE, self.name, self.lock_namespace)
                if current is None or (current.get("spec") or {}).get("holderIdentity") != self.identity:
                    self.lost.set()
                    log.warning("lost the run lock %s/%s: another run took it", self.lock_namespace, self.name)
                    return
                current["spec"]["renewTime"] = _micro(datetime.now(UTC))
                self.kube.replace(current)
            except KubeError as e:  # a missed renewal is retried at the next tick, well inside the duration
                log.debug("renewing the run lock failed: %s", e)

    def release(self) -> None:
        """Stop renewing and delete the lease if this run still holds it."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        if not self._held:
            return
        self._held = False
        with contextlib.suppress(KubeError):
            current = self.kube.get(LEASE, self.name, self.lock_namespace)
            if current is not None and (current.get("spec") or {}).get("holderIdentity") == self.identity:
                self.kube.delete(LEASE, self.name, self.lock_namespace)

    @contextlib.contextmanager
    def held(self) -> Iterator[RunLock]:
        self.acquire()
        try:
            yield self
        finally:
            self.release()


_HELD: dict[tuple[str, str, str], int] = {}
_HELD_LOCK = threading.Lock()


@contextlib.contextmanager
def run_lock(kube: Kube, spec: Any) -> Iterator[RunLock | None]:
    """Hold the run's lock for a block; re-entrant within the process (a rollout holds it while its
    steps, which take it when run alone, run inside). A live holder in the way ends the step as a failed
    preflight (exit 3, nothing written)."""
    from tasks.orchestration import say
    from tasks.outcome import PreflightFailed

    lock = RunLock(
        kube,
        run_id=spec.run_id,
        network=spec.network.name,
        namespaces=spec.namespace_names(),
        lock_namespace=spec.lock.namespace,
        duration_s=spec.lock.lease_seconds,
    )
    key = (kube.server, lock.lock_namespace, lock.name)
    with _HELD_LOCK:
        nested = _HELD.get(key, 0) > 0
        if nested:
            _HELD[key] += 1
    if nested:
        try:
            yield None
        finally:
            with _HELD_LOCK:
                _HELD[key] -= 1
        return
    try:
        lock.acquire()
    except LockHeld as e:
        raise PreflightFailed(
            f"preflight failed: another run is writing network {spec.network.name} or its namespaces: {e}",
            ["wait for that run to finish (or stop it), then rerun — nothing was changed on the cluster"],
        ) from None
    for warning in lock.warnings:
        say(f"warning: {warning}")
    with _HELD_LOCK:
        _HELD[key] = 1
    try:
        yield lock
    finally:
        with _HELD_LOCK:
            _HELD.pop(key, None)
        lock.release()
