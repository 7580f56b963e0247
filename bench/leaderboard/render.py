"""Render a :class:`~bench.leaderboard.collect.Table` as Markdown (GitHub), CSV, LaTeX (booktabs) and JSON;
the HTML page is in :mod:`bench.leaderboard.page` (which uses this module's cell formatting).
``TEXT_FORMATS`` maps a file extension to its renderer; :data:`bench.leaderboard.write.FORMATS` adds ``html``.

Display rules (records keep full precision; CSV and JSON carry it too):
* metric values are fractions in [0, 1] and are shown as percentages with 1 decimal, rounded half-up
  on the decimal form of the stored float; a protocol whose registered declaration says
  ``report_rounding = "truncate2"`` (``pope-hadpo``, as HA-DPO's README) is shown with 2 decimals,
  truncated. A column with any value outside [0, 1] is shown raw (4 significant digits).
* the 95% CI is shown as ``[lo, hi]`` (Markdown, HTML) or ``± half-width`` (LaTeX, where space is
  short); ``—`` marks a cell with no score, ``n/a`` a non-finite value.
* the difference from base (each checkpoint minus its model's ``base`` row, paired bootstrap 95% CI,
  see :func:`bench.leaderboard.collect.collect`) is in every format: a second Markdown, LaTeX and HTML
  table, the ``delta*`` columns of the CSV, ``delta_vs_base`` in the JSON. ▲ marks a CI that excludes 0
  in the better direction, ▼ in the worse one (LaTeX: :math:`^\bigtriangleup` / :math:`^\bigtriangledown`,
  base LaTeX symbols, so only ``booktabs`` is needed).
* every output states the protocols (name, version, fingerprint), the git revision(s), and the date
  = the latest ``started`` among the records. Nothing else time-dependent is written, and ordering is
  fixed by :func:`collect`, so rendering the same records twice gives identical bytes.
"""

from __future__ import annotations

import csv
import io
import json
import math
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Callable

from bench.leaderboard.collect import Cell, Column, Row, Table

MISSING = "—"


# ----------------------------------------------------------------------------------- formatting
def _decimals(table: Table, col: Column) -> tuple[int, str]:
    proto = table.protocols.get(col.protocol)
    if proto is not None and proto.report_rounding == "truncate2":
        return 2, "truncate"
    return 1, "round"


def _quantize(fraction: float, decimals: int, mode: str) -> Decimal:
    """100 × ``fraction`` to ``decimals`` places, computed on the decimal form of the float (so 0.29 is
    29.00 when truncated, not 28.99 as 100 * 0.29 in binary floating point would give)."""
    q = Decimal(1).scaleb(-decimals)
    return (Decimal(repr(float(fraction))) * 100).quantize(q, rounding=ROUND_DOWN if mode == "truncate"
                                                           else ROUND_HALF_UP)


def fmt_number(table: Table, col: Column, value: float) -> str:
    """One value as displayed: percent (1–2 decimals, see module doc) or raw (4 significant digits)."""
    if not math.isfinite(value):
        return "n/a"
    if not col.percent:
        return f"{value:.4g}"
    decimals, mode = _decimals(table, col)
    return str(_quantize(value, decimals, mode))


def fmt_halfwidth(table: Table, col: Column, ci: tuple[float, float]) -> str:
    half = (ci[1] - ci[0]) / 2.0
    if not math.isfinite(half):
        return "n/a"
    if not col.percent:
        return f"{half:.2g}"
    decimals, _ = _decimals(table, col)
    return str(_quantize(half, decimals, "round"))


def fmt_cell(table: Table, row: Row, col: Column, ci: str = "brackets") -> str:
    """``ci``: ``brackets`` → ``79.8 [78.8, 80.8]``; ``pm`` → ``79.8 ± 1.0``; ``none`` → ``79.8``."""
    cell: Cell | None = row.cells.get(col.key)
    if cell is None:
        return MISSING
    text = fmt_number(table, col, cell.value)
    if cell.ci is not None and math.isfinite(cell.value) and ci != "none":
        if ci == "pm":
            text += f" ± {fmt_halfwidth(table, col, cell.ci)}"
        else:
            text += f" [{fmt_number(table, col, cell.ci[0])}, {fmt_number(table, col, cell.ci[1])}]"
    return text


def fmt_signed(table: Table, col: Column, value: float) -> str:
    text = fmt_number(table, col, abs(value))
    return ("−" if value < 0 and text.strip("0.") else "+") + text


def fmt_delta(table: Table, row: Row, col: Column) -> str:
    """``+3.2 [+1.0, +5.3] ▲``: difference from base, paired 95% CI, and ▲ better / ▼ worse when the CI
    excludes 0 (direction from the column's higher-is-better flag); empty when there is no difference."""
    cell: Cell | None = row.cells.get(col.key)
    if cell is None or cell.delta is None:
        return MISSING
    d, lo, hi = cell.delta
    text = f"{fmt_signed(table, col, d)} [{fmt_signed(table, col, lo)}, {fmt_signed(table, col, hi)}]"
    if col.higher_is_better is not None and (lo > 0 or hi < 0):
        text += " ▲" if (lo > 0) == col.higher_is_better else " ▼"
    return text


def delta_rows_cols(table: Table) -> tuple[list[Row], list[Column]]:
    """The rows and columns of the difference-from-base table (those with at least one paired difference)."""
    cols = [c for c in table.columns if any(r.cells.get(c.key) and r.cells[c.key].delta for r in table.rows)]
    rows = [r for r in table.rows if any(r.cells.get(c.key) and r.cells[c.key].delta for c in cols)]
    return rows, cols


DELTA_EXPLAINED = ("Each checkpoint minus its model's `base` row, with a paired bootstrap 95% CI (the same images"
                   " resampled for both, 1000 resamples, seed 0); ▲ better / ▼ worse where the CI excludes 0.")


def arrow(col: Column) -> str:
    return "" if col.higher_is_better is None else ("↑" if col.higher_is_better else "↓")


def header(col: Column) -> str:
    a = arrow(col)
    return f"{col.label} {a}" if a else col.label


def provenance(table: Table) -> list[str]:
    """The statement every table carries: protocols, versions, git revision(s), date, units, notes."""
    protos = ", ".join(f"{p.name} v{p.version} (fingerprint {p.fingerprint})" for p in table.protocols.values())
    revs = ", ".join(r[:12] for r in table.revisions) or "unknown"
    lines = [f"Protocols: {protos}.",
             f"Git revision: {revs}{' (uncommitted changes)' if table.dirty else ''}.",
             f"Date: {table.date} (latest run start among {len(table.rows)} records).",
             "Values: % (fractions ×100) with the 95% bootstrap CI over images; ↑ higher is better, ↓ lower is"
             " better; — not evaluated. Full precision in leaderboard.csv and leaderboard.json."]
    truncated = [p.name for p in table.protocols.values() if p.report_rounding == "truncate2"]
    if truncated:
        lines.append(f"Rounding: {', '.join(truncated)} truncated to 2 decimals (as the paper reports it);"
                     " others rounded to 1 decimal.")
    lines += [f"Note: {n}." for n in table.notes]
    return lines


# ----------------------------------------------------------------------------------- markdown
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(table: Table) -> str:
    head = ["model", "method", "checkpoint"] + [header(c) for c in table.columns]
    align = ["---", "---", "---"] + ["---:"] * len(table.columns)
    lines = ["# bench leaderboard", "",
             "| " + " | ".join(_md_escape(h) for h in head) + " |", "| " + " | ".join(align) + " |"]
    for row in table.rows:
        cells = [row.model, row.method, f"`{row.checkpoint}`" if row.checkpoint else MISSING]
        cells += [fmt_cell(table, row, c) for c in table.columns]
        lines.append("| " + " | ".join(_md_escape(x) for x in cells) + " |")
    lines.append("")
    delta_rows, delta_cols = delta_rows_cols(table)
    if delta_rows:
        lines += ["## Difference from base", "", DELTA_EXPLAINED, "",
                  "| " + " | ".join(["model", "method"] + [_md_escape(header(c)) for c in delta_cols]) + " |",
                  "| " + " | ".join(["---", "---"] + ["---:"] * len(delta_cols)) + " |"]
        for row in delta_rows:
            cells = [row.model, row.method] + [fmt_delta(table, row, c) for c in delta_cols]
            lines.append("| " + " | ".join(_md_escape(x) for x in cells) + " |")
        lines.append("")
    lines += [f"- {line}" for line in provenance(table)]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- csv
CSV_FIELDS = ("model", "method", "checkpoint", "protocol", "benchmark", "version", "fingerprint", "metric",
              "label", "higher_is_better", "value", "ci_low", "ci_high", "shown", "git_revision", "started",
              "delta", "delta_low", "delta_high", "delta_shown")


def _num(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def csv_text(table: Table) -> str:
    """Long format: one line per (row, column) cell, full precision plus the shown text and provenance; the
    ``delta*`` fields hold the paired difference from base and its CI (empty for base rows and for protocols
    without paired differences)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for row in table.rows:
        for col in table.columns:
            cell = row.cells.get(col.key)
            if cell is None:
                continue
            proto = table.protocols[col.protocol]
            lo, hi = cell.ci if cell.ci is not None else (None, None)
            hib = "" if col.higher_is_better is None else str(col.higher_is_better).lower()
            w.writerow([row.model, row.method, row.checkpoint, col.protocol, col.benchmark, proto.version,
                        proto.fingerprint, col.metric, col.label, hib, _num(cell.value), _num(lo), _num(hi),
                        fmt_cell(table, row, col), row.git_revision or "", row.started,
                        *((_num(cell.delta[0]), _num(cell.delta[1]), _num(cell.delta[2]), fmt_delta(table, row, col))
                          if cell.delta is not None else ("", "", "", ""))])
    return buf.getvalue()


# ----------------------------------------------------------------------------------- latex
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "↑": r"$\uparrow$",
        "↓": r"$\downarrow$", "—": "--", "±": r"$\pm$", "×": r"$\times$", "−": r"$-$",
        "▲": r"$^{\bigtriangleup}$", "▼": r"$^{\bigtriangledown}$"}


def tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def latex(table: Table) -> str:
    """A booktabs ``table`` float (needs ``\\usepackage{booktabs}``); CI as ± half-width in small type."""
    out = ["% Generated by `python -m bench leaderboard` from run records only; do not edit by hand.",
           "% Requires \\usepackage{booktabs}.",
           r"\begin{table}[t]", r"\centering", r"\small",
           r"\begin{tabular}{ll" + "r" * len(table.columns) + "}", r"\toprule",
           " & ".join(["Model", "Method"] + [tex_escape(header(c)) for c in table.columns]) + r" \\",
           r"\midrule"]
    for row in table.rows:
        cells = [tex_escape(row.model), tex_escape(row.method)]
        for col in table.columns:
            cell = row.cells.get(col.key)
            text = tex_escape(fmt_cell(table, row, col, ci="none"))
            if cell is not None and cell.ci is not None and math.isfinite(cell.value):
                text += r"{\scriptsize$\pm$" + tex_escape(fmt_halfwidth(table, col, cell.ci)) + "}"
            cells.append(text)
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}",
            r"\caption{Hallucination benchmarks. " + tex_escape(" ".join(provenance(table))) + "}",
            r"\label{tab:bench-leaderboard}", r"\end{table}"]
    out += latex_delta(table)
    return "\n".join(out) + "\n"


def latex_delta(table: Table) -> list[str]:
    """The difference-from-base table as a second booktabs float (no lines when there is no difference):
    ``+9.4 [+6.9, +12.1]`` with the paired CI in brackets and a significance mark (△ better, ▽ worse)."""
    rows, cols = delta_rows_cols(table)
    if not rows:
        return []
    out = ["", r"\begin{table}[t]", r"\centering", r"\small",
           r"\begin{tabular}{ll" + "r" * len(cols) + "}", r"\toprule",
           " & ".join(["Model", "Method"] + [r"$\Delta$ " + tex_escape(header(c)) for c in cols]) + r" \\",
           r"\midrule"]
    for row in rows:
        cells = [tex_escape(row.model), tex_escape(row.method)]
        for col in cols:
            cell = row.cells.get(col.key)
            if cell is None or cell.delta is None:
                cells.append(tex_escape(MISSING))
                continue
            d, lo, hi = cell.delta
            text = tex_escape(fmt_signed(table, col, d))
            text += (r"{\scriptsize[" + tex_escape(fmt_signed(table, col, lo)) + ", "
                     + tex_escape(fmt_signed(table, col, hi)) + "]}")
            mark = fmt_delta(table, row, col)[-1]
            if mark in "▲▼":
                text += tex_escape(mark)
            cells.append(text)
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}",
            r"\caption{Difference from base (percentage points). " + tex_escape(DELTA_EXPLAINED.replace("`", ""))
            .replace(r"$^{\bigtriangleup}$", r"$\bigtriangleup$").replace(r"$^{\bigtriangledown}$",
                                                                         r"$\bigtriangledown$") + "}",
            r"\label{tab:bench-leaderboard-delta}", r"\end{table}"]
    return out


# ----------------------------------------------------------------------------------- json
def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def table_dict(table: Table) -> dict:
    """The table as plain data (full precision; non-finite values as null)."""
    return {
        "title": "bench leaderboard",
        "provenance": {
            "protocols": {p.name: {"benchmark": p.benchmark, "version": p.version, "fingerprint": p.fingerprint,
                                   "registered": p.registered, "registered_fingerprint": p.registered_fingerprint}
                          for p in table.protocols.values()},
            "git": {"revisions": table.revisions, "dirty": table.dirty},
            "date": table.date, "latest_started": table.started, "records": len(table.rows),
            "statement": provenance(table), "notes": list(table.notes)},
        "columns": [{"key": c.key, "protocol": c.protocol, "benchmark": c.benchmark, "metric": c.metric,
                     "label": c.label, "higher_is_better": c.higher_is_better, "percent": c.percent}
                    for c in table.columns],
        "rows": [{"model": r.model, "method": r.method, "checkpoint": r.checkpoint, "record": r.record,
                  "started": r.started, "git": {"revision": r.git_revision, "dirty": r.git_dirty},
                  "cells": {c.key: {"value": _finite(r.cells[c.key].value),
                                    "ci": None if r.cells[c.key].ci is None else [_finite(v) for v in r.cells[c.key].ci],
                                    "shown": fmt_cell(table, r, c),
                                    **({"delta_vs_base": [_finite(v) for v in r.cells[c.key].delta],
                                        "delta_shown": fmt_delta(table, r, c)}
                                       if r.cells[c.key].delta is not None else {})}
                            for c in table.columns if c.key in r.cells}}
                 for r in table.rows]}


def json_text(table: Table) -> str:
    return json.dumps(table_dict(table), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


TEXT_FORMATS: dict[str, Callable[[Table], str]] = {"md": markdown, "csv": csv_text, "tex": latex, "json": json_text}
