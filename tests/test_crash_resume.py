"""Crash and resume (issue 9, item 2): `udn-rollout rollout` killed with SIGKILL — the whole process
group, no clean-up of any kind — at a point chosen by a seeded random generator during provisioning,
fan-out or churn (the test watches the cluster through its API to know when it is there). The same
command run again (same run id, in a fresh run) finishes with exit 0: every object the spec asks for exists exactly
once, nothing labelled with the run is left over (no canary, no half-done migration), and
`udn-rollout teardown` afterwards leaves nothing labelled with the run in any kind the run touches."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from run_census import CUDN, NAD, NS, SECRET, VM, VMI, VMIM, by_run, keys

from simcluster import ClusterConfig, SimCluster
from tasks.kube import ClusterTarget, Kube
from tasks.kube.resources import IPAMCLAIM
from tasks.spec import RolloutSpec, load_spec
from udn_rollout.cli import EXIT_FAILED, EXIT_OK, main

# The killed run is a real process (with its own ephemeral Prefect server, ~15-20 s each); the rerun
# and the teardown run the same command line in-process (`udn_rollout.cli.main`, on the session's
# Prefect test server) to keep the file within its CI budget.
pytestmark = [pytest.mark.crash, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SPECS = Path(__file__).resolve().parent.parent / "specs"
NODES = 4
NAMESPACES, PER_NAMESPACE = 2, 4
CHURN_COUNT = 3


CHURN_LABEL = "udn-rollout.io/churn"

# Seed → the step the kill lands in and the topology (each step and topology at least once); the
# seed's generator picks the exact point within the step.
SEEDS = {
    11: ("provision", "Layer2"),
    12: ("fanout", "Layer3"),
    13: ("churn", "Layer2"),
    14: ("churn", "Layer3"),
    15: ("fanout", "Layer2"),
}

_octets = itertools.count(120)


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimCluster]:
    # Isolated: the cluster lives in its own process, so killing the tool leaves it up, as a real one.
    with SimCluster(config=ClusterConfig(nodes=NODES, profile="fast"), isolated=True) as sim:
        yield sim


@pytest.fixture(scope="module")
def kube(cluster: SimCluster) -> Kube:
    return Kube(ClusterTarget(kubeconfig=str(cluster.kubeconfig)), qps=0)


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each CLI process starts its own ephemeral Prefect server; one PREFECT_HOME for the session
    means its database is created and migrated once, not once per process."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path_factory.getbasetemp() / "prefect-home-cli")}
    env.pop("PREFECT_API_URL", None)
    return env


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("udn-rollout")
    return [str(script)] if script.exists() else [sys.executable, "-m", "udn_rollout.cli"]


def make_spec(seed: int) -> RolloutSpec:
    uid = uuid.uuid4().hex[:5]
    base = "seed-l2.yaml" if SEEDS[seed][1] == "Layer2" else "seed-l3.yaml"
    names = ",".join(f"crash-{uid}-{i}" for i in range(NAMESPACES))
    return load_spec(
        SPECS / base,
        [
            f"network.name=net-crash-{uid}",
            f"network.subnets[0].cidr=10.{next(_octets)}.0.0/16",
            "namespaces.names={" + names + "}",
            f"vms.perNamespace={PER_NAMESPACE}",
            # paced like a busy cluster, so the fan-out lasts long enough to be cut in the middle
            "api.qps=20",
            "api.burst=3",
            "fanout.readyTimeoutSeconds=120",
            "connectivity.mode=sampled",
            "connectivity.peersPerVm=1",
            "connectivity.pingCount=1",
            "connectivity.pingTimeoutSeconds=1",
            f"churn.count={CHURN_COUNT}",
            "churn.maxParallel=1",  # one migration at a time: the churn lasts long enough to be cut
            "churn.timeoutSeconds=120",
        ],
        run_id=f"crash-{seed}-{uid}",
    )


@dataclass
class KillPoint:
    step: str
    what: str
    reached: Callable[[], bool]
    delay: float  # seconds after the trigger


def kill_point(seed: int, kube: Kube, spec: RolloutSpec) -> KillPoint:
    rng = random.Random(seed)
    step = SEEDS[seed][0]
    total = NAMESPACES * PER_NAMESPACE
    if step == "provision":  # after the first namespace appears: credentials, CUDN or its NADs are next
        delay = rng.uniform(0.0, 0.6)
        return KillPoint(step, "the first namespace", lambda: bool(by_run(kube, NS, spec)), delay)
    if step == "fanout":
        k = rng.randint(1, total - 2)
        return KillPoint(step, f"{k} VMs", lambda: len(by_run(kube, VM, spec)) >= k, rng.uniform(0.0, 0.3))
    delay = rng.uniform(0.0, 0.5)  # after the first migration of the run appears
    return KillPoint(step, "the first migration", lambda: bool(by_run(kube, VMIM, spec)), delay)


def kill_when(proc: subprocess.Popen[bytes], point: KillPoint, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    try:
        while not point.reached():
            if proc.poll() is not None:
                raise AssertionError(
                    f"the rollout ended ({proc.returncode}) before {point.what} appeared:\n{log.read_text()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{point.what} did not appear in {timeout}s:\n{log.read_text()}")
            time.sleep(0.05)
        time.sleep(point.delay)
        assert proc.poll() is None, f"the rollout ended before the kill ({point.step}):\n{log.read_text()}"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def census(kube: Kube, spec: RolloutSpec) -> dict[str, list[tuple[str, str]]]:
    """Everything that carries the run's label, plus what the run caused without labelling it
    (NADs rendered by OVN-K, IPAMClaims of Layer2 persistent IPs) in the run's namespaces."""
    out = {
        "Namespace": keys(by_run(kube, NS, spec)),
        "Secret": keys(by_run(kube, SECRET, spec)),
        "ClusterUserDefinedNetwork": keys(by_run(kube, CUDN, spec)),
        "VirtualMachine": keys(by_run(kube, VM, spec)),
        "VirtualMachineInstance": keys(by_run(kube, VMI, spec)),
        "VirtualMachineInstanceMigration": keys(by_run(kube, VMIM, spec)),
    }
    run_ns = set(spec.namespace_names()) | {f"{spec.run_id}-canary"}
    nads, _ = kube.list(NAD)
    out["NetworkAttachmentDefinition"] = keys([n for n in nads if n["metadata"]["namespace"] in run_ns])
    claims, _ = kube.list(IPAMCLAIM)
    out["IPAMClaim"] = keys([c for c in claims if c["metadata"]["namespace"] in run_ns])
    cudn = kube.get(CUDN, spec.network.name)
    out["ClusterUserDefinedNetwork (by name)"] = [("", spec.network.name)] if cudn is not None else []
    return out


def assert_exactly_the_spec(kube: Kube, spec: RolloutSpec) -> None:
    namespaces = sorted(spec.namespace_names())
    vms = sorted((r.namespace, r.name) for r in spec.vm_refs())
    have = census(kube, spec)
    assert have["Namespace"] == [("", n) for n in namespaces], "namespaces (the canary must be gone)"
    assert have["Secret"] == [(n, spec.credentials_secret_name()) for n in namespaces]
    assert have["ClusterUserDefinedNetwork"] == [("", spec.network.name)]
    assert have["NetworkAttachmentDefinition"] == [(n, spec.network.name) for n in namespaces]
    assert have["VirtualMachine"] == vms
    assert have["VirtualMachineInstance"] == vms
    for vm in by_run(kube, VM, spec):
        assert (vm.get("status") or {}).get("ready"), f"{keys([vm])} is not Ready"
    vmis = by_run(kube, VMI, spec)
    ips = [v["status"]["interfaces"][0]["ipAddress"] for v in vmis]
    assert len(set(ips)) == len(ips), "two VMs share an IP"
    if spec.network.topology == "Layer2" and spec.network.persistent_ips:
        claims = have["IPAMClaim"]
        assert len(claims) == len(vms) and {ns for ns, _ in claims} == set(namespaces), claims
    else:
        assert have["IPAMClaim"] == []
    # Migrations: the rerun's churn made exactly CHURN_COUNT, and every one of the run (the killed
    # churn's too) has finished; none is left Pending or Running.
    vmims = by_run(kube, VMIM, spec)
    for m in vmims:
        assert (m.get("status") or {}).get("phase") in ("Succeeded", "Failed"), (keys([m]), m.get("status"))
    per_churn: dict[str, int] = {}
    for m in vmims:
        label = m["metadata"]["labels"][CHURN_LABEL]
        per_churn[label] = per_churn.get(label, 0) + 1
    assert CHURN_COUNT in per_churn.values(), per_churn
    assert all(n <= CHURN_COUNT for n in per_churn.values()), per_churn


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_rollout_killed_then_rerun_completes_and_teardown_leaves_nothing(
    seed: int,
    cluster: SimCluster,
    kube: Kube,
    cli_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = make_spec(seed)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
    env = {**cli_env, "UDN_ROLLOUT_REPORTS": str(tmp_path / "reports")}
    args = ["-f", str(spec_file), "--kubeconfig", str(cluster.kubeconfig)]
    point = kill_point(seed, kube, spec)

    first_log = tmp_path / "first.log"
    with first_log.open("wb") as out:
        first = subprocess.Popen(
            [*_cli(), "rollout", *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        kill_when(first, point, first_log)
    time.sleep(0.3)  # a request still on the wire lands
    partial = {kind: len(objs) for kind, objs in census(kube, spec).items()}

    # The same command again, in this process (the killed one left nothing behind but the cluster's
    # objects; this process never knew it): it must resume, not duplicate.
    monkeypatch.setenv("UDN_ROLLOUT_REPORTS", env["UDN_ROLLOUT_REPORTS"])
    capsys.readouterr()
    code = main(["rollout", *args])
    said = capsys.readouterr()
    # Layer3 gives VMs no address (no DHCP for VMs on Layer3 primary networks): the resumed run completes
    # every step but its ping matrix fails with that cause, exit 1; Layer2 passes.
    layer3 = SEEDS[seed][1] == "Layer3"
    expected = EXIT_FAILED if layer3 else EXIT_OK
    assert code == expected, f"killed during {point.step} at {point.what} + {point.delay:.2f}s, partial {partial}\n" + (
        said.out + said.err
    )
    if layer3:
        assert "no IPv4 address" in said.out + said.err
    assert_exactly_the_spec(kube, spec)

    assert main(["teardown", *args]) == EXIT_OK
    left = {kind: objs for kind, objs in census(kube, spec).items() if objs}
    assert not left, f"left behind after teardown: {left}"
    print(
        f"\nseed {seed}: killed during {point.step} ({point.what} + {point.delay:.2f}s; "
        f"cluster then held {partial}); rerun exit {code}, teardown left nothing"
    )


def test_provision_cut_between_secrets_resumes_with_the_runs_one_password(kube: Kube) -> None:
    """The narrowest kill point, made deterministic: the first namespace's credentials Secret exists,
    the second's does not. The resumed provisioning must give the second the same password (the
    connectivity step logs in to every VM with the password of the first namespace's Secret)."""
    from tasks.connectivity import credentials_from_secret
    from tasks.provision import ProvisionResult, ensure, ensure_namespaces, generate_password, run_provision
    from tasks.render import render_secret

    spec = make_spec(15)
    password = generate_password()
    result = ProvisionResult()
    ensure_namespaces(kube, spec, result)
    first, *rest = spec.namespace_names()
    ensure(kube, render_secret(spec, first, password), spec, result)  # ...and here the process died

    run_provision(kube, spec, network_timeout=30)

    for ns in [first, *rest]:
        assert credentials_from_secret(kube, ns, spec.credentials_secret_name())[1] == password, ns
    for ns in spec.namespace_names():
        kube.delete(NS, ns)
    kube.delete(CUDN, spec.network.name)
