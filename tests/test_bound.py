"""The cluster's bound on a rollout (issue 20): each term by hand."""

from __future__ import annotations

import pytest

from tasks.bound import churn_bound, fanout_bound, kubevirt_rates, probes_bound, rollout_bound, start_rate


def test_start_rate_is_the_slower_of_virt_controller_and_all_handlers() -> None:
    assert start_rate(10, 200, 5) == pytest.approx(10 * 5 / 3)  # handlers bind: 16.7 VMs/s
    assert start_rate(100, 200, 5) == pytest.approx(200 / 6)  # virt-controller binds: 33.3 VMs/s


def test_fanout_probes_and_churn_terms() -> None:
    assert fanout_bound(1001, 12.0, 20.0) == pytest.approx(12.0 + 50.0)
    assert fanout_bound(0, 12.0, 20.0) == 0.0
    assert probes_bound({"a/vm-1": 8, "a/vm-2": 9}, count=3) == 18.0  # 9 probes × 2 s of pacing
    # 12 migrations of 4 s: 48 s of work over 5 slots = 9.6 s, but n1's 6 leave one at a time = 24 s
    assert churn_bound({"n1": [4.0] * 6, "n2": [4.0] * 6}, per_cluster=5, per_node=1) == 24.0
    assert churn_bound({"n1": [4.0, 30.0]}, per_cluster=5, per_node=5) == 30.0  # the longest one
    assert churn_bound({}, 5, 1) == 0.0


def test_rates_from_the_kubevirt_cr_and_its_version_defaults() -> None:
    assert kubevirt_rates(None) == (200.0, 5.0)
    assert kubevirt_rates({"status": {"observedKubeVirtVersion": "v1.7.0"}}) == (200.0, 50.0)
    cr = {
        "spec": {
            "configuration": {
                "controllerConfiguration": {"restClient": {"rateLimiter": {"tokenBucketRateLimiter": {"qps": 400}}}}
            }
        }
    }
    assert kubevirt_rates(cr) == (400.0, 5.0)


def test_rollout_bound_adds_the_runbook_steps() -> None:
    b = rollout_bound(
        vms=101, nodes=10, fastest_start_s=10.0, probes_per_source=[4, 4], ping_count=3,
        migrations_per_source_node={"n1": [3.0] * 10}, per_cluster=5, per_node=2,
    )  # fmt: skip
    assert b.fanout_s == pytest.approx(10.0 + 100 / (10 * 5 / 3))
    assert (b.probes_s, b.churn_s) == (8.0, 15.0)
    assert b.total_s == pytest.approx(b.fanout_s + 23.0)
    assert "fastest create→Ready 10.0s" in b.notes[1]


def test_a_cluster_that_beats_its_limits_has_no_bound(tmp_path, monkeypatch) -> None:
    """The simulated fast profile does not enforce KubeVirt's client limits: 60 VMs on 3 nodes come up in a
    second or two, well under the 12 s the limits would allow, so the run reports no bound and no ratio."""
    from flows.rollout import rollout
    from simcluster import ClusterConfig, SimCluster
    from tasks.kube import ClusterParams
    from tasks.spec import RolloutSpec

    monkeypatch.setenv("UDN_ROLLOUT_REPORTS", str(tmp_path / "reports"))
    spec = RolloutSpec.model_validate(
        {
            "runId": "bound-fast",
            "network": {"name": "udn-bound-fast", "topology": "Layer2", "subnets": [{"cidr": "10.242.0.0/16"}]},
            "namespaces": {"names": ["bound-fast-a"]},
            "vms": {"perNamespace": 60},
            "connectivity": {"mode": "off"},
        }
    )
    with SimCluster(config=ClusterConfig(nodes=3, profile="fast")) as sim:
        result = rollout(spec, ClusterParams(kubeconfig=str(sim.kubeconfig)), churn=False)
    assert result.bound is not None and not result.bound.applies, result.bound
    assert result.bound.fanout_s > 10  # 59 starts at 3 handlers × 5 QPS / 3 writes = 5 VMs/s
    assert "does not enforce them" in result.bound.notes[-1]
    figures = result.headline_figures()
    assert "over_bound" not in figures and figures["bound"]["applies"] is False
    assert "the cluster's bound" not in result.headline()
