"""Collect leaderboard rows from run records: ``OUT/<model>/<method>/{run.json, scores/*.json}``.

Rows = (model, method, checkpoint); columns = a protocol's headline metrics (the registered
Benchmark's ``headline``; all metrics of the score file when the protocol is not registered).
A column whose protocol (name, version, fingerprint) differs across rows is refused with an
error naming both, never silently mixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.io import read_json


@dataclass
class Cell:
    value: float
    ci: list[float] | None = None


@dataclass
class Row:
    model: str
    method: str
    checkpoint: str
    started: str
    git: str | None
    cells: dict[str, Cell] = field(default_factory=dict)  # key "<protocol>:<metric>"


@dataclass
class Column:
    key: str
    protocol: str
    metric: str
    label: str
    higher_is_better: bool | None


@dataclass
class Table:
    rows: list[Row]
    columns: list[Column]
    protocols: dict[str, dict]  # protocol name -> {version, fingerprint}

    @property
    def date(self) -> str:
        return max((r.started for r in self.rows), default="")

    @property
    def revisions(self) -> list[str]:
        return sorted({r.git for r in self.rows if r.git})


def _headline(protocol: str) -> dict[str, tuple[str, bool]] | None:
    from bench.registry import BENCHMARKS

    if protocol in BENCHMARKS:
        return dict(getattr(BENCHMARKS.get(protocol), "headline", {}) or {}) or None
    return None


def _method_order(method: str) -> tuple[int, str]:
    return (0 if method == "base" else 1, method)


def collect(out: str | Path) -> Table:
    out = Path(out)
    runs = sorted(out.glob("*/*/run.json"))
    if not runs:
        raise BenchError(f"{out}: no run records (*/*/run.json) found")
    rows: list[Row] = []
    protocols: dict[str, dict] = {}
    owners: dict[str, str] = {}
    columns: dict[str, Column] = {}
    for run_path in runs:
        rec = read_json(run_path)
        ckpt = str(rec.get("checkpoint", ""))
        if Path(ckpt).is_absolute():  # tables never carry a machine's absolute paths
            try:
                ckpt = str(Path(ckpt).relative_to(out.resolve()))
            except ValueError:
                ckpt = Path(ckpt).name
        row = Row(rec.get("model", run_path.parent.parent.name), rec.get("method", run_path.parent.name),
                  ckpt, rec.get("started", ""), (rec.get("git") or {}).get("revision"))
        for score_path in sorted((run_path.parent / "scores").glob("*.json")):
            score = read_json(score_path)
            proto = score.get("protocol", score_path.stem)
            ident = {"version": score.get("version"), "fingerprint": score.get("fingerprint")}
            if proto in protocols and protocols[proto] != ident:
                raise BenchError(
                    f"refusing to mix protocol versions in one column: {proto} is {protocols[proto]} in"
                    f" {owners[proto]} but {ident} in {score_path}; re-score one of them")
            protocols.setdefault(proto, ident)
            owners.setdefault(proto, str(score_path))
            metrics = score.get("metrics", {})
            head = _headline(proto) or {m: (m, None) for m in metrics}
            for metric, (label, hib) in head.items():
                if metric not in metrics:
                    continue
                key = f"{proto}:{metric}"
                columns.setdefault(key, Column(key, proto, metric, label, hib))
                row.cells[key] = Cell(float(metrics[metric]), (score.get("ci") or {}).get(metric))
        rows.append(row)
    rows.sort(key=lambda r: (r.model, *_method_order(r.method)))
    return Table(rows, list(columns.values()), protocols)
