"""Figures for the HTML leaderboard (and for papers), drawn with matplotlib's Agg canvas.

Per benchmark protocol, in column order:

* **values** — a dot-and-whisker panel per headline metric: one horizontal line per row (method), the
  point estimate as a dot coloured by method and its 95% bootstrap CI as the whisker. Dots, not bars,
  so the axis can be fitted to the data: its range spans every value *and* every CI bound, padded
  by 8% (a bar would have to start at 0, which flattens 81.6 → 94.0 into two equal-looking bars).
* **difference from base** (a forest plot) — per headline metric, each method's paired difference
  from its model's ``base`` row with the paired bootstrap 95% CI, a vertical zero line, and the
  marker coloured/shaped by the verdict: green ▲ better, red ▼ worse (CI excludes 0, direction from
  the metric's higher-is-better flag), grey ● not distinguishable from base. Only when the records
  carry paired differences.

Plus, per CHAIR-family protocol with ``chair_i`` and ``recall`` columns, the hallucination-vs-coverage
scatter with CI whiskers on both axes; points are identified by a legend (colour = method), never by
text placed next to the points, so labels cannot collide.

Each figure has exactly one title (the figure's suptitle; panels carry only the metric name), so the
HTML page shows no caption repeating it. :func:`all_plots` returns :class:`Plot` objects holding the
PNG bytes and the SVG text; the page embeds the PNG and :func:`bench.leaderboard.write.write_leaderboards`
writes both files to ``plots/<slug>.{png,svg}`` next to the HTML.

Deterministic: figures are built on :class:`matplotlib.figure.Figure` with an explicit Agg canvas
(pyplot's global state and the process backend are left alone), colours come from a fixed palette
assigned over the sorted method names, PNGs are written without ``Software`` metadata and SVGs without
a date and with a fixed hash salt, so the same records give the same bytes for a given
matplotlib/FreeType build.
"""

from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import dataclass

from bench.leaderboard.collect import Column, Row, Table

# matplotlib's "tab10" colours, fixed here so output does not depend on the style in effect
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
BETTER, WORSE, SAME = "#1a9850", "#d73027", "#7f7f7f"
RC = {"font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 8.5, "figure.titlesize": 10,
      "svg.hashsalt": "bench", "svg.fonttype": "none", "path.simplify": True}
PANEL_W = 3.1  # inches per panel
DPI = 96
PAD = 0.08  # fraction of the data range added on each side


@dataclass(frozen=True)
class Plot:
    """One figure: a file-name slug, its title (alt text), PNG bytes and SVG text."""

    slug: str
    title: str
    png: bytes
    svg: str

    @property
    def png_base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _render(fig, slug: str, title: str) -> Plot:
    png, svg = io.BytesIO(), io.StringIO()
    fig.savefig(png, format="png", metadata={"Software": None})
    fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    return Plot(slug, title, png.getvalue(), svg.getvalue())


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "plot"


def _scale(col: Column) -> float:
    return 100.0 if col.percent else 1.0


def _colours(table: Table) -> dict[str, str]:
    methods = sorted({r.method for r in table.rows}, key=lambda m: (m != "base", m))
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}


def _label(table: Table, row: Row) -> str:
    return row.method if len({r.model for r in table.rows}) == 1 else row.label


def fitted_range(values: list[float], include_zero: bool = False) -> tuple[float, float]:
    """(lo, hi) spanning every finite value (CI bounds included by the caller), padded by ``PAD`` of the
    span on each side; a zero-width span gets ±1 unit (so 0.0 [0.0, 0.0] is still drawn mid-axis)."""
    finite = [v for v in values if math.isfinite(v)] + ([0.0] if include_zero else [])
    if not finite:
        return (0.0, 1.0)
    lo, hi = min(finite), max(finite)
    span = hi - lo
    if span <= 0:
        return (lo - 1.0, hi + 1.0)
    return (lo - PAD * span, hi + PAD * span)


def _grid(n: int) -> tuple[int, int]:
    ncols = 1 if n == 1 else 2
    return (math.ceil(n / ncols), ncols)


def _panels(fig, n: int, n_rows: int):
    nrows, ncols = _grid(n)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    flat = [ax for line in axes for ax in line]
    for ax in flat[n:]:
        ax.set_visible(False)
    return flat[:n], ncols


def _fig_size(n_panels: int, n_rows: int) -> tuple[float, float]:
    nrows, ncols = _grid(n_panels)
    return (PANEL_W * ncols + 0.9, nrows * (0.24 * n_rows + 0.85) + 0.45)


def _arrow(col: Column) -> str:
    return "" if col.higher_is_better is None else (" ↑" if col.higher_is_better else " ↓")


def _unit(col: Column) -> str:
    return "%" if col.percent else col.metric


FAMILY_NAMES = {"pope": "POPE", "chair": "CHAIR", "shr": "SHR", "mhalubench": "MHaluBench"}


def _proto_title(table: Table, protocol: str) -> str:
    p = table.protocols[protocol]
    return f"{FAMILY_NAMES.get(p.benchmark, p.benchmark)} (protocol {p.name} v{p.version})"


def value_plot(table: Table, protocol: str, cols: list[Column]) -> Plot | None:
    """Dot-and-whisker panels of the headline metrics of one protocol."""
    import matplotlib

    rows = [r for r in table.rows if any(c.key in r.cells for c in cols)]
    if not rows:
        return None
    colours = _colours(table)
    title = f"{_proto_title(table, protocol)}: value with 95% CI"
    with matplotlib.rc_context(RC):
        fig = _figure(*_fig_size(len(cols), len(rows)))
        axes, ncols = _panels(fig, len(cols), len(rows))
        ys = list(range(len(rows)))[::-1]  # first row at the top
        for i, (ax, col) in enumerate(zip(axes, cols)):
            s = _scale(col)
            bounds: list[float] = []
            for y, row in zip(ys, rows):
                cell = row.cells.get(col.key)
                if cell is None or not math.isfinite(cell.value):
                    continue
                v = cell.value * s
                bounds.append(v)
                xerr = None
                if cell.ci is not None:
                    lo, hi = cell.ci[0] * s, cell.ci[1] * s
                    bounds += [lo, hi]
                    xerr = [[max(0.0, v - lo)], [max(0.0, hi - v)]]
                ax.errorbar([v], [y], xerr=xerr, fmt="o", color=colours[row.method], ecolor="#333333",
                            elinewidth=1, capsize=2.5, markersize=5)
            ax.set_xlim(*fitted_range(bounds))
            ax.set_ylim(-0.6, len(rows) - 0.4)
            ax.set_yticks(ys, [_label(table, r) for r in rows] if i % ncols == 0 else [""] * len(rows))
            ax.set_title(f"{col.label}{_arrow(col)}")
            ax.set_xlabel(_unit(col))
            ax.grid(axis="x", linewidth=0.4, alpha=0.6)
            ax.set_axisbelow(True)
        fig.suptitle(title)
        return _render(fig, f"{slugify(protocol)}-values", title)


def verdict(col: Column, delta: tuple[float, float, float]) -> str:
    """``better`` / ``worse`` when the paired CI excludes 0 (direction from higher-is-better), else ``same``."""
    _, lo, hi = delta
    if col.higher_is_better is None or not (lo > 0 or hi < 0):
        return "same"
    return "better" if (lo > 0) == col.higher_is_better else "worse"


def forest_plot(table: Table, protocol: str, cols: list[Column]) -> Plot | None:
    """Forest plot of the paired differences from base of one protocol's headline metrics."""
    import matplotlib

    cols = [c for c in cols if any(c.key in r.cells and r.cells[c.key].delta for r in table.rows)]
    rows = [r for r in table.rows if any(c.key in r.cells and r.cells[c.key].delta for c in cols)]
    if not cols or not rows:
        return None
    style = {"better": (BETTER, "^"), "worse": (WORSE, "v"), "same": (SAME, "o")}
    title = f"{_proto_title(table, protocol)}: difference from base, paired 95% CI"
    with matplotlib.rc_context(RC):
        fig = _figure(*_fig_size(len(cols), len(rows)))
        axes, ncols = _panels(fig, len(cols), len(rows))
        ys = list(range(len(rows)))[::-1]
        for i, (ax, col) in enumerate(zip(axes, cols)):
            s = _scale(col)
            bounds: list[float] = []
            for y, row in zip(ys, rows):
                cell = row.cells.get(col.key)
                if cell is None or cell.delta is None or not math.isfinite(cell.delta[0]):
                    continue
                d, lo, hi = (v * s for v in cell.delta)
                bounds += [d, lo, hi]
                colour, marker = style[verdict(col, cell.delta)]
                ax.errorbar([d], [y], xerr=[[max(0.0, d - lo)], [max(0.0, hi - d)]], fmt=marker, color=colour,
                            ecolor=colour, elinewidth=1.2, capsize=2.5, markersize=6)
            ax.axvline(0.0, color="#000000", linewidth=0.8)
            ax.set_xlim(*fitted_range(bounds, include_zero=True))
            ax.set_ylim(-0.6, len(rows) - 0.4)
            ax.set_yticks(ys, [_label(table, r) for r in rows] if i % ncols == 0 else [""] * len(rows))
            ax.set_title(f"Δ {col.label}{_arrow(col)}")
            ax.set_xlabel("Δ points" if col.percent else f"Δ {col.metric}")
            ax.grid(axis="x", linewidth=0.4, alpha=0.6)
            ax.set_axisbelow(True)
        fig.suptitle(title)
        return _render(fig, f"{slugify(protocol)}-difference", title)


def tradeoff_plots(table: Table) -> list[Plot]:
    """Per CHAIR-family protocol with CHAIR_i and recall columns: CHAIR_i against recall, legend by method."""
    import matplotlib
    from matplotlib.lines import Line2D

    out = []
    colours = _colours(table)
    for name, proto in table.protocols.items():
        if proto.benchmark != "chair":
            continue
        ci_col = next((c for c in table.columns if c.protocol == name and c.metric == "chair_i"), None)
        rc_col = next((c for c in table.columns if c.protocol == name and c.metric == "recall"), None)
        if ci_col is None or rc_col is None:
            continue
        points = [(r, r.cells[ci_col.key], r.cells[rc_col.key]) for r in table.rows
                  if ci_col.key in r.cells and rc_col.key in r.cells]
        if not points:
            continue
        title = f"Hallucination vs coverage (protocol {name})"
        with matplotlib.rc_context(RC):
            fig = _figure(PANEL_W * 2 + 0.9, 3.2)
            ax = fig.subplots()
            xs_all, ys_all, handles = [], [], []
            sx, sy = _scale(rc_col), _scale(ci_col)
            for row, c_i, c_r in points:
                x, y = c_r.value * sx, c_i.value * sy
                xs_all.append(x)
                ys_all.append(y)
                xerr = yerr = None
                if c_r.ci:
                    xs_all += [c_r.ci[0] * sx, c_r.ci[1] * sx]
                    xerr = [[max(0.0, x - c_r.ci[0] * sx)], [max(0.0, c_r.ci[1] * sx - x)]]
                if c_i.ci:
                    ys_all += [c_i.ci[0] * sy, c_i.ci[1] * sy]
                    yerr = [[max(0.0, y - c_i.ci[0] * sy)], [max(0.0, c_i.ci[1] * sy - y)]]
                ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="o", color=colours[row.method], capsize=2,
                            elinewidth=0.8, markersize=5)
                handles.append(Line2D([], [], marker="o", linestyle="", color=colours[row.method],
                                      label=_label(table, row)))
            ax.set_xlim(*fitted_range(xs_all))
            ax.set_ylim(*fitted_range(ys_all))
            ax.set_xlabel(f"{rc_col.label} ({_unit(rc_col)}) ↑ coverage")
            ax.set_ylabel(f"{ci_col.label} ({_unit(ci_col)}) ↓ hallucination")
            ax.grid(linewidth=0.4, alpha=0.6)
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
            fig.suptitle(title)
            out.append(_render(fig, f"{slugify(name)}-tradeoff", title))
    return out


def all_plots(table: Table) -> list[Plot]:
    """Every figure, per protocol in column order (values, then difference from base), then trade-offs."""
    out: list[Plot] = []
    protocols: list[str] = []
    for col in table.columns:
        if col.protocol not in protocols:
            protocols.append(col.protocol)
    for proto in protocols:
        cols = [c for c in table.columns if c.protocol == proto]
        for make in (value_plot, forest_plot):
            plot = make(table, proto, cols)
            if plot is not None:
                out.append(plot)
    return out + tradeoff_plots(table)
