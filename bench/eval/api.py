"""Generation through an API-served model: benchmark items → ``predictions/<benchmark>.jsonl``.

The same file format, cache keys and resume rules as :func:`bench.eval.engine.run_benchmark` (which it
mirrors, with HTTP requests instead of a local forward): lines are ``{"id", "text", "key"}`` keyed by
:func:`bench.eval.engine.prediction_key` over the API model's fingerprint (name + base URL, see
:mod:`bench.models.api`) and the item's image bytes, stale lines are set aside and torn ones dropped, only
missing items of the ``limit`` selection are requested (other items keep their predictions), finished
lines are appended per chunk (a kill loses at most the chunk in flight), and the file is rewritten in the
protocol's item order at the end. Requests run ``concurrency`` at a time (a thread pool); a missing or
unreadable image is skipped with its reason, as locally. An item whose request fails after the bounded
retries (HTTP errors, timeouts, malformed replies) stops the run with one line naming the benchmark, the
item and the reason; the items already answered stay cached for the rerun.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.benchmark import Benchmark
from bench.errors import BenchError, DataError
from bench.eval.decode import postprocess
from bench.eval.engine import load_cached, plan, write_in_order
from bench.io import append_jsonl
from bench.models.api import ApiModel
from bench.models.llava import load_image


def run_benchmark_api(model: ApiModel, pre: Any, bench: Benchmark, data_root: Path, pred_path: Path,
                      checkpoint_fp: str, device: str = "cpu", batch_size: int = 8, limit: int | None = None,
                      progress: bool = True, reuse_prefix: bool = True, rank: int = 0, world: int = 1) -> dict:
    """Request every missing prediction of ``bench`` from ``model``; the engine's statistics dict.

    ``pre``, ``device``, ``reuse_prefix`` are accepted for the engine's signature and unused.
    """
    if world > 1:
        raise BenchError(f"{model.spec}: an API-served model is evaluated by one process; run it without"
                         " `accelerate launch` (raise eval.api.concurrency instead)")
    model.check_protocol(bench)
    every, keys, items = plan(bench, data_root, checkpoint_fp, limit)
    gen = bench.generation
    stored = load_cached(pred_path, keys)  # every valid line of the file (other items included)
    selected = {it.id for it in items}
    cached = {i: r for i, r in stored.items() if i in selected}
    todo = [it for it in items if it.id not in cached]
    skipped: dict[str, str] = {}
    requests0 = model.client.attempts if model.client is not None else 0
    t0 = time.perf_counter()
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"eval {bench.name} (api)", leave=False)
    workers = max(1, int(model.settings.concurrency))
    chunk_size = max(batch_size, 4 * workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start:start + chunk_size]
            good = []
            for it in chunk:
                try:
                    load_image(it.image, item=it.id)  # exists and decodes, as the local engine requires
                except DataError as exc:
                    skipped[it.id] = str(exc) if Path(it.image).exists() else f"image not found: {it.image}"
                    continue
                good.append(it)
            futures = [pool.submit(model.generate, it.question, it.image, gen) for it in good]
            lines, failure = [], None
            for it, fut in zip(good, futures):
                try:
                    text = postprocess(fut.result(), gen)
                except BenchError as exc:
                    failure = failure or (it, exc)
                    continue
                if not text:
                    skipped.setdefault(it.id, "empty generation (kept and scored as generated)")
                lines.append({"id": it.id, "text": text, "key": keys[it.id]})
            append_jsonl(pred_path, lines)
            stored.update((line["id"], line) for line in lines)
            if bar is not None:
                bar.update(len(chunk))
            if failure is not None:
                it, exc = failure
                if bar is not None:
                    bar.close()
                raise BenchError(f"{bench.name} item {it.id} (image {Path(it.image).name}): {exc}") from None
    if bar is not None:
        bar.close()
    write_in_order(pred_path, [it.id for it in every], stored)
    requests = (model.client.attempts if model.client is not None else 0) - requests0
    return {"items": len(items), "cached": len(cached), "generated": len(todo) - len(skipped),
            "skipped": skipped, "wall_s": round(time.perf_counter() - t0, 3), "timings_s": {},
            "requests": requests}
