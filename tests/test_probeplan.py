"""Probe planner: coverage guarantees of the sampled plan, full mesh, isolation probes."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.probeplan import (
    Probe,
    ProbePlan,
    Target,
    VMEndpoint,
    complete_plan,
    group_by_source,
    plan_isolation,
    plan_probes,
    ready_peers,
    required_pairs,
)


def make_fleet(n: int, nodes: int, namespaces: int, seed: int, skew: float = 0.0) -> list[VMEndpoint]:
    """A fleet with VMs spread over nodes and namespaces; ``skew`` piles VMs onto the first groups."""
    rng = random.Random(seed)

    def group(count: int) -> int:
        if skew and rng.random() < skew:
            return 0
        return rng.randrange(count)

    return [
        VMEndpoint(
            namespace=f"ns-{group(namespaces)}",
            name=f"vm-{i}",
            node=f"node-{group(nodes)}",
            ip=f"192.168.{i // 250}.{i % 250 + 3}",
        )
        for i in range(n)
    ]


def check_sampled_properties(vms: list[VMEndpoint], plan: ProbePlan, k: int, size_bound: bool = True) -> None:
    """Independent check of every promise of the sampled plan."""
    keys = {v.key for v in vms}
    pairs = [(p.src.key, p.dst.key) for p in plan.probes]
    assert all(p.kind == "mesh" and p.expect == "reply" for p in plan.probes)
    assert all(s != d for s, d in pairs), "self-probe"
    assert len(set(pairs)) == len(pairs), "duplicate probe"
    assert all(s in keys and d in keys for s, d in pairs)

    want = min(k, len(vms) - 1)
    sent = dict.fromkeys(keys, 0)
    received = dict.fromkeys(keys, 0)
    for s, d in pairs:
        sent[s] += 1
        received[d] += 1
    assert min(sent.values()) >= want
    assert min(received.values()) >= want

    node_of = {v.key: v.node for v in vms}
    ns_of = {v.key: v.namespace for v in vms}
    node_need = _need(v.node for v in vms)
    ns_need = _need(v.namespace for v in vms)
    assert node_need <= {(node_of[s], node_of[d]) for s, d in pairs}
    assert ns_need <= {(ns_of[s], ns_of[d]) for s, d in pairs}

    if plan.mode == "sampled" and size_bound:
        # O(N·k + P): the rotation sends exactly k' per VM, the cover adds at most one probe per pair.
        assert len(pairs) <= len(vms) * want + len(node_need) + len(ns_need)

    cov = plan.coverage()
    assert cov["node_pairs_covered"] == cov["node_pairs_required"] == len(node_need)
    assert cov["namespace_pairs_covered"] == cov["namespace_pairs_required"] == len(ns_need)
    assert cov["min_sent"] >= want and cov["min_received"] >= want
    assert cov["mesh_probes"] == len(pairs)


def _need(groups) -> set[tuple[str, str]]:
    """Pairs to cover, computed independently of the module's helper."""
    counts: dict[str, int] = {}
    for g in groups:
        counts[g] = counts.get(g, 0) + 1
    out = set()
    for a, ca in counts.items():
        for b in counts:
            if a != b or ca > 1:
                out.add((a, b))
    return out


fleet_params = st.fixed_dictionaries(
    {
        "n": st.integers(2, 400),
        "nodes": st.integers(1, 20),
        "namespaces": st.integers(1, 15),
        "k": st.integers(1, 10),
        "fleet_seed": st.integers(0, 2**16),
        "skew": st.sampled_from([0.0, 0.0, 0.5, 0.9]),
        "seed": st.integers(0, 2**32),
    }
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(fleet_params)
def test_sampled_plan_coverage(params: dict) -> None:
    vms = make_fleet(params["n"], params["nodes"], params["namespaces"], params["fleet_seed"], params["skew"])
    plan = plan_probes(vms, mode="sampled", k=params["k"], seed=params["seed"])
    assert plan.mode == "sampled"
    check_sampled_properties(vms, plan, params["k"])


@SETTINGS
@given(fleet_params)
def test_auto_plan_coverage_and_mode(params: dict) -> None:
    vms = make_fleet(params["n"], params["nodes"], params["namespaces"], params["fleet_seed"], params["skew"])
    plan = plan_probes(vms, k=params["k"], seed=params["seed"], full_mesh_threshold=50)
    n = len(vms)
    if n <= 50:
        assert plan.mode == "full"
        assert len(plan.probes) == n * (n - 1)
    else:
        assert plan.mode == "sampled"
    check_sampled_properties(vms, plan, params["k"])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), min_size=2, max_size=40),
    st.integers(1, 10),
    st.integers(0, 1000),
)
def test_sampled_coverage_small_explicit_fleets(layout: list[tuple[int, int]], k: int, seed: int) -> None:
    """Small fleets drawn element by element, so hypothesis shrinks a failure to a readable fleet."""
    vms = [VMEndpoint(f"ns{ns}", f"vm{i}", f"n{node}", f"10.0.0.{i + 3}") for i, (node, ns) in enumerate(layout)]
    check_sampled_properties(vms, plan_probes(vms, mode="sampled", k=k, seed=seed), k)


@settings(max_examples=40, deadline=None)
@given(fleet_params)
def test_deterministic_per_seed_and_independent_of_input_order(params: dict) -> None:
    vms = make_fleet(params["n"], params["nodes"], params["namespaces"], params["fleet_seed"], params["skew"])
    a = plan_probes(vms, mode="sampled", k=params["k"], seed=params["seed"])
    b = plan_probes(vms, mode="sampled", k=params["k"], seed=params["seed"])
    shuffled = list(vms)
    random.Random(7).shuffle(shuffled)
    c = plan_probes(shuffled, mode="sampled", k=params["k"], seed=params["seed"])
    assert a.probes == b.probes == c.probes


def test_different_seeds_give_different_samples() -> None:
    vms = make_fleet(300, 10, 5, seed=3)
    plans = {tuple((p.src.key, p.dst.key) for p in plan_probes(vms, k=4, seed=s).probes) for s in range(5)}
    assert len(plans) > 1


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 60), st.integers(1, 5), st.integers(1, 4))
def test_full_mesh_is_every_ordered_pair(n: int, nodes: int, namespaces: int) -> None:
    vms = make_fleet(n, nodes, namespaces, seed=n)
    plan = plan_probes(vms, mode="full")
    assert plan.mode == "full"
    pairs = {(p.src.key, p.dst.key) for p in plan.probes}
    assert len(plan.probes) == len(pairs) == n * (n - 1)
    assert all(s != d for s, d in pairs)


def test_threshold_boundary() -> None:
    vms = make_fleet(51, 3, 2, seed=1)
    assert plan_probes(vms[:50]).mode == "full"
    assert plan_probes(vms).mode == "sampled"
    assert plan_probes(vms, full_mesh_threshold=51).mode == "full"
    assert plan_probes(vms[:10], mode="sampled", k=3).mode == "sampled"


def test_sampled_with_large_k_is_full_mesh() -> None:
    vms = make_fleet(12, 3, 2, seed=2)
    plan = plan_probes(vms, mode="sampled", k=50)
    assert plan.k == 11
    assert len(plan.probes) == 12 * 11


def test_single_and_empty_fleet() -> None:
    one = [VMEndpoint("a", "x", "n1", "10.0.0.3")]
    for mode in ("auto", "full", "sampled"):
        assert plan_probes(one, mode=mode).probes == []
        assert plan_probes([], mode=mode).probes == []
    assert plan_probes(one, mode="sampled").coverage()["node_pairs_required"] == 0


def test_seed_fleet_two_namespaces_full_mesh() -> None:
    """The runbook's fleet: two VMs in each of namespace-7 and namespace-8 on two workers."""
    vms = [
        VMEndpoint("namespace-7", "rhel8-vm-1", "worker-0", "192.168.0.3"),
        VMEndpoint("namespace-7", "rhel8-vm-2", "worker-1", "192.168.1.3"),
        VMEndpoint("namespace-8", "rhel8-vm-1", "worker-0", "192.168.0.4"),
        VMEndpoint("namespace-8", "rhel8-vm-2", "worker-1", "192.168.1.4"),
    ]
    plan = plan_probes(vms)
    cov = plan.coverage()
    assert cov["probes"] == 12
    assert cov["node_pairs_required"] == cov["node_pairs_covered"] == 4
    assert cov["namespace_pairs_required"] == cov["namespace_pairs_covered"] == 4


def test_required_pairs_skips_singleton_self_pairs() -> None:
    assert required_pairs(["a", "a", "b"]) == {("a", "a"), ("a", "b"), ("b", "a")}
    assert required_pairs([]) == set()


def test_rejects_bad_input() -> None:
    dup = [VMEndpoint("a", "x", "n", "10.0.0.3"), VMEndpoint("a", "x", "m", "10.0.0.4")]
    with pytest.raises(ValueError, match="listed twice"):
        plan_probes(dup)
    with pytest.raises(ValueError, match="mode"):
        plan_probes([], mode="mesh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k"):
        plan_probes([], k=-1)


def test_group_by_source_keeps_every_probe_once() -> None:
    vms = make_fleet(120, 6, 4, seed=5)
    plan = plan_probes(vms, k=5, seed=9)
    groups = group_by_source(plan)
    assert set(groups) == {v.key for v in vms}
    assert sum(len(g) for g in groups.values()) == len(plan.probes)
    for key, probes in groups.items():
        assert all(p.src.key == key for p in probes)
        assert len(probes) >= 5


def test_isolation_plan_expectations() -> None:
    vms = make_fleet(30, 3, 3, seed=4)
    targets = [
        Target("10.200.0.5", "canary", namespace="udn-rollout-canary", node="node-1"),
        Target("10.128.2.14", "default-network pod"),
        Target("10.0.0.11", "node address"),
    ]
    plan = plan_isolation(vms, targets, per_source=2, seed=1)
    assert plan.mode == "isolation"
    assert len(plan.probes) == 60
    assert all(p.kind == "isolation" and p.expect == "silent" for p in plan.probes)
    assert {p.dst_ip for p in plan.probes} == {t.ip for t in targets}
    for probes in group_by_source(plan).values():
        assert len(probes) == 2 and len({p.dst_ip for p in probes}) == 2
    assert plan.probes == plan_isolation(list(reversed(vms)), list(reversed(targets)), 2, seed=1).probes


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 80), st.integers(1, 12), st.integers(0, 5), st.integers(0, 100))
def test_isolation_plan_properties(n_src: int, n_targets: int, per_source: int, seed: int) -> None:
    vms = make_fleet(n_src, 3, 2, seed=n_src)
    targets = [Target(f"10.129.{i}.9", f"t{i}") for i in range(n_targets)]
    plan = plan_isolation(vms, targets, per_source=per_source, seed=seed)
    m = min(per_source, n_targets)
    groups = group_by_source(plan)
    assert all(len(groups.get(v.key, [])) == m for v in vms)
    assert all(len({p.dst_ip for p in g}) == len(g) for g in groups.values())
    assert all(p.expect == "silent" and p.kind == "isolation" for p in plan.probes)
    if n_src * per_source >= n_targets:
        assert {p.dst_ip for p in plan.probes} == {t.ip for t in targets}


def test_isolation_skips_own_address_and_handles_no_targets() -> None:
    canary = VMEndpoint("outside", "canary", "node-0", "10.0.0.3")
    vms = [canary, VMEndpoint("inside", "vm", "node-1", "10.0.0.4")]
    plan = plan_isolation(vms, [canary], per_source=1)
    assert [(p.src.name, p.dst_ip) for p in plan.probes] == [("vm", "10.0.0.3")]
    assert plan_isolation(vms, [], per_source=3).probes == []


def test_extended_plan_counts_isolation_separately() -> None:
    vms = make_fleet(80, 4, 3, seed=6)
    mesh = plan_probes(vms, k=3)
    iso = plan_isolation(vms, [Target("10.200.0.5", "canary")])
    both = mesh.extended(iso)
    cov = both.coverage()
    assert cov["mesh_probes"] == len(mesh.probes)
    assert cov["isolation_probes"] == 80
    assert cov["probes"] == len(mesh.probes) + 80
    assert both.mode == "sampled"
    assert isinstance(both.probes[-1], Probe)


def test_ten_thousand_vms_plan_completes() -> None:
    """Scale smoke test; the time is printed, not asserted (the bench owns the budget)."""
    vms = make_fleet(10_000, 20, 15, seed=11)
    t0 = time.perf_counter()
    plan = plan_probes(vms, k=8, seed=0)
    elapsed = time.perf_counter() - t0
    print(f"planned {len(plan.probes)} probes for 10,000 VMs in {elapsed * 1000:.0f} ms")
    assert plan.mode == "sampled"
    assert len(plan.probes) >= 80_000
    cov = plan.coverage()
    assert cov["min_sent"] >= 8 and cov["min_received"] >= 8
    assert cov["node_pairs_covered"] == cov["node_pairs_required"]


# ---- probing while the fleet comes up (issue 20) -------------------------------------------------
def early_probes(vms: list[VMEndpoint], k: int, ready_seed: int, upto: float = 1.0) -> list[Probe]:
    """What the rollout runs while VMs become Ready (in a random order): each VM, as it becomes Ready,
    pings the k VMs Ready just before it; ``upto`` is the share of the fleet Ready by then."""
    order = list(vms)
    random.Random(ready_seed).shuffle(order)
    order = order[: int(len(order) * upto)]
    return [Probe(order[i], p) for i in range(len(order)) for p in ready_peers(order[: i + 1], k)]


def test_ready_peers_are_the_k_ready_just_before_nearest_first() -> None:
    order = make_fleet(5, 2, 2, seed=1)
    assert ready_peers(order[:1], 3) == []
    assert ready_peers(order, 3) == [order[3], order[2], order[1]]
    assert ready_peers(order[:3], 8) == [order[1], order[0]]
    with pytest.raises(ValueError):
        ready_peers(order, -1)


@SETTINGS
@given(fleet_params, st.integers(0, 2**16), st.sampled_from([0.0, 0.3, 1.0]))
def test_complete_plan_keeps_every_guarantee_over_what_already_ran(params: dict, ready_seed: int, upto: float) -> None:
    vms = make_fleet(params["n"], params["nodes"], params["namespaces"], params["fleet_seed"], params["skew"])
    k = params["k"]
    done = early_probes(vms, k, ready_seed, upto)
    plan = complete_plan(vms, done, k=k, seed=params["seed"])
    check_sampled_properties(vms, plan, k, size_bound=False)  # together: every promise of the sampled plan
    assert plan.probes[: len(done)] == done  # what ran is kept, in order, and comes first
    # each new probe mends a shortfall (a VM sending or receiving fewer than k) or covers a pair
    want = min(k, len(vms) - 1)
    sent, received = Counter(p.src.key for p in done), Counter(p.dst.key for p in done)  # type: ignore[union-attr]
    shortfall = sum(max(0, want - sent[v.key]) + max(0, want - received[v.key]) for v in vms)
    pairs = len(_need(v.node for v in vms)) + len(_need(v.namespace for v in vms))
    assert len(plan.probes) - len(done) <= shortfall + pairs


def test_complete_plan_after_a_whole_ready_order_needs_few_new_sessions() -> None:
    """Each new source is one more console session after the fan-out: with the whole fleet probed as it
    came up, the fill-up is the first k VMs' sends, the last k VMs' receives and the pair covers."""
    vms = make_fleet(1_000, 10, 10, seed=5)
    done = early_probes(vms, 8, ready_seed=2)
    plan = complete_plan(vms, done, k=8, seed=0)
    new = plan.probes[len(done) :]
    new_sources = {p.src.key for p in new}
    check_sampled_properties(vms, plan, 8)
    assert len(new_sources) <= 8 + 100 + 100  # first k senders, at most one per node and namespace pair
    assert len(new) < len(done) // 10


def test_complete_plan_drops_probes_of_vms_no_longer_in_the_fleet() -> None:
    vms = make_fleet(30, 3, 3, seed=9)
    done = early_probes(vms, 4, ready_seed=1)
    gone = vms[0]
    plan = complete_plan(vms[1:], done, k=4, seed=0)
    assert all(gone.key not in (p.src.key, p.dst.key) for p in plan.probes)
    check_sampled_properties(vms[1:], plan, 4)
