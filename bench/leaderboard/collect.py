"""Collect leaderboard rows from run records: ``OUT/<model>/<method>/{run.json, scores/*.json}``.

Input formats are the ones in ``docs/CONVENTIONS.md`` (run records and score files). Nothing else is
read: a leaderboard is a pure function of the records, so it can be regenerated and checked.

* Rows = one run record each, keyed (model, method, checkpoint); a record without any score file
  (a training-only record) is not a row. Order: model, then ``base`` first, then method, checkpoint.
* Columns = (protocol, metric). Which metrics of a protocol become columns: the registered
  Benchmark's ``headline`` dict ``{metric: (label, higher_is_better)}`` in its declared order; when the
  protocol is not registered in ``bench.registry.BENCHMARKS`` or its ``headline`` is empty, every
  metric found in its score files (sorted by key; direction unknown). A headline metric that no
  record has is not a column. Protocol order: family (pope, chair, shr, mhalubench, others A–Z), then
  protocol name.
* Cells = the score file's metric value (full precision) and its 95% CI ``[lo, hi]`` where present.
* A score made with ``--limit N`` (its ``selection.limit``) belongs to the column protocol ``<name>@limitN``,
  labelled ``[limit N img]``: limited and full runs never share a column.
* A score file with an ``integrity`` hash that does not match its content (edited by hand, relabelled to
  another protocol) is a :class:`DataError`.
* Protocol identity = (name, version, fingerprint). A column holds one identity: a second identity
  of the same protocol name anywhere in OUT is refused with a :class:`BenchError` naming the rows
  and the identities, never mixed. A score file disagreeing with its own ``run.json`` entry is a
  :class:`DataError`.
* A record's protocol whose fingerprint differs from the *registered* declaration's is not refused
  (the records are consistent with each other) but noted in the table's provenance.

Deviations/decisions: absolute checkpoint paths are made relative to OUT (or reduced to their last
component) so tables carry no machine paths; non-finite metric values (``NaN`` from a defined zero
division) are kept and shown as ``n/a``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bench.errors import BenchError, DataError
from bench.io import read_json
from bench.records import score_integrity
from bench.registry import BENCHMARKS
from bench.stats import paired_bootstrap_delta

FAMILY_ORDER = ("pope", "chair", "shr", "mhalubench")


@dataclass(frozen=True)
class Protocol:
    """A protocol identity as recorded in score files, plus what the registry says about it."""

    name: str
    benchmark: str
    version: str
    fingerprint: str
    registered: bool = False
    registered_fingerprint: str | None = None
    report_rounding: str | None = None  # the registered declaration's params["report_rounding"], if any

    @property
    def ident(self) -> tuple[str, str, str]:
        return (self.name, self.version, self.fingerprint)

    def describe(self) -> str:
        return f"{self.name} v{self.version} ({self.fingerprint})"


@dataclass
class Cell:
    value: float
    ci: tuple[float, float] | None = None
    # difference from the same model's ``base`` row with its paired-bootstrap 95% CI: (delta, lower, upper)
    delta: tuple[float, float, float] | None = None


@dataclass
class Row:
    model: str
    method: str
    checkpoint: str
    started: str
    git_revision: str | None
    git_dirty: bool
    record: str  # run.json path relative to OUT (posix)
    cells: dict[str, Cell] = field(default_factory=dict)  # column key -> cell

    @property
    def label(self) -> str:
        return f"{self.model}/{self.method}"


@dataclass
class Column:
    key: str  # "<protocol>:<metric>"
    protocol: str
    benchmark: str
    metric: str
    label: str
    higher_is_better: bool | None
    percent: bool = True  # every value and CI bound lies in [0, 1] → shown as %


@dataclass
class Table:
    rows: list[Row]
    columns: list[Column]
    protocols: dict[str, Protocol]  # protocol name -> identity (one per name, by construction)
    notes: list[str] = field(default_factory=list)

    @property
    def started(self) -> str:
        """Latest ``started`` among the records (ISO string; '' when none has one)."""
        return max((r.started for r in self.rows if r.started), default="")

    @property
    def date(self) -> str:
        return self.started[:10] if self.started else "unknown"

    @property
    def revisions(self) -> list[str]:
        return sorted({r.git_revision for r in self.rows if r.git_revision})

    @property
    def dirty(self) -> bool:
        return any(r.git_dirty for r in self.rows)


def _registry():
    """The benchmark registry with the in-tree protocols registered (``metrics`` is imported if it can be).

    The headline choice must not depend on what the caller happened to import, or a regenerated
    table would differ from a checked-in one.
    """
    try:
        import metrics  # noqa: F401  (optional: registers the in-tree protocols; imported on use, start-up time)
    except ImportError:  # a bare install without the metrics package: fall back to all metrics
        pass
    return BENCHMARKS


def _registered(name: str) -> Any | None:
    reg = _registry()
    try:
        return reg.get(name) if name in reg else None
    except BenchError:
        return None


def _rel_checkpoint(ckpt: Any, out: Path) -> str:
    text = "" if ckpt is None else str(ckpt)
    path = Path(text)
    if text and path.is_absolute():
        try:
            return PurePosixPath(path.resolve().relative_to(out.resolve())).as_posix()
        except (ValueError, OSError):
            return path.name
    return text


def _number(value: Any, path: Path, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(path, f"expected a number, got {value!r}", field=field_name)
    return float(value)


def _read_score(path: Path) -> dict:
    score = read_json(path)
    if not isinstance(score, dict):
        raise DataError(path, "a score file must be a JSON object")
    for key in ("protocol", "version", "fingerprint"):
        if not isinstance(score.get(key), (str, int)) or score.get(key) == "":
            raise DataError(path, "missing protocol identity (protocol, version, fingerprint are required)",
                            field=key)
    if not isinstance(score.get("metrics"), dict):
        raise DataError(path, "missing or non-object 'metrics'", field="metrics")
    if "integrity" in score and score["integrity"] != score_integrity(score):
        raise DataError(path, "content does not match its integrity hash (edited after scoring?); recompute it"
                              " with `python -m bench score RUN_DIR --benchmarks NAME --data-root ROOT`",
                        field="integrity")
    return score


def _ci(score: dict, metric: str, path: Path) -> tuple[float, float] | None:
    ci = (score.get("ci") or {}).get(metric)
    if ci is None:
        return None
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        raise DataError(path, f"CI must be [lo, hi], got {ci!r}", field=f"ci.{metric}")
    lo, hi = (_number(v, path, f"ci.{metric}") for v in ci)
    return (lo, hi)


LIMIT_MARK = "@limit"


def column_protocol(score: dict) -> str:
    """The column identity's protocol name: ``pope``, or ``pope@limit20`` for a run scored on the first 20 images
    (``--limit``), so limited and full runs never share a column."""
    limit = (score.get("selection") or {}).get("limit") if isinstance(score.get("selection"), dict) else None
    return f"{score['protocol']}{LIMIT_MARK}{limit}" if limit else str(score["protocol"])


def base_protocol(name: str) -> str:
    """``pope@limit20`` → ``pope`` (the registered protocol)."""
    return name.split(LIMIT_MARK, 1)[0]


def _family_key(benchmark: str) -> tuple[int, str]:
    return (FAMILY_ORDER.index(benchmark) if benchmark in FAMILY_ORDER else len(FAMILY_ORDER), benchmark)


def collect(out: str | Path) -> Table:
    """Read every ``OUT/*/*/run.json`` and its ``scores/*.json`` into a :class:`Table`."""
    out = Path(out)
    if not out.is_dir():
        raise BenchError(f"{out}: no such directory of run records")
    run_paths = sorted(out.glob("*/*/run.json"))
    if not run_paths:
        raise BenchError(f"{out}: no run records (<model>/<method>/run.json) found")

    rows: list[Row] = []
    seen: dict[str, dict[tuple, list[str]]] = {}  # protocol name -> identity -> row labels
    families: dict[str, str] = {}
    metrics_seen: dict[str, list[str]] = {}  # protocol -> metric keys in file order (union)
    scores: dict[tuple[str, str], dict] = {}  # (row record, protocol) -> score file, for paired differences
    for run_path in run_paths:
        rec = read_json(run_path)
        if not isinstance(rec, dict):
            raise DataError(run_path, "a run record must be a JSON object")
        git = rec.get("git") if isinstance(rec.get("git"), dict) else {}
        row = Row(model=str(rec.get("model") or run_path.parent.parent.name),
                  method=str(rec.get("method") or run_path.parent.name),
                  checkpoint=_rel_checkpoint(rec.get("checkpoint"), out),
                  started=str(rec.get("started") or ""),
                  git_revision=git.get("revision"), git_dirty=bool(git.get("dirty")),
                  record=run_path.relative_to(out).as_posix())
        declared = rec.get("benchmarks") if isinstance(rec.get("benchmarks"), dict) else {}
        for score_path in sorted((run_path.parent / "scores").glob("*.json")):
            score = _read_score(score_path)
            protocol = str(score["protocol"])
            name = column_protocol(score)  # a limited run is its own column, never mixed with full runs
            ident = (name, str(score["version"]), str(score["fingerprint"]))
            entry = declared.get(protocol)
            if isinstance(entry, dict) and entry.get("fingerprint") not in (None, ident[2]):
                raise DataError(score_path, f"fingerprint {ident[2]} disagrees with {run_path} which records"
                                            f" {entry.get('fingerprint')} for protocol {protocol!r}; re-score")
            seen.setdefault(name, {}).setdefault(ident, []).append(row.label)
            scores[(row.record, name)] = score
            families.setdefault(name, str(score.get("benchmark") or name))
            known = metrics_seen.setdefault(name, [])
            for metric, value in score["metrics"].items():
                if metric not in known:
                    known.append(metric)
                row.cells[f"{name}:{metric}"] = Cell(_number(value, score_path, f"metrics.{metric}"),
                                                     _ci(score, metric, score_path))
        if row.cells:
            rows.append(row)
    if not rows:
        raise BenchError(f"{out}: run records found but none has scores (scores/<benchmark>.json)")

    mixed = {name: idents for name, idents in seen.items() if len(idents) > 1}
    if mixed:
        parts = []
        for name, idents in sorted(mixed.items()):
            groups = "; ".join(f"v{v} fingerprint {fp} in {', '.join(labels)}"
                               for (_, v, fp), labels in sorted(idents.items()))
            parts.append(f"protocol {name!r} is {groups}")
        raise BenchError("refusing to mix protocol versions in one leaderboard column: " + " | ".join(parts)
                         + f". Re-score the stale predictions (`python -m bench score`) or move those records"
                           f" out of {out}")

    protocols: dict[str, Protocol] = {}
    notes: list[str] = []
    columns: list[Column] = []
    for name in sorted(seen, key=lambda n: (_family_key(families[n]), n)):
        (_, version, fingerprint), = seen[name].keys()
        cls = _registered(base_protocol(name))
        reg_fp = cls.fingerprint() if cls is not None else None
        rounding = cls.params.get("report_rounding") if cls is not None else None
        proto = Protocol(name, families[name], version, fingerprint, cls is not None, reg_fp, rounding)
        protocols[name] = proto
        headline = dict(cls.headline) if cls is not None else {}
        if cls is None:
            notes.append(f"protocol {name} is not registered here: all its metrics are shown")
        elif not headline:
            notes.append(f"protocol {name} declares no headline metrics: all its metrics are shown")
        elif reg_fp != fingerprint:
            notes.append(f"protocol {name}: the records were scored under fingerprint {fingerprint}; the"
                         f" registered declaration is now {reg_fp}")
        if headline:
            chosen = [(m, str(lab), hib) for m, (lab, hib) in headline.items() if m in metrics_seen[name]]
        else:
            chosen = [(m, m, None) for m in sorted(metrics_seen[name])]
        limit = name[len(base_protocol(name)) + len(LIMIT_MARK):] if name != base_protocol(name) else ""
        for metric, label, hib in chosen:
            key = f"{name}:{metric}"
            if limit:
                label = f"{label} [limit {limit} img]"
            cells = [r.cells[key] for r in rows if key in r.cells]
            bounds = [v for c in cells for v in (c.value, *(c.ci or ())) if math.isfinite(v)]
            columns.append(Column(key, name, families[name], metric, label,
                                  None if hib is None else bool(hib),
                                  percent=all(0.0 <= v <= 1.0 for v in bounds)))
    # the same label under two protocols (e.g. pope and pope-hadpo) gets the protocol appended
    labels = [c.label for c in columns]
    for col in columns:
        if labels.count(col.label) > 1:
            col.label = f"{col.label} ({col.protocol})"
    keys = {c.key for c in columns}
    for row in rows:
        row.cells = {k: v for k, v in row.cells.items() if k in keys}
    rows.sort(key=lambda r: (r.model, r.method != "base", r.method, r.checkpoint, r.record))
    _paired_deltas(rows, columns, scores)
    return Table(rows, columns, protocols, notes)


def _paired_deltas(rows: list[Row], columns: list[Column], scores: dict[tuple[str, str], dict]) -> None:
    """Fill ``Cell.delta`` of every non-base row: the difference from its model's ``base`` row, with a paired
    bootstrap CI over the images both scored (:func:`bench.stats.paired_bootstrap_delta`, 1000 resamples,
    seed 0), for protocols whose class can rebuild per-image counts (:meth:`bench.benchmark.Benchmark.paired_units`
    returns them; its default, None, means no paired difference)."""

    base = {r.model: r for r in rows if r.method == "base"}
    for proto in sorted({c.protocol for c in columns}):
        cls = _registered(base_protocol(proto))
        if cls is None:
            continue
        bench = cls()
        metric_cols = [c for c in columns if c.protocol == proto]
        for row in rows:
            ref = base.get(row.model)
            if ref is None or ref is row or (ref.record, proto) not in scores or (row.record, proto) not in scores:
                continue
            a, b = bench.paired_units(scores[(ref.record, proto)]), bench.paired_units(scores[(row.record, proto)])
            if a is None or b is None:
                continue
            deltas = paired_bootstrap_delta(a[0], b[0], a[1])
            for col in metric_cols:
                if col.metric in deltas and col.key in row.cells:
                    row.cells[col.key].delta = deltas[col.metric]
