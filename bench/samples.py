"""Per-sample logs: ``samples/<benchmark>.jsonl`` beside ``predictions/`` and ``scores/``, and ``bench show``.

One JSON line per scored unit (what lmms-eval's ``--log_samples`` gives)::

    {"id", "question", "generation",        # the prompt sent (no template) and the raw stored generation
     "correct": bool | null,                 # whether the scorer counted it correct (null: not defined)
     ...verdict fields...,                   # e.g. "answer" (parsed) and "label" (POPE, MHaluBench),
                                             #      "hallucinated_objects" (CHAIR)
     "detail": {...}}                        # the scorer's own per-item record from scores/<b>.json details

Generic in the core: :meth:`bench.benchmark.Benchmark.sample_rows` builds the rows from the score's
``details`` (the first per-item list of ``{"id": …}`` records, or a mapping id → record) joined with the
protocol's items (question) and the stored predictions (generation) by id; a unit whose id is not an item
id is joined through its parent (``mh-1/0`` → item ``mh-1`` when one generation lists several claims).
A protocol only declares :meth:`~bench.benchmark.Benchmark.sample_verdict` (detail → ``correct`` and the
fields worth reading) — nothing here knows a benchmark by name.

Rows follow the order of the details, which is the scorer's order; the file is rewritten whole
(atomically) each time the predictions are scored.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable

from bench.errors import BenchError
from bench.io import atomic_write_text, read_jsonl


def samples_path(run_dir: str | Path, benchmark: str) -> Path:
    return Path(run_dir) / "samples" / f"{benchmark}.jsonl"


def write_samples(path: str | Path, rows: Iterable[dict]) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in rows)
    return atomic_write_text(path, text)


def read_samples(run_dir: str | Path, benchmark: str) -> list[dict]:
    path = samples_path(run_dir, benchmark)
    if not path.exists():
        have = sorted(p.stem for p in (Path(run_dir) / "samples").glob("*.jsonl"))
        hint = f" (have: {', '.join(have)})" if have else " (re-score with `python -m bench score` to write it)"
        raise BenchError(f"{path}: no per-sample log for benchmark {benchmark!r}{hint}")
    return read_jsonl(path)


def _short(text: Any, width: int) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= width else s[: width - 1] + "…"


def format_sample(row: dict, width: int = 100) -> str:
    """One mistake as two lines: id + verdict fields, then question → generation (shortened)."""
    skip = {"id", "question", "generation", "correct", "detail"}
    fields = "  ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in row.items() if k not in skip)
    return (f"{row.get('id')}  {fields}\n    Q: {_short(row.get('question', ''), width)}\n"
            f"    A: {_short(row.get('generation', ''), width)}")


def main_show(run_dir: str | Path, benchmark: str, wrong: bool = False, limit: int | None = None,
              as_json: bool = False) -> int:
    """``bench show RUN_DIR --benchmark B [--wrong] [--limit N] [--json]``: print per-sample records."""
    rows = read_samples(run_dir, benchmark)
    chosen = [r for r in rows if r.get("correct") is False] if wrong else rows
    shown = chosen if limit is None else chosen[:limit]
    for row in shown:
        print(json.dumps(row, ensure_ascii=False) if as_json else format_sample(row))
    what = "incorrect" if wrong else "samples"
    undefined = sum(1 for r in rows if r.get("correct") is None)
    more = f" (showing {len(shown)})" if len(shown) < len(chosen) else ""
    note = f"; {undefined} without a verdict" if undefined else ""
    print(f"# {len(chosen)} {what} of {len(rows)} in {samples_path(run_dir, benchmark)}{more}{note}",
          file=sys.stderr if as_json else sys.stdout)
    return 0
