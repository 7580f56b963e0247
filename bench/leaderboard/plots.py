"""Figures for the HTML leaderboard, drawn with matplotlib's Agg canvas and returned as base64 PNG.

* one bar chart per column (headline metric): one bar per row, coloured by method, with the 95% CI
  as asymmetric whiskers;
* per CHAIR-family protocol that has both ``chair_i`` and ``recall`` columns, a trade-off scatter of
  CHAIR_i (hallucination, lower is better) against recall (coverage, higher is better), with CI
  whiskers on both axes.

Deterministic: figures are built on :class:`matplotlib.figure.Figure` with an explicit Agg canvas
(pyplot's global state and the process backend are left alone), colours come from a fixed palette
assigned over the sorted method names, and PNGs are written without the ``Software`` metadata, so
the same records give the same bytes for a given matplotlib/FreeType build.
"""

from __future__ import annotations

import base64
import io
import math

from bench.leaderboard.collect import Column, Table

# matplotlib's "tab10" colours, fixed here so output does not depend on the style in effect
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
RC = {"font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 9, "svg.hashsalt": "bench",
      "path.simplify": True}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _scale(col: Column) -> float:
    return 100.0 if col.percent else 1.0


def _colours(table: Table) -> dict[str, str]:
    methods = sorted({r.method for r in table.rows}, key=lambda m: (m != "base", m))
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}


def _labels(table: Table) -> list[str]:
    one_model = len({r.model for r in table.rows}) == 1
    return [r.method if one_model else r.label for r in table.rows]


def bar_chart(table: Table, col: Column) -> str:
    """Base64 PNG: ``col`` per row with CI whiskers."""
    import matplotlib

    scale, colours, labels = _scale(col), _colours(table), _labels(table)
    vals, lo, hi = [], [], []
    for row in table.rows:
        cell = row.cells.get(col.key)
        v = cell.value * scale if cell is not None and math.isfinite(cell.value) else math.nan
        vals.append(v)
        if cell is not None and cell.ci is not None and math.isfinite(v):
            lo.append(max(0.0, v - cell.ci[0] * scale))
            hi.append(max(0.0, cell.ci[1] * scale - v))
        else:
            lo.append(0.0)
            hi.append(0.0)
    with matplotlib.rc_context(RC):
        fig = _figure(max(3.2, 0.55 * len(vals) + 1.6), 2.8)
        ax = fig.subplots()
        xs = list(range(len(vals)))
        ax.bar(xs, vals, yerr=[lo, hi], capsize=3, color=[colours[r.method] for r in table.rows],
               error_kw={"elinewidth": 1, "ecolor": "#333333"})
        ax.set_xticks(xs, labels, rotation=30, ha="right")
        ax.set_ylabel("%" if col.percent else col.metric)
        arrow = "" if col.higher_is_better is None else (" ↑" if col.higher_is_better else " ↓")
        ax.set_title(f"{col.label}{arrow}  [{col.protocol}]")
        finite = [v for v in vals if math.isfinite(v)]
        if col.percent or all(v >= 0 for v in finite):
            top = max([v + h for v, h in zip(vals, hi) if math.isfinite(v)], default=0.0)
            ax.set_ylim(0.0, top * 1.05 if top > 0 else 1.0)  # bars start at 0; an all-zero column stays readable
        ax.grid(axis="y", linewidth=0.4, alpha=0.6)
        ax.set_axisbelow(True)
        fig.tight_layout()
        return _png(fig)


def tradeoff_plots(table: Table) -> list[tuple[str, str]]:
    """(title, base64 PNG) per CHAIR-family protocol with CHAIR_i and recall columns."""
    import matplotlib

    out = []
    colours, labels = _colours(table), _labels(table)
    for name, proto in table.protocols.items():
        if proto.benchmark != "chair":
            continue
        ci_col = next((c for c in table.columns if c.protocol == name and c.metric == "chair_i"), None)
        rc_col = next((c for c in table.columns if c.protocol == name and c.metric == "recall"), None)
        if ci_col is None or rc_col is None:
            continue
        points = [(lab, r, r.cells[ci_col.key], r.cells[rc_col.key]) for lab, r in zip(labels, table.rows)
                  if ci_col.key in r.cells and rc_col.key in r.cells]
        if not points:
            continue
        with matplotlib.rc_context(RC):
            fig = _figure(4.2, 3.2)
            ax = fig.subplots()
            for lab, row, c_i, c_r in points:
                x, y = c_r.value * _scale(rc_col), c_i.value * _scale(ci_col)
                xerr = [[max(0.0, x - c_r.ci[0] * _scale(rc_col))], [max(0.0, c_r.ci[1] * _scale(rc_col) - x)]] \
                    if c_r.ci else None
                yerr = [[max(0.0, y - c_i.ci[0] * _scale(ci_col))], [max(0.0, c_i.ci[1] * _scale(ci_col) - y)]] \
                    if c_i.ci else None
                ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="o", color=colours[row.method], capsize=2,
                            elinewidth=0.8)
                ax.annotate(lab, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
            ax.set_xlabel(f"{rc_col.label} (%) ↑")
            ax.set_ylabel(f"{ci_col.label} (%) ↓")
            ax.set_title(f"Hallucination vs coverage [{name}]")
            ax.grid(linewidth=0.4, alpha=0.6)
            fig.tight_layout()
            out.append((f"CHAIR_i vs recall ({name})", _png(fig)))
    return out


def all_plots(table: Table) -> list[tuple[str, str]]:
    """Every figure of the page as (title, base64 PNG), bar charts first in column order."""
    bars = [(f"{c.label} [{c.protocol}]", bar_chart(table, c)) for c in table.columns]
    return bars + tradeoff_plots(table)
