"""The tool's reachability verdicts agree with an independent console check of the same VMs (issue 15).

A rollout without churn runs the ping step through the tool's own code, on Layer2, on Layer3 as upstream
behaves (no DHCP for VMs) and on Layer3 with guests that configure their VMI's address themselves (the
simulated cluster's named option). Then, apart from the tool, each source VM is logged into over its
serial console (the test's own WebSocket client, tests/test_sim_fidelity.py), its addresses read with
`ip -j addr` and every target it probed pinged once more. The reports' rows (connectivity.csv,
guests.csv) must say what that second look sees: the guest's addresses, and reply or no reply per pair.
"""

from __future__ import annotations

import base64
import csv
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_sim_fidelity import PROMPT, Cluster, Console

from flows.rollout import rollout
from simcluster import ClusterConfig, SimCluster
from tasks.kube import ClusterParams
from tasks.outcome import RolloutFailed
from tasks.spec import RolloutSpec

CASES = {
    "Layer2": ("Layer2", {}),
    "Layer3": ("Layer3", {}),
    "Layer3-static": ("Layer3", {"layer3GuestAddressing": "static"}),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, SimCluster]]:
    topology, options = CASES[request.param]
    with SimCluster(config=ClusterConfig(nodes=3, profile="fast"), options=options) as sim:
        yield request.param, topology, sim


def _spec(topology: str) -> RolloutSpec:
    run = f"agree-{uuid.uuid4().hex[:5]}"
    subnet: dict[str, Any] = {"cidr": "10.241.0.0/16"}
    if topology == "Layer3":
        subnet["hostSubnet"] = 24
    return RolloutSpec.model_validate(
        {
            "runId": run,
            "network": {"name": f"udn-{run}", "topology": topology, "subnets": [subnet]},
            "namespaces": {"names": [f"{run}-a", f"{run}-b"]},
            "vms": {"perNamespace": 2},
            "connectivity": {"mode": "full", "pingCount": 2, "pingTimeoutSeconds": 2, "isolationCanary": False},
        }
    )


def _login(cl: Cluster, ns: str, vm: str, user: str, password: str) -> Console:
    con = Console(cl, ns, vm)
    con.send("\n")
    for _ in range(10):
        got = con.expect(rf"({re.escape(vm)} login: |Password:|{PROMPT})").group(1)
        if got.endswith("login: "):
            con.send(user + "\n")
        elif got == "Password:":
            con.send(password + "\n")
        else:
            return con
    raise AssertionError(f"no shell prompt on {ns}/{vm}")


def _credentials(cl: Cluster, spec: RolloutSpec, ns: str) -> tuple[str, str]:
    """The console login the run's cloud-init Secret sets, read with the official client."""
    secret = cl.core.read_namespaced_secret(spec.credentials_secret_name(), ns)
    userdata = yaml.safe_load(base64.b64decode(secret.data["userdata"]).decode())
    return userdata.get("user", "fedora"), userdata["password"]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_reachability_verdicts_agree_with_an_independent_console_check(
    case: tuple[str, str, SimCluster], reports_root: Path
) -> None:
    name, topology, sim = case
    spec = _spec(topology)
    try:
        rollout(spec, ClusterParams(kubeconfig=str(sim.kubeconfig)), churn=False)
        failed = False
    except RolloutFailed:
        failed = True
    run_dir = reports_root / spec.run_id
    probes = [p for p in _rows(run_dir / "connectivity.csv") if p["kind"] == "mesh"]
    guests = {(g["namespace"], g["vm"]): g for g in _rows(run_dir / "guests.csv")}
    assert len(probes) == 4 * 3 and len(guests) == 4, (len(probes), sorted(guests))

    cl = Cluster(sim)
    agree = 0
    for src in sorted({(p["src_namespace"], p["src_vm"]) for p in probes}):
        with _login(cl, *src, *_credentials(cl, spec, src[0])) as con:
            held = con.addresses()
            assert guests[src]["guest_ips"].split() == held, (src, guests[src], held)
            for p in (p for p in probes if (p["src_namespace"], p["src_vm"]) == src):
                out, rc = con.run(f"ping -c 1 -W 2 -q {p['dst_ip']}")
                replied_now = rc == 0
                replied_then = int(p["received"]) > 0
                assert replied_now == replied_then, (name, p, out)
                agree += 1
    assert agree == len(probes)

    # what upstream decides, per case (simcluster/FIDELITY.md rows 13-15)
    replied = sum(int(p["received"]) > 0 for p in probes)
    if name == "Layer3":
        assert replied == 0 and failed, "a Layer3 guest gets no DHCP answer, so no address to ping from"
        assert all(g["guest_ips"] == "" for g in guests.values())
        assert all("no IPv4 address" in p["cause"] for p in probes), {p["cause"] for p in probes}
    else:
        assert replied == len(probes) and not failed
        assert all(g["guest_ips"] == g["vmi_ips"] for g in guests.values()), guests
