"""The leaderboard as one self-contained static HTML page: inline CSS and JavaScript, plots embedded as
base64 PNG (:mod:`bench.leaderboard.plots`), no external resource of any kind.

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
from bench.leaderboard.plots import all_plots
from bench.leaderboard.render import MISSING, fmt_cell, header, provenance

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:1.5em 2em;color:#222}
h1{font-size:1.4em;margin:0 0 .6em}
div.wrap{overflow-x:auto;max-width:100%}
table.lb{border-collapse:collapse;font-size:.9em;margin-bottom:1em}
table.lb th,table.lb td{border:1px solid #ccc;padding:4px 8px;white-space:nowrap}
table.lb td.num{text-align:right;font-variant-numeric:tabular-nums}
table.lb th{background:#eef1f5;cursor:pointer;user-select:none;position:relative;padding-right:1.4em}
table.lb th:focus{outline:2px solid #4c72b0}
table.lb th .ind{position:absolute;right:.35em;color:#888;font-size:.8em}
table.lb th[aria-sort=ascending] .ind::after{content:"\\25B2"}
table.lb th[aria-sort=descending] .ind::after{content:"\\25BC"}
table.lb th[aria-sort=none] .ind::after{content:"\\21C5"}
table.lb tbody tr:nth-child(even){background:#fafafa}
table.lb td small{color:#666}
table.lb td small.ci{font-size:.8em}
ul.prov{font-size:.85em;color:#444;padding-left:1.2em}
#plots figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}
#plots figcaption{font-size:.8em;color:#555;text-align:center}
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


def _table(table: Table) -> str:
    ths = ['<th data-key="model" data-type="text">model</th>', '<th data-key="method" data-type="text">method</th>',
           '<th data-key="checkpoint" data-type="text">checkpoint</th>']
    for col in table.columns:
        better = "" if col.higher_is_better is None else ("higher" if col.higher_is_better else "lower")
        proto = table.protocols[col.protocol]
        ths.append(f'<th data-key="{_e(col.key)}" data-type="num" data-better="{better}"'
                   f' title="{_e(proto.describe())}: {_e(col.metric)}">{_e(header(col))}'
                   f'<br><small>{_e(col.protocol)}</small></th>')
    body = []
    for i, row in enumerate(table.rows):
        tds = [f"<td>{_e(row.model)}</td>", f"<td>{_e(row.method)}</td>",
               f"<td><small>{_e(row.checkpoint or MISSING)}</small></td>"]
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


def html_page(table: Table) -> str:
    plots = "\n".join(f'<figure><img alt="{_e(title)}" src="data:image/png;base64,{png}">'
                      f"<figcaption>{_e(title)}</figcaption></figure>" for title, png in all_plots(table))
    prov = "\n".join(f"<li>{_e(line)}</li>" for line in provenance(table))
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>bench leaderboard ({_e(table.date)})</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f'<h1>bench leaderboard</h1>\n<div class="wrap">{_table(table)}</div>\n'
            f'<ul class="prov">\n{prov}\n</ul>\n<section id="plots">\n{plots}\n</section>\n'
            f"<script>{JS}</script>\n</body>\n</html>\n")
