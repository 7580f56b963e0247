"""Recipe: pretrain ``tiny-llava`` on the synthetic world (captions + yes/no questions).

    python -m bench data prepare --out DATA
    python -m bench.models.tiny_pretrain --data DATA --out bench/assets/tiny-llava   # defaults = the shipped recipe

A plain full-fine-tuning SFT loop (AdamW, cosine schedule, right padding, labels from
``LlavaPreprocessor.encode_pair`` — the same vicuna_v1 template and pad-to-square the harness
evaluates with). The training text carries the planted co-occurrence prior
(:mod:`bench.data.synthetic`), so the resulting model hallucinates absent partners; RECIPE.md
beside the shipped checkpoint records the command, wall time and the measured bias.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from bench.data.synthetic import prepare_synthetic
from bench.io import read_jsonl
from bench.models.llava import load_image, make_preprocessor
from bench.models.tiny_llava import build_tiny_llava, save
from bench.train.forward import pad_batch


def pretrain_tiny_llava(data_root: Path, out_dir: Path, seed: int = 0, steps: int = 2400, batch_size: int = 32,
                        lr: float = 5e-4, log_every: int = 100) -> dict:
    from transformers import get_cosine_schedule_with_warmup

    torch.manual_seed(seed)
    model, processor = build_tiny_llava(None, seed)
    pre = make_preprocessor(processor, model.config)
    rows = read_jsonl(data_root / "pretrain" / "train.jsonl")
    images = {r["image"]: pre.pixel_values([load_image(data_root / r["image"])])[0] for r in rows}
    encoded = [pre.encode_pair(r["question"], r["answer"], 256) for r in rows]
    keys = list(images)
    key_index = {k: i for i, k in enumerate(keys)}
    pixels = torch.stack([images[k] for k in keys])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, steps // 20, steps)
    rng = random.Random(seed)
    order: list[int] = []
    model.train()
    t0 = time.perf_counter()
    losses = []
    for step in range(steps):
        if len(order) < batch_size:
            order += rng.sample(range(len(rows)), len(rows))
        idx, order = order[:batch_size], order[batch_size:]
        batch = pad_batch([encoded[i] for i in idx], pre.tokenizer.pad_token_id, list(range(len(idx))))
        pv = pixels[[key_index[rows[i]["image"]] for i in idx]]
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, pixel_values=pv,
                    labels=batch.labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps} loss {sum(losses[-log_every:]) / log_every:.4f}"
                  f" ({time.perf_counter() - t0:.0f}s)", flush=True)
    model.eval()
    save(model, processor, out_dir)
    return {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "final_loss": losses[-1],
            "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="synthetic data root (prepared if missing)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    a = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = Path(a.data) if a.data else Path(a.out) / "_data"
    if not (data / "manifest.json").exists():
        prepare_synthetic(data, seed=a.seed)
    print(pretrain_tiny_llava(data, Path(a.out), a.seed, a.steps, a.batch_size, a.lr))


if __name__ == "__main__":
    main()
