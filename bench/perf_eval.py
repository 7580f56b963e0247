"""``python -m bench perf eval``: the evaluation engine against transformers' own ``generate``, same model,
same inputs, same process.

Two workloads on a randomly initialised LLaVA of the requested shape (:func:`bench.perf.build_model`):

* **POPE-shaped**: ``--images`` images × ``--questions`` yes/no questions each (``Is there a <object> in the
  image?``, objects of one to three words, so the question tails differ in length), ``--answer-tokens`` new
  tokens;
* **caption-shaped**: ``--caption-images`` images × ``Please describe this image in detail.``,
  ``--caption-tokens`` new tokens;
* **beam-shaped** (SHR's decoding): ``--beam-images`` images × the caption prompt, ``--beams`` beams (5, SHR's),
  ``--beam-tokens`` new tokens. On by default at ``tiny`` and ``mid``; at ``llava-7b`` only when named in
  ``--workloads`` (with ``--bs1-items``: 5 beams × 512 tokens at batch 1 take about as long as the rest).

Each is decoded by the engine's default path for it (:func:`bench.eval.fastpath.stream` — what ``bench eval``
runs: ``packed`` for POPE, ``batched`` for captions, ``beams`` for beam search, the engine choosing its own
batch) and by
``model.generate`` at batch 1, 8 (and 32 at the ``llava-7b`` shape) on left-padded batches in item order.
Reported: wall seconds of each, the engine's vision / prefill / decode split, and the share of items whose
text equals batch-1 ``generate`` (``agreement``; also for ``generate`` at batch 8). Random weights rarely emit
EOS, so every item decodes close to its full token count. ``--bs1-items N`` times batch 1 on the first N items
only (the 7B workloads would take hours at batch 1); the JSON then says so. ``--generate-items N`` does the
same for batched ``generate``: it runs on the first N items and ``hf_generate_bs<b>_s`` is its time per item ×
all items (``hf_generate_bs<b>_items`` and ``hf_generate_bs<b>_s_measured`` say so), so a 7B run fits a short
device lease — e.g. ``--shape llava-7b --generate-items 64 --bs1-items pope=1000,caption=16``: the engine on the
full 9000 POPE questions and 500 × 512-token captions, ``generate`` on 64 items at batch 8 and 32, and at batch 1
on 1000 POPE questions and 16 captions (the agreement is over those).

Before timing, each decoder runs once on two items (warm-up). ``--repeat R`` keeps the fastest of R runs of the
engine and of batched ``generate`` (batch 1 runs once).

``--backend vllm`` adds vLLM (:mod:`bench.eval.vllm_backend`) as one more engine in the same run, on the same
weights (saved to a temporary folder with a word-level tokenizer that names every id, since vLLM loads a
folder), items and settings: ``<workload>.vllm_s`` and ``<workload>.vllm_agreement`` (share of items equal to
batch-1 ``generate``); every other key is unchanged. On CUDA vLLM is given the GPU memory left free by the
transformers model (``gpu_memory_utilization``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from bench.benchmark import EvalItem, GenerationSettings
from bench.eval.decode import generate_batch
from bench.eval import vllm_backend
from bench.eval.fastpath import choose_path, stream
from bench.perf_shapes import build_model, device_name
from bench.runtime import resolve_device

OBJECTS = ["dog", "dining table", "cup", "traffic light", "person", "fire hydrant", "car", "teddy bear", "bowl",
           "cell phone", "bicycle", "stop sign", "chair", "hot dog", "bus", "tennis racket", "bottle",
           "potted plant", "fork", "baseball bat", "cat", "wine glass", "train", "sports ball"]
CAPTION_PROMPT = "Please describe this image in detail."

SHAPE_DEFAULTS = {  # images, questions per image, answer tokens, caption images, caption tokens, generate batches
    "tiny": (6, 18, 3, 16, 48, (8,)),
    "mid": (6, 18, 3, 32, 48, (8,)),
    "llava-7b": (500, 18, 3, 500, 512, (8, 32)),
}
BEAM_DEFAULTS = {"tiny": (8, 24), "mid": (16, 24), "llava-7b": (100, 512)}  # beam-shaped: images, new tokens
NUM_BEAMS = 5  # SHR's protocol
WORKLOADS = {"tiny": "pope,caption,beam", "mid": "pope,caption,beam", "llava-7b": "pope,caption"}


def make_images(folder: Path, n: int) -> list[str]:
    """``n`` small PNGs of different sizes and colours (the processor pads and resizes them)."""
    from PIL import Image

    paths = []
    for i in range(n):
        path = folder / f"img{i}.png"
        img = Image.new("RGB", (64 + 9 * (i % 7), 48 + 5 * (i % 5)), ((37 * i) % 255, (90 + 11 * i) % 255, 160))
        for x in range(0, img.width, 8):  # a few stripes so images differ in content, not only in colour
            img.paste(((13 * x + i) % 255, 40, (7 * i) % 255), (x, 0, x + 2, img.height))
        img.save(path)
        paths.append(str(path))
    return paths


def pope_items(images: list[str], questions: int) -> list[EvalItem]:
    return [EvalItem(f"{i}/{q}", path, f"Is there a {OBJECTS[(q + 5 * i) % len(OBJECTS)]} in the image?")
            for i, path in enumerate(images) for q in range(questions)]


def caption_items(images: list[str]) -> list[EvalItem]:
    return [EvalItem(f"{i}", path, CAPTION_PROMPT) for i, path in enumerate(images)]


def run_engine(model, pre, items: list[EvalItem], gen: GenerationSettings, device: str,
               timings: dict | None = None) -> dict[str, str]:
    """The engine's default path for ``items`` (what ``bench eval`` runs)."""
    texts: dict[str, str] = {}
    for chunk, out, skipped in stream(model, pre, items, gen, device, batch_size=8, timings=timings):
        if skipped:
            raise RuntimeError(f"perf items skipped: {skipped}")
        texts.update((it.id, t) for it, t in zip(chunk, out))
    return texts


def run_generate(model, pre, items: list[EvalItem], gen: GenerationSettings, device: str, batch: int
                 ) -> dict[str, str]:
    """transformers' ``model.generate`` on left-padded batches of ``batch`` items in item order."""
    texts: dict[str, str] = {}
    with torch.no_grad():
        for i in range(0, len(items), batch):
            chunk = items[i:i + batch]
            texts.update(zip([it.id for it in chunk], generate_batch(model, pre, chunk, gen, device,
                                                                     use_hf_generate=True)))
    return texts


def _timed(fn, repeat: int = 1, on_best=None) -> tuple[float, Any]:
    """Fastest wall time of ``repeat`` calls and that call's result; ``on_best()`` runs right after each new
    fastest call (to keep what belongs to it, e.g. its time split)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        took = time.perf_counter() - t0
        if took < best:
            best, out = took, result
            if on_best is not None:
                on_best()
    return best, out


def _agreement(texts: dict[str, str], reference: dict[str, str]) -> float | None:
    ids = [i for i in reference if i in texts]
    return sum(texts[i] == reference[i] for i in ids) / len(ids) if ids else None


def workload(model, pre, items: list[EvalItem], gen: GenerationSettings, device: str, batches: tuple[int, ...],
             bs1_items: int | None, repeat: int, extra: dict[str, Callable] | None = None,
             generate_items: int | None = None) -> dict:
    """Engine vs ``generate`` at batch 1 and ``batches`` on ``items``: seconds, split, agreement. ``extra``: other
    engines by name (``vllm``: ``fn(items, gen) -> {id: text}``), reported as ``<name>_s`` / ``<name>_agreement``.
    ``generate_items``: batched ``generate`` runs on the first N items only; its seconds for all items are then
    extrapolated per item (``hf_generate_bs<b>_s``, with ``hf_generate_bs<b>_items`` and ``_s_measured``)."""
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    extra = extra or {}
    run_engine(model, pre, items[:2], gen, device)  # warm-up
    run_generate(model, pre, items[:1], gen, device, 1)
    for fn in extra.values():
        fn(items[:2], gen)
    split: dict[str, float] = {}

    def engine():
        split.clear()
        out = run_engine(model, pre, items, gen, device, split)
        sync()
        return out

    res: dict[str, Any] = {"items": len(items), "images": len({it.image for it in items}),
                           "new_tokens": gen.max_new_tokens, "num_beams": gen.num_beams}
    best_split: dict[str, float] = {}
    res["engine_s"], fast = _timed(engine, repeat, on_best=lambda: best_split.update(split))
    res["engine_split_s"] = {k.removesuffix("_s"): round(v, 3) for k, v in best_split.items()}  # of the fastest run
    res["engine_path"] = choose_path(model, items, gen, 8)
    generated = {}
    gen_items = items if generate_items is None else items[: max(1, generate_items)]
    for b in batches:
        took, generated[b] = _timed(lambda: run_generate(model, pre, gen_items, gen, device, b), repeat)
        res[f"hf_generate_bs{b}_s"] = took * len(items) / len(gen_items)
        if len(gen_items) < len(items):
            res[f"hf_generate_bs{b}_items"] = len(gen_items)
            res[f"hf_generate_bs{b}_s_measured"] = took
    other = {}
    for name, fn in extra.items():
        res[f"{name}_s"], other[name] = _timed(lambda: fn(items, gen), repeat)
    ref_items = items if bs1_items is None else items[:bs1_items]
    res["hf_generate_bs1_s"], reference = _timed(lambda: run_generate(model, pre, ref_items, gen, device, 1))
    if bs1_items is not None and bs1_items < len(items):
        res["hf_generate_bs1_items"] = len(ref_items)
        res["hf_generate_bs1_s_per_item"] = res["hf_generate_bs1_s"] / max(1, len(ref_items))
    res["agreement"] = _agreement(fast, reference)
    res["agreement_items"] = len(reference)
    for b in batches:
        res[f"hf_generate_bs{b}_agreement"] = _agreement(generated[b], reference)  # on the items both ran
        res[f"speedup_vs_hf_generate_bs{b}"] = res[f"hf_generate_bs{b}_s"] / res["engine_s"]
    for name, texts in other.items():
        res[f"{name}_agreement"] = _agreement(texts, reference)
    for key, value in list(res.items()):
        if isinstance(value, float):
            res[key] = round(value, 4)
    return res


def perf_eval(args) -> dict:
    if getattr(args, "backend", "transformers") == "vllm":
        vllm_backend.import_vllm()  # one actionable error (exit 2) before any model is built when vllm is missing
    device = resolve_device(args.device)
    model, pre = build_model(args.shape, device)
    d_img, d_q, d_ans, d_cimg, d_ctok, batches = SHAPE_DEFAULTS[args.shape]
    gen_pope = GenerationSettings(max_new_tokens=args.answer_tokens or d_ans)
    gen_cap = GenerationSettings(max_new_tokens=args.caption_tokens or d_ctok)
    d_bimg, d_btok = BEAM_DEFAULTS[args.shape]
    gen_beam = GenerationSettings(max_new_tokens=args.beam_tokens or d_btok, num_beams=args.beams)
    workloads = (args.workloads or WORKLOADS[args.shape]).split(",")
    out: dict[str, Any] = {"what": "eval", "shape": args.shape, "device": device_name(device),
                           "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
                           "torch_threads": torch.get_num_threads(), "backend": "transformers"}
    bs1_default = 200 if args.shape == "llava-7b" else None
    bs1 = {name: args.bs1_items.get(name, args.bs1_items.get("*", bs1_default)) if args.bs1_items else bs1_default
           for name in ("pope", "caption", "beam")}
    gen_n = getattr(args, "generate_items", None) or None
    with tempfile.TemporaryDirectory() as tmp:
        extra = {}
        if getattr(args, "backend", "transformers") == "vllm":
            vm = open_vllm(model, pre, Path(tmp) / "vllm-model", device, out["dtype"])
            out["vllm_backend"] = vm.backend
            extra["vllm"] = lambda items, gen: run_vllm(vm, items, gen)
        images = make_images(Path(tmp), max(args.images or d_img, args.caption_images or d_cimg,
                                            args.beam_images or d_bimg))
        if "pope" in workloads:
            items = pope_items(images[: args.images or d_img], args.questions or d_q)
            out["pope"] = workload(model, pre, items, gen_pope, device, batches, bs1["pope"], args.repeat, extra,
                                   gen_n)
        if "caption" in workloads:
            items = caption_items(images[: args.caption_images or d_cimg])
            out["caption"] = workload(model, pre, items, gen_cap, device, batches, bs1["caption"], args.repeat, extra,
                                      gen_n)
        if "beam" in workloads:
            items = caption_items(images[: args.beam_images or d_bimg])
            out["beam"] = workload(model, pre, items, gen_beam, device, batches, bs1["beam"], args.repeat,
                                   {k: v for k, v in extra.items() if k != "vllm"},  # vLLM: no beam search here
                                   gen_n)
    return out


def save_vllm_folder(model, pre, folder: Path) -> Path:
    """The perf model as a checkpoint folder vLLM can load: weights, config and a processor whose word-level
    tokenizer names every id (``t<i>``; ``<image>`` at the image token id). The prompts sent are token ids and the
    outputs are decoded by the perf tokenizer, so these words never reach a text."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlavaProcessor, PreTrainedTokenizerFast

    cfg = model.config
    names = {0: "<unk>", 1: "<s>", 2: "</s>", cfg.image_token_id: "<image>"}
    vocab = {names.get(i, f"t{i}"): i for i in range(cfg.text_config.vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    LlavaProcessor(image_processor=pre.image_processor, tokenizer=fast, patch_size=cfg.vision_config.patch_size,
                   vision_feature_select_strategy=cfg.vision_feature_select_strategy).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def open_vllm(model, pre, folder: Path, device: str, dtype: str):
    """vLLM on the perf model's weights (saved to ``folder``); on CUDA, the memory the transformers model left."""
    kwargs = {}
    if str(device).startswith("cuda"):
        free, total = torch.cuda.mem_get_info()
        kwargs["gpu_memory_utilization"] = round(max(0.05, 0.85 * free / total), 3)
    return vllm_backend.open_folder(save_vllm_folder(model, pre, folder), pre, "llava-1.5", dtype, seed=0, **kwargs)


def run_vllm(vm, items: list[EvalItem], gen: GenerationSettings) -> dict[str, str]:
    """vLLM's texts of ``items`` (one ``generate`` call)."""
    texts, skipped = vllm_backend.generate(vm, items, gen)
    if skipped:
        raise RuntimeError(f"perf items skipped: {skipped}")
    return {it.id: t for it, t in zip(items, texts)}


def bs1_items(text: str) -> dict[str, int]:
    """``--bs1-items``: ``N`` (every workload) or ``pope=N,caption=M,…`` (per workload; ``*=N`` for the rest)."""
    try:
        if "=" not in text:
            return {"*": int(text)}
        out = {}
        for part in text.split(","):
            name, value = part.split("=")
            if name.strip() not in ("pope", "caption", "beam", "*"):
                raise ValueError(name)
            out[name.strip()] = int(value)
        return out
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected N or pope=N,caption=M,beam=K, got {text!r}") from exc


def add_arguments(p) -> None:
    p.add_argument("--images", type=int, default=None, help="POPE-shaped: images (default by shape: 6; 7b: 500)")
    p.add_argument("--questions", type=int, default=None, help="POPE-shaped: questions per image (18)")
    p.add_argument("--answer-tokens", dest="answer_tokens", type=int, default=None, help="POPE-shaped: new tokens (3)")
    p.add_argument("--caption-images", dest="caption_images", type=int, default=None,
                   help="caption-shaped: images (tiny 16, mid 32, 7b 500)")
    p.add_argument("--caption-tokens", dest="caption_tokens", type=int, default=None,
                   help="caption-shaped: new tokens (48; 7b: 512)")
    p.add_argument("--bs1-items", dest="bs1_items", type=bs1_items, default=None,
                   help="time generate at batch 1 on the first N items only: N, or per workload pope=N,caption=M"
                        " (default: all; 7b: 200)")
    p.add_argument("--generate-items", dest="generate_items", type=int, default=None,
                   help="time batched generate (bs 8/32) on the first N items only and extrapolate its seconds to"
                        " all items per item (default: all)")
    p.add_argument("--beam-images", dest="beam_images", type=int, default=None,
                   help="beam-shaped: images (tiny 8, mid 16, 7b 100)")
    p.add_argument("--beam-tokens", dest="beam_tokens", type=int, default=None,
                   help="beam-shaped: new tokens (24; 7b: 512)")
    p.add_argument("--beams", type=int, default=NUM_BEAMS, help="beam-shaped: beams (5, SHR's)")
    p.add_argument("--workloads", default=None,
                   help="comma-separated: pope,caption,beam (default: all three; llava-7b: pope,caption)")
    p.add_argument("--repeat", type=int, default=1, help="fastest of N runs for the engine and batched generate")
    p.add_argument("--backend", choices=["transformers", "vllm"], default="transformers",
                   help="vllm: add vLLM as another engine in the same run (pope.vllm_s, pope.vllm_agreement, …)")
