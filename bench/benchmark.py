"""Benchmark protocols: a named, versioned declaration plus a pure scorer.

A protocol is *data*: which files it reads (relative to a data root), the prompt, the decoding
settings, the answer parser and the aggregation. A new variant is a new declaration registered
under a new name, never a branch in shared code. The evaluation engine only needs
:meth:`Benchmark.items` (what to generate) and the scorer only needs :meth:`Benchmark.score`
(stored generations → metrics); neither loads a model.

Data roots: real benchmarks read from ``$BENCH_DATA_DIR`` (see ``bench data``); the embedded
default ``tiny-llava`` reads the bundled synthetic world, laid out the same way.
"""

from __future__ import annotations

import abc
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from bench.io import sha256_text


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings a protocol fixes. Greedy unless ``num_beams`` > 1 or ``do_sample``."""

    max_new_tokens: int = 512
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvalItem:
    """One generation request: benchmark item id, image file, the user question (no template)."""

    id: str
    image: str
    question: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def select_items(items: list[EvalItem], limit: int | None) -> list[EvalItem]:
    """``--limit N``: the first N distinct images in item order, with *all* their items (every question and
    every split about them), so a limited run is a smaller sample of images, not of question files."""
    if limit is None:
        return list(items)
    seen: set[str] = set()
    chosen = []
    for it in items:
        if it.image not in seen:
            if len(seen) >= limit:
                continue
            seen.add(it.image)
        chosen.append(it)
    return chosen


class Benchmark(abc.ABC):
    """Base class of a benchmark protocol. Subclasses set the class attributes and two methods.

    Class attributes (the declaration; all of them enter :meth:`fingerprint`):
      name (the registry key: ``@BENCHMARKS.register`` reads it), version, benchmark (family, e.g. ``pope``),
      description, generation, params; ``headline`` picks the leaderboard's columns.

    Required: :meth:`items`, :meth:`score` (every scoring option is a declared keyword). Optional hooks, each
    with a documented default: :meth:`data_files`, :meth:`missing_resources`, :meth:`paired_units`,
    :meth:`sample_verdict`, :meth:`sample_rows`. Callers use these declarations, never probe for attributes.
    """

    name: ClassVar[str] = ""
    benchmark: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    generation: ClassVar[GenerationSettings] = GenerationSettings()
    params: ClassVar[dict[str, Any]] = {}
    # Headline metrics for leaderboards: metric key -> (label, higher_is_better)
    headline: ClassVar[dict[str, tuple[str, bool]]] = {}

    @abc.abstractmethod
    def items(self, data_root: Path) -> list[EvalItem]:
        """The generation requests of this protocol, read from files under ``data_root``."""

    def data_files(self, data_root: Path) -> list[Path]:
        """Files this protocol reads (their sha256 goes into run records)."""
        return []

    def missing_resources(self, data_root: Path) -> list[str]:
        """What this protocol needs that is not here, one line each with how to get it (the preflight of
        ``bench run``/``eval`` lists them all before any model is loaded). Default: the data files."""
        return [f"{p}: missing data file of protocol {self.name} (see `python -m bench data fetch list`)"
                for p in self.data_files(data_root) if not Path(p).exists()]

    @abc.abstractmethod
    def score(self, predictions: list[dict], data_root: Path, *, n_boot: int = 1000,
              item_ids: set[str] | None = None, cache_dir: Path | None = None, **kw: Any) -> dict:
        """Stored predictions (``{"id", "text"}``) → score dict with ``metrics`` and ``protocol``.

        The harness always passes these keywords (a scorer ignores the ones it does not need):
        ``n_boot`` bootstrap resamples; ``item_ids`` the selected items (``--limit``: see
        :func:`select_items`; None = every item) — items outside it are neither scored nor reported
        missing; ``cache_dir`` where a judge-based protocol keeps its reply cache.
        """

    # ------------------------------------------------------------------ paired differences from base
    def paired_units(self, score: dict) -> tuple[dict[str, Any], Callable[[Any], dict]] | None:
        """Per-unit (usually per-image) count arrays rebuilt from a score file's ``details``, and the statistic
        of their sum — what :func:`bench.stats.paired_bootstrap_delta` needs for the leaderboard's and the run
        summary's paired difference from base. Default None: the protocol offers no paired differences
        (also the answer for a score file that predates the per-unit details)."""
        return None

    # ------------------------------------------------------------------ per-sample logs
    def sample_verdict(self, detail: dict) -> dict:
        """What a reader of ``samples/<benchmark>.jsonl`` wants from one per-item detail record: ``correct``
        (bool, or None when the protocol has no per-item verdict) and a few named fields (parsed answer,
        label, hallucinated objects). Default: no verdict; protocols override this one method."""
        return {"correct": None}

    def sample_rows(self, score: dict, predictions: list[dict], items: list[EvalItem]) -> list[dict]:
        """Per-sample rows from a score's ``details`` (see :mod:`bench.samples` for the format): the first
        per-item list of ``{"id": …}`` records (or mapping id → record) in ``details``, joined by id with
        the items (question) and predictions (generation); ids like ``rec/0`` fall back to item ``rec``."""
        details = score.get("details") or {}
        units: list[dict] = []
        for value in details.values():
            if isinstance(value, list) and value and all(isinstance(v, dict) and "id" in v for v in value):
                units = value
                break
            if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
                units = [{"id": k, **v} for k, v in value.items()]
                break
        questions = {it.id: it.question for it in items}
        texts = {str(p["id"]): p["text"] for p in predictions}

        def lookup(table: dict, uid: str) -> Any:
            while uid not in table and "/" in uid:
                uid = uid.rsplit("/", 1)[0]
            return table.get(uid)

        rows = []
        for unit in units:
            uid = str(unit["id"])
            rows.append({"id": uid, "question": lookup(questions, uid), "generation": lookup(texts, uid),
                         **self.sample_verdict(unit), "detail": unit})
        return rows

    # ------------------------------------------------------------------ helpers
    @classmethod
    def declaration(cls) -> dict:
        return {
            "name": cls.name,
            "benchmark": cls.benchmark,
            "version": cls.version,
            "generation": dataclasses.asdict(cls.generation),
            "params": cls.params,
        }

    @classmethod
    def fingerprint(cls) -> str:
        return sha256_text(json.dumps(cls.declaration(), sort_keys=True, default=str))[:16]

    @classmethod
    def protocol_header(cls) -> dict:
        return {"protocol": cls.name, "benchmark": cls.benchmark, "version": cls.version,
                "fingerprint": cls.fingerprint()}
