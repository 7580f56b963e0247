"""``python -m bench perf train [--trl]``: the shared training loop against TRL's ``DPOTrainer``, same run.

Both sides train the ``dpo`` objective (sigmoid loss, β 0.1, reference = the base with adapters disabled) on

* the **same model**: a randomly initialised LLaVA of ``--shape`` (seed 0, built twice from the same config),
  float32 on CPU, bfloat16 weights + bf16 autocast on CUDA;
* the **same data**: ``--pairs × (warm-up + timed steps)`` synthetic preference pairs (generated PNGs,
  vicuna_v1 prompts, chosen/rejected captions of ``--response-words`` words), tokenised by the same
  tokenizer — the embedded tiny-llava's byte-level BPE, inside a ``LlavaProcessor`` whose image processor
  and patch size are the shape's, so ``<image>`` expands to the shape's image-token count on both sides;
* the **same LoRA**: rank ``--lora-r`` (α = 2r, dropout 0) on the language model's q/k/v/o/gate/up/down
  projections; AdamW, learning rate 1e-6, ``--pairs`` pairs per optimizer step, no gradient accumulation,
  no gradient checkpointing.

What differs is each side's own machinery. The bench loop (:func:`bench.train.loop.train_stage`) runs the
vision tower once per distinct image, applies ``lm_head`` to response positions only, and can precompute the
reference log-probs once per pair (``cache_reference``, timed separately: it runs before the first step).
It is timed a third time with ``share_prefix`` (``bench_share_prefix``: chosen and rejected in one packed row, the
prompt + image prefix computed once per pair, :mod:`bench.train.shared_prefix`; reference cache on, as ``bench``;
``tokens_per_pair`` counts the real tokens of the policy forward per pair on both ``bench`` sides).
TRL (``DPOTrainer``, processing on the fly by its ``DataCollatorForVisionPreference``) feeds chosen and
rejected through the full model with the pixel values duplicated, and recomputes the reference every step:
its ``precompute_ref_log_probs`` is refused for vision datasets (TRL 1.16), so TRL has one row, "no cache".
Its prompts carry no BOS and its images are not padded to square (its processor's defaults); token counts
per sequence are reported for both.

Throughput = pairs per optimizer step / median step time over the timed steps (after ``--warmup`` steps),
for TRL the time between consecutive ``on_step_end`` callbacks (data collation included, as the loop's own
step time includes encoding). Peak memory: the CUDA allocator's peak over the timed run; null on CPU.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.data.preference import PreferenceRecord
from bench.models.llava import build_prompt, make_preprocessor
from bench.models.tiny_llava import ASSET_DIR
from bench.perf_eval import make_images
from bench.perf_shapes import device_name, shape_config
from bench.runtime import resolve_device
from bench.train.config import LLAMA_LINEARS, TrainConfig
from bench.train.loop import add_lora, train_stage
from methods.dpo import DpoConfig, DpoMethod

WORDS = ["dog", "cup", "dining table", "person", "car", "bowl", "chair", "bus", "bottle", "fork", "cat", "train",
         "bicycle", "teddy bear", "traffic light", "potted plant", "next to", "behind", "on top of", "a red",
         "a small", "two", "near the", "wooden", "in the corner"]


def _processor(shape_cfg: Any):
    """The embedded tiny-llava's tokenizer in a ``LlavaProcessor`` sized for ``shape_cfg``'s vision tower."""
    from transformers import AutoProcessor, CLIPImageProcessor, LlavaProcessor

    tok = AutoProcessor.from_pretrained(ASSET_DIR).tokenizer
    vc = shape_cfg.vision_config
    image_processor = CLIPImageProcessor(size={"shortest_edge": vc.image_size},
                                         crop_size={"height": vc.image_size, "width": vc.image_size})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=vc.patch_size,
                          vision_feature_select_strategy="default", image_token="<image>",
                          num_additional_image_tokens=1)


def _model(shape: str, device: str, image_token_id: int):
    from transformers import LlavaForConditionalGeneration

    cfg = shape_config(shape, image_token_id=image_token_id)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        return LlavaForConditionalGeneration(cfg).to(dtype), cfg


def _text(seed: int, words: int) -> str:
    out = ["The image shows"]
    for j in range(words - 3):
        out.append(WORDS[(seed * 7 + j * 3) % len(WORDS)])
    return " ".join(out) + "."


def make_records(folder: Path, n: int, response_words: int):
    images = make_images(folder, n)
    return [PreferenceRecord(str(i), images[i], "Describe this image in detail.", _text(i, response_words),
                             _text(i + 1000, response_words)) for i in range(n)]


def _median_rate(pairs: int, step_times: list[float]) -> float | None:
    return pairs / statistics.median(step_times) if step_times else None


def _peak(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if device.startswith("cuda") else None


def run_bench(args, device: str, records, processor, cache_reference: bool, share_prefix: bool = False) -> dict:
    model, cfg = _model(args.shape, device, processor.tokenizer.convert_tokens_to_ids("<image>"))
    pre = make_preprocessor(processor, cfg)
    steps = args.steps + args.warmup
    tcfg = TrainConfig(lr=1e-6, max_steps=steps, batch_size=args.pairs, max_length=4096, lora_r=args.lora_r,
                       lora_alpha=2 * args.lora_r, lora_dropout=0.0, cache_reference=cache_reference, bf16=True,
                       warmup_ratio=0.0, log_every=1, share_prefix=share_prefix)
    mcfg = DpoConfig(beta=0.1, train=tcfg)
    method = DpoMethod()
    encoded = [[pre.encode_pair(r.question, text, 4096) for text in (r.chosen, r.rejected)]
               for r in records[:args.pairs]]  # the pairs TRL's count is taken on
    tokens = [len(e["input_ids"]) for pair in encoded for e in pair]
    # a packed pair holds its prompt once: both sequences minus one copy of the prompt
    pair_tokens = [sum(len(e["input_ids"]) for e in pair) - (pair[0]["prompt_len"] if share_prefix else 0)
                   for pair in encoded]
    with tempfile.TemporaryDirectory() as tmp:
        peft_model = add_lora(model, tcfg)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        train_stage(method, method.stages(mcfg)[0], mcfg, peft_model, pre, records, Path(tmp) / "stage", 0, False,
                    device, progress=False)
        wall = time.perf_counter() - t0
        rows = [json.loads(line) for line in (Path(tmp) / "stage" / "log.jsonl").read_text().splitlines()]
    timed = [args.pairs / r["pairs_per_s"] for r in rows[args.warmup:]]
    step_sum = sum(args.pairs / r["pairs_per_s"] for r in rows)
    return {"pairs_per_s": _median_rate(args.pairs, timed), "peak_mem_gib": _peak(device),
            "steps_timed": len(timed), "step_s": [round(t, 3) for t in timed],
            "reference_pass_and_setup_s": round(max(0.0, wall - step_sum), 3),
            "wall_s": round(wall, 3), "tokens_per_sequence": round(statistics.mean(tokens), 1),
            "tokens_per_pair": round(statistics.mean(pair_tokens), 1)}


def run_trl(args, device: str, records, processor, tmp: Path) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from PIL import Image
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    model, _ = _model(args.shape, device, processor.tokenizer.convert_tokens_to_ids("<image>"))
    steps = args.steps + args.warmup
    cuda = device.startswith("cuda")
    eos = processor.tokenizer.eos_token
    data = Dataset.from_list([{"images": [Image.open(r.image).convert("RGB")], "prompt": build_prompt(r.question),
                               "chosen": f" {r.chosen}{eos}", "rejected": f" {r.rejected}{eos}"} for r in records])
    lora = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0, bias="none",
                      target_modules=rf".*language_model.*\.({'|'.join(LLAMA_LINEARS)})$")
    cfg = DPOConfig(output_dir=str(tmp / "trl"), beta=0.1, loss_type=["sigmoid"], precompute_ref_log_probs=False,
                    learning_rate=1e-6, max_steps=steps, per_device_train_batch_size=args.pairs,
                    gradient_accumulation_steps=1, lr_scheduler_type="constant", warmup_steps=0,
                    report_to="none", save_strategy="no", logging_steps=10**6, use_cpu=not cuda, bf16=cuda,
                    fp16=False, max_length=None, disable_dropout=True, seed=0, dataloader_num_workers=0,
                    gradient_checkpointing=False)
    ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            ends.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            ends.append(time.perf_counter())

    trainer = DPOTrainer(model=model, args=cfg, train_dataset=data, processing_class=processor, peft_config=lora,
                         callbacks=[StepClock()])
    sample = trainer.data_collator([dict(data[i]) for i in range(min(args.pairs, len(data)))])
    tokens = sample["attention_mask"].sum(1).float().mean().item()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    deltas = [b - a for a, b in zip(ends, ends[1:])]
    timed = deltas[args.warmup:]
    return {"pairs_per_s": _median_rate(args.pairs, timed), "peak_mem_gib": _peak(device),
            "steps_timed": len(timed), "step_s": [round(t, 3) for t in timed], "wall_s": round(wall, 3),
            "reference": "adapters disabled, recomputed every step (precompute_ref_log_probs is refused for"
                         " vision datasets)", "tokens_per_sequence": round(tokens, 1)}


def perf_train(args) -> dict:
    device = resolve_device(args.device)
    processor = None
    out: dict[str, Any] = {"what": "train", "method": "dpo", "shape": args.shape, "device": device_name(device),
                           "dtype": "bfloat16" if device.startswith("cuda") else "float32",
                           "torch_threads": torch.get_num_threads(), "pairs_per_step": args.pairs,
                           "lora_r": args.lora_r, "response_words": args.response_words,
                           "steps_timed": args.steps, "warmup_steps": args.warmup}

    processor = _processor(shape_config(args.shape))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        records = make_records(tmp, args.pairs * (args.steps + args.warmup), args.response_words)
        out["bench"] = run_bench(args, device, records, processor, cache_reference=True)
        out["bench_no_reference_cache"] = run_bench(args, device, records, processor, cache_reference=False)
        out["bench_share_prefix"] = run_bench(args, device, records, processor, cache_reference=True,
                                              share_prefix=True)
        on, off = out["bench_share_prefix"]["pairs_per_s"], out["bench"]["pairs_per_s"]
        if on and off:
            out["speedup_share_prefix"] = round(on / off, 3)
        if args.trl:
            try:
                import trl
            except ImportError:
                out["trl"] = {"pairs_per_s": None, "peak_mem_gib": None, "error": "trl is not installed"}
            else:
                out["trl"] = {"version": trl.__version__, **run_trl(args, device, records, processor, tmp)}
                for key in ("bench", "bench_no_reference_cache", "bench_share_prefix"):
                    if out[key]["pairs_per_s"] and out["trl"]["pairs_per_s"]:
                        out[f"speedup_{key}_vs_trl"] = round(out[key]["pairs_per_s"] / out["trl"]["pairs_per_s"], 3)
    for side in ("bench", "bench_no_reference_cache", "bench_share_prefix", "trl"):
        if side in out and isinstance(out[side].get("pairs_per_s"), float):
            out[side]["pairs_per_s"] = round(out[side]["pairs_per_s"], 4)
    return out


def add_arguments(p) -> None:
    p.add_argument("--trl", action="store_true", help="also time TRL's DPOTrainer on the same model and data")
    p.add_argument("--pairs", type=int, default=4, help="pairs per optimizer step (both sides)")
    p.add_argument("--response-words", dest="response_words", type=int, default=40,
                   help="words per chosen/rejected response")
    p.add_argument("--steps", type=int, default=5, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps before them")
    p.add_argument("--lora-r", dest="lora_r", type=int, default=16)
