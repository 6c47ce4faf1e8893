"""Probing while the fleet comes up (issue 20): a rollout with a sampled plan probes each VM as it becomes
Ready, alongside the fan-out, and the ping step completes the plan with a few sessions — the sampled
plan's guarantees hold over the whole, every guest is looked at once, every VM pings the canary once.
Run on a simulated cluster through the rollout flow; the planner's guarantees are checked
exhaustively in tests/test_probeplan.py."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.rollout import rollout
from simcluster import ClusterConfig, SimCluster
from tasks.kube import ClusterParams
from tasks.spec import RolloutSpec
from tasks.spec.model import ConnectivitySpec

_octets = itertools.count(60)


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimCluster]:
    with SimCluster(config=ClusterConfig(nodes=3, profile="fast")) as sim:
        yield sim


def make_spec(per_namespace: int, **connectivity: object) -> RolloutSpec:
    """A 2-namespace Layer2 run with a sampled plan (k = 4), probing while the fleet comes up unless told."""
    uid = uuid.uuid4().hex[:6]
    return RolloutSpec.model_validate(
        {
            "runId": f"early-{uid}",
            "network": {
                "name": f"udn-early-{uid}",
                "topology": "Layer2",
                "subnets": [{"cidr": f"10.{next(_octets)}.0.0/16"}],
            },
            "namespaces": {"names": [f"early-{uid}-a", f"early-{uid}-b"]},
            "vms": {"perNamespace": per_namespace},
            "connectivity": {"mode": "sampled", "peersPerVm": 4, "probeWhileFanningOut": True, **connectivity},
        }
    )


def test_rollout_probes_vms_as_they_become_ready_and_completes_the_plan(
    cluster: SimCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UDN_ROLLOUT_REPORTS", str(tmp_path / "reports"))
    spec = make_spec(30)
    result = rollout(spec, ClusterParams(kubeconfig=str(cluster.kubeconfig)), churn=False)
    conn = result.connectivity
    assert conn is not None and result.ok(), result.failed_steps
    assert not conn.failing
    early, later = conn.results[: conn.early_probes], conn.results[conn.early_probes :]
    # most of the matrix ran alongside the fan-out; the completion needs few sessions
    assert len(early) > 3 * len(later) > 0, (len(early), len(later))
    later_sources = {(r.src_namespace, r.src_vm) for r in later}
    assert len(later_sources) < 20, later_sources
    # the sampled plan's guarantees over the whole (k = 4)
    cov = conn.coverage
    assert cov["vms"] == 60 and cov["min_sent"] >= 4 and cov["min_received"] >= 4, cov
    assert cov["node_pairs_covered"] == cov["node_pairs_required"] > 0, cov
    assert cov["namespace_pairs_covered"] == cov["namespace_pairs_required"] == 4, cov
    assert cov["early_probes"] == len(early)
    mesh = [(r.src_namespace, r.src_vm, r.dst_namespace, r.dst_vm) for r in conn.results if r.kind == "mesh"]
    assert len(mesh) == len(set(mesh)), "a pair probed twice"
    # every guest looked at once, every VM pings the canary exactly once
    assert len(conn.guests) == 60 and all(g.looked for g in conn.guests)
    iso = Counter((r.src_namespace, r.src_vm) for r in conn.results if r.kind == "isolation")
    assert len(iso) == 60 and set(iso.values()) == {1}, iso
    assert "while the fleet came up" in conn.headline()


def test_probing_after_the_fan_out_by_default_and_when_the_spec_says_so(
    cluster: SimCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UDN_ROLLOUT_REPORTS", str(tmp_path / "reports"))
    assert ConnectivitySpec().probe_while_fanning_out is False  # off unless asked for
    spec = make_spec(30, probeWhileFanningOut=False, isolationCanary=False)
    result = rollout(spec, ClusterParams(kubeconfig=str(cluster.kubeconfig)), churn=False)
    conn = result.connectivity
    assert conn is not None and result.ok(), result.failed_steps
    assert conn.early_probes == 0 and "early_probes" not in conn.coverage
    assert conn.coverage["min_sent"] >= 4 and len(conn.guests) == 60
