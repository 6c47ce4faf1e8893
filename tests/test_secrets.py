"""Secrets (issue 9, item 4): the console password generated per run and the kubeconfig token never
appear in what a run leaves behind — the terminal (stdout/stderr), every log record (root and Prefect
loggers at DEBUG, tracebacks included), every file under the run's reports directory, every Prefect
artifact, flow-run log, flow/task-run parameter and state message recorded by the Prefect server —
neither as plain text nor base64-encoded at any alignment.

Two full in-process rollouts (2 namespaces × 2 VMs, ping matrix and churn on); the second has every
migration fail, so its error path (exit 1, exception texts) is scanned too. The passwords differ per
run and are not in the VM or VMI objects (the VMs only name the Secret).
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from simcluster import ClusterConfig, SimCluster
from tasks.kube import ClusterTarget, Kube
from tasks.kube.resources import SECRET, VM, VMI
from tasks.provision import PASSWORD_KEY
from udn_rollout import cli

pytestmark = pytest.mark.usefixtures("prefect_harness")

SPEC_L2 = str(Path(__file__).resolve().parent.parent / "specs" / "seed-l2.yaml")
LOGGERS = ["", "prefect", "prefect.flow_runs", "prefect.task_runs", "kubernetes", "urllib3", "websocket"]


class Collect(logging.Handler):
    """Every record, formatted with its traceback, in memory."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception as e:  # a record that cannot format is still evidence
            text = f"{record.msg!r} {record.args!r} ({e})"
        self.lines.append(text)
        if record.exc_info and record.exc_info[1] is not None:
            self.lines.append(repr(record.exc_info[1]))


@pytest.fixture
def capture_logs() -> Iterator[Collect]:
    import prefect.main  # noqa: F401  (configures Prefect's logging once; later, it would drop our handler)

    handler = Collect()
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimCluster]:
    with SimCluster(config=ClusterConfig(nodes=3, profile="instant")) as sim:
        yield sim


def encodings(secret: str) -> list[str]:
    """The secret, its base64 forms, and the part of its base64 encoding that is the same whatever
    bytes come before it (three alignments), so a secret inside a larger encoded text is found too."""
    raw = secret.encode()
    out = {secret, base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + raw).decode()
        start = -(-pad * 4 // 3)  # first character made of secret bits only
        end = (pad + len(raw)) * 4 // 3  # last character that holds no padding bits
        core = enc[start + 1 : end - 1]
        if len(core) >= 8:
            out.add(core)
    return sorted(out)


def assert_absent(secret: str, what: str, corpus: dict[str, str]) -> None:
    assert len(secret) >= 8, f"the {what} is too short to search for"
    for needle in encodings(secret):
        for where, text in corpus.items():
            assert needle not in text, f"the {what} ({'encoded ' if needle != secret else ''}{needle!r}) is in {where}"


def password_of(kube: Kube, namespace: str, secret_name: str) -> str:
    secret = kube.get(SECRET, secret_name, namespace)
    assert secret is not None, f"no Secret {namespace}/{secret_name}"
    text = base64.b64decode(secret["data"][PASSWORD_KEY]).decode()
    lines = [line for line in text.splitlines() if line.strip().startswith("password:")]
    assert len(lines) == 1, "the cloud-config holds no password line"
    return lines[0].split(":", 1)[1].strip()


def prefect_records(since: datetime) -> tuple[dict[str, str], int, int]:
    """Everything the Prefect server recorded for flow runs started after `since`: parameters, state
    messages, task-run states, artifacts and logs. Returns (texts by source, flow runs, logs)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterStartTime,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    out: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)))
        ids = [r.id for r in runs]
        assert ids, "no flow runs recorded"
        for r in runs:
            out[f"flow run {r.name} ({r.flow_id})"] = json.dumps(
                {"parameters": r.parameters, "state": r.state.model_dump(mode="json") if r.state else None},
                default=str,
            )
        by_run = FlowRunFilter(id=FlowRunFilterId(any_=ids))
        for t in client.read_task_runs(flow_run_filter=by_run):
            out[f"task run {t.name}"] = json.dumps(t.model_dump(mode="json"), default=str)
        for a in client.read_artifacts(flow_run_filter=by_run):
            out[f"artifact {a.key or a.id}"] = json.dumps(a.model_dump(mode="json"), default=str)
        logs: list[Any] = []
        while True:
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200, offset=len(logs)
            )
            logs += page
            if len(page) < 200:
                break
        out["flow-run logs"] = "\n".join(f"{log.name} {log.level} {log.message}" for log in logs)
    return out, len(ids), len(logs)


def test_no_secret_in_logs_reports_artifacts_or_output(
    cluster: SimCluster,
    reports_root: Path,
    capture_logs: Collect,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    kube = Kube(ClusterTarget(kubeconfig=str(cluster.kubeconfig)), qps=0)
    token = yaml.safe_load(cluster.kubeconfig.read_text())["users"][0]["user"]["token"]
    since = datetime.now(UTC)
    outputs: dict[str, str] = {}
    runs: list[tuple[str, list[str]]] = []
    with temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: True}):
        for attempt, fail_migrations in (("ok", False), ("failing", True)):
            uid = uuid.uuid4().hex[:6]
            run_id = f"sec-{uid}"
            namespaces = [f"sec-{uid}-a", f"sec-{uid}-b"]
            argv = [
                "rollout",
                "-f",
                SPEC_L2,
                "--run-id",
                run_id,
                "--kubeconfig",
                str(cluster.kubeconfig),
                "--set",
                f"network.name=sec-{uid}",
                "--set",
                "namespaces.names={" + ",".join(namespaces) + "}",
                "--set",
                f"network.subnets[0].cidr=10.{90 + len(runs)}.0.0/16",
                "--set",
                "vms.perNamespace=2",
                "--set",
                "connectivity.pingCount=1",
                "--set",
                "connectivity.pingTimeoutSeconds=1",
                "--set",
                "churn.count=2",
            ]
            cluster.set_faults(migration_failure_rate=1.0 if fail_migrations else 0.0)
            try:
                code = cli.main(argv)
            finally:
                cluster.set_faults(migration_failure_rate=0.0)
            captured = capfd.readouterr()
            outputs[f"stdout of the {attempt} run"] = captured.out
            outputs[f"stderr of the {attempt} run"] = captured.err
            if fail_migrations:
                assert code == cli.EXIT_FAILED, captured.err
                assert "migration(s) failed" in captured.err
            else:
                assert code == cli.EXIT_OK, captured.err
                assert "4/4 VMs ready" in captured.out and "0 failing" in captured.out
            runs.append((run_id, namespaces))
        recorded, flow_runs, log_count = prefect_records(since)

    # Each run generated its own password into its Secret (the same in both of its namespaces).
    passwords = []
    for run_id, namespaces in runs:
        secret_name = f"udn-rollout-{run_id}-credentials"
        pw = {password_of(kube, ns, secret_name) for ns in namespaces}
        assert len(pw) == 1
        passwords.append(pw.pop())
    assert passwords[0] != passwords[1], "the password is not random per run"

    # Everything a run leaves behind.
    corpus: dict[str, str] = dict(outputs)
    corpus["log records"] = "\n".join(capture_logs.lines)
    files = 0
    for run_id, _ in runs:
        for path in sorted((reports_root / run_id).rglob("*")):
            if path.is_file():
                corpus[str(path)] = path.read_bytes().decode("utf-8", "replace")
                files += 1
    corpus.update(recorded)
    # The scan must have had something to scan: reports, artifacts, logs and both runs' subflows.
    assert files >= 10, files
    assert any(k.startswith("artifact ") for k in corpus), "no Prefect artifacts recorded"
    assert flow_runs >= 10 and log_count > 0, (flow_runs, log_count)
    assert len(capture_logs.lines) > 50
    flow_logs = [ln for ln in capture_logs.lines if ln.startswith("prefect.flow_runs ")]
    assert any("CIDR overlap" in ln for ln in flow_logs) and any("VMs ready" in ln for ln in flow_logs)
    assert any(ln.startswith("tasks.console ") for ln in capture_logs.lines)  # console sessions logged at DEBUG
    assert "migration" in recorded["flow-run logs"] or any("migration" in v for v in outputs.values())

    for i, pw in enumerate(passwords):
        assert_absent(pw, f"console password of run {i + 1}", corpus)
    assert_absent(token, "kubeconfig token", corpus)

    # The VMs only reference the Secret; neither the VM nor the VMI objects carry the password.
    for (run_id, namespaces), pw in zip(runs, passwords, strict=True):
        for ns in namespaces:
            for r in (VM, VMI):
                kind = r.kind
                items, _ = kube.list(r, namespace=ns)
                assert items, f"no {kind} in {ns}"
                assert_absent(pw, f"password of {run_id}", {f"{kind}s in {ns}": json.dumps(items)})
                if kind == "VirtualMachine":
                    for vm in items:
                        volumes = json.dumps(vm["spec"]["template"]["spec"].get("volumes"))
                        assert f"udn-rollout-{run_id}-credentials" in volumes
    kube.close()


def test_encodings_find_a_secret_inside_encoded_text() -> None:
    """The scanner itself: a secret embedded at any offset of a base64 text is found."""
    secret = "Zq3xK9pLm2Wv7TbN"
    for prefix in ("", "a", "ab", "abc", "#cloud-config\npassword: "):
        blob = base64.b64encode((prefix + secret + "\nmore").encode()).decode()
        assert any(n in blob for n in encodings(secret)), prefix
    assert not any(n in base64.b64encode(b"password: something-else").decode() for n in encodings(secret))
