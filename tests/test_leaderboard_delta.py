"""The difference from base (paired bootstrap CI) in every leaderboard format, and plots fitted to the data.

Uses the run records checked in under ``leaderboards/runs`` (their score files carry per-item details, so
the paired differences exist)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from bench.leaderboard import collect, render_all, write_leaderboards
from bench.leaderboard.plots import fitted_range

RECORDS = Path(__file__).resolve().parents[1] / "leaderboards" / "runs"


@pytest.fixture(scope="module")
def table():
    if not any(RECORDS.glob("*/*/run.json")):
        pytest.skip("no run records checked in under leaderboards/runs")
    return collect(RECORDS)


def _delta_cells(table):
    return [(r, c, r.cells[c.key].delta) for r in table.rows for c in table.columns
            if c.key in r.cells and r.cells[c.key].delta is not None]


def test_csv_carries_every_paired_difference_at_full_precision(table):
    rows = list(csv.DictReader(io.StringIO(render_all(table, ["csv"])["csv"])))
    with_delta = {(r["method"], r["protocol"], r["metric"]): r for r in rows if r["delta"]}
    expected = _delta_cells(table)
    assert len(with_delta) == len(expected) > 0
    for row, col, (d, lo, hi) in expected:
        got = with_delta[(row.method, col.protocol, col.metric)]
        assert (float(got["delta"]), float(got["delta_low"]), float(got["delta_high"])) == (d, lo, hi)
        assert got["delta_shown"].split(" ")[0] in got["delta_shown"]
    base = [r for r in rows if r["method"] == "base"]
    assert base and all(r["delta"] == r["delta_low"] == r["delta_shown"] == "" for r in base)
    dpo = with_delta[("dpo", "pope", "adversarial/accuracy")]
    assert dpo["delta_shown"] == "+9.4 [+6.9, +12.1] ▲"


def _tabulars(tex: str) -> list[tuple[str, list[list[str]]]]:
    """(column spec, body rows split into cells) of every tabular, the rows between \\midrule and \\bottomrule."""
    out = []
    for m in re.finditer(r"\\begin\{tabular\}\{([^}]*)\}(.*?)\\end\{tabular\}", tex, re.S):
        spec, body = m.group(1), m.group(2)
        head, rest = body.split("\\midrule", 1)
        lines = [head.replace("\\toprule", "").strip()] + rest.split("\\bottomrule")[0].strip().splitlines()
        rows = []
        for line in lines:
            line = line.strip()
            assert line.endswith(r"\\"), line
            rows.append(re.split(r"(?<!\\)&", line[:-2]))
        out.append((spec, rows))
    return out


def test_latex_has_a_difference_table_that_parses_with_the_right_column_count(table):
    tex = render_all(table, ["tex"])["tex"]
    tabulars = _tabulars(tex)
    assert len(tabulars) == 2  # values, then difference from base
    for spec, rows in tabulars:
        assert set(spec) <= set("lrc") and rows
        assert all(len(cells) == len(spec) for cells in rows), [len(c) for c in rows]
    spec, rows = tabulars[1]
    n_delta_cols = len({c.key for _, c, _ in _delta_cells(table)})
    assert len(spec) == 2 + n_delta_cols and len(rows) == 1 + len({r.method for r, _, _ in _delta_cells(table)})
    dpo = next(cells for cells in rows if cells[1].strip() == "dpo")
    assert dpo[2].strip() == r"+9.4{\scriptsize[+6.9, +12.1]}$^{\bigtriangleup}$"
    assert r"$-$3.5{\scriptsize[$-$5.4, $-$1.8]}$^{\bigtriangledown}$" in dpo[4]  # POPE-rand acc fell
    assert r"\label{tab:bench-leaderboard-delta}" in tex and tex.count(r"\begin{table}") == 2
    assert "▲" not in tex and "−" not in tex  # every non-ASCII mark is escaped for LaTeX


def test_html_has_sortable_difference_table_and_one_forest_plot_per_paired_benchmark(table):
    page = render_all(table, ["html"])["html"]
    assert '<table class="lb" id="delta">' in page
    delta = page[page.index('id="delta"'):]
    delta = delta[:delta.index("</table>")]
    assert delta.count('<tr data-i="') == len({r.method for r, _, _ in _delta_cells(table)})
    assert 'data-key="pope:adversarial/accuracy" data-type="num" data-better="higher"' in delta
    assert 'class="num better" data-v="0.0940' in delta and 'class="num worse"' in delta
    paired = sorted({c.protocol for _, c, _ in _delta_cells(table)})
    for proto in paired:
        assert f'difference from base, paired 95% CI' in page and f'href="plots/{proto}-difference.png"' in page
    assert page.count("-difference.png") == len(paired)


def test_json_and_markdown_keep_their_difference_tables(table):
    texts = render_all(table, ["json", "md"])
    data = json.loads(texts["json"])
    dpo = next(r for r in data["rows"] if r["method"] == "dpo")
    assert dpo["cells"]["pope:adversarial/accuracy"]["delta_shown"] == "+9.4 [+6.9, +12.1] ▲"
    assert "## Difference from base" in texts["md"]


def test_plots_are_written_as_png_and_svg_next_to_the_html(table, tmp_path):
    written = write_leaderboards(RECORDS, ["html"], dest=tmp_path)
    page = written["html"].read_text(encoding="utf-8")
    links = re.findall(r'href="(plots/[^"]+)"', page)
    assert links and len(links) == 2 * page.count("<figure>")
    for link in links:
        path = tmp_path / link
        assert path.exists() and path.stat().st_size > 1000
        head = path.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if link.endswith(".png") else b"<?xml" in head


def test_axis_range_spans_every_value_and_whisker_with_padding():
    lo, hi = fitted_range([81.6, 79.5, 83.7, 94.0, 92.5, 95.3])
    assert 79.5 - 2 < lo < 79.5 and 95.3 < hi < 95.3 + 2  # not 0–100: the differences stay visible
    lo, hi = fitted_range([2.0, 3.0], include_zero=True)
    assert lo < 0 < 3.0 < hi
    assert fitted_range([0.0, 0.0]) == (-1.0, 1.0)  # a zero-width span is still drawn mid-axis


def test_paired_difference_point_estimates_equal_value_minus_base_for_every_benchmark(table):
    """Each protocol's ``paired_units`` rebuilds its metrics exactly: on the full (shared) image set the
    paired difference is the checkpoint's value minus base's, for POPE, CHAIR, SHR and MHaluBench claims."""
    base = {r.model: r for r in table.rows if r.method == "base"}
    cells = _delta_cells(table)
    assert {c.benchmark for _, c, _ in cells} == {"pope", "chair", "shr", "mhalubench"}
    for row, col, (d, lo, hi) in cells:
        ref = base[row.model].cells[col.key].value
        assert abs(d - (row.cells[col.key].value - ref)) < 1e-12, (row.method, col.key)
        assert lo <= d <= hi
