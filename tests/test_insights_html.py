"""The HTML report in a real headless Chromium: it renders, no console errors, plots have points.

Debian's Chromium (``scripts/setup-browser.sh``) loads the file from disk with the network
switched off; ``--dump-dom`` gives the DOM as rendered, ``--screenshot`` a picture of it (kept
next to the test's files; look at it when changing the report).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from gen_log import generate

from widgettrace.insights import open_store, releases
from widgettrace.insights.html import report_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.fail("no Chromium: run scripts/setup-browser.sh")
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         "--proxy-server=127.0.0.1:9", "--hide-scrollbars", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_report_renders_in_chromium_with_plots_that_have_points(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    generate(log, 3000, seed=5, span_hours=3, releases=3, issues=12, spans_per_transaction=4)
    releases.record_deploy(log, "widget-platform@1.2.0", "production")
    report = tmp_path / "report.html"
    with open_store(log) as store:
        report.write_text(report_html(store), encoding="utf-8")
    document = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", document)  # nothing fetched

    dom = _chromium(tmp_path, "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines()
               if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    figures = re.findall(r"<figure>(.*?)</figure>", dom.stdout, re.S)
    captions = [re.search(r"<figcaption>(.*?)</figcaption>", f).group(1)  # type: ignore[union-attr]
                for f in figures]
    points = {c.split(" (")[0].split(",")[0]: len(re.findall(r'class="pt', f))
              for c, f in zip(captions, figures, strict=True)}
    assert set(points) == {"Errors per minute", "p95 latency over time", "Issues by events",
                           "Release health: errors per 100 transactions"}
    assert all(n > 0 for n in points.values()), points
    assert points["Issues by events"] == 12
    assert 'class="release"' in figures[0]  # release markers on the errors plot

    shot = tmp_path / "report.png"
    result = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=880,1800",
                       report.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a picture, not a blank page
    shutil.copy(shot, Path(__file__).resolve().parents[1] / ".scratch" / "insights-report.png")
