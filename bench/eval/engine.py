"""Generation engine: benchmark items → ``predictions/<benchmark>.jsonl`` (cached, resumable).

Each predictions line is ``{"id", "text", "key"}`` where ``key`` = sha256 of (checkpoint
fingerprint — weights by content, adapters, dtype, device class, backend: ``bench/fingerprint.py`` —,
protocol fingerprint, item id, the sha256 of the item's image bytes, generation settings). On start the
file is cut back to its last complete line (a killed writer); lines whose key does not match are never
reused and are moved to ``<file>.stale``; only the missing items of the current selection are
generated; new lines are appended and fsynced per batch, so a kill at any moment loses at most the
batch in flight. The file only grows: items outside the current ``limit`` keep their predictions
(format and duplicate rule: ``bench/predictions.py``).

Decoding: the checkpoint family's prompt and image preprocessing (:mod:`bench.models.family`; for
LLaVA-1.5 the vicuna_v1 prompt with pad-to-square images), greedy or beam search as the protocol says.
The path is chosen per benchmark by :mod:`bench.eval.fastpath`:

* **packed** (greedy, several questions per image — POPE): each image's prompt prefix (system sentence,
  ``USER:``, the image tokens, common question words) is computed once and the questions' tails follow it
  in the same row under a block-causal mask, many images per forward (:mod:`bench.eval.packed`); no
  per-question copy of the prefix's KV cache.
* **batched** (other greedy protocols — CHAIR captions): length-sorted buckets sized by a KV-memory budget,
  a preallocated cache, EOS checked on the device, finished rows leaving (:mod:`bench.eval.batched`).
* **beams** (beam search — SHR, ``chair-opera``): the batched path's buckets and prefill, each prompt prefilled
  once instead of once per beam, then transformers' own beam search continues from that cache
  (:mod:`bench.eval.beams`).
* **generate** (sampling, families whose positions are not plain offsets or whose ``generate`` cannot continue
  from a cache): transformers' ``generate`` on length-sorted, left-padded batches of ``batch_size``.
* ``batch_size=1`` is the reference path: transformers' ``generate`` one item at a time.

Outputs of the packed, batched and beams paths equal batch-1 ``generate`` in float32 on CPU (tests).
:func:`bench.eval.decode.generate_batch` (the data pipelines' generator) keeps its own greedy loop with position ids from
the mask.

``verify_against_bs1`` re-decodes N random items at batch 1 without caching and reports the share
of identical outputs.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from bench.benchmark import Benchmark, EvalItem, GenerationSettings, select_items
from bench.eval.decode import generate_batch  # noqa: F401  (the batch-1 reference path; callers import it from here)
from bench.eval.fastpath import choose_path, stream
from bench.fingerprint import image_sha256
from bench.io import append_jsonl, atomic_write_text, sha256_text, truncate_torn_tail
from bench.models.llava import LlavaPreprocessor
from bench.predictions import read_predictions


def prediction_key(checkpoint_fp: str, protocol_fp: str, item_id: str, gen: GenerationSettings,
                   image_sha: str = "") -> str:
    payload = json.dumps([checkpoint_fp, protocol_fp, item_id, dataclasses.asdict(gen), image_sha], sort_keys=True)
    return sha256_text(payload)[:20]


def load_cached(path: Path, valid_keys: dict[str, str]) -> dict[str, dict]:
    """Valid cached predictions by item id (the last valid line of an id wins). Lines that are not valid
    for ``valid_keys`` (another checkpoint, protocol, image or setting; ids of no item) are moved to
    ``<path>.stale``, never reused and never lost."""
    if not path.exists():
        return {}
    truncate_torn_tail(path)
    kept, rejected = read_predictions(path, valid_keys)
    if rejected:
        append_jsonl(path.with_name(path.name + ".stale"), rejected)
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept.values()))
    return kept


@torch.no_grad()
def generate_with_prefix(model, pre: LlavaPreprocessor, items: list[EvalItem], gen: GenerationSettings,
                         device: str, timings: dict | None = None) -> list[str]:
    """Greedy answers to several questions, the image + shared prompt prefix computed once per image in packed
    rows (:mod:`bench.eval.packed`; no per-question copy of the prefix's KV cache)."""
    texts: dict[int, str | None] = {}  # by object: callers may pass items that share an id
    for chunk, out, _ in stream(model, pre, items, gen, device, timings=timings, path="packed"):
        texts.update((id(it), t) for it, t in zip(chunk, out))
    return [texts[id(it)] for it in items]


def shard_items(items: list[EvalItem], rank: int, world: int) -> list[EvalItem]:
    if world <= 1:
        return items
    images = sorted({it.image for it in items})
    mine = set(images[rank::world])
    return [it for it in items if it.image in mine]


def shard_path(pred_path: Path, rank: int) -> Path:
    return pred_path.with_name(f"{pred_path.name}.rank{rank}")


def plan(bench: Benchmark, data_root: Path, checkpoint_fp: str, limit: int | None
         ) -> tuple[list[EvalItem], dict[str, str], list[EvalItem]]:
    """(every item, the key of every item, the items selected by ``limit``): every generation path (local
    engine, API models) validates the whole predictions file against ``keys`` — so items outside the limit
    keep their predictions — and generates only the selection."""
    every = bench.items(data_root)
    return every, _keys_of(every, checkpoint_fp, bench), select_items(every, limit)


def _keys_of(items: list[EvalItem], checkpoint_fp: str, bench: Benchmark) -> dict[str, str]:
    protocol_fp = bench.fingerprint()
    return {it.id: prediction_key(checkpoint_fp, protocol_fp, it.id, bench.generation, image_sha256(it.image))
            for it in items}


def canonicalise(pred_path: Path, order: list[str], keys: dict[str, str], extra: list[Path] = ()) -> None:
    """Rewrite predictions in item order (valid lines only), merging shard files if given."""
    lines: dict[str, dict] = {}
    for path in [pred_path, *extra]:
        if path.exists():
            lines.update(load_cached(path, keys))
    write_in_order(pred_path, order, lines)
    for path in extra:
        path.unlink(missing_ok=True)


def write_in_order(pred_path: Path, order: list[str], lines: dict[str, dict]) -> None:
    """The canonical predictions file: ``lines`` (id → valid line) in item order, written atomically."""
    atomic_write_text(pred_path, "".join(json.dumps(lines[i], ensure_ascii=False) + "\n" for i in order if i in lines))


def merge_shards(bench: Benchmark, data_root: Path, pred_path: Path, checkpoint_fp: str, world: int,
                 limit: int | None = None) -> None:
    """Rank 0 after a barrier: merge ``<pred>.rank*`` into the canonical predictions file."""
    items = bench.items(data_root)  # every item: predictions outside the limit are kept
    canonicalise(pred_path, [it.id for it in items], _keys_of(items, checkpoint_fp, bench),
                 [shard_path(pred_path, r) for r in range(world)])


def verify_against_bs1(model, pre: LlavaPreprocessor, bench: Benchmark, data_root: Path, pred_path: Path, n: int,
                       device: str = "cpu", seed: int = 0) -> dict:
    """Re-decode ``n`` random stored items at batch 1 without caching; share of identical outputs."""
    import random

    stored = {i: r["text"] for i, r in read_predictions(pred_path)[0].items()}
    items = [it for it in bench.items(data_root) if it.id in stored]
    sample = random.Random(seed).sample(items, min(n, len(items)))
    same = 0
    diffs = []
    for it in sample:
        text = generate_batch(model, pre, [it], bench.generation, device, use_hf_generate=True)[0]
        if text == stored[it.id]:
            same += 1
        else:
            diffs.append({"id": it.id, "fast": stored[it.id], "bs1": text})
    return {"n": len(sample), "identical": same, "agreement": same / len(sample) if sample else float("nan"),
            "differences": diffs[:20]}


def run_benchmark(model, pre: LlavaPreprocessor, bench: Benchmark, data_root: Path, pred_path: Path,
                  checkpoint_fp: str, device: str = "cpu", batch_size: int = 8, limit: int | None = None,
                  progress: bool = True, reuse_prefix: bool = True, rank: int = 0, world: int = 1) -> dict:
    """Generate every missing prediction of ``bench``; returns timing and skip statistics.

    With ``world > 1`` (data-parallel processes, e.g. ``accelerate launch``), process ``rank`` takes
    the images ``rank::world`` (all questions of an image stay together) and writes
    ``<pred_path>.rank<r>``; :func:`merge_shards` then writes the canonical file. The canonical
    predictions file is always in the protocol's item order, so 1 and N processes give the same file.
    """

    every, all_keys, all_items = plan(bench, data_root, checkpoint_fp, limit)
    items = shard_items(all_items, rank, world)
    out_path = pred_path if world == 1 else shard_path(pred_path, rank)
    gen = bench.generation
    keys = {it.id: all_keys[it.id] for it in items}
    if world > 1 and pred_path.exists():  # reuse canonical predictions from an earlier run
        canon = load_cached(pred_path, all_keys)
        fresh = [r for i, r in canon.items() if i in keys]
        if fresh and not out_path.exists():
            append_jsonl(out_path, fresh)
    cached_all = load_cached(out_path, all_keys if world == 1 else keys)
    pred_path = out_path
    cached = {i: r for i, r in cached_all.items() if i in keys}
    todo = [it for it in items if it.id not in cached]
    skipped: dict[str, str] = {}
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"eval {bench.name}", leave=False)
    path = choose_path(model, todo, gen, batch_size) if todo else "reference"
    if path == "packed" and not reuse_prefix:
        path = "batched"
    for chunk, texts, chunk_skipped in stream(model, pre, todo, gen, device, batch_size, timings, path):
        skipped.update(chunk_skipped)
        lines = []
        for it, text in zip(chunk, texts):
            if text is None:  # skipped (reason in chunk_skipped)
                continue
            if not text:
                skipped.setdefault(it.id, "empty generation (kept and scored as generated)")
            lines.append({"id": it.id, "text": text, "key": keys[it.id]})
        append_jsonl(pred_path, lines)
        cached_all.update((line["id"], line) for line in lines)  # what the file now holds, without re-reading it
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    if world == 1:
        write_in_order(pred_path, [it.id for it in every], cached_all)
    return {"items": len(items), "cached": len(cached), "generated": len(todo) - len(skipped),
            "skipped": skipped, "path": path, "wall_s": round(time.perf_counter() - t0, 3),
            "timings_s": {k: round(v, 3) for k, v in timings.items()}}
