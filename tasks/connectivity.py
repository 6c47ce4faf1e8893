"""Connectivity: the runbook's step 5 — log in to a VM's serial console and ping the others — as a
probe plan over the whole fleet, run over the VMs' serial consoles: one session per source VM, a cap
on sessions overall, plus isolation probes that must go unanswered (a canary VM outside the network).

Each source VM gets one console session (login once) and runs its probes one after the other:
``ping -c COUNT -W TIMEOUT -w DEADLINE -q IP``. ``-w`` (deadline = COUNT·1 s + TIMEOUT + 1 s) bounds a
ping to a dead address, which ``-c``/``-W`` alone do not. The output goes through
:func:`tasks.pingparse.parse_ping`; every probe becomes a :class:`tasks.model.ProbeResult`.

``run_probes`` never raises for a console problem: a source whose console cannot be reached, or whose
login fails, yields ``outcome="error"`` for each of its remaining probes, with the reason (password
masked) in ``error``. Sessions run on a bounded thread pool (``max_sessions`` workers), so at most
that many consoles are open at once; the process-wide :data:`tasks.console.REGISTRY` guarantees a
VMI's console is never opened twice at the same time by this process.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import yaml

from tasks.console import REGISTRY, ConsoleDoor, ConsoleError, ConsoleSession, SessionRegistry, mask_secrets
from tasks.guest import (
    GUEST_ADDR_COMMAND,
    GuestCensus,
    GuestView,
    explain,
    global_addresses,
    parse_ip_addr,
    vmi_addresses,
)
from tasks.kube import Kube, WaitTimeout
from tasks.kube.resources import NAMESPACE, SECRET, VMI
from tasks.model import ProbeResult
from tasks.orchestration import say, unit
from tasks.outcome import Artifact, ConnectivityFailed, StepResult
from tasks.pingparse import PingStats, parse_ping
from tasks.probeplan import (
    Probe,
    ProbePlan,
    Target,
    VMEndpoint,
    complete_plan,
    group_by_source,
    plan_isolation,
    plan_probes,
)
from tasks.progress import step_progress
from tasks.render import CANARY_VM, render_canary_namespace, render_canary_vm
from tasks.reports.connectivity import connectivity_summary, failing_pairs
from tasks.reports.state import RunParts
from tasks.spec import RolloutSpec

log = logging.getLogger(__name__)

DEFAULT_USER = "fedora"  # cloud-init's default user on Fedora images
COMMAND_SLACK = 15.0  # seconds a ping may take beyond its own deadline before the console gives up

Key = tuple[str, str]
Progress = Callable[[int, int], None]


class CredentialsError(ValueError):
    """The credentials Secret is missing or does not hold a usable #cloud-config user and password."""


def ping_command(ip: str, count: int = 3, timeout: int = 2, interval: float = 1.0) -> str:
    """The ping we type: quiet, ``count`` requests ``interval`` apart (``-i``, iputils' default 1 s; 0.2 s
    is the smallest it allows a user who is not root), ``-W`` per reply, ``-w`` deadline for the run."""
    addr = ipaddress.ip_address(ip)  # only an address reaches the shell, never arbitrary text
    deadline = math.ceil(count * interval) + timeout + 1
    pace = "" if interval == 1.0 else f"-i {interval:g} "
    return f"ping -c {count} {pace}-W {timeout} -w {deadline} -q {addr}"


def _user_password(text: str) -> tuple[str, str | None]:
    """(user, password) from a #cloud-config document: ``user:``/``password:``, or a chpasswd entry."""
    if not text.lstrip().startswith("#cloud-config"):
        raise CredentialsError("the user data is not a #cloud-config document")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CredentialsError(f"the #cloud-config user data is not valid YAML ({type(e).__name__})") from None
    if not isinstance(doc, dict):
        raise CredentialsError("the #cloud-config user data is not a mapping")
    user = DEFAULT_USER
    u = doc.get("user")
    if isinstance(u, str) and u:
        user = u
    elif isinstance(u, dict) and u.get("name"):
        user = str(u["name"])
    password = None if doc.get("password") is None else str(doc["password"])
    chpasswd = doc.get("chpasswd")
    if password is None and isinstance(chpasswd, dict):
        lines = chpasswd.get("list")
        if isinstance(lines, str):
            lines = lines.splitlines()
        for line in lines if isinstance(lines, list) else []:
            name, sep, pw = str(line).strip().partition(":")
            if sep and name == user:
                password = pw
        for entry in chpasswd.get("users") or []:
            if isinstance(entry, dict) and entry.get("name") == user and entry.get("password") is not None:
                password = str(entry["password"])
    return user, password


def credentials_from_secret(kube: Any, namespace: str, secret_name: str) -> tuple[str, str]:
    """The console login (user, password) from a cloud-init Secret's ``userdata`` key.

    The Secret is the one the VMs' ``cloudInitNoCloud.secretRef`` names; its user data is a
    ``#cloud-config`` document with ``password:`` (and optionally ``user:``, default ``fedora``).
    Raises :class:`CredentialsError` (never showing the password) when that cannot be read.
    """
    secret = kube.get(SECRET, secret_name, namespace)
    if secret is None:
        raise CredentialsError(f"Secret {namespace}/{secret_name} not found")
    data = secret.get("data") or {}
    raw = next((data[k] for k in ("userdata", "userData") if data.get(k)), None)
    if raw is None:
        plain = secret.get("stringData") or {}
        text = plain.get("userdata") or plain.get("userData")
        if not text:
            raise CredentialsError(f"Secret {namespace}/{secret_name} has no userdata key")
    else:
        try:
            text = base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise CredentialsError(f"Secret {namespace}/{secret_name}: userdata is not base64 UTF-8 text") from None
    try:
        user, password = _user_password(text)
    except CredentialsError as e:
        raise CredentialsError(f"Secret {namespace}/{secret_name}: {e}") from None
    if not password:
        raise CredentialsError(f"Secret {namespace}/{secret_name}: the #cloud-config sets no password for {user!r}")
    return user, password


def _result(
    probe: Probe,
    src: VMEndpoint,
    endpoints: Mapping[Key, VMEndpoint],
    stats: PingStats | None,
    exit_code: int | None,
    error: str = "",
) -> ProbeResult:
    dst = probe.dst
    if isinstance(dst, VMEndpoint):
        known = endpoints.get(dst.key, dst)
        dst_ns, dst_vm, dst_node = known.namespace, known.name, known.node
    else:
        t: Target = dst
        dst_ns, dst_vm, dst_node = t.namespace or "", t.label, t.node or ""
    common: dict[str, Any] = {
        "src_namespace": src.namespace,
        "src_vm": src.name,
        "src_node": src.node,
        "dst_ip": probe.dst_ip,
        "dst_namespace": dst_ns,
        "dst_vm": dst_vm,
        "dst_node": dst_node,
        "kind": probe.kind,
        "expect": probe.expect,
        "exit_code": exit_code,
    }
    if stats is None:
        return ProbeResult(**common, outcome="error", error=error)
    return ProbeResult(
        **common,
        transmitted=stats.transmitted,
        received=stats.received,
        loss_pct=stats.loss_pct,
        rtt_min_ms=stats.rtt_min,
        rtt_avg_ms=stats.rtt_avg,
        rtt_max_ms=stats.rtt_max,
        outcome=stats.outcome,
        error=stats.detail if stats.outcome == "error" else "",
    )


def look(session: ConsoleSession, src: VMEndpoint) -> GuestView:
    """What the guest holds (``ip -j addr show eth0``), beside what its VMI says."""
    out, rc = session.run(GUEST_ADDR_COMMAND, timeout=15)
    vmi_ips = global_addresses([src.ip]) if src.ip else ()
    if rc != 0:
        return GuestView(
            src.namespace, src.name, src.node, vmi_ips, error=f"`{GUEST_ADDR_COMMAND}` exited {rc}: {out.strip()[:200]}"
        )
    try:
        mac, ips = parse_ip_addr(out)
    except ValueError as e:
        return GuestView(src.namespace, src.name, src.node, vmi_ips, error=f"`{GUEST_ADDR_COMMAND}`: {e}")
    return GuestView(src.namespace, src.name, src.node, vmi_ips, ips, mac, looked=True)


def probe_source(
    kube: ConsoleDoor,
    key: Key,
    probes: Sequence[Probe],
    endpoints: Mapping[Key, VMEndpoint],
    credentials: tuple[str, str],
    *,
    ping_count: int,
    ping_timeout: int,
    ping_interval: float = 1.0,
    connect_timeout: float,
    retry_interval: float,
    registry: SessionRegistry | None,
    views: dict[Key, GuestView] | None = None,
) -> list[ProbeResult]:
    """One source VM: one session — what its guest holds (when ``views`` collects it), then its probes in
    order. Never raises."""
    src = endpoints.get(key) or probes[0].src
    user, password = credentials
    results: list[ProbeResult] = []
    session = ConsoleSession(
        kube,
        key[0],
        key[1],
        connect_timeout=connect_timeout,
        retry_interval=retry_interval,
        registry=registry,
        claim_wait=connect_timeout,
    )
    try:
        with session:
            session.login(user, password, timeout=max(30.0, connect_timeout))
            if views is not None:
                views[key] = look(session, src)
            for p in probes:
                try:
                    cmd = ping_command(p.dst_ip, ping_count, ping_timeout, ping_interval)
                except ValueError:
                    results.append(_result(p, src, endpoints, None, None, f"not an IP address: {p.dst_ip!r}"))
                    continue
                budget = math.ceil(ping_count * ping_interval) + ping_timeout + 1 + COMMAND_SLACK
                out, rc = session.run(cmd, timeout=budget)
                results.append(_result(p, src, endpoints, parse_ping(out, rc), rc))
    except Exception as e:  # a console problem must not stop the other sources
        kind = "" if isinstance(e, ConsoleError) else f"{type(e).__name__}: "
        reason = mask_secrets(f"{kind}{e}", [password])
        log.warning("console probes from %s/%s stopped: %s", key[0], key[1], reason)
        results.extend(_result(p, src, endpoints, None, None, reason) for p in probes[len(results) :])
        if views is not None and key not in views:
            views[key] = GuestView(src.namespace, src.name, src.node, global_addresses([src.ip]), error=reason)
    return results


def run_probes(
    kube: ConsoleDoor,
    plan_groups: Mapping[Key, Sequence[Probe]],
    endpoints: Mapping[Key, VMEndpoint],
    credentials: tuple[str, str],
    *,
    ping_count: int = 3,
    ping_timeout: int = 2,
    ping_interval: float = 1.0,
    max_sessions: int = 32,
    connect_timeout: float = 120.0,
    on_progress: Progress | None = None,
    retry_interval: float = 1.0,
    registry: SessionRegistry | None = REGISTRY,
    views: dict[Key, GuestView] | None = None,
) -> list[ProbeResult]:
    """Run every probe, one console session per source VM, at most ``max_sessions`` at once.

    ``plan_groups`` is :func:`tasks.probeplan.group_by_source` of a plan; ``endpoints`` gives each VM's
    current namespace, node and address (it overrides the plan's copy for the source and target
    fields). Results come back in plan order. ``on_progress(done_sources, total_sources)`` (source VMs
    whose probes are all done) is called from worker threads, serialised, after each source finishes.
    With ``views``, each source's guest is looked at first (:func:`look`) and its view stored there;
    a source with no probes is then only looked at.
    """
    if max_sessions < 1:
        raise ValueError("max_sessions must be >= 1")
    groups = {k: list(v) for k, v in plan_groups.items() if v or views is not None}
    total = sum(len(v) for v in groups.values())
    done = 0  # source VMs finished
    lock = threading.Lock()
    started = time.monotonic()

    def work(key: Key) -> list[ProbeResult]:
        nonlocal done
        res = probe_source(
            kube,
            key,
            groups[key],
            endpoints,
            credentials,
            ping_count=ping_count,
            ping_timeout=ping_timeout,
            ping_interval=ping_interval,
            connect_timeout=connect_timeout,
            retry_interval=retry_interval,
            registry=registry,
            views=views,
        )
        if on_progress is not None:
            with lock:
                done += 1
                try:
                    on_progress(done, len(groups))
                except Exception:
                    log.exception("progress callback failed")
        return res

    if not groups:
        return []
    with ThreadPoolExecutor(max_workers=min(max_sessions, len(groups)), thread_name_prefix="console") as pool:
        by_key = dict(zip(groups, pool.map(work, groups), strict=True))
    results = [r for k in groups for r in by_key[k]]
    elapsed = time.monotonic() - started
    log.info(
        "ran %d probes from %d VMs in %.1fs (%.1f sessions/s, %.1f probes/s)",
        total,
        len(groups),
        elapsed,
        len(groups) / elapsed if elapsed else 0.0,
        total / elapsed if elapsed else 0.0,
    )
    return results


# ---- the step ------------------------------------------------------------------------------------


def endpoints(kube: Kube, spec: RolloutSpec) -> tuple[list[VMEndpoint], list[str]]:
    """The run's VMs that are Running with an address a peer can reach (the VMI status's first global
    address), and what was skipped as not the run's."""
    vmis, _ = kube.list(VMI, label_selector=spec.scope().selector)
    fleet, skipped = spec.scope().split(vmis, fleet=True)
    out = []
    for v in fleet:
        st = v.get("status") or {}
        ips = vmi_addresses(v)
        if st.get("phase") == "Running" and ips:
            out.append(VMEndpoint(v["metadata"]["namespace"], v["metadata"]["name"], st.get("nodeName", ""), ips[0]))
    return sorted(out, key=lambda e: (e.namespace, e.name)), skipped


@unit("start isolation canary")
def launch_canary(kube: Kube, spec: RolloutSpec) -> None:
    """Create the isolation canary (its namespace and VM) without waiting for it: a rollout launches it
    before the fan-out so that it boots alongside the fleet. Idempotent."""
    kube.create_or_get(render_canary_namespace(spec))
    kube.create_or_get(render_canary_vm(spec))


def start_canary(kube: Kube, spec: RolloutSpec, timeout: float = 600) -> Target | None:
    """A VM in a namespace the network does not select: on the default network, it must stay unreachable."""
    launch_canary(kube, spec)
    ns = spec.scope().canary_namespace

    def running(obj: dict[str, Any] | None) -> bool:
        st = (obj or {}).get("status") or {}
        return st.get("phase") == "Running" and bool((st.get("interfaces") or [{}])[0].get("ipAddress"))

    try:
        vmi = kube.wait_for(VMI, CANARY_VM, ns, condition=running, timeout=timeout)
    except WaitTimeout:
        return None
    st = (vmi or {}).get("status") or {}
    return Target(
        st["interfaces"][0]["ipAddress"], f"canary {ns}/{CANARY_VM} (default network)", ns, st.get("nodeName")
    )


@unit("remove isolation canary")
def remove_canary(kube: Kube, spec: RolloutSpec) -> None:
    kube.delete(NAMESPACE, spec.scope().canary_namespace)


def run_credentials(kube: Kube, spec: RolloutSpec) -> tuple[str, str]:
    """The console login of the run's VMs, from its credentials Secret."""
    return credentials_from_secret(kube, spec.namespace_names()[0], spec.credentials_secret_name())


@unit("run probes")
def probe(
    kube: Kube,
    spec: RolloutSpec,
    plan: ProbePlan,
    eps: list[VMEndpoint],
    done: Sequence[ProbeResult] = (),
    seen: Mapping[Key, GuestView] | None = None,
) -> tuple[list[ProbeResult], dict[Key, GuestView]]:
    """Every source's guest is looked at, then it pings; the results carry the cause of each failure.

    ``done`` and ``seen`` are probe results and guest views from earlier sessions (while the fleet came
    up): a VM already looked at is not logged in to again unless it has probes left to send."""
    c = spec.connectivity
    views: dict[Key, GuestView] = dict(seen or {})
    groups = group_by_source(plan)
    for e in eps:  # every VM of the fleet is looked at, also one that sends no probe
        if e.key not in views:
            groups.setdefault(e.key, [])
    with step_progress("VMs probed", len(groups), key="connectivity-progress", unit=" VMs") as bar:
        results = run_probes(
            kube,
            groups,
            {e.key: e for e in eps},
            run_credentials(kube, spec),
            ping_count=c.ping_count,
            ping_timeout=c.ping_timeout_seconds,
            ping_interval=c.ping_interval_seconds,
            max_sessions=c.max_sessions,
            on_progress=bar.update,
            views=views,
        )
    return explain([*done, *results], views, spec.network.topology), views


def observe_guests(kube: Kube, spec: RolloutSpec, eps: Sequence[VMEndpoint]) -> dict[Key, GuestView]:
    """Log in to each VM's console and read what its guest holds (no probes)."""
    views: dict[Key, GuestView] = {}
    run_probes(
        kube,
        {e.key: [] for e in eps},
        {e.key: e for e in eps},
        run_credentials(kube, spec),
        max_sessions=spec.connectivity.max_sessions,
        views=views,
    )
    return views


@dataclass
class EarlyRound:
    """Probes that ran while the fleet came up (:mod:`tasks.earlyprobe`), for the ping step to build on."""

    probes: list[Probe] = field(default_factory=list)  # in the order they ran, per source
    results: list[ProbeResult] = field(default_factory=list)
    views: dict[Key, GuestView] = field(default_factory=dict)
    canary: Target | None = None
    wall_s: float = 0.0


@dataclass
class ConnectivityResult(StepResult):
    step = "connectivity"
    failure = ConnectivityFailed
    report_file = "connectivity.html"
    results: list[ProbeResult] = field(default_factory=list)
    coverage: dict[str, Any] = field(default_factory=dict)
    mode: str = ""
    skipped: list[str] = field(default_factory=list)
    guests: list[GuestView] = field(default_factory=list)
    topology: str = ""
    early_probes: int = 0  # of ``results``, run while the fleet came up (alongside the fan-out)
    early_wall_s: float = 0.0

    @property
    def census(self) -> GuestCensus:
        return GuestCensus.of(self.guests)

    @property
    def failing(self) -> list[ProbeResult]:
        return [r for r in self.results if not r.passed]

    @property
    def sessions(self) -> int:
        return len({(r.src_namespace, r.src_vm) for r in self.results})

    @property
    def summary(self) -> dict[str, Any]:
        return connectivity_summary(self.results)

    def ok(self) -> bool:
        return not self.failing

    def figures(self) -> dict[str, Any]:
        return {
            "probes": len(self.results),
            "sources": self.sessions,
            "failing": len(self.failing),
            "wall_s": round(self.wall_s, 2),
            "mode": self.mode,
            **(
                {"early_probes": self.early_probes, "early_wall_s": round(self.early_wall_s, 1)}
                if self.early_probes
                else {}
            ),
        }

    def problems(self) -> list[str]:
        return [
            f"{r.src_namespace}/{r.src_vm} → {r.dst_ip}: {r.outcome}, expected {r.expect}: {r.cause or r.error}"
            for r in self.failing
        ]

    def details(self) -> list[str]:
        """The causes, each once with how many probes it explains, then the first probes."""
        counts: dict[str, int] = {}
        for r in self.failing:
            counts[r.cause] = counts.get(r.cause, 0) + 1
        return [f"{n} probe{'s' if n != 1 else ''}: {c}" for c, n in sorted(counts.items(), key=lambda x: -x[1])]

    def headline(self) -> str:
        head = f"{len(self.results)} probes from {self.sessions} VMs ({self.mode}): {len(self.failing)} failing"
        if self.early_probes:
            head += f" ({self.early_probes} of them while the fleet came up)"
        if self.guests:
            head += f"\nguests: {self.census.line(self.topology)}"
        return head

    def failure_message(self) -> str:
        bad = self.failing
        top = self.details()[0] if bad else ""
        return f"{len(bad)} of {len(self.results)} probes did not match their expectation" + (f"; {top}" if top else "")

    def parts(self) -> RunParts:
        return RunParts(
            probes=self.results or None,
            plan_coverage=self.coverage or None,
            guests=self.guests or None,
        )

    def artifacts(self) -> list[Artifact]:
        return [
            Artifact("connectivity-failing-pairs", "Failing pairs", table=failing_pairs(self.results)),
            Artifact("connectivity", "Connectivity report", markdown_file="connectivity.md"),
        ]


def run_connectivity(kube: Kube, spec: RolloutSpec, early: EarlyRound | None = None) -> ConnectivityResult:
    """Plan the probes, start the canary, probe over the consoles, remove the canary.

    With ``early`` (what ran while the fleet came up, :mod:`tasks.earlyprobe`), the plan is completed
    around it rather than made afresh, and only the missing probes run now."""
    started = time.monotonic()
    c = spec.connectivity
    eps, skipped = endpoints(kube, spec)
    notes = [f"skipped, labelled with the run but outside its namespaces: {', '.join(skipped)}"] if skipped else []
    if c.mode == "off" or not eps:
        return ConnectivityResult(mode="off" if c.mode == "off" else "nothing to probe", skipped=skipped, notes=notes)
    fleet = {e.key for e in eps}
    done: list[ProbeResult] = []
    seen: dict[Key, GuestView] = {}
    iso_done: set[Key] = set()
    if early is not None and (early.probes or early.views):
        plan = complete_plan(eps, early.probes, k=c.peers_per_vm, seed=0)
        ran = {(p.src.key, p.dst_ip) for p in early.probes}
        done = [r for r in early.results if (r.src_namespace, r.src_vm) in fleet]
        iso_done = {(r.src_namespace, r.src_vm) for r in done if r.kind == "isolation"}
        seen = {k: v for k, v in early.views.items() if k in fleet}
        coverage_plan = plan
        plan = ProbePlan(
            probes=[p for p in plan.probes if (p.src.key, p.dst_ip) not in ran],
            mode=plan.mode,
            vms=plan.vms,
            k=plan.k,
            notes=plan.notes,
        )
        say(
            f"{len(done)} probes from {len({(r.src_namespace, r.src_vm) for r in done})} VMs ran while the fleet "
            f"came up ({early.wall_s:.0f}s, alongside the fan-out); {len(plan.probes)} more complete the plan"
        )
    else:
        plan = plan_probes(eps, mode=c.mode, full_mesh_threshold=c.full_mesh_threshold, k=c.peers_per_vm, seed=0)
        coverage_plan = plan
    sources = len({p.src.key for p in plan.probes})
    say(
        f"probing {len(plan.probes)} pairs from {sources} VMs ({plan.mode}) over their serial consoles, "
        f"at most {c.max_sessions} sessions at once" + (", with an isolation canary" if c.isolation_canary else "")
    )
    canary = None
    if c.isolation_canary:
        t0 = time.monotonic()
        vmi = kube.get(VMI, CANARY_VM, spec.scope().canary_namespace)
        if ((vmi or {}).get("status") or {}).get("phase") != "Running":
            say(
                f"waiting for the isolation canary VM in {spec.scope().canary_namespace} to run (it must stay unreachable)"
            )
        canary = start_canary(kube, spec)
        waited = time.monotonic() - t0
        if canary is None:
            say("the isolation canary did not start within 600s: isolation is not probed")
        elif waited >= 2:
            say(f"isolation canary running at {canary.ip} after {waited:.0f}s")
    try:
        if canary is not None:
            iso = plan_isolation([e for e in eps if e.key not in iso_done], [canary], per_source=1, seed=0)
            plan = plan.extended(iso)
            coverage_plan = coverage_plan.extended(iso)
        results, views = probe(kube, spec, plan, eps, done, seen)
    finally:
        if c.isolation_canary:
            remove_canary(kube, spec)
    coverage = coverage_plan.coverage()
    if early is not None:
        coverage["isolation_probes"] = sum(r.kind == "isolation" for r in results)
        coverage["probes"] = len(results)
        coverage["early_probes"] = len(done)
    return ConnectivityResult(
        wall_s=time.monotonic() - started,
        results=results,
        coverage=coverage,
        mode=plan.mode,
        skipped=skipped,
        notes=notes,
        guests=sorted(views.values(), key=lambda v: v.key),
        topology=spec.network.topology,
        early_probes=len(done),
        early_wall_s=early.wall_s if early is not None else 0.0,
    )


__all__ = [
    "ConnectivityResult",
    "CredentialsError",
    "EarlyRound",
    "credentials_from_secret",
    "endpoints",
    "ping_command",
    "run_connectivity",
    "run_probes",
]
