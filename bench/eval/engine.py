"""Generation engine: benchmark items → ``predictions/<benchmark>.jsonl`` (cached, resumable).

Each predictions line is ``{"id", "text", "key"}`` where ``key`` = sha256 of (checkpoint
fingerprint, protocol fingerprint, item id, generation settings). On start the file is cut back
to its last complete line (a killed writer), lines whose key does not match the current
checkpoint/protocol are dropped (never reused), and only the missing items are generated; new
lines are appended and fsynced per batch, so a kill at any moment loses at most the batch in
flight and never duplicates or corrupts lines.

Decoding: the vicuna_v1 prompt with pad-to-square images (bench.models.llava), greedy or beam
search as the protocol says. Batches are sorted by prompt length and left-padded with a correct
attention mask (HF derives position ids from it). ``batch_size=1`` is the reference path.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from bench.benchmark import Benchmark, EvalItem, GenerationSettings
from bench.errors import BenchError, DataError
from bench.io import atomic_write_text, iter_jsonl, sha256_text, truncate_torn_tail, append_jsonl
from bench.models.llava import LlavaPreprocessor, load_image


def prediction_key(checkpoint_fp: str, protocol_fp: str, item_id: str, gen: GenerationSettings) -> str:
    payload = json.dumps([checkpoint_fp, protocol_fp, item_id, dataclasses.asdict(gen)], sort_keys=True)
    return sha256_text(payload)[:20]


def load_cached(path: Path, valid_keys: dict[str, str]) -> dict[str, dict]:
    """Valid cached predictions by item id; rewrites the file without stale/torn lines."""
    if not path.exists():
        return {}
    truncate_torn_tail(path)
    kept: dict[str, dict] = {}
    dropped = 0
    for _, rec in iter_jsonl(path, repair=True):
        iid = rec.get("id")
        if iid in valid_keys and rec.get("key") == valid_keys[iid] and iid not in kept:
            kept[iid] = rec
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept.values()))
    return kept


@torch.no_grad()
def generate_batch(model, pre: LlavaPreprocessor, items: list[EvalItem], gen: GenerationSettings, device: str) -> list[str]:
    prompts = [pre.prompt_ids(it.question) for it in items]
    images = [load_image(it.image, item=it.id) for it in items]
    pixels = pre.pixel_values(images).to(device=device, dtype=next(model.parameters()).dtype)
    length = max(len(p) for p in prompts)
    pad = pre.tokenizer.pad_token_id if pre.tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(items), length), pad, dtype=torch.long)
    att = torch.zeros((len(items), length), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, length - len(p):] = torch.tensor(p)
        att[i, length - len(p):] = 1
    kwargs: dict[str, Any] = dict(max_new_tokens=gen.max_new_tokens, num_beams=gen.num_beams, do_sample=gen.do_sample,
                                  pad_token_id=pad, eos_token_id=pre.tokenizer.eos_token_id)
    if gen.do_sample:
        kwargs["temperature"] = gen.temperature
    out = model.generate(input_ids=ids.to(device), attention_mask=att.to(device), pixel_values=pixels, **kwargs)
    texts = pre.tokenizer.batch_decode(out[:, length:], skip_special_tokens=True)
    result = []
    for t in texts:
        t = t.strip()
        for stop in gen.stop:
            if stop in t:
                t = t[: t.index(stop)]
        result.append(t)
    return result


def run_benchmark(model, pre: LlavaPreprocessor, bench: Benchmark, data_root: Path, pred_path: Path,
                  checkpoint_fp: str, device: str = "cpu", batch_size: int = 8, limit: int | None = None,
                  progress: bool = True) -> dict:
    """Generate every missing prediction of ``bench``; returns timing and skip statistics."""
    items = bench.items(data_root)
    if limit is not None:
        items = items[:limit]
    gen = bench.generation
    keys = {it.id: prediction_key(checkpoint_fp, bench.fingerprint(), it.id, gen) for it in items}
    cached = load_cached(pred_path, keys)
    todo = [it for it in items if it.id not in cached]
    todo.sort(key=lambda it: len(it.question))
    skipped: dict[str, str] = {}
    t0 = time.perf_counter()
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"eval {bench.name}", leave=False)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        good = []
        for it in chunk:
            if not Path(it.image).exists():
                skipped[it.id] = f"image not found: {it.image}"
            else:
                good.append(it)
        try:
            texts = generate_batch(model, pre, good, gen, device) if good else []
        except DataError as exc:  # unreadable image: fall back to one by one
            texts = []
            for it in good:
                try:
                    texts.append(generate_batch(model, pre, [it], gen, device)[0])
                except DataError as exc1:
                    skipped[it.id] = str(exc1)
                    texts.append(None)
        lines = []
        for it, text in zip(good, texts):
            if text is None:
                continue
            lines.append({"id": it.id, "text": text, "key": keys[it.id]})
        append_jsonl(pred_path, lines)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return {"items": len(items), "cached": len(cached), "generated": len(todo) - len(skipped),
            "skipped": skipped, "wall_s": round(time.perf_counter() - t0, 3)}
