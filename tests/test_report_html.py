"""The HTML reports as a person sees them: rendered by headless Chromium (DOM after scripts ran, a
hover on a heatmap cell, a screenshot). Skipped only outside CI when no Chromium is installed; in CI a
missing browser is a failure (install Debian's `chromium`)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tasks import reports
from tasks.model import ChurnRow, ProbeResult

BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
N_NS, N_NODES = 100, 40
LOSSY = ("worker-3", "worker-7")


def find_chromium() -> str | None:
    for b in BROWSERS:
        path = b if os.path.isabs(b) and os.access(b, os.X_OK) else shutil.which(b)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI for the HTML report checks: apt-get install -y chromium")
        pytest.skip("no Chromium installed (apt-get install -y chromium); required in CI")
    return path


def run_chromium(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


class Collector(HTMLParser):
    """Elements by tag with their attributes, and the text of a few ids."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def having(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and cls in a.get("class", "").split()]


def big_matrix() -> list[ProbeResult]:
    """A full mesh over 100 namespaces and 40 nodes; node pair LOSSY drops everything."""
    out = []
    for i in range(N_NS):
        for j in range(N_NS):
            s_node, d_node = f"worker-{i % N_NODES}", f"worker-{j % N_NODES}"
            rx = 0 if (s_node, d_node) == LOSSY else 2 if (i * j) % 97 == 5 else 3
            out.append(
                ProbeResult(
                    f"namespace-{i}", f"vm-{i}", s_node, f"10.1.{i}.{j + 3}", f"namespace-{j}", f"vm-{j}", d_node,
                    transmitted=3, received=rx, loss_pct=100 * (3 - rx) / 3, rtt_avg_ms=0.4 if rx else None,
                    outcome="reply" if rx else "timeout",
                )
            )  # fmt: skip
    out.append(
        ProbeResult(
            "namespace-1", "vm-1", "worker-1", "10.128.0.7", kind="isolation", expect="silent",
            transmitted=3, received=3, outcome="reply",
        )
    )  # fmt: skip
    return out


# Dispatches a hover on the lossy cell, then records what the tooltip shows, for --dump-dom to see.
HOVER = """
<script>
window.addEventListener('load', function () {
  var t = document.querySelector('#hm-node table.heatmap');
  var cell = t.querySelectorAll('tbody tr')[3].querySelectorAll('td.c')[7];
  cell.dispatchEvent(new MouseEvent('mouseover', {bubbles: true, clientX: 50, clientY: 50}));
  var tip = document.getElementById('tip');
  document.body.setAttribute('data-tip-text', tip.textContent);
  document.body.setAttribute('data-tip-display', getComputedStyle(tip).display);
  document.body.setAttribute('data-hl', Array.from(t.querySelectorAll('th.hl')).map(function (e) { return e.textContent; }).join('|'));
});
</script>
"""


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_connectivity_heatmap_100x100_in_chromium(chromium, tmp_path):
    html = reports.connectivity_html(big_matrix(), {"mode": "full", "vms": N_NS}, "Connectivity — 100 namespaces")
    page = tmp_path / "connectivity.html"
    page.write_text(html)
    assert "http://" not in html and "https://" not in html  # self-contained: nothing fetched

    hovered = tmp_path / "hover.html"
    hovered.write_text(html.replace("</body>", HOVER + "</body>"))
    dom = run_chromium(chromium, tmp_path, "--dump-dom", hovered.as_uri()).stdout
    doc = Collector()
    doc.feed(dom)

    tables = doc.having("table", "heatmap")
    assert [t["data-by"] for t in tables] == ["namespace", "node"]
    cells = doc.having("td", "c")
    assert len(cells) == N_NS * N_NS + N_NODES * N_NODES
    tips = [c.get("title") or c.get("data-tip", "") for c in cells]
    assert all(t for t in tips), "every heatmap cell has a tooltip"
    assert "namespace-2 → namespace-5\n1 probes, 0 failed\nloss 0.0 % (0 of 3 packets)\nmedian RTT 0.40 ms" in tips
    lossy_tip = f"{LOSSY[0]} → {LOSSY[1]}\n9 probes, 9 failed\nloss 100.0 % (27 of 27 packets)\nno reply: no RTT"
    assert lossy_tip in tips
    lossy_cells = [c for c, t in zip(cells, tips, strict=True) if t == lossy_tip]
    assert "background:#d73027" in lossy_cells[0]["style"]  # red
    assert sum("background:#d73027" in c["style"] for c in cells[N_NS * N_NS :]) == 1  # only that node pair

    assert doc.having("div", "legend"), "legend present"
    assert "not probed" in dom and "100 % loss" in dom and "0 % loss" in dom
    # the script ran in Chromium: the hover shows the tooltip and highlights the row/column labels
    body = next(a for t, a in doc.elements if t == "body")
    assert body["data-tip-display"] == "block"
    assert body["data-tip-text"] == lossy_tip
    assert sorted(body["data-hl"].split("|")) == sorted(LOSSY)  # its row and column labels
    assert "LEAK" in dom

    shot = tmp_path / "connectivity.png"
    run_chromium(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1400,1000", page.as_uri())
    assert shot.exists() and shot.stat().st_size > 30_000, "a heatmap screenshot is not a blank page"
    assert png_size(shot) == (1400, 1000)


def test_churn_html_in_chromium(chromium, tmp_path):
    rows = [
        ChurnRow("ns-1", "vm-0", "n1", "n2", "10.0.0.3", "10.0.1.9", "Succeeded", 4.0),
        ChurnRow("ns-1", "vm-1", "n2", "n2", "10.0.1.4", "10.0.1.4", "Failed", 1.0, "target pod failed"),
        ChurnRow("ns-1", "vm-2", "n3", "n1", "10.0.2.5", "10.0.0.5", "Succeeded", 6.0, "", "ns-2/vm-30"),
    ]
    html = reports.churn_html(rows, reports.churn_summary(rows, "Layer3"), "Layer3")
    page = tmp_path / "churn.html"
    page.write_text(html + "<script>document.getElementById('only-changed').click()</script>")
    dom = run_chromium(chromium, tmp_path, "--dump-dom", page.as_uri()).stdout
    doc = Collector()
    doc.feed(dom)
    assert len(doc.having("td", "moved")) == 2 and len(doc.having("td", "chg")) >= 2
    assert len(doc.having("td", "bad")) >= 2  # the failed migration and the stale-IP hazard
    assert len(doc.having("tr", "hidden")) == 0  # every VM here changed something or failed
    assert "Stale-IP hazards" in dom and "PROBLEMS" in dom
    shot = tmp_path / "churn.png"
    run_chromium(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1400,1000", page.as_uri())
    assert shot.stat().st_size > 20_000
