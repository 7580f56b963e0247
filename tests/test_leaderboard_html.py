"""The HTML leaderboard opened in headless Chromium: it renders, its script runs without errors, it sorts.

Needs ``/usr/bin/chromium`` (Debian package ``chromium``; CI installs it). The test installs nothing and
skips with the reason when the browser is absent. No network: the page is a local file with no external
resource, and Chromium runs with background networking, component updates and sync disabled.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bench.leaderboard import write_leaderboards

CHROMIUM = Path("/usr/bin/chromium")
FIXTURE = Path(__file__).resolve().parent / "data" / "runs"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} not found: install the Debian package `chromium` to run the"
                                  " headless-browser check of leaderboard.html")


def _chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--window-size=1200,1600", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _console_errors(stderr: str) -> list[str]:
    """Page console output and uncaught exceptions (Chromium logs them as CONSOLE lines on stderr)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html")
    return write_leaderboards(FIXTURE, ["html"], dest=out)["html"]


def test_page_dom_after_scripts_has_table_plots_and_no_console_errors(page, tmp_path):
    res = _chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert 'data-sortable="ready"' in dom  # the script ran to the end
    assert dom.count('<tr data-i="') == 4 and 'id="leaderboard"' in dom
    # a value plot per protocol (pope-hadpo, chair) + the CHAIR trade-off; no per-item details → no forest plot
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', dom)) == 3
    assert dom.count('class="ind"') == 2 + 7  # sort indicators added by the script to every header
    assert _console_errors(res.stderr) == []


def test_fragment_sorts_rows_best_first(page, tmp_path):
    res = _chromium(tmp_path, page.as_uri() + "#sort=chair:chair_i:asc", "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    order = re.findall(r'<tr data-i="(\d)">', res.stdout)
    # CHAIR_i: llava-7b/ha-dpo 11.21 < llava-7b/base 14.83 < tiny-llava/dpo 15.87 < tiny-llava/base 21.02
    assert order == ["1", "0", "3", "2"]
    assert re.search(r'data-key="chair:chair_i"[^>]*aria-sort="ascending"', res.stdout)
    assert _console_errors(res.stderr) == []


def test_screenshot_is_not_blank(page, tmp_path):
    from PIL import Image

    shot = tmp_path / "page.png"
    res = _chromium(tmp_path, page.as_uri(), f"--screenshot={shot}")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    with Image.open(shot) as img:
        assert img.size == (1200, 1600)
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        top = rgb.crop((0, 0, 1200, 200)).getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, table rules and coloured bars, not one flat colour
    assert top is not None and len(top) > 10  # the table header is drawn at the top of the page
    assert _console_errors(res.stderr) == []
