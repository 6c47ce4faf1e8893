"""The whole rollout at scale, run the way a user runs it: `udn-rollout rollout -f SPEC --kubeconfig K`
as a subprocess without a Prefect API configured (the CLI runs the steps in-process), against an
isolated simulated cluster.

    uv run python -m bench.rollout [--quick] [--scale 10k|25k|1k] [--profile fast|realistic] [--set KEY=VALUE ...]
    # or: uv run python -m bench rollout | rollout-25k | bound

Scales: 10k (the default) = 10,000 VMs (100 namespaces × 100) on 100 nodes, Layer3 (10.100.0.0/16,
hostSubnet 24); 25k = 25,000 VMs (250 × 100) on 250 nodes, Layer2; 1k = 1,000 VMs (10 × 100) on 10 nodes,
Layer2; quick: 200 VMs (10 × 20) on 10 nodes. Sampled ping matrix (peersPerVm 8, the default), churn
fraction 0.1 (live migration, downtime measured); everything else at the spec's defaults (qps 50, burst
100, maxInFlight 64, 32 console sessions, the cluster's migration limits; 25k: qps 100, burst 200) unless
`--set` says otherwise.
Targets: 10,000 and 25,000 VMs with ping matrix and churn in under 15 minutes, the tool's peak RSS under
1.5 GiB; with the realistic profile, the wall time over the cluster's bound (`tasks.bound`, in run.json).

Measured: the CLI's wall seconds (spawn to exit) and exit code; per step, the seconds the flows record
in reports/<run-id>/run.json (fan-out, connectivity, churn, the rollout flow itself) and a timeline from
the moments the CLI printed each step's closing line (the only source for Prefect's start, preflight,
provision, reports and shutdown, which run.json does not time); VMs Ready, probes run and failing, VMs
migrated and IPs changed (run.json's headline); peak RSS per process of the CLI's tree (the tool, and
the ephemeral Prefect API server it starts as a `python -m uvicorn` child), sampled from /proc every
0.5 s, next to `os.wait4`'s ru_maxrss; CPU of the tool, of the Prefect server and of the sim server.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from bench.common import CLK_TCK, figure, load_average, proc_cpu, rnd, server_pid, start_cluster
from tasks.reports import rerender
from tasks.spec import RolloutSpec, load_spec

RUN_ID = "bench-rollout"
CIDR, HOST_SUBNET = "10.100.0.0/16", 24
VM_SLOTS_PER_NODE = 250  # < 252 usable addresses of a /24: the slot limit binds before the node subnet fills
SCALES: dict[str, dict[str, Any]] = {
    # Layer3 guests configure their VMI's address at boot (the sim's named option): with the default (DHCP,
    # which a Layer3 network does not serve VMs) no ping could answer and the rollout fails by design.
    "10k": {
        "nodes": 100,
        "namespaces": 100,
        "per_namespace": 100,
        "timeout": 3600,
        "topology": "Layer3",
        "options": {"layer3GuestAddressing": "static"},
    },
    "10k-l2": {"nodes": 100, "namespaces": 100, "per_namespace": 100, "timeout": 5400, "topology": "Layer2"},
    # 25,000 creations at the default qps 50 alone take 500 s of the 15 minutes: the 25k scale raises the
    # client's pace to 100 QPS (burst 200), as an administrator rolling out that many VMs would.
    "25k": {
        "nodes": 250,
        "namespaces": 250,
        "per_namespace": 100,
        "timeout": 3600,
        "topology": "Layer2",
        "sets": ["api.qps=100", "api.burst=200"],
    },
    "1k": {"nodes": 10, "namespaces": 10, "per_namespace": 100, "timeout": 3600, "topology": "Layer2"},
    "quick": {"nodes": 10, "namespaces": 10, "per_namespace": 20, "timeout": 900, "topology": "Layer2"},
}
TARGET_WALL_S, TARGET_RSS_MIB = 15 * 60, 1.5 * 1024
SAMPLE_EVERY = 0.5

# The closing line each step prints (flows/*.py `say`), in the order the rollout runs them.
MARKERS: list[tuple[str, re.Pattern[str]]] = [
    ("preflight", re.compile(r"^CHECK\s+STATUS\s+DETAIL")),
    ("provision", re.compile(r"^network \S+ ready in \d+ namespaces")),
    ("fanout", re.compile(r"^\d+/\d+ VMs ready in ")),
    ("connectivity", re.compile(r"^\d+ probes from \d+ VMs")),
    ("churn", re.compile(r"^\d+ VMs selected, \d+ migrated")),
    ("reports", re.compile(r"^rollout \S+ finished in ")),
]


def spec_data(namespaces: int, per_namespace: int, topology: str = "Layer3") -> dict[str, Any]:
    """The spec as a user writes it (camelCase YAML); only what the scenario fixes, the rest defaulted."""
    subnet: dict[str, Any] = {"cidr": CIDR}
    if topology == "Layer3":
        subnet["hostSubnet"] = HOST_SUBNET
    return {
        "runId": RUN_ID,
        "network": {"name": f"udn-{RUN_ID}", "topology": topology, "subnets": [subnet]},
        "namespaces": {"prefix": "rollout", "count": namespaces},
        "vms": {"perNamespace": per_namespace, "namePrefix": "vm"},
        "fanout": {"readyTimeoutSeconds": 1800},
        "connectivity": {"mode": "sampled"},
        "churn": {"fraction": 0.1, "timeoutSeconds": 1800},
    }


def write_spec(path: Path, data: dict[str, Any], overrides: list[str]) -> RolloutSpec:
    """Validate with the CLI's own model, write the YAML, and read it back the way `-f` does."""
    RolloutSpec.model_validate(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_spec(path, overrides)


# ---- the CLI's process tree -----------------------------------------------------------------------
def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


def _children(pid: int) -> list[int]:
    """Children of every thread of pid (a child belongs to the thread that forked it)."""
    kids: list[int] = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError, ValueError):
            kids += [int(c) for c in Path(path).read_text().split()]
    return kids


def _role(pid: int, root: int) -> str:
    if pid == root:
        return "tool"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    if "uvicorn" in cmd and "prefect.server" in cmd:
        return "prefect-server"
    return "other: " + cmd[:80]


@dataclass
class ProcPeak:
    role: str
    hwm_kib: int = 0
    cpu_s: float = 0.0
    first_seen_s: float = 0.0
    last_seen_s: float = 0.0


@dataclass
class TreeSampler:
    """Peak RSS (VmHWM) and CPU per process of the CLI's tree, from /proc every SAMPLE_EVERY seconds.

    Needed because wait4's ru_maxrss is the larger of the child's own peak and the peaks of the
    children it reaped, so with Prefect's ephemeral server as a child it cannot say whose peak it is.
    """

    root: int
    t0: float
    procs: dict[int, ProcPeak] = field(default_factory=dict)
    peak_tree_rss_kib: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def _loop(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(SAMPLE_EVERY):
                return

    def sample(self) -> None:
        now = time.perf_counter() - self.t0
        tree, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += _children(pid)
        total = 0
        for pid in tree:
            st = _status(pid)
            if not st:  # gone, or a zombie waiting to be reaped
                continue
            p = self.procs.get(pid)
            if p is None:
                p = self.procs[pid] = ProcPeak(_role(pid, self.root), first_seen_s=now)
            p.hwm_kib = max(p.hwm_kib, st.get("VmHWM", 0))
            p.cpu_s = max(p.cpu_s, proc_cpu(pid))
            p.last_seen_s = now
            total += st.get("VmRSS", 0)
        self.peak_tree_rss_kib = max(self.peak_tree_rss_kib, total)
        self.samples += 1

    def by_role(self, role: str) -> list[ProcPeak]:
        return [p for p in self.procs.values() if p.role == role]


@dataclass
class Output:
    """Every line the CLI printed, with the second it arrived (stdout and stderr read apart)."""

    t0: float
    lines: list[tuple[float, str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reader(self, stream: IO[bytes], name: str) -> threading.Thread:
        def pump() -> None:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip("\n")
                with self._lock:
                    self.lines.append((time.perf_counter() - self.t0, name, line))

        t = threading.Thread(target=pump, name=f"cli-{name}", daemon=True)
        t.start()
        return t

    def marks(self) -> dict[str, float]:
        """Seconds since spawn at which each step's closing line was printed (the first match, in order)."""
        out: dict[str, float] = {}
        i = 0
        for t, stream, line in self.lines:
            if stream != "stdout" or i >= len(MARKERS):
                continue
            name, pattern = MARKERS[i]
            if pattern.match(line):
                out[name] = t
                i += 1
        return out

    def text(self) -> str:
        return "\n".join(f"{t:8.2f} {s[:3]} {line}" for t, s, line in self.lines) + "\n"


def cli_path() -> str:
    """The `udn-rollout` console script of this environment (a Python process itself, not `uv run`)."""
    here = Path(sys.executable).parent / "udn-rollout"
    found = str(here) if here.exists() else shutil.which("udn-rollout")
    if not found:
        raise RuntimeError("udn-rollout is not installed in this environment: run `uv sync` first")
    return found


def run_cli(argv: list[str], cwd: Path, timeout: float) -> dict[str, Any]:
    """Spawn the CLI, sample its tree, wait for it with wait4; kill its process group after timeout."""
    env = dict(os.environ)
    api_url = env.pop("PREFECT_API_URL", None)  # ephemeral mode, as for a user without a Prefect server
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    out = Output(t0)
    readers = [out.reader(proc.stdout, "stdout"), out.reader(proc.stderr, "stderr")]  # type: ignore[arg-type]
    sampler = TreeSampler(proc.pid, t0).start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
            time.sleep(10)
            os.killpg(proc.pid, signal.SIGKILL)

    watchdog = threading.Timer(timeout, kill)
    watchdog.daemon = True
    watchdog.start()
    try:
        _, status, ru = os.wait4(proc.pid, 0)
    except BaseException:  # Ctrl-C does not reach the CLI (its own session): stop it and its Prefect server
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        raise
    finally:
        watchdog.cancel()
    wall = time.perf_counter() - t0
    sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join(15)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()
    # the tree's CPU as the kernel counts it: the tool plus every child it reaped (the Prefect server)
    return {
        "exitCode": proc.returncode,
        "timedOut": timed_out.is_set(),
        "wallSeconds": wall,
        "ruMaxrssKiB": ru.ru_maxrss,
        "treeCpuSeconds": ru.ru_utime + ru.ru_stime,
        "prefectApiUrlDropped": bool(api_url),
        "sampler": sampler,
        "output": out,
    }


# ---- what the run wrote -------------------------------------------------------------------------
def read_run_json(reports: Path) -> dict[str, Any]:
    path = reports / RUN_ID / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}


def step_seconds(run: dict[str, Any]) -> dict[str, float | None]:
    """What run.json times: each step's wall_s (fan-out, connectivity, churn) and the rollout flow's own."""
    steps = {s["step"]: s.get("figures") or {} for s in run.get("steps", [])}
    out: dict[str, float | None] = {
        name: steps.get(name, {}).get("wall_s") for name in ("fanout", "connectivity", "churn")
    }
    out["rolloutFlow"] = (run.get("figures") or {}).get("rollout", {}).get("wall_s")
    return out


def timeline(marks: dict[str, float], flow_wall: float | None, exit_s: float) -> dict[str, float]:
    """Per-step seconds from the CLI's output: each step runs from the previous closing line to its own.

    run.json's rollout wall_s runs from the flow's start to the return of its last step, before the
    final reports, so the flow started `flow_wall` before the last step's closing line; what comes
    before that is the interpreter, the imports, Prefect's ephemeral server start and the flow run.
    """
    out: dict[str, float] = {}
    steps = [name for name, _ in MARKERS if name != "reports" and name in marks]
    prev: float | None = None
    if flow_wall is not None and steps:
        prev = max(0.0, marks[steps[-1]] - flow_wall)
        out["startup"] = prev
    for name, _ in MARKERS:
        if name not in marks:
            break
        if prev is not None:
            out[name] = marks[name] - prev
        prev = marks[name]
    if "reports" in marks:
        out["shutdown"] = exit_s - marks["reports"]
    return {k: rnd(v, 1) for k, v in out.items()}


def _mib(kib: int) -> float:
    return rnd(kib / 1024, 1)


# ---- the scenario --------------------------------------------------------------------------------
def time_reports(run_dir: Path) -> dict[str, Any]:
    """Re-render every report of the finished run from its files, in this process: report generation
    at the run's size (10,000 VMs, ~90,000 probes, 1,000 churn rows), apart from the CLI's own steps."""
    t0 = time.perf_counter()
    files = rerender(run_dir)
    seconds = time.perf_counter() - t0
    sizes = {name: path.stat().st_size for name, path in sorted(files.items()) if path.exists()}
    return {
        "seconds": rnd(seconds, 2),
        "files": len(sizes),
        "bytes": sum(sizes.values()),
        "largest": dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:3]),
    }


def run(
    quick: bool = False,
    overrides: list[str] | None = None,
    keep: bool = False,
    scale: str = "10k",
    profile: str = "fast",
) -> dict[str, Any]:
    size = SCALES["quick" if quick else scale]
    overrides = [*size.get("sets", []), *(overrides or [])]
    nodes, namespaces, per_ns = size["nodes"], size["namespaces"], size["per_namespace"]
    topology = size["topology"]
    total = namespaces * per_ns
    label = f"{total} VMs on {nodes} nodes"
    kind = f"{topology}, sampled ping, churn 10 %" + (f", {profile} profile" if profile != "fast" else "")
    extra = [o for o in overrides if o not in size.get("sets", [])]
    kind += f", {', '.join(extra)}" if extra else ""
    print(f"rollout: udn-rollout rollout, {label} ({namespaces} × {per_ns}), {kind}")
    work = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    spec = write_spec(work / "spec.yaml", spec_data(namespaces, per_ns, topology), overrides or [])
    reports = work / "reports"
    prefect_home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")
    prefect_db_existed = (prefect_home / "prefect.db").exists()  # a new one is migrated at the server's start
    load0 = load_average()
    t_cluster = time.perf_counter()
    cluster = start_cluster(nodes, vms_per_node=VM_SLOTS_PER_NODE, profile=profile, options=size.get("options") or {})
    cluster_start_s = time.perf_counter() - t_cluster
    spid = server_pid(cluster)
    argv = [cli_path(), "rollout", "-f", str(work / "spec.yaml"), "--kubeconfig", str(cluster.kubeconfig)]
    argv += ["--reports-dir", str(reports)]
    for o in overrides or []:
        argv += ["--set", o]
    print(f"  cluster up in {cluster_start_s:.1f} s; running: {' '.join(argv)}", flush=True)
    try:
        s0 = proc_cpu(spid) if spid else 0.0
        cli = run_cli(argv, work, size["timeout"])
        server_cpu = (proc_cpu(spid) - s0) if spid else 0.0
        server_hwm = _status(spid).get("VmHWM", 0) if spid else 0
    finally:
        cluster.stop()
    (work / "cli.log").write_text(cli["output"].text())
    sampler: TreeSampler = cli["sampler"]
    run_json = read_run_json(reports)
    report_timing = time_reports(reports / RUN_ID) if (reports / RUN_ID / "run.json").exists() else None
    headline = (run_json.get("figures") or {}).get("rollout", {})
    from_reports = step_seconds(run_json)
    marks = cli["output"].marks()
    from_output = timeline(marks, from_reports["rolloutFlow"], cli["wallSeconds"])
    tools, servers = sampler.by_role("tool"), sampler.by_role("prefect-server")
    tool_kib = max((p.hwm_kib for p in tools), default=0)
    prefect_kib = max((p.hwm_kib for p in servers), default=0)
    prefect_cpu = sum(p.cpu_s for p in servers)
    others = [
        {"role": p.role, "peakRssMiB": _mib(p.hwm_kib), "cpuSeconds": rnd(p.cpu_s)}
        for p in sampler.procs.values()
        if p.role.startswith("other")
    ]
    wall = cli["wallSeconds"]
    result: dict[str, Any] = {
        "scenario": "rollout",
        "parameters": {
            "nodes": nodes,
            "namespaces": namespaces,
            "vmsPerNamespace": per_ns,
            "vms": total,
            "vmSlotsPerNode": VM_SLOTS_PER_NODE,
            "topology": topology,
            "profile": profile,
            "spec": spec.model_dump(by_alias=True, mode="json"),
            "overrides": overrides or [],
            "argv": argv[1:],
            "prefect": {
                "mode": "ephemeral",
                "home": str(prefect_home),
                "dbExistedBefore": prefect_db_existed,
                "apiUrlDropped": cli["prefectApiUrlDropped"],
            },
        },
        "exitCode": cli["exitCode"],
        "timedOut": cli["timedOut"],
        "clusterStartSeconds": rnd(cluster_start_s, 1),
        "wallSeconds": rnd(wall, 1),
        "stepSecondsFromReports": from_reports,
        "reportsRerendered": report_timing,
        "stepSecondsFromOutput": from_output,
        "outputMarksSeconds": {k: rnd(v, 1) for k, v in marks.items()},
        # the ephemeral server's spawn as the sampler saw it (≤ 0.5 s late): the startup before it is imports
        "prefectServerSpawnedAtSeconds": rnd(min(p.first_seen_s for p in servers), 1) if servers else None,
        "headline": headline,
        "runJsonSteps": [
            {
                "step": s["step"],
                "ok": s.get("ok"),
                "figures": s.get("figures"),
                "problems": (s.get("problems") or [])[:5],
            }
            for s in run_json.get("steps", [])
        ],
        "memory": {
            "toolPeakRssMiB": _mib(tool_kib),
            "prefectServerPeakRssMiB": _mib(prefect_kib) if servers else None,
            "prefectServerProcesses": len(servers),
            "otherChildren": others,
            "treePeakRssMiB": _mib(sampler.peak_tree_rss_kib),
            "wait4RuMaxrssMiB": _mib(cli["ruMaxrssKiB"]),
            "simServerPeakRssMiB": _mib(server_hwm),
            "samples": sampler.samples,
            "sampleEverySeconds": SAMPLE_EVERY,
        },
        "cpu": {
            # wait4's CPU is the tool's plus the children it reaped; the Prefect server's is sampled (≤ 0.5 s late)
            "toolCpuSeconds": rnd(cli["treeCpuSeconds"] - prefect_cpu),
            "toolCpuSecondsSampled": rnd(max(p.cpu_s for p in tools) if tools else 0.0),
            "prefectServerCpuSeconds": rnd(prefect_cpu),
            "treeCpuSecondsWait4": rnd(cli["treeCpuSeconds"]),
            "simServerCpuSeconds": rnd(server_cpu),
            "clockTicksPerSecond": CLK_TCK,
        },
        "targets": {
            "wallSeconds": TARGET_WALL_S,
            "toolPeakRssMiB": TARGET_RSS_MIB,
            "wallMet": wall < TARGET_WALL_S,
            "rssMet": tool_kib / 1024 < TARGET_RSS_MIB,
        },
        "loadAverage1m": {"before": load0, "after": load_average()},
        "outputTail": [line for _, _, line in cli["output"].lines[-15:]],
    }
    ok = cli["exitCode"] == 0 and headline.get("vms_ready") == total
    print(
        f"  exit {cli['exitCode']} after {wall:.1f} s; steps (output): {from_output}; run.json: {from_reports}",
        flush=True,
    )
    print(
        f"  {headline.get('vms_ready')}/{headline.get('vms')} Ready, {headline.get('probes')} probes "
        f"({headline.get('probes_failing')} failing), {headline.get('migrated')} migrated, "
        f"{headline.get('ip_changed')} IPs changed; peak RSS tool {_mib(tool_kib)} MiB, Prefect server "
        f"{_mib(prefect_kib)} MiB (wait4 ru_maxrss {_mib(cli['ruMaxrssKiB'])} MiB); sim server CPU {server_cpu:.1f} s",
        flush=True,
    )
    if not ok or keep:
        (work / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"  kept {work} (spec.yaml, cli.log, reports/, result.json)", flush=True)
    else:
        shutil.rmtree(work, ignore_errors=True)
    if not ok:
        raise RuntimeError(
            f"udn-rollout rollout exited {cli['exitCode']}"
            f"{' (killed after the timeout)' if cli['timedOut'] else ''} with {headline.get('vms_ready')}/{total} "
            f"VMs Ready; see {work}/cli.log and {work}/result.json"
        )
    steps_note = ", ".join(f"{k} {v}" for k, v in from_output.items())
    name = f"rollout: {label} ({kind})"
    result["figures"] = [
        figure(
            f"{name}, CLI wall",
            rnd(wall, 1),
            "s",
            f"target < {TARGET_WALL_S} s ({'met' if wall < TARGET_WALL_S else 'MISSED'}); exit 0; "
            f"{headline.get('vms_ready')}/{total} Ready, {headline.get('probes')} probes "
            f"{headline.get('probes_failing')} failing, {headline.get('migrated')} migrated, "
            f"{headline.get('ip_changed')} IPs changed",
        ),
        figure(
            f"{name}, steps",
            from_reports["rolloutFlow"],
            "s",
            f"rollout flow (run.json); from the output, s: {steps_note}",
        ),
        figure(
            f"{name}, tool peak RSS",
            _mib(tool_kib),
            "MiB",
            f"target < {TARGET_RSS_MIB:.0f} MiB ({'met' if tool_kib / 1024 < TARGET_RSS_MIB else 'MISSED'}); "
            f"Prefect ephemeral server {_mib(prefect_kib)} MiB apart; CPU s: tool "
            f"{result['cpu']['toolCpuSeconds']}, Prefect {result['cpu']['prefectServerCpuSeconds']}, "
            f"sim server {rnd(server_cpu, 1)}",
        ),
    ]
    if headline.get("cluster_bound_s"):
        b = headline["bound"]
        result["figures"].append(
            figure(
                f"{name}, wall over the cluster's bound",
                headline["over_bound"],
                "x",
                f"target ≤ 1.15; bound {b['total_s']} s = VMs up {b['fanout_s']} + pings {b['probes_s']} + churn "
                f"{b['churn_s']} ({'; '.join(b['notes'])}); rollout flow {headline.get('wall_s')} s",
            )
        )
    if report_timing is not None:
        largest = ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in report_timing["largest"].items())
        result["figures"].append(
            figure(
                f"rollout: reports of {total} VMs re-rendered from the run's files",
                report_timing["seconds"],
                "s",
                f"{report_timing['files']} files, {report_timing['bytes'] / 2**20:.1f} MiB ({largest}); "
                f"{headline.get('probes')} probes, {headline.get('migrated')} churn rows",
            )
        )
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.rollout", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 VMs on 10 nodes")
    ap.add_argument("--scale", choices=sorted(SCALES), default="10k")
    ap.add_argument("--profile", choices=["fast", "realistic", "instant"], default="fast")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--keep", action="store_true", help="keep the spec, CLI log and reports (temp dir)")
    args = ap.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    print(json.dumps(run(args.quick, args.overrides, args.keep, args.scale, args.profile), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
