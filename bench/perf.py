"""``python -m bench perf train|eval``: throughput and memory, measured (never asserted).

Shapes (``--shape``), randomly initialised from a config, never downloaded:

* ``tiny`` — a few-MB LLaVA (CLIP 64 × 2 at 32 px, Llama 64 × 2, vocabulary 512) for smoke runs and tests;
* ``mid`` — CLIP hidden 256 × 4 layers at 224 px / patch 14 (256 image tokens), Llama hidden 512 × 8 layers
  (intermediate 1376, 8 heads), vocabulary 32064: a CPU-sized LLaVA whose prompt (≈ 290 tokens) and
  vocabulary have LLaVA-1.5's proportions;
* ``llava-7b`` — CLIP-L/14-336 + Vicuna-7B.

``perf eval`` (:mod:`bench.perf_eval`): the engine against transformers' ``generate`` at batch 1 and 8 (32)
on POPE-, caption- and beam-search-shaped workloads. ``perf train`` (:mod:`bench.perf_train`): the training loop,
with and without the reference cache and with ``share_prefix``, and with ``--trl`` TRL's ``DPOTrainer`` on the same
model, data and LoRA.
``--json FILE`` writes the printed result. Both sides of a comparison run in the same process, so under the same
process settings; ``keep_freed_memory`` in the result says whether glibc kept freed memory for reuse
(:func:`bench.runtime.keep_freed_memory`, which the CLI applies to the commands that run models).
"""

from __future__ import annotations

import argparse
import json

from bench.io import atomic_write_json


def main_perf(args) -> int:
    p = argparse.ArgumentParser(prog=f"python -m bench perf {args.what}")
    p.add_argument("--shape", default="tiny", choices=["tiny", "mid", "llava-7b"])
    p.add_argument("--device", default="auto")
    p.add_argument("--json", "--out", dest="out", default=None, metavar="FILE", help="write the result JSON here")
    if args.what == "train":
        from bench.perf_train import add_arguments, perf_train

        add_arguments(p)
        opts = p.parse_args(args.rest)
        result = perf_train(opts)
    else:
        from bench.perf_eval import add_arguments, perf_eval

        add_arguments(p)
        opts = p.parse_args(args.rest)
        result = perf_eval(opts)
    from bench.runtime import keep_freed_memory

    result["keep_freed_memory"] = keep_freed_memory()  # idempotent: reports what the CLI applied at start
    print(json.dumps(result, indent=2))
    if opts.out:
        atomic_write_json(opts.out, result)
    return 0
