"""The run summary printed at the end of ``bench eval`` and ``bench run`` (``--json``: the same as one object).

Built from the files on disk only (``<run_dir>/run.json`` and ``scores/<benchmark>.json``), so what is
printed is what was written. One row per (run directory, benchmark):

* the protocol's headline metric = the first entry of the registered class's ``headline`` (POPE:
  adversarial accuracy, CHAIR: CHAIR_i, …; the first metric of the score file when none is declared);
* its value and bootstrap 95% CI exactly as stored (fractions; the table shows them ×100);
* Δ vs base: when the run is not ``base`` and ``<model dir>/base/scores/<benchmark>.json`` exists with
  the same protocol identity, the paired bootstrap difference over the images both scored
  (:func:`bench.stats.paired_bootstrap_delta`, 1000 resamples, seed 0 — as the leaderboard computes it),
  for protocols that can rebuild per-image counts (``paired_units``); otherwise null;
* ``n`` scored units and the number of skipped items (``skipped.count``).

Then the files written: run records, predictions, per-sample logs, scores (and leaderboard files
when given).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

from bench.io import read_json
from bench.registry import BENCHMARKS
from bench.stats import paired_bootstrap_delta


def _headline(protocol: str, metrics: dict) -> tuple[str, str, bool | None]:
    """(metric key, label, higher_is_better) of the protocol's first headline metric present in ``metrics``."""
    cls = BENCHMARKS.get(protocol) if protocol in BENCHMARKS else None
    for key, (label, hib) in (cls.headline if cls is not None else {}).items():
        if key in metrics:
            return key, str(label), bool(hib)
    key = next(iter(metrics), "")
    return key, key, None


def _delta(protocol: str, base_score: dict, score: dict, metric: str) -> list[float] | None:
    cls = BENCHMARKS.get(protocol) if protocol in BENCHMARKS else None
    if cls is None:
        return None
    if any(base_score.get(k) != score.get(k) for k in ("protocol", "version", "fingerprint")):
        return None
    bench = cls()
    a, b = bench.paired_units(base_score), bench.paired_units(score)
    if a is None or b is None:
        return None
    d = paired_bootstrap_delta(a[0], b[0], a[1]).get(metric)
    return None if d is None else [float(v) for v in d]


def summarize(run_dirs: Iterable[str | Path], extra_files: Iterable[str | Path] = ()) -> dict:
    """The summary of the run directories' scores as plain data (see module doc)."""
    rows: list[dict[str, Any]] = []
    files: list[str] = []
    for run_dir in map(Path, run_dirs):
        rec_path = run_dir / "run.json"
        rec = read_json(rec_path) if rec_path.exists() else {}
        if rec_path.exists():
            files.append(str(rec_path))
        model = str(rec.get("model") or run_dir.parent.name)
        method = str(rec.get("method") or run_dir.name)
        names = list((rec.get("benchmarks") or {}).keys()) or sorted(p.stem for p in (run_dir / "scores").glob("*.json"))
        for name in names:
            score_path = run_dir / "scores" / f"{name}.json"
            if not score_path.exists():
                continue
            score = read_json(score_path)
            metrics = score.get("metrics") or {}
            key, label, hib = _headline(str(score.get("protocol", name)), metrics)
            ci = (score.get("ci") or {}).get(key)
            delta = None
            base_path = run_dir.parent / "base" / "scores" / f"{name}.json"
            if method != "base" and base_path.exists():
                delta = _delta(str(score.get("protocol", name)), read_json(base_path), score, key)
            rows.append({"model": model, "method": method, "benchmark": name,
                         "protocol": score.get("protocol", name), "metric": key, "label": label,
                         "higher_is_better": hib, "value": _finite(metrics.get(key)),
                         "ci": [_finite(v) for v in ci] if ci is not None else None,
                         "delta_vs_base": [_finite(v) for v in delta] if delta is not None else None,
                         "n": score.get("n"), "skipped": (score.get("skipped") or {}).get("count", 0),
                         "scores": str(score_path)})
            for sub, ext in (("predictions", "jsonl"), ("samples", "jsonl")):
                path = run_dir / sub / f"{name}.{ext}"
                if path.exists():
                    files.append(str(path))
            files.append(str(score_path))
    files += [str(p) for p in extra_files]
    return {"rows": rows, "files": files}


def _finite(x: Any) -> Any:
    """Non-finite floats become None (JSON has no NaN); everything else is returned as stored."""
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    v = 100.0 * x
    return f"{v:+.1f}" if signed else f"{v:.1f}"


def format_summary(summary: dict) -> str:
    """A compact text table (values ×100, 1 decimal) and the files written."""
    head = ["model/method", "benchmark", "metric", "value", "95% CI", "Δ vs base [95% CI]", "n", "skipped"]
    body = []
    for r in summary["rows"]:
        ci = f"[{_pct(r['ci'][0])}, {_pct(r['ci'][1])}]" if r["ci"] else "—"  # _pct: None → n/a
        arrow = "" if r["higher_is_better"] is None else (" ↑" if r["higher_is_better"] else " ↓")
        delta = "—"
        if r["delta_vs_base"] and None not in r["delta_vs_base"]:
            d, lo, hi = r["delta_vs_base"]
            delta = f"{_pct(d, True)} [{_pct(lo, True)}, {_pct(hi, True)}]"
            if r["higher_is_better"] is not None and (lo > 0 or hi < 0):
                delta += " ▲" if (lo > 0) == r["higher_is_better"] else " ▼"
        body.append([f"{r['model']}/{r['method']}", r["benchmark"], r["label"] + arrow, _pct(r["value"]), ci, delta,
                     str(r["n"] if r["n"] is not None else "—"), str(r["skipped"])])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    right = {3, 4, 5, 6, 7}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = ["run summary (values in %, 95% bootstrap CI over images; Δ: paired difference from base,"
           " ▲ better / ▼ worse where its CI excludes 0)", line(head), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    if summary["files"]:
        out += ["", "files written:"] + [f"  {f}" for f in summary["files"]]
    return "\n".join(out) + "\n"


def print_summary(run_dirs: Iterable[str | Path], as_json: bool = False,
                  extra_files: Iterable[str | Path] = ()) -> dict:
    """Print the summary (text table, or one JSON object with ``as_json``) and return it."""
    summary = summarize(run_dirs, extra_files)
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, allow_nan=False))
    else:
        print(format_summary(summary), end="")
    return summary
