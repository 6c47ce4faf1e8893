"""Report tables and files from synthetic records: 100 VMs on 4 nodes in 5 namespaces, probes with loss
between exactly one node pair, and an isolation target that leaks."""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks import artifacts, reports
from tasks.capacity import NodeInfo, layer2_capacity, layer3_capacity, migration_headroom
from tasks.model import Check, ChurnRow, ProbeResult, StepSummary, VMRecord
from tasks.reports import RunParts

T0 = 1_700_000_000.0
NODES = [f"node-{i}" for i in range(1, 5)]
NAMESPACES = [f"ns-{i}" for i in range(1, 6)]
LOSSY = ("node-2", "node-3")  # packets from node-2 to node-3 get lost
CANARY_IP, LEAKY_IP, LEAKER = "10.99.0.5", "10.128.0.7", ("ns-3", "vm-40")


def make_fleet() -> list[VMRecord]:
    rng = random.Random(7)
    out = []
    for i in range(100):
        created = T0 + i * 0.05
        scheduled = created + rng.uniform(0.2, 2.0)
        running: float | None = scheduled + rng.uniform(1.0, 5.0)
        ready: float | None = running + rng.uniform(0.5, 3.0)
        state = {"phase": "Running", "ready": True, "reason": ""}
        if i % 17 == 0:
            ready = None
            state = {"phase": "Running", "ready": False, "reason": "guest agent not connected"}
        if i % 23 == 5:
            running = ready = None
            state = {"phase": "Scheduled", "ready": False, "reason": "node subnet full"}
        out.append(
            VMRecord(
                namespace=NAMESPACES[i // 20],
                name=f"vm-{i}",
                node=NODES[i % 4],
                ip=f"10.0.{i % 4}.{i + 3}",
                created=None if i == 99 else created,  # an adopted VM whose creation we did not see
                scheduled=scheduled,
                running=running,
                ready_at=ready,
                adopted=i == 99,
                **state,
            )
        )
    return out


def make_probes(fleet: list[VMRecord]) -> list[ProbeResult]:
    out = []
    for i, s in enumerate(fleet):
        for j in range(10):
            d = fleet[(i + 1 + j * 7) % len(fleet)]
            if (s.node, d.node) == LOSSY:
                rx = (i // 4) % 2  # half the sources get one reply of three, the rest none
                extra = {"rtt_avg_ms": 1.5} if rx else {}
                outcome = "reply" if rx else "timeout"
            else:
                rx, outcome = 3, "reply"
                extra = {"rtt_min_ms": 0.2, "rtt_avg_ms": 0.3 + (i % 5) * 0.1, "rtt_max_ms": 0.9}
            out.append(
                ProbeResult(
                    s.namespace, s.name, s.node, d.ip, d.namespace, d.name, d.node,
                    transmitted=3, received=rx, loss_pct=100 * (3 - rx) / 3, outcome=outcome,
                    exit_code=0 if rx else 1, **extra,
                )
            )  # fmt: skip
        if i % 10 == 0:
            out.append(
                ProbeResult(
                    s.namespace, s.name, s.node, CANARY_IP, "udn-canary", "canary", "node-1",
                    kind="isolation", expect="silent", transmitted=3, received=0, outcome="timeout", exit_code=1,
                )
            )  # fmt: skip
            leak = (s.namespace, s.name) == LEAKER
            out.append(
                ProbeResult(
                    s.namespace, s.name, s.node, LEAKY_IP, kind="isolation", expect="silent",
                    transmitted=3, received=3 if leak else 0, loss_pct=0.0 if leak else 100.0,
                    rtt_avg_ms=0.5 if leak else None, outcome="reply" if leak else "timeout",
                )
            )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def fleet() -> list[VMRecord]:
    return make_fleet()


@pytest.fixture(scope="module")
def probes(fleet: list[VMRecord]) -> list[ProbeResult]:
    return make_probes(fleet)


CHURN = [
    ChurnRow("ns-1", "vm-0", "node-1", "node-2", "10.0.0.3", "10.0.1.9", "Succeeded", 4.0),
    ChurnRow("ns-1", "vm-1", "node-2", "node-2", "10.0.1.4", "10.0.1.4", "Failed", 1.0, "target pod failed"),
    ChurnRow("ns-1", "vm-2", "node-3", "node-1", "10.0.2.5", "10.0.0.5", "Succeeded", 6.0, "", "ns-2/vm-30"),
    ChurnRow("ns-2", "vm-3", "node-1", "node-2", "10.0.0.6", "10.0.1.7", "Succeeded", 5.0),
]


# ---------------------------------------------------------------------------------------------- latency


def test_latency_quantiles_match_numpy_and_exclude_missing_per_row(fleet):
    q = reports.latency_quantiles(fleet)
    assert list(q.index) == ["VMIScheduled", "VMIRunning", "VMReady"]
    assert list(q.columns) == ["P50", "P95", "P99", "max", "avg", "count"]
    for metric, attr in [("VMIScheduled", "scheduled"), ("VMIRunning", "running"), ("VMReady", "ready_at")]:
        vals = np.array(
            [(getattr(r, attr) - r.created) * 1000 for r in fleet if r.created and getattr(r, attr) is not None]
        )
        assert q.at[metric, "count"] == len(vals)
        np.testing.assert_allclose(
            q.loc[metric, ["P50", "P95", "P99"]].to_numpy(float), np.percentile(vals, [50, 95, 99])
        )
        assert q.at[metric, "max"] == pytest.approx(vals.max())
        assert q.at[metric, "avg"] == pytest.approx(vals.mean())
    # vm-99 has no creation time: out of every row; VMs without running/ready only out of those rows
    assert q.at["VMIScheduled", "count"] == 99
    assert q.at["VMIRunning", "count"] == 99 - sum(1 for i in range(99) if i % 23 == 5)
    assert q.at["VMReady", "count"] < q.at["VMIRunning", "count"]


def test_latency_quantiles_empty_row_is_nan():
    q = reports.latency_quantiles([VMRecord("a", "b", created=T0, scheduled=T0 + 1)])
    assert q.at["VMIScheduled", "P50"] == pytest.approx(1000.0)
    assert q.at["VMReady", "count"] == 0 and math.isnan(q.at["VMReady", "P99"])


# ---------------------------------------------------------------------------------------------- inventory


def test_inventory_frame_iso_times_and_latencies(fleet):
    df = reports.inventory_frame(fleet)
    assert list(df.columns) == reports.INVENTORY_COLUMNS
    assert len(df) == 100
    row = df.iloc[1]
    assert row["created"].endswith("Z") and len(row["created"]) == len("2023-11-14T22:13:20.050Z")
    assert row["created"] == "2023-11-14T22:13:20.050Z"
    assert row["scheduled_ms"] == pytest.approx((fleet[1].scheduled - fleet[1].created) * 1000, abs=1e-3)
    assert df.iloc[99]["created"] == "" and math.isnan(df.iloc[99]["ready_ms"])


def test_inventory_csv_round_trip(tmp_path, fleet):
    path = reports.write_inventory_csv(fleet, tmp_path / "inventory.csv")
    back = reports.read_inventory_csv(path)
    assert len(back) == len(fleet)
    for a, b in zip(fleet, back, strict=True):
        assert (a.namespace, a.name, a.node, a.ip, a.phase, a.ready, a.reason, a.adopted) == (
            b.namespace, b.name, b.node, b.ip, b.phase, b.ready, b.reason, b.adopted,
        )  # fmt: skip
        for attr in ("created", "scheduled", "running", "ready_at"):
            x, y = getattr(a, attr), getattr(b, attr)
            assert (x is None) == (y is None)
            if x is not None:
                assert y == pytest.approx(x, abs=0.0006)  # millisecond resolution
    # from the first round trip on, the CSV is a fixed point (latencies were computed at full precision)
    again, third = tmp_path / "again.csv", tmp_path / "third.csv"
    reports.write_inventory_csv(back, again)
    reports.write_inventory_csv(reports.read_inventory_csv(again), third)
    assert third.read_text() == again.read_text()


def test_provisioning_markdown_key_figures(fleet):
    q = reports.latency_quantiles(fleet)
    problems = [r for r in fleet if not r.ready]
    md = reports.provisioning_markdown(
        {"topology": "Layer2", "qps": 50, "burst": 100},
        fleet,
        q,
        problems,
        {"wall_s": 12.5, "create_rate_per_s": 40.0},
    )
    ready = sum(r.ready for r in fleet)
    assert f"| VMs ready / total | {ready} / 100 |" in md
    assert "| Wall time (s) | 12.5 |" in md
    assert "| Create rate (VMs/s) | 40.0 against api.qps 50 |" in md
    assert f"| VMReady | {q.at['VMReady', 'P50']:.1f} |" in md
    assert "| node-1 | 25 |" in md
    assert f"## Not ready ({len(problems)})" in md
    assert "| ns-1 | vm-5 | Scheduled | node-2 | node subnet full |" in md
    assert "| burst | 100 |" in md


def test_provisioning_rate_derived_from_creation_times_without_figure(fleet):
    md = reports.provisioning_markdown({"qps": 20}, fleet[:11], reports.latency_quantiles(fleet[:11]), [], {})
    assert "20.0 (from creation times) against api.qps 20" in md
    assert "Every VM is ready." in md
    figures = {"wall_s": 2.0, "create_rate_per_s": 19.5, "api_requests": 321}
    md = reports.provisioning_markdown(
        {"qps": 10, "burst": 100}, fleet[:11], reports.latency_quantiles(fleet[:11]), [], figures
    )
    assert "| Create rate (VMs/s) | 19.5 against api.qps 10 (the first 100 requests (api.burst) go at once" in md
    assert "| api_requests | 321 |" in md


# ---------------------------------------------------------------------------------------------- connectivity


def test_matrix_by_node_shows_loss_in_exactly_the_lossy_pair(probes):
    m = reports.matrix(probes, by="node", value="loss")
    assert list(m.index) == NODES and list(m.columns) == NODES
    lossy = [p for p in probes if p.kind == "mesh" and (p.src_node, p.dst_node) == LOSSY]
    tx, rx = sum(p.transmitted for p in lossy), sum(p.received for p in lossy)
    assert m.at[LOSSY] == pytest.approx(100 * (tx - rx) / tx)
    assert 0 < m.at[LOSSY] < 100
    others = m.to_numpy().copy()
    others[NODES.index(LOSSY[0]), NODES.index(LOSSY[1])] = 0
    assert np.nansum(others) == 0


def test_matrix_by_namespace_and_rtt_median(probes):
    loss = reports.matrix(probes, by="namespace")
    assert list(loss.index) == NAMESPACES
    for s in NAMESPACES:
        for d in NAMESPACES:
            cell = [p for p in probes if p.kind == "mesh" and p.src_namespace == s and p.dst_namespace == d]
            tx, rx = sum(p.transmitted for p in cell), sum(p.received for p in cell)
            assert loss.at[s, d] == pytest.approx(100 * (tx - rx) / tx)
    rtt = reports.matrix(probes, by="node", value="rtt")
    lossy = [p.rtt_avg_ms for p in probes if (p.src_node, p.dst_node) == LOSSY and p.received]
    assert rtt.at[LOSSY] == pytest.approx(np.median(lossy))
    other = [p.rtt_avg_ms for p in probes if p.kind == "mesh" and (p.src_node, p.dst_node) == ("node-1", "node-4")]
    assert rtt.at["node-1", "node-4"] == pytest.approx(np.median(other))
    with pytest.raises(ValueError, match="by must be"):
        reports.matrix(probes, by="pod")  # type: ignore[arg-type]


def test_matrix_cells_not_probed_or_errors_only_are_nan():
    a = ProbeResult("n1", "a", "x", "10.0.0.2", "n2", "b", "y", outcome="error", error="login failed")
    m = reports.matrix([a], by="node")
    assert list(m.index) == ["x", "y"]
    assert m.isna().all().all()  # errors only: no packet sent; the rest not probed


def test_failing_pairs_are_exactly_the_silent_probes_of_the_lossy_pair(probes):
    fp = reports.failing_pairs(probes)
    expected = [p for p in probes if p.kind == "mesh" and p.received == 0]
    assert len(fp) == len(expected) > 0
    assert set(zip(fp.src_node, fp.dst_node, strict=True)) == {LOSSY}
    assert (fp.outcome == "timeout").all()
    assert list(fp.columns)[:3] == ["src_namespace", "src_vm", "src_node"]


def test_isolation_verdicts(probes):
    iso = reports.isolation_verdicts(probes).set_index("target_ip")
    assert iso.at[CANARY_IP, "verdict"] == "silent as required"
    assert iso.at[CANARY_IP, "target_namespace"] == "udn-canary"
    assert iso.at[LEAKY_IP, "verdict"] == "LEAK"
    assert iso.at[LEAKY_IP, "replied"] == 1 and iso.at[LEAKY_IP, "probes"] == 10
    assert iso.at[LEAKY_IP, "answered_sources"] == "ns-3/vm-40"
    errs = [ProbeResult("a", "b", "n", "10.9.9.9", kind="isolation", expect="silent", outcome="error")]
    assert reports.isolation_verdicts(errs).iloc[0]["verdict"].startswith("inconclusive")


def test_connectivity_summary_and_markdown(probes):
    s = reports.connectivity_summary(probes)
    failing = len(reports.failing_pairs(probes))
    assert s["mesh_probes"] == 1000 and s["mesh_failed"] == failing
    assert s["isolation_leaks"] == 1 and s["isolation_targets"] == 2
    assert s["verdict"] == "FAIL"
    md = reports.connectivity_markdown(probes, {"mode": "sampled", "k": 10}, title="Connectivity — t")
    assert md.startswith("# Connectivity — t")
    assert "**Verdict: FAIL**" in md
    assert f"## Failing pairs ({failing})" in md
    assert "| node-2 | node-3 |" in md  # the worst-cells table
    assert "| 10.128.0.7 |" in md and "LEAK" in md and "silent as required" in md
    assert "| mode | sampled |" in md
    assert "| node → node | node-1 | node-2 | node-3 | node-4 |" in md


def test_probes_csv_round_trip(tmp_path, probes):
    path = tmp_path / "connectivity.csv"
    path.write_text(reports.probes_frame(probes).to_csv(index=False))
    assert reports.read_probes_csv(path) == probes


def test_loss_colour_scale():
    green, amber, red = reports.loss_colour(0), reports.loss_colour(0.5), reports.loss_colour(100)
    assert len({green, amber, red}) == 3
    assert red == "#d73027" and green == "#1a9850"
    assert reports.loss_colour(float("nan")) == reports.ERROR_COLOUR


# ---------------------------------------------------------------------------------------------- churn


def test_churn_summary_layer3():
    s = reports.churn_summary(CHURN, "Layer3")
    assert (s["selected"], s["succeeded"], s["failed"], s["unfinished"]) == (4, 3, 1, 0)
    assert (s["node_changed"], s["ip_changed"], s["ip_changed_pct_of_moved"]) == (3, 3, 100.0)
    assert s["stale_ip_hazards"] == 1
    assert s["duration_s"] == {"p50": 5.0, "p95": pytest.approx(5.9), "max": 6.0, "count": 3}
    pairs = {(p["source"], p["target"]): p for p in s["by_node_pair"]}
    assert pairs[("node-1", "node-2")]["vms"] == 2 and pairs[("node-1", "node-2")]["ip_changed"] == 2
    assert pairs[("node-2", "node-2")]["failed"] == 1
    assert any("failed" in p for p in s["problems"]) and any("stale-IP" in p for p in s["problems"])
    assert not s["ok"]


def test_churn_summary_flags_topology_contradictions():
    l2 = reports.churn_summary(CHURN[:1], "Layer2")
    assert l2["problems"] == ["1 VM(s) changed IP on Layer2, where addresses must survive migration"]
    kept = ChurnRow("a", "b", "n1", "n2", "10.0.0.3", "10.0.0.3", "Succeeded", 2.0)
    assert "kept their IP on Layer3" in reports.churn_summary([kept], "Layer3")["problems"][0]
    assert reports.churn_summary([kept], "Layer2")["ok"]
    empty = reports.churn_summary([], "Layer2")
    assert empty["ip_changed_pct_of_moved"] is None and empty["duration_s"]["p50"] is None


def test_churn_markdown_and_frame(tmp_path):
    s = reports.churn_summary(CHURN, "Layer3")
    md = reports.churn_markdown(CHURN, s, "Layer3")
    assert md.startswith("# Churn: live migration (Layer3)")
    assert "| Changed IP | 3 (100 % of moved) |" in md
    assert (
        "| ns-1 | vm-0 | migrate | node-1 | **node-2** | 10.0.0.3 | **10.0.1.9** | — | — | — | — | — | — | Succeeded "
        "| 4.0 | — | — |"
    ) in md
    assert "**ns-2/vm-30**" in md and "target pod failed" in md
    df = reports.churn_frame(CHURN)
    assert list(df["stale_ip_hazard"]) == [False, False, True, False]
    path = tmp_path / "churn.csv"
    path.write_text(df.to_csv(index=False))
    assert reports.read_churn_csv(path) == CHURN


DRAIN = [
    ChurnRow("ns-1", "vm-0", "node-1", "node-2", "10.0.0.3", "10.0.0.3", "Succeeded", 4.0, action="drain",
             drain_node="node-1", downtime_ms=420.0, packets_lost=2, first_reply_ip="10.0.0.3", downtime_peer="ns-1/vm-9"),
    ChurnRow("ns-1", "vm-0", "node-2", "node-3", "10.0.0.3", "10.0.0.3", "Succeeded", 3.0, action="drain", move=2,
             drain_node="node-2", downtime_ms=610.0, packets_lost=3, first_reply_ip="10.0.0.3"),
    ChurnRow("ns-1", "vm-1", "node-1", "node-3", "10.0.0.4", "10.0.0.4", "Succeeded", 5.0, action="drain",
             drain_node="node-1", last_reply_before="2026-12-06T06:00:00.000Z", downtime_note="no reply after the move"),
]  # fmt: skip


def test_drain_downtime_per_move_per_node_and_charts():
    """Two moves of one VM through a rolling drain are two rows; downtime quantiles per action; a VM silent
    after its move is a problem; the drains table and the charts by node are there, numbers on the bars."""
    drains = [
        {"node": "node-1", "started": "2026-12-06T06:00:00.000Z", "ended": "", "duration_s": 12.5, "vms": 2,
         "moved": 2, "failed": 0, "cordoned_by_us": True, "note": ""},
    ]  # fmt: skip
    s = reports.churn_summary(DRAIN, "Layer2", drains=drains, notes=["a note"])
    assert (s["vms"], s["moves"], s["actions"]) == (2, 3, ["drain"])
    (dt,) = s["downtime"]
    assert (dt["action"], dt["count"], dt["p50"], dt["max"], dt["no_reply_after"], dt["packets_lost"]) == (
        "drain",
        2,
        515.0,
        610.0,
        1,
        5,
    )
    assert any("never after it" in p and "ns-1/vm-1" in p for p in s["problems"])
    assert [(n["node"], n["moves"], n["downtime_max_ms"]) for n in s["by_node"]] == [
        ("node-1", 2, 420.0),
        ("node-2", 1, 610.0),
    ]
    md = reports.churn_markdown(DRAIN, s, "Layer2")
    assert md.startswith("# Churn: rolling drain (Layer2)")
    assert "## Downtime per move" in md and "| Layer2 | drain | 3 | 2 | 515 | " in md
    assert "## Drains per node" in md and "| node-1 | 2026-12-06T06:00:00.000Z | 12.5 | 2 | 2 | 0 | — |" in md
    assert "| ns-1 | vm-0 | drain 2 | node-2 | **node-3** |" in md and "- a note" in md
    html = reports.churn_html(DRAIN, s, "Layer2")
    assert 'id="chart-moves"' in html and 'id="chart-downtime"' in html and ">610 ms</text>" in html
    assert 'id="drains"' in html


# ---------------------------------------------------------------------------------------------- capacity, preflight


def test_capacity_markdown_layer3_with_headroom():
    nodes = [NodeInfo(n) for n in NODES]
    rep = layer3_capacity("10.200.0.0/16", 26, nodes, 220)
    hr = migration_headroom("10.200.0.0/16", 26, {"node-1": 55, "node-2": 20}, {"node-1": 10, "node-2": 3})
    md = reports.capacity_markdown(rep.rows(), rep.summary(), hr.rows())
    assert md.startswith("# Address capacity (Layer3)")
    assert "| Usable addresses per node subnet | 60 |" in md
    assert "## Per node subnet" in md and "| node-1 | yes | yes | 60 | 0 | 55 | 5 | warn |" in md
    assert "## Migration headroom" in md and "subnet full: 5 migration(s) would fail" in md
    for fix in rep.fixes:
        assert fix in md


def test_capacity_markdown_layer2_pool():
    rep = layer2_capacity("10.200.0.0/24", 300)
    md = reports.capacity_markdown(rep.rows(), rep.summary())
    assert "# Address capacity (Layer2)" in md and "## Address pool" in md
    assert "| 10.200.0.0/24 | 252 | 0 | 300 | -48 | fail |" in md
    assert "hostSubnet" not in md and "Migration headroom" not in md


CHECKS = [
    Check("crds", "ok", "ClusterUserDefinedNetwork and VirtualMachine CRDs present"),
    Check("layer3-vms", "warn", "Layer3: a VM's IP changes when it migrates", "use topology Layer2 for VMs"),
    Check(
        "cidr-overlap",
        "fail",
        "10.128.0.0/16 overlaps the cluster network 10.128.0.0/14 (clusterNetwork of networks.config.openshift.io)",
        "pick a CIDR outside 10.128.0.0/14, 172.30.0.0/16, 100.64.0.0/16, 100.65.0.0/16 and 100.88.0.0/16",
    ),
]


def test_preflight_markdown():
    md = reports.preflight_markdown(CHECKS)
    assert "**Verdict: FAIL** — 1 ok, 1 warning(s), 1 failure(s)" in md
    assert "| layer3-vms | WARN | Layer3: a VM's IP changes when it migrates | use topology Layer2 for VMs |" in md


def test_checks_table_text_wraps_to_width():
    for width in (60, 80, 100, 160):
        text = reports.checks_table_text(CHECKS, width=width)
        lines = text.splitlines()
        assert lines[0].split() == ["CHECK", "STATUS", "DETAIL", "FIX"]
        assert all(len(line) <= width for line in lines), width
        words = " ".join(text.split())
        for c in CHECKS:
            for w in (c.detail + " " + c.fix).split():
                assert w in words or len(w) > 16  # long words may be broken, nothing is dropped
    wide = reports.checks_table_text(CHECKS, width=400).splitlines()
    assert len(wide) == 2 + len(CHECKS)  # no wrapping needed: one line per check, no blank separators


# ---------------------------------------------------------------------------------------------- run directory


def _write_all(out: Path, fleet, probes):
    rep = layer3_capacity("10.200.0.0/16", 24, [NodeInfo(n) for n in NODES], 100)
    common = {"run_id": "seed-l3", "spec_summary": {"topology": "Layer3", "cidr": "10.200.0.0/16", "qps": 50}}
    reports.write_run_reports(
        out,
        RunParts(
            **common,
            step=StepSummary("fanout", True, {"vms": 100, "ready": 90}),
            figures={"wall_s": 3.25, "create_rate_per_s": 45.5},
            records=fleet,
        ),
    )
    return reports.write_run_reports(
        out,
        RunParts(
            **common,
            step=StepSummary("connectivity", False, problems=["leak"]),
            probes=probes,
            plan_coverage={"mode": "sampled", "k": 10, "node_pairs_covered": 16},
            churn_rows=CHURN,
            churn_topology="Layer3",
            capacity_rows=rep.rows(),
            capacity_summary=rep.summary(),
            checks=CHECKS,
        ),
    )


ALL_FILES = {
    "inventory.csv",
    "provisioning.md",
    "connectivity.csv",
    "connectivity.md",
    "connectivity.html",
    "churn.csv",
    "churn.md",
    "churn.html",
    "capacity.md",
    "preflight.md",
    "summary.md",
    "run.json",
}


def test_write_run_reports_files_summary_and_run_json(tmp_path, fleet, probes):
    out = tmp_path / "seed-l3"
    files = _write_all(out, fleet, probes)
    assert set(files) == ALL_FILES
    assert all(p.exists() and p.stat().st_size for p in files.values())
    summary = (out / "summary.md").read_text()
    for name in ALL_FILES - {"summary.md"}:
        assert f"[{name}]({name})" in summary
    assert "- **Connectivity**: FAIL" in summary and "| connectivity | FAILED |" in summary
    run = json.loads((out / "run.json").read_text())
    assert run["runId"] == "seed-l3" and run["spec"]["topology"] == "Layer3"
    assert run["figures"]["fanout"]["wall_s"] == 3.25
    assert [s["step"] for s in run["steps"]] == ["fanout", "connectivity"]
    assert set(run["files"]) == ALL_FILES
    assert isinstance(run["generatedAt"], str) and run["generatedAt"].endswith("Z")
    assert run["derived"]["connectivity"]["isolation_leaks"] == 1
    assert run["derived"]["churn"]["stale_ip_hazards"] == 1
    assert run["derived"]["provisioning"]["latencyMs"]["VMIScheduled"]["count"] == 99
    assert pd.read_csv(out / "inventory.csv").shape == (100, len(reports.INVENTORY_COLUMNS))


def test_rerender_is_idempotent_and_rebuilds_deleted_views(tmp_path, fleet, probes):
    out = tmp_path / "run"
    _write_all(out, fleet, probes)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for name in ("provisioning.md", "connectivity.html", "churn.md", "summary.md", "capacity.md"):
        (out / name).unlink()
    (out / "churn.html").write_text("stale")
    reports.rerender(out)
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before
    with pytest.raises(FileNotFoundError, match=r"run\.json"):
        reports.rerender(tmp_path / "nothing-here")


def test_parts_accumulate_across_calls(tmp_path, fleet):
    out = tmp_path / "run"
    reports.write_run_reports(out, RunParts(records=fleet, figures={"wall_s": 1.0}, step=StepSummary("fanout", True)))
    files = reports.write_run_reports(
        out,
        RunParts(churn_rows=CHURN, churn_topology="Layer2", step=StepSummary("churn", False, problems=["IP changed"])),
    )
    assert {"inventory.csv", "provisioning.md", "churn.md", "churn.html"} <= set(files)
    run = json.loads((out / "run.json").read_text())
    assert run["runId"] == "run" and [s["step"] for s in run["steps"]] == ["fanout", "churn"]
    assert run["figures"] == {"fanout": {"wall_s": 1.0}}
    assert "changed IP on Layer2" in (out / "churn.md").read_text()
    assert "[provisioning.md](provisioning.md)" in (out / "summary.md").read_text()


def test_secret_scrub_refuses_to_write(tmp_path, fleet):
    secret = "s3cr3t-Pa55"
    leaky = [*fleet[:3], VMRecord("ns-1", "vm-x", reason=f"login failed with password {secret}")]
    out = tmp_path / "run"
    with pytest.raises(reports.SecretLeakError) as exc:
        reports.write_run_reports(out, RunParts(records=leaky), secrets=["", secret])
    assert secret not in str(exc.value)
    for p in out.rglob("*"):
        assert secret not in p.read_text(errors="replace")
    # the same records without the secret list are written (nothing to compare against)
    assert "inventory.csv" in reports.write_run_reports(tmp_path / "ok", RunParts(records=fleet), secrets=[secret])


# ---------------------------------------------------------------------------------------------- artifacts


@pytest.mark.parametrize("key", ["Inventory", "fan_out", "fan out", "ns.vm", "", "vms/ns", "ünicode", "key\n"])
def test_artifact_key_validation(key):
    with pytest.raises(ValueError, match="invalid Prefect artifact key") as exc:
        artifacts.publish_table(key, [{"a": 1}])
    assert repr(key) in str(exc.value) and "lowercase letters, digits" in str(exc.value)
    with pytest.raises(ValueError):
        artifacts.publish_markdown(key, "# x")
    with pytest.raises(ValueError):
        artifacts.progress_artifact(key)


def test_artifact_key_suggestion():
    with pytest.raises(ValueError, match=r"e\.g\. 'fan-out-latency'"):
        artifacts.validate_key("Fan_Out latency")
    for ok in ("seed-l3-inventory-2", "a", "x--y"):
        assert artifacts.validate_key(ok) == ok


def test_artifacts_are_no_ops_outside_a_prefect_run(fleet):
    assert artifacts.publish_table("vm-inventory", reports.inventory_frame(fleet), "VMs") is None
    assert artifacts.publish_markdown("provisioning", "# hi") is None
    h = artifacts.progress_artifact("fanout-ready", "VMs ready")
    assert not h.active and h.update(42) is None and h.value == 42
    assert h.update(250) is None and h.value == 100


def test_no_run_context_with_prefect_imported(monkeypatch):
    # With prefect imported but no flow/task run active, get_run_context() raises: still a no-op.
    class FakeContext:
        @staticmethod
        def get_run_context():
            raise RuntimeError("No run context available")

    monkeypatch.setitem(sys.modules, "prefect", type(sys)("prefect"))
    monkeypatch.setitem(sys.modules, "prefect.context", FakeContext)
    assert not artifacts.in_prefect_run()
    assert artifacts.publish_markdown("x", "y") is None


def test_table_records_are_json_safe(fleet):
    frame = pd.DataFrame(
        {
            "when": [pd.Timestamp("2025-01-02T03:04:05.678Z"), pd.NaT],
            "n": np.array([1, 2], dtype=np.int64),
            "x": [1.5, float("nan")],
            "ok": [True, False],
        }
    )
    rows = artifacts.table_records(frame)
    assert rows == [
        {"when": "2025-01-02T03:04:05.678000+00:00", "n": 1, "x": 1.5, "ok": True},
        {"when": None, "n": 2, "x": None, "ok": False},
    ]
    json.dumps(rows, allow_nan=False)
    q = artifacts.table_records(reports.latency_quantiles(fleet))
    assert [r["metric"] for r in q] == ["VMIScheduled", "VMIRunning", "VMReady"] and q[0]["count"] == 99
    m = artifacts.table_records(reports.matrix(make_probes(fleet), by="node"))
    assert m[1]["source node"] == "node-2" and m[1]["node-3"] > 0
    recs = artifacts.table_records(fleet[:2])
    assert recs[0]["name"] == "vm-0" and recs[0]["ready_at"] is None
    json.dumps(artifacts.table_records(reports.inventory_frame(fleet)), allow_nan=False)


def test_publishing_inside_a_run_calls_prefect(monkeypatch):
    calls = []

    class FakeArtifacts:
        @staticmethod
        def create_table_artifact(**kw):
            calls.append(("table", kw))
            return "id-t"

        @staticmethod
        def create_markdown_artifact(**kw):
            calls.append(("md", kw))
            return "id-m"

        @staticmethod
        def create_progress_artifact(**kw):
            calls.append(("progress", kw))
            return "id-p"

        @staticmethod
        def update_progress_artifact(**kw):
            calls.append(("update", kw))
            return "id-p"

    monkeypatch.setattr(artifacts, "in_prefect_run", lambda: True)
    monkeypatch.setattr(artifacts, "_prefect_artifacts", lambda: FakeArtifacts)
    assert artifacts.publish_table("t", pd.DataFrame({"x": [float("nan")]}), "d") == "id-t"
    assert calls[-1] == ("table", {"table": [{"x": None}], "key": "t", "description": "d"})
    assert artifacts.publish_markdown("m", "# m") == "id-m"
    h = artifacts.progress_artifact("p", "VMs ready")
    assert h.active and calls[-1] == ("progress", {"progress": 0.0, "key": "p", "description": "VMs ready"})
    for i in range(1, 1001):  # 1000 VMs: updates throttled to 1-point steps
        h.update(100 * i / 1000)
    updates = [kw["progress"] for what, kw in calls if what == "update"]
    assert len(updates) == 100 and updates[-1] == 100.0
    with pytest.raises(ValueError, match="secret"):
        artifacts.publish_markdown("m", "password hunter2", secrets=["hunter2"])
