"""The checked-in leaderboard page at laptop and desktop widths in headless Chromium (1280 and 1920 px):
a screenshot is taken, nothing overflows the viewport except inside a table's own scroll box, every plot
image loads, and the page shows the difference-from-base table and one forest plot per benchmark that
has paired differences.

The page is re-rendered from ``leaderboards/runs`` into a temporary folder and a measuring script is
appended to that copy (the shipped page is not changed); it writes what it measured into a ``data-layout``
attribute, read back with ``--dump-dom``. Set ``BENCH_SCREENSHOT_DIR`` to keep the screenshots. Needs
``/usr/bin/chromium`` (Debian package ``chromium``); skips with the reason when it is absent. No network.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.leaderboard import collect, write_leaderboards

CHROMIUM = Path("/usr/bin/chromium")
RECORDS = Path(__file__).resolve().parents[1] / "leaderboards" / "runs"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} not found: install the Debian package `chromium` to run the"
                                  " headless-browser layout check of leaderboard.html")

MEASURE = """
<script>
window.addEventListener('load', function () {
  var vw = document.documentElement.clientWidth;
  var over = [];
  Array.prototype.forEach.call(document.querySelectorAll('body *'), function (el) {
    var box = el.parentElement && el.parentElement.closest('div.wrap');
    if (box) { return; }  // inside a table box: it scrolls there
    var r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > vw + 0.5 || r.left < -0.5)) {
      over.push(el.tagName + (el.id ? '#' + el.id : '') + ' right=' + Math.round(r.right));
    }
  });
  var imgs = Array.prototype.map.call(document.images, function (im) {
    return {alt: im.alt, ok: im.complete && im.naturalWidth > 0, shown: im.getBoundingClientRect().width};
  });
  var wraps = Array.prototype.map.call(document.querySelectorAll('div.wrap'), function (w) {
    return {client: w.clientWidth, scroll: w.scrollWidth, right: w.getBoundingClientRect().right};
  });
  document.body.setAttribute('data-layout', JSON.stringify({vw: vw, doc: document.documentElement.scrollWidth,
    over: over, imgs: imgs, wraps: wraps}));
});
</script>
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    if not any(RECORDS.glob("*/*/run.json")):
        pytest.skip("no run records checked in under leaderboards/runs")
    out = tmp_path_factory.mktemp("layout")
    path = write_leaderboards(RECORDS, ["html"], dest=out)["html"]
    text = path.read_text(encoding="utf-8")
    path.with_name("measured.html").write_text(text.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    return path.with_name("measured.html")


def _chromium(tmp_path: Path, url: str, width: int, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           "--hide-scrollbars", f"--user-data-dir={tmp_path / f'profile-{width}'}", f"--window-size={width},1000",
           "--virtual-time-budget=5000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.parametrize("width", [1280, 1920])
def test_page_fits_the_screen_with_tables_scrolling_in_their_box_and_every_plot_loaded(page, tmp_path, width):
    res = _chromium(tmp_path, page.as_uri(), width, "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r'data-layout="([^"]*)"', res.stdout)
    assert m, "the measuring script did not run"
    layout = json.loads(html.unescape(m.group(1)))
    assert layout["vw"] == width
    assert layout["over"] == [], f"elements overflow the {width}px viewport outside a table box: {layout['over']}"
    assert layout["doc"] <= width  # the page itself never scrolls sideways
    assert len(layout["wraps"]) == 2  # the absolute table and the difference table, each in its own box
    assert all(w["client"] <= width and w["right"] <= width for w in layout["wraps"])
    assert layout["imgs"] and all(im["ok"] and im["shown"] > 200 for im in layout["imgs"]), layout["imgs"]
    table = collect(RECORDS)
    paired = sorted({c.protocol for r in table.rows for c in table.columns
                     if c.key in r.cells and r.cells[c.key].delta is not None})
    forests = [im["alt"] for im in layout["imgs"] if "difference from base" in im["alt"]]
    assert len(forests) == len(paired) >= 1 and 'id="delta"' in res.stdout


@pytest.mark.parametrize("width", [1280, 1920])
def test_screenshot_at_laptop_and_desktop_width(page, tmp_path, width):
    from PIL import Image

    shot = tmp_path / f"leaderboard-{width}.png"
    res = _chromium(tmp_path, page.as_uri(), width, f"--screenshot={shot}")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    with Image.open(shot) as img:
        assert img.size == (width, 1000)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, rules and plots, not a blank page
    keep = os.environ.get("BENCH_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
