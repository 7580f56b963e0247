"""Render a :class:`Table` as Markdown, CSV, LaTeX (booktabs), JSON and a self-contained HTML page.

Values are shown as percentages with one decimal, the 95% CI as ``[lo, hi]``; records keep full
precision. Output is deterministic (no timestamps but the records' own), so a checked-in table can
be compared with a regenerated one.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json

from bench.leaderboard.collect import Table


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def _cell(table: Table, row, col, with_ci: bool = True) -> str:
    cell = row.cells.get(col.key)
    if cell is None:
        return "—"
    text = _pct(cell.value)
    if with_ci and cell.ci:
        text += f" [{_pct(cell.ci[0])}, {_pct(cell.ci[1])}]"
    return text


def _header(col) -> str:
    arrow = "" if col.higher_is_better is None else (" ↑" if col.higher_is_better else " ↓")
    return f"{col.label}{arrow}"


def provenance(table: Table) -> str:
    protos = ", ".join(f"{p} v{v['version']} ({v['fingerprint']})" for p, v in sorted(table.protocols.items()))
    revs = ", ".join(r[:10] for r in table.revisions) or "unknown"
    return f"Protocols: {protos}. Git revision(s): {revs}. Date: {table.date}. Values in %, 95% bootstrap CI in brackets."


def markdown(table: Table) -> str:
    head = ["model", "method"] + [_header(c) for c in table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        lines.append("| " + " | ".join([row.model, row.method] + [_cell(table, row, c) for c in table.columns]) + " |")
    return "\n".join(lines) + "\n\n" + provenance(table) + "\n"


def csv_text(table: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "method", "checkpoint", "protocol", "metric", "value", "ci_low", "ci_high"])
    for row in table.rows:
        for col in table.columns:
            cell = row.cells.get(col.key)
            if cell is None:
                continue
            lo, hi = (cell.ci or [None, None])
            w.writerow([row.model, row.method, row.checkpoint, col.protocol, col.metric, repr(cell.value),
                        "" if lo is None else repr(lo), "" if hi is None else repr(hi)])
    return buf.getvalue()


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$"), ("—", "--")):
        s = s.replace(a, b)
    return s


def latex(table: Table) -> str:
    cols = "ll" + "r" * len(table.columns)
    out = [r"\begin{tabular}{" + cols + "}", r"\toprule",
           " & ".join(["Model", "Method"] + [_tex_escape(_header(c)) for c in table.columns]) + r" \\", r"\midrule"]
    for row in table.rows:
        cells = [_tex_escape(row.model), _tex_escape(row.method)] + [
            _tex_escape(_cell(table, row, c, with_ci=False)) for c in table.columns]
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", "% " + _tex_escape(provenance(table))]
    return "\n".join(out) + "\n"


def json_text(table: Table) -> str:
    obj = {"protocols": table.protocols, "date": table.date, "git": table.revisions,
           "columns": [{"key": c.key, "protocol": c.protocol, "metric": c.metric, "label": c.label,
                        "higher_is_better": c.higher_is_better} for c in table.columns],
           "rows": [{"model": r.model, "method": r.method, "checkpoint": r.checkpoint,
                     "cells": {k: {"value": v.value, "ci": v.ci} for k, v in r.cells.items()}} for r in table.rows]}
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def _plots(table: Table) -> list[tuple[str, str]]:
    """(title, base64 PNG) bar charts with CI whiskers per column, and CHAIR_i vs recall if present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "bench"
    out = []
    labels = [f"{r.method}" if len({x.model for x in table.rows}) == 1 else f"{r.model}/{r.method}" for r in table.rows]
    for col in table.columns:
        vals = [r.cells[col.key].value * 100 if col.key in r.cells else 0.0 for r in table.rows]
        errs = [[0.0] * len(vals), [0.0] * len(vals)]
        for i, r in enumerate(table.rows):
            c = r.cells.get(col.key)
            if c and c.ci:
                errs[0][i] = max(0.0, c.value * 100 - c.ci[0] * 100)
                errs[1][i] = max(0.0, c.ci[1] * 100 - c.value * 100)
        fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
        ax.bar(range(len(vals)), vals, yerr=errs, capsize=4, color="#4c72b0")
        ax.set_xticks(range(len(vals)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("%")
        ax.set_title(_header(col), fontsize=10)
        fig.tight_layout()
        out.append((_header(col), _png(fig)))
        plt.close(fig)
    ci_key = next((c.key for c in table.columns if c.metric == "chair_i"), None)
    rec_key = next((c.key for c in table.columns if c.metric == "recall" and c.protocol.startswith("chair")), None)
    if ci_key and rec_key:
        fig, ax = plt.subplots(figsize=(5, 3.5), dpi=80)
        for lab, r in zip(labels, table.rows):
            if ci_key in r.cells and rec_key in r.cells:
                ax.scatter(r.cells[rec_key].value * 100, r.cells[ci_key].value * 100)
                ax.annotate(lab, (r.cells[rec_key].value * 100, r.cells[ci_key].value * 100), fontsize=8)
        ax.set_xlabel("CHAIR recall % ↑")
        ax.set_ylabel("CHAIR_i % ↓")
        ax.set_title("Hallucination vs coverage", fontsize=10)
        fig.tight_layout()
        out.append(("CHAIR_i vs recall", _png(fig)))
        plt.close(fig)
    return out


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode()


_SORT_JS = """
document.querySelectorAll('table.lb th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var tbody = th.closest('table').querySelector('tbody');
    var rows = Array.prototype.slice.call(tbody.rows);
    var asc = th.dataset.asc !== 'true';
    th.dataset.asc = asc;
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v || a.cells[col].textContent;
      var y = b.cells[col].dataset.v || b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  });
});
"""


def html_page(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["model", "method"] + [_header(c) for c in table.columns])
    body = []
    for row in table.rows:
        cells = [f"<td>{html.escape(row.model)}</td>", f"<td>{html.escape(row.method)}</td>"]
        for col in table.columns:
            c = row.cells.get(col.key)
            v = "" if c is None else f' data-v="{c.value!r}"'
            cells.append(f"<td{v}>{html.escape(_cell(table, row, col))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    plots = "".join(f'<figure><img alt="{html.escape(t)}" src="data:image/png;base64,{b}"><figcaption>'
                    f"{html.escape(t)}</figcaption></figure>" for t, b in _plots(table))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>bench leaderboard</title>
<style>body{{font-family:sans-serif;margin:2em}}table.lb{{border-collapse:collapse}}
th,td{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{cursor:pointer;background:#eee}}
td:first-child,td:nth-child(2){{text-align:left}}figure{{display:inline-block;margin:1em}}</style></head>
<body><h1>bench leaderboard</h1>
<table class="lb"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
<p>{html.escape(provenance(table))}</p>
<div id="plots">{plots}</div>
<script>{_SORT_JS}</script></body></html>
"""


FORMATS = {"md": markdown, "csv": csv_text, "tex": latex, "json": json_text, "html": html_page}
