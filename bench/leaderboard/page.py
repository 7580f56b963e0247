"""The leaderboard as one self-contained static HTML page: inline CSS and JavaScript, plots embedded as
base64 PNG (:mod:`bench.leaderboard.plots`), no external resource of any kind.

Layout: the absolute table (the checkpoint is the method cell's tooltip) and the difference-from-base table (each checkpoint minus its model's base,
paired 95% CI, ▲/▼ coloured) each scroll horizontally inside their own box (``div.wrap``), with the
model/method columns sticky, so the page itself never overflows a laptop screen; the plots sit in a
responsive grid (one column on narrow screens, two or more on wide ones) and scale down to fit. Each
figure links to its PNG and SVG under ``plots/`` (written next to the HTML by
:func:`bench.leaderboard.write.write_leaderboards`).

Sorting: clicking a column header (or Enter/Space on it) sorts the rows by that column, best first
on the first click (descending when higher is better, ascending when lower is better, A–Z for
text), reversed on the next click; rows without a value stay last; ties keep the original order.
Numeric cells carry the full-precision value in ``data-v``. A URL fragment ``#sort=<column key>:<asc|desc>``
(e.g. ``#sort=chair:chair_i:asc``) pre-sorts the page, so a sorted view can be linked. When the
script has run, ``<html data-sortable="ready">`` is set (tests use it).
"""

from __future__ import annotations

import html

from bench.leaderboard.collect import Table
from bench.leaderboard.plots import Plot, all_plots, verdict
from bench.leaderboard.render import DELTA_EXPLAINED, MISSING, delta_rows_cols, fmt_cell, fmt_delta, header, provenance

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:1.2em 1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .6em}
h2{font-size:1.1em;margin:1.2em 0 .4em}
p.note{font-size:.85em;color:#444;margin:.2em 0 .6em}
div.wrap{overflow-x:auto;max-width:100%;border:1px solid #ddd;margin-bottom:.8em}
table.lb{border-collapse:collapse;font-size:.85em}
table.lb th,table.lb td{border:1px solid #ccc;padding:3px 7px;white-space:nowrap}
table.lb td.num{text-align:right;font-variant-numeric:tabular-nums}
table.lb th{background:#eef1f5;cursor:pointer;user-select:none;position:relative;padding-right:1.4em}
table.lb th:focus{outline:2px solid #4c72b0}
table.lb th .ind{position:absolute;right:.35em;color:#888;font-size:.8em}
table.lb th[aria-sort=ascending] .ind::after{content:"\\25B2"}
table.lb th[aria-sort=descending] .ind::after{content:"\\25BC"}
table.lb th[aria-sort=none] .ind::after{content:"\\21C5"}
table.lb .stick{position:sticky;left:0;background:#fff;z-index:1}
table.lb th.stick{background:#eef1f5;z-index:2}
table.lb tbody tr:nth-child(even) td{background:#fafafa}
table.lb td small{color:#666}
table.lb td small.ci{font-size:.8em}
table.lb td.better{color:#1a7f3c}
table.lb td.worse{color:#c62828}
ul.prov{font-size:.85em;color:#444;padding-left:1.2em}
#plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,560px),1fr));gap:1em;margin-top:1em}
#plots figure{margin:0;min-width:0}
#plots img{display:block;max-width:100%;height:auto}
#plots figcaption{font-size:.75em;color:#555}
"""

JS = """
(function () {
  'use strict';
  function value(td) {
    var v = td.getAttribute('data-v');
    return (v === null || v === '') ? null : parseFloat(v);
  }
  function sortBy(table, col, dir) {
    var head = table.tHead.rows[0].cells;
    var numeric = head[col].getAttribute('data-type') === 'num';
    var tbody = table.tBodies[0];
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var c;
      if (numeric) {
        var x = value(a.cells[col]), y = value(b.cells[col]);
        if (x === null || isNaN(x) || y === null || isNaN(y)) {
          var mx = (x === null || isNaN(x)) ? 1 : 0, my = (y === null || isNaN(y)) ? 1 : 0;
          c = mx - my;
          if (c !== 0) { return c; }
          c = 0;
        } else {
          c = dir === 'asc' ? x - y : y - x;
        }
      } else {
        c = a.cells[col].textContent.localeCompare(b.cells[col].textContent);
        if (dir !== 'asc') { c = -c; }
      }
      return c !== 0 ? c : Number(a.getAttribute('data-i')) - Number(b.getAttribute('data-i'));
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
    for (var i = 0; i < head.length; i++) {
      head[i].setAttribute('aria-sort', i === col ? (dir === 'asc' ? 'ascending' : 'descending') : 'none');
    }
  }
  function firstDir(th) {
    var better = th.getAttribute('data-better');
    if (th.getAttribute('data-type') !== 'num') { return 'asc'; }
    return better === 'lower' ? 'asc' : 'desc';
  }
  var tables = document.querySelectorAll('table.lb');
  Array.prototype.forEach.call(tables, function (table) {
    var head = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(head, function (th, col) {
      th.setAttribute('tabindex', '0');
      th.setAttribute('aria-sort', 'none');
      var ind = document.createElement('span');
      ind.className = 'ind';
      th.appendChild(ind);
      function go() {
        var cur = th.getAttribute('aria-sort');
        var dir = cur === 'ascending' ? 'desc' : (cur === 'descending' ? 'asc' : firstDir(th));
        sortBy(table, col, dir);
      }
      th.addEventListener('click', go);
      th.addEventListener('keydown', function (e) {
        if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); go(); }
      });
    });
    var m = /[#&]sort=([^&]+)/.exec(window.location.hash || '');
    if (m) {
      var spec = decodeURIComponent(m[1]);
      var cut = spec.lastIndexOf(':');
      var key = cut > 0 ? spec.slice(0, cut) : spec;
      var dir = cut > 0 ? spec.slice(cut + 1) : '';
      for (var i = 0; i < head.length; i++) {
        if (head[i].getAttribute('data-key') === key) {
          sortBy(table, i, dir === 'asc' || dir === 'desc' ? dir : firstDir(head[i]));
        }
      }
    }
  });
  document.documentElement.setAttribute('data-sortable', 'ready');
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _th(table: Table, col, prefix: str = "") -> str:
    better = "" if col.higher_is_better is None else ("higher" if col.higher_is_better else "lower")
    proto = table.protocols[col.protocol]
    return (f'<th data-key="{_e(col.key)}" data-type="num" data-better="{better}"'
            f' title="{_e(proto.describe())}: {_e(col.metric)}">{_e(prefix + header(col))}'
            f'<br><small>{_e(col.protocol)}</small></th>')


def _table(table: Table) -> str:
    ths = ['<th class="stick" data-key="method" data-type="text">method</th>',
           '<th data-key="model" data-type="text">model</th>']
    ths += [_th(table, col) for col in table.columns]
    body = []
    for i, row in enumerate(table.rows):  # the checkpoint is the method cell's tooltip (saves a wide column)
        tds = [f'<td class="stick" title="checkpoint: {_e(row.checkpoint or MISSING)}">{_e(row.method)}</td>',
               f"<td>{_e(row.model)}</td>"]
        for col in table.columns:
            cell = row.cells.get(col.key)
            v = "" if cell is None else repr(cell.value)
            text = _e(fmt_cell(table, row, col, ci="none"))
            full = fmt_cell(table, row, col)
            if full != fmt_cell(table, row, col, ci="none"):
                text += f'<br><small class="ci">{_e(full.split(" ", 1)[1])}</small>'
            tds.append(f'<td class="num" data-v="{_e(v)}">{text}</td>')
        body.append(f'<tr data-i="{i}">' + "".join(tds) + "</tr>")
    return (f'<table class="lb" id="leaderboard"><thead><tr>{"".join(ths)}</tr></thead>\n<tbody>\n'
            + "\n".join(body) + "\n</tbody></table>")


def _delta_table(table: Table) -> str:
    """The difference-from-base table (empty string when no record carries paired differences)."""
    rows, cols = delta_rows_cols(table)
    if not rows:
        return ""
    ths = ['<th class="stick" data-key="method" data-type="text">method</th>',
           '<th data-key="model" data-type="text">model</th>']
    ths += [_th(table, col, "Δ ") for col in cols]
    body = []
    for i, row in enumerate(rows):
        tds = [f'<td class="stick">{_e(row.method)}</td>', f"<td>{_e(row.model)}</td>"]
        for col in cols:
            cell = row.cells.get(col.key)
            if cell is None or cell.delta is None:
                tds.append(f'<td class="num" data-v="">{MISSING}</td>')
                continue
            shown = fmt_delta(table, row, col)
            point, rest = shown.split(" ", 1)
            cls = verdict(col, cell.delta)
            tds.append(f'<td class="num {cls}" data-v="{_e(repr(cell.delta[0]))}">{_e(point)}'
                       f'<br><small class="ci">{_e(rest)}</small></td>')
        body.append(f'<tr data-i="{i}">' + "".join(tds) + "</tr>")
    return (f'<h2>Difference from base</h2>\n<p class="note">{_e(DELTA_EXPLAINED.replace("`", ""))}</p>\n'
            f'<div class="wrap"><table class="lb" id="delta"><thead><tr>{"".join(ths)}</tr></thead>\n<tbody>\n'
            + "\n".join(body) + "\n</tbody></table></div>\n")


def html_page(table: Table, plots: list[Plot] | None = None) -> str:
    """The page; ``plots`` defaults to :func:`bench.leaderboard.plots.all_plots` of the table."""
    if plots is None:
        plots = all_plots(table)
    figs = "\n".join(f'<figure><img alt="{_e(p.title)}" src="data:image/png;base64,{p.png_base64}">'
                      f'<figcaption><a href="plots/{_e(p.slug)}.png">PNG</a> · '
                      f'<a href="plots/{_e(p.slug)}.svg">SVG</a></figcaption></figure>' for p in plots)
    prov = "\n".join(f"<li>{_e(line)}</li>" for line in provenance(table))
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>bench leaderboard ({_e(table.date)})</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f'<h1>bench leaderboard</h1>\n<div class="wrap">{_table(table)}</div>\n{_delta_table(table)}'
            f'<ul class="prov">\n{prov}\n</ul>\n<section id="plots">\n{figs}\n</section>\n'
            f"<script>{JS}</script>\n</body>\n</html>\n")
