"""Run a probe plan over the VMs' serial consoles: one session per source VM, a cap on sessions overall.

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
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml

from tasks.console import REGISTRY, ConsoleError, ConsoleSession, SessionRegistry, WebsocketTarget, mask_secrets
from tasks.model import ProbeResult
from tasks.pingparse import PingStats, parse_ping
from tasks.probeplan import Probe, Target, VMEndpoint

log = logging.getLogger(__name__)

DEFAULT_USER = "fedora"  # cloud-init's default user on Fedora images
COMMAND_SLACK = 15.0  # seconds a ping may take beyond its own deadline before the console gives up

Key = tuple[str, str]
Progress = Callable[[int, int], None]


class CredentialsError(ValueError):
    """The credentials Secret is missing or does not hold a usable #cloud-config user and password."""


def ping_command(ip: str, count: int = 3, timeout: int = 2) -> str:
    """The ping we type: quiet, ``count`` requests, ``-W`` per reply, ``-w`` deadline for the whole run."""
    addr = ipaddress.ip_address(ip)  # only an address reaches the shell, never arbitrary text
    deadline = count * 1 + timeout + 1
    return f"ping -c {count} -W {timeout} -w {deadline} -q {addr}"


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
    secret = kube.get("v1", "Secret", secret_name, namespace)
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


def _probe_source(
    kube: WebsocketTarget,
    key: Key,
    probes: Sequence[Probe],
    endpoints: Mapping[Key, VMEndpoint],
    credentials: tuple[str, str],
    *,
    ping_count: int,
    ping_timeout: int,
    connect_timeout: float,
    retry_interval: float,
    registry: SessionRegistry | None,
) -> list[ProbeResult]:
    """One source VM: one session, its probes in order. Never raises."""
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
            for p in probes:
                try:
                    cmd = ping_command(p.dst_ip, ping_count, ping_timeout)
                except ValueError:
                    results.append(_result(p, src, endpoints, None, None, f"not an IP address: {p.dst_ip!r}"))
                    continue
                budget = ping_count + ping_timeout + 1 + COMMAND_SLACK
                out, rc = session.run(cmd, timeout=budget)
                results.append(_result(p, src, endpoints, parse_ping(out, rc), rc))
    except Exception as e:  # a console problem must not stop the other sources
        kind = "" if isinstance(e, ConsoleError) else f"{type(e).__name__}: "
        reason = mask_secrets(f"{kind}{e}", [password])
        log.warning("console probes from %s/%s stopped: %s", key[0], key[1], reason)
        results.extend(_result(p, src, endpoints, None, None, reason) for p in probes[len(results) :])
    return results


def run_probes(
    kube: WebsocketTarget,
    plan_groups: Mapping[Key, Sequence[Probe]],
    endpoints: Mapping[Key, VMEndpoint],
    credentials: tuple[str, str],
    *,
    ping_count: int = 3,
    ping_timeout: int = 2,
    max_sessions: int = 32,
    connect_timeout: float = 120.0,
    on_progress: Progress | None = None,
    retry_interval: float = 1.0,
    registry: SessionRegistry | None = REGISTRY,
) -> list[ProbeResult]:
    """Run every probe, one console session per source VM, at most ``max_sessions`` at once.

    ``plan_groups`` is :func:`tasks.probeplan.group_by_source` of a plan; ``endpoints`` gives each VM's
    current namespace, node and address (it overrides the plan's copy for the source and target
    fields). Results come back in plan order. ``on_progress(done_sources, total_sources)`` (source VMs
    whose probes are all done) is called from worker threads, serialised, after each source finishes.
    """
    if max_sessions < 1:
        raise ValueError("max_sessions must be >= 1")
    groups = {k: list(v) for k, v in plan_groups.items() if v}
    total = sum(len(v) for v in groups.values())
    done = 0  # source VMs finished
    lock = threading.Lock()
    started = time.monotonic()

    def work(key: Key) -> list[ProbeResult]:
        nonlocal done
        res = _probe_source(
            kube,
            key,
            groups[key],
            endpoints,
            credentials,
            ping_count=ping_count,
            ping_timeout=ping_timeout,
            connect_timeout=connect_timeout,
            retry_interval=retry_interval,
            registry=registry,
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


__all__ = ["CredentialsError", "credentials_from_secret", "ping_command", "run_probes"]
