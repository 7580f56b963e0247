"""Shared machinery of the data pipelines: options, the per-item cache, batching, images, summary.

A pipeline turns annotated images (:mod:`bench.data.pipelines.sources`) into one method's *released*
data format. Every item's outcome — kept with its data, or dropped with a reason — is appended to
``OUT/cache/items-<config hash>.jsonl`` as soon as its batch is done (fsynced, torn last line repaired
on restart), so a killed build resumes where it stopped and a rerun with other settings (another model,
feedback model, seed, prompt or pipeline option) never reuses stale items. The released files are
written atomically from the cache at the end, with ``summary.json`` (kept / dropped and why).

Model generations come from a ``generate(images, prompts) -> texts`` callable (one text per
(image path, user question) pair), so tests pass a deterministic fake and the CLI wires a checkpoint.
"""

from __future__ import annotations

import abc

import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.errors import BenchError
from bench.feedback import AnnotationFeedback, FeedbackModel, ImageAnnotations
from bench.io import append_jsonl, atomic_write_json, iter_jsonl, sha256_text, truncate_torn_tail

from bench.data.pipelines.questions import object_questions
from bench.data.pipelines.sources import AnnotationSet

Generate = Callable[[list[str], list[str]], list[str]]
DESCRIBE_PROMPT = "Describe this image in detail."


@dataclass
class BuildOptions:
    out: Path
    feedback: FeedbackModel
    generate: Generate | None = None
    generator_id: str = "none"  # identifies the generating checkpoint + decoding (part of the cache key)
    seed: int = 0
    batch_size: int = 8
    prompt: str = DESCRIBE_PROMPT
    progress: bool = True
    images: str = "link"  # how images are placed next to the data: link (hard link, else copy) | copy
    params: dict[str, Any] = field(default_factory=dict)  # pipeline-specific options


@dataclass
class Item:
    ann: ImageAnnotations
    result: dict | None = None  # {"status": "kept"|"dropped", "reason": str|None, "data": {...}}
    question: str | None = None  # None: the pipeline's prompt (a description); else a yes/no question
    key: str = ""  # cache key: the image id, "<image id>#q<k>" for its k-th question

    def __post_init__(self) -> None:
        self.key = self.key or str(self.ann.image_id)

    def prompt(self, opts: "BuildOptions") -> str:
        return self.question if self.question is not None else opts.prompt


def kept(data: dict) -> dict:
    return {"status": "kept", "reason": None, "data": data}


def dropped(reason: str, data: dict | None = None) -> dict:
    return {"status": "dropped", "reason": reason, "data": data or {}}


class Pipeline(abc.ABC):
    """One method's construction pipeline. Subclasses set ``name``/``output``/``defaults`` and implement
    :meth:`process` (a batch of items → one result each) and :meth:`write` (results → released files).

    ``output``: the released file (under ``OUT/``) that the method's loader reads (what
    :func:`bench.data.method_data.build_method_data` hands to ``Method.load_records``); ``needs_model``:
    whether it generates with the model; ``sample_rollouts``: whether those generations are sampled
    (on-policy rollouts) rather than greedy — the default of ``bench data build`` and of the data built for
    ``bench train``."""

    name = "base"
    output = ""
    needs_model = True
    sample_rollouts = False
    defaults: dict[str, Any] = {}
    description = ""

    def params(self, opts: BuildOptions) -> dict[str, Any]:
        return {**self.defaults, **{k: v for k, v in opts.params.items() if k in self.defaults}}

    @abc.abstractmethod
    def process(self, items: list[Item], opts: BuildOptions, source: AnnotationSet) -> list[dict]:
        """A batch of items → one result dict each."""

    @abc.abstractmethod
    def write(self, items: list[Item], opts: BuildOptions, source: AnnotationSet) -> dict[str, int]:
        """The processed items → the method's released file formats; returns counts per output."""

    # ------------------------------------------------------------------ helpers for subclasses
    def generate(self, opts: BuildOptions, images: list[str], prompts: list[str]) -> list[str]:
        if not images:
            return []
        if opts.generate is None:
            raise BenchError(f"pipeline {self.name} needs a model to generate responses (--model)")
        texts = opts.generate(images, prompts)
        if len(texts) != len(images):
            raise BenchError(f"generate() returned {len(texts)} texts for {len(images)} requests")
        return [t if isinstance(t, str) else "" for t in texts]

    @staticmethod
    def verifier(opts: BuildOptions) -> AnnotationFeedback | None:
        """Object-level re-checks of fixed / injected / restyled texts run with the annotation model,
        and only when it is the feedback model (an API model's judgement is not second-guessed)."""
        return opts.feedback if isinstance(opts.feedback, AnnotationFeedback) else None


def usable(item: Item) -> str | None:
    """Why an item cannot be used at all (None if it can)."""
    if not Path(item.ann.image).exists():
        return "image file missing"
    if not item.ann.present():
        return "no annotated objects"
    return None


def clean_reference(fb: FeedbackModel, ann: ImageAnnotations) -> str | None:
    """The ground-truth answer: the first reference caption the feedback model finds free of
    hallucination, else the correction of the first caption (None if neither is usable)."""
    for cap in ann.captions:
        if cap.strip() and not fb.review(ann, cap).hallucinated:
            return cap.strip()
    if ann.captions:
        fixed = fb.review(ann, ann.captions[0]).corrected()
        if fixed and not fb.review(ann, fixed).hallucinated:
            return fixed
    return None


def place_image(src: str | Path, dst: Path, mode: str = "link") -> None:
    """Put ``src`` at ``dst`` (hard link when possible, else a copy), atomically; skip if present."""
    src = Path(src)
    if dst.exists() and dst.stat().st_size == src.stat().st_size:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        if mode == "link":
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
        else:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def config_hash(pipeline: Pipeline, opts: BuildOptions, source: AnnotationSet) -> str:
    key = {"pipeline": pipeline.name, "version": getattr(pipeline, "version", "1"), "source": source.name,
           "feedback": opts.feedback.feedback_id, "generator": opts.generator_id if pipeline.needs_model else None,
           "seed": opts.seed, "prompt": opts.prompt, "params": pipeline.params(opts)}
    return sha256_text(json.dumps(key, sort_keys=True))[:16]


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True)


def run_pipeline(pipeline: Pipeline, source: AnnotationSet, opts: BuildOptions) -> dict:
    """Process every image of ``source`` (resuming from the cache), write the released files and
    ``summary.json``; returns the summary."""
    t0 = time.time()
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    digest = config_hash(pipeline, opts, source)
    cache_path = out / "cache" / f"items-{digest}.jsonl"
    done: dict[str, dict] = {}
    if cache_path.exists():
        truncate_torn_tail(cache_path)
        for _, rec in iter_jsonl(cache_path, repair=True):
            done[str(rec["id"])] = rec["result"]
    n_questions = int(pipeline.params(opts).get("questions", 0))
    items = []
    for ann in source.images:
        items.append(Item(ann, done.get(str(ann.image_id))))
        for k, q in enumerate(object_questions(ann, source, n_questions)):
            key = f"{ann.image_id}#q{k}"
            items.append(Item(ann, done.get(key), question=q, key=key))
    reused = sum(1 for it in items if it.result is not None)
    todo = [it for it in items if it.result is None]
    bar = _progress(len(items), opts.progress, f"build {pipeline.name}")
    if bar is not None:
        bar.update(reused)
    try:
        for start in range(0, len(todo), max(1, opts.batch_size)):
            batch = todo[start:start + max(1, opts.batch_size)]
            results = pipeline.process(batch, opts, source)
            if len(results) != len(batch):
                raise BenchError(f"pipeline {pipeline.name}: {len(results)} results for {len(batch)} items")
            for it, res in zip(batch, results):
                it.result = res
            append_jsonl(cache_path, [{"id": it.key, "result": it.result} for it in batch])
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    outputs = pipeline.write(items, opts, source)
    reasons = Counter(it.result["reason"] for it in items if it.result["status"] == "dropped")
    summary = {
        "method": pipeline.name, "source": source.name, "annotation_files": source.files,
        "feedback": opts.feedback.feedback_id, "generator": opts.generator_id if pipeline.needs_model else None,
        "seed": opts.seed, "prompt": opts.prompt, "params": pipeline.params(opts), "config_hash": digest,
        "items": len(items), "kept": sum(1 for it in items if it.result["status"] == "kept"),
        "dropped": sum(reasons.values()), "dropped_reasons": dict(sorted(reasons.items())),
        "outputs": outputs, "cache": {"file": str(cache_path.relative_to(out)), "reused": reused,
                                      "new": len(todo)},
        "wall_s": round(time.time() - t0, 3),
    }
    atomic_write_json(out / "summary.json", summary)
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"{summary['method']}: {summary['kept']} kept, {summary['dropped']} dropped of {summary['items']} images"
             f" (feedback {summary['feedback']}; {summary['cache']['reused']} from cache)"]
    for reason, n in summary["dropped_reasons"].items():
        lines.append(f"  dropped {n:>5}  {reason}")
    for name, n in summary["outputs"].items():
        lines.append(f"  wrote   {n:>5}  {name}")
    return "\n".join(lines)


def image_ext(path: str) -> str:
    return Path(path).suffix or ".jpg"
