"""The benchmark entry point runs end to end on its cheapest scenario and writes the JSON it promises.

No timing is asserted here: speed targets live in the benchmarks' own figures (see BENCHMARKS.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_sim_quick_writes_expected_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "sim", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["quick"] is True
    assert {"started", "command", "machine", "scenarios"} <= doc.keys()
    sim = doc["scenarios"]["sim"]
    assert {"parameters", "vms", "console", "figures"} <= sim.keys()
    vms = sim["vms"]
    assert {"allRunningSeconds", "createPerSecond", "uniqueAddresses", "vmsChecked"} <= vms.keys()
    assert vms["uniqueAddresses"] == vms["vmsChecked"] == sim["parameters"]["vms"]
    console = sim["console"]
    assert {"sessions", "sessionsPerSecond", "pingsOk", "hostnamesOk"} <= console.keys()
    assert console["pingsOk"] == console["hostnamesOk"] == console["sessions"]
    assert all({"name", "value", "unit"} <= f.keys() for f in sim["figures"])
    # a quick run leaves the published results alone
    assert "latest.json" not in proc.stdout
