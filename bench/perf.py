"""``python -m bench perf train|eval``: throughput and memory, measured (never asserted).

``perf train`` builds a randomly initialised LLaVA of the requested shape (``llava-7b``:
CLIP-L/14-336 + Vicuna-7B shapes; ``tiny``: the tiny-llava shapes for CPU smoke runs), puts LoRA
(r128 by default) on the language model's linears, and times optimizer steps of the ``dpo`` method
through the shared loop on synthetic pairs of ~``--seq-len`` tokens (576 image tokens included at
7B shapes). It prints pairs/s (median over the timed steps, after warm-up) and peak memory, and
writes them as JSON to ``--out``. ``--trl`` additionally times TRL's ``DPOTrainer`` on the same
model, data and settings when TRL is installed.

``perf eval`` times the evaluation engine on a POPE-shaped workload (images × questions) and a
caption workload (images × forced ``--caption-tokens`` new tokens) against HF ``generate`` at
batch 1, and reports the vision/prefix/decode split.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.io import atomic_write_json


def _shape_config(shape: str):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    if shape == "llava-7b":
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                                  image_size=336, patch_size=14, projection_dim=768)
        text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096)
    elif shape == "mid":  # a CPU-sized LLaVA: 256 image tokens, 8 LM layers, the LLaVA-1.5 vocabulary size
        vision = CLIPVisionConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                                  image_size=224, patch_size=14, projection_dim=512)
        text = LlamaConfig(vocab_size=32064, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                           num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=4096)
    elif shape == "tiny":
        vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                  image_size=32, patch_size=8)
        text = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024)
    else:
        raise SystemExit(f"unknown shape {shape!r} (llava-7b | tiny)")
    return LlavaConfig(vision_config=vision, text_config=text, image_token_id=text.vocab_size - 64 + 1,
                       vision_feature_layer=-2, vision_feature_select_strategy="default")


class _IdTokenizer:
    """Token ids without text: perf data only needs lengths. Words map to ids by a stable hash (crc32) mod the
    vocabulary; ``decode`` writes the ids back as numbers (so texts compare exactly)."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __init__(self, vocab: int):
        self.vocab = vocab

    def __call__(self, text, add_special_tokens=False):
        import zlib

        return {"input_ids": [3 + (zlib.crc32(w.encode()) % (self.vocab - 100)) for w in text.split()]}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        special = {self.bos_token_id, self.eos_token_id, self.pad_token_id} if skip_special_tokens else set()
        return " ".join(str(i) for i in ids if i not in special)

    def batch_decode(self, rows, skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(r, skip_special_tokens) for r in rows]


def resolve_device(device: str) -> str:
    return device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")


def build_model(shape: str, device: str, dtype: torch.dtype | None = None):
    """A randomly initialised ``LlavaForConditionalGeneration`` of ``shape`` (seed 0; bfloat16 on CUDA, float32
    on CPU) in eval mode, and its preprocessor (id tokenizer, CLIP image processor at the shape's size)."""
    from transformers import LlavaForConditionalGeneration

    from bench.models.llava import LlavaPreprocessor, num_image_tokens_from_config

    cfg = _shape_config(shape)
    dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(cfg).to(dtype).eval()
    pre = LlavaPreprocessor(_IdTokenizer(cfg.text_config.vocab_size), _fake_processor(cfg.vision_config.image_size),
                            cfg.image_token_id, num_image_tokens_from_config(cfg))
    return model, pre


def _fake_processor(size: int):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def _records(tmp: Path, n: int, words: int):
    from PIL import Image

    from bench.data.preference import PreferenceRecord

    recs = []
    for i in range(n):
        path = tmp / f"{i}.png"
        Image.new("RGB", (64 + i % 7, 48), ((37 * i) % 255, 90, 160)).save(path)
        text_c = " ".join(f"w{(i + j) % 97}" for j in range(words))
        text_r = " ".join(f"v{(i * 3 + j) % 89}" for j in range(words))
        recs.append(PreferenceRecord(str(i), str(path), "Describe this image in detail.", text_c, text_r))
    return recs


def perf_train(args) -> dict:
    from transformers import LlavaForConditionalGeneration

    from bench.models.llava import LlavaPreprocessor, num_image_tokens_from_config
    from bench.train.config import TrainConfig
    from bench.train.loop import add_lora, train_stage
    from methods.dpo import DpoConfig, DpoMethod

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = _shape_config(args.shape)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(cfg).to(dtype)
    n_img = num_image_tokens_from_config(cfg)
    pre = LlavaPreprocessor(_IdTokenizer(cfg.text_config.vocab_size), _fake_processor(cfg.vision_config.image_size),
                            cfg.image_token_id, n_img)
    words = max(8, (args.seq_len - n_img - 40) // 2)
    steps = args.steps + args.warmup
    tcfg = TrainConfig(lr=1e-6, max_steps=steps, batch_size=args.pairs, max_length=args.seq_len + 64,
                       lora_r=args.lora_r, lora_alpha=2 * args.lora_r, cache_reference=args.cache_reference,
                       bf16=True, log_every=1)
    mcfg = DpoConfig(train=tcfg)
    method = DpoMethod()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        recs = _records(tmp, args.pairs * steps, words)
        peft_model = add_lora(model, tcfg)
        t0 = time.perf_counter()
        train_stage(method, method.stages(mcfg)[0], mcfg, peft_model, pre, recs, tmp / "stage", 0, False, device,
                    progress=False)
        wall = time.perf_counter() - t0
        rows = [json.loads(line) for line in (tmp / "stage" / "log.jsonl").read_text().splitlines()]
    timed = rows[args.warmup:]
    result = {
        "what": "train", "method": "dpo", "shape": args.shape, "device": device_name(device),
        "pairs_per_step": args.pairs, "seq_len_target": args.seq_len, "lora_r": args.lora_r,
        "reference_cache": args.cache_reference, "steps_timed": len(timed),
        "pairs_per_s_median": statistics.median(r["pairs_per_s"] for r in timed) if timed else None,
        "peak_mem_gib": max((r["peak_mem_gib"] for r in rows if "peak_mem_gib" in r), default=None),  # CUDA only
        "wall_s_including_reference_pass": round(wall, 2),
    }
    return result


def device_name(device: str) -> str:
    from bench.records import device_name

    return device_name(device)


def main_perf(args) -> int:
    p = argparse.ArgumentParser(prog=f"python -m bench perf {args.what}")
    p.add_argument("--shape", default="tiny", choices=["tiny", "mid", "llava-7b"])
    p.add_argument("--device", default="auto")
    p.add_argument("--json", "--out", dest="out", default=None, metavar="FILE", help="write the result JSON here")
    if args.what == "train":
        p.add_argument("--pairs", type=int, default=4)
        p.add_argument("--seq-len", dest="seq_len", type=int, default=800)
        p.add_argument("--steps", type=int, default=5)
        p.add_argument("--warmup", type=int, default=2)
        p.add_argument("--lora-r", dest="lora_r", type=int, default=128)
        p.add_argument("--no-reference-cache", dest="cache_reference", action="store_false")
        opts = p.parse_args(args.rest)
        result = perf_train(opts)
    else:
        from bench.perf_eval import add_arguments, perf_eval

        add_arguments(p)
        opts = p.parse_args(args.rest)
        result = perf_eval(opts)
    print(json.dumps(result, indent=2))
    if opts.out:
        atomic_write_json(opts.out, result)
    return 0
