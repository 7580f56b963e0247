"""Optional vLLM backend (``--backend vllm`` / ``eval.backend=vllm``): benchmark items → vLLM offline requests →
``predictions/<benchmark>.jsonl``, for users who want the fastest existing engine.

What is sent. One request per item, through vLLM's documented offline API (``vllm.LLM(model=folder, dtype=...,
seed=...)``, ``LLM.generate(prompts, SamplingParams)`` returning ``RequestOutput`` objects whose
``.outputs[0].token_ids`` are the new tokens):

* ``prompt_token_ids`` — exactly the token ids the family's preprocessor builds for the transformers paths
  (``pre.prompt_ids(question, image_size)``: LLaVA-1.5's vicuna_v1 template, LLaVA-NeXT's and Qwen2-VL's chat
  templates), with the run of image tokens collapsed back to the single placeholder token, which vLLM's own
  multimodal processor expands for the image (vLLM takes ``multi_modal_data`` with text *and* token prompts);
  passing token ids rather than text means the template is never re-tokenised differently;
* ``multi_modal_data = {"image": PIL.Image}`` — the image as the project prepares it before its processor
  (LLaVA-1.5: padded to a square of the CLIP mean colour, ``expand2square``, which vLLM's processor would not
  do), loaded with :func:`bench.models.llava.load_image` (a missing or unreadable image is skipped with its
  reason, as on the default path);
* ``SamplingParams(temperature=0, max_tokens=max_new_tokens, stop_token_ids=[eos])`` for greedy protocols
  (``temperature`` and a seed for sampling ones). Stop *strings* are not sent: the new token ids are decoded
  with the checkpoint's tokenizer and post-processed by :func:`bench.eval.decode.postprocess`, the same
  function as the default path, so a text is cut at a stop string the same way.

Beam search (SHR's 5 beams) is refused before any work (:func:`bench.preflight.backend_problems`): vLLM moved
it to ``LLM.beam_search(prompts, BeamSearchParams(beam_width=..., max_tokens=...))``, a Python loop of one-token
requests whose candidate scoring and stopping rule differ from transformers' ``generate``; those protocols run on
the default backend. Adapters are refused too (vLLM loads one folder): merge with ``bench export`` and pass the
merged folder as ``--model``.

What may differ from the default backend, and why agreement is measured rather than assumed: vLLM runs its own
image preprocessing (its processor resizes and normalises the image we pass), its own attention and GEMM
kernels, paged KV cache and batching, and usually bfloat16 on the GPU; greedy decoding then diverges wherever
two logits are within rounding of each other. ``bench eval --backend vllm --verify-against-bs1 N`` re-decodes N
stored items with the project's batch-1 transformers ``generate`` and reports the share of identical texts.

Labels. The checkpoint fingerprint's backend is ``vllm/<vllm version>`` (``bench.fingerprint.model_fingerprint``),
so every prediction key differs from the transformers ones: a cache made by one backend is never served for the
other (those lines move to ``<file>.stale``). Prediction lines carry ``"backend": "vllm"``; the score file and
``run.json`` (``eval.backend``, ``fingerprint_parts.backend``) say so too. Files written by the default backend
are unchanged (no ``backend`` field means transformers).

vLLM is imported only when this backend is selected (function-level import below): the package is optional and
needs a CUDA GPU. In this repository's tests a fake ``vllm`` module stands in for it (``tests/test_vllm_backend.py``);
the real vLLM was never run here.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.benchmark import Benchmark, EvalItem, GenerationSettings
from bench.errors import BenchError, DataError
from bench.eval.decode import postprocess
from bench.eval.engine import load_cached, plan, write_in_order
from bench.io import append_jsonl
from bench.models.llava import load_image, pad_to_square
from bench.models.loading import read_family
from bench.preflight import VLLM_MISSING

BACKEND = "vllm"
# families wired to vLLM here (vLLM implements the llava-hf LLaVA-1.5 / LLaVA-NeXT and Qwen2-VL / Qwen2.5-VL classes
# and expands their single image placeholder); InstructBLIP's Q-Former prompts and the assembled MiniGPT-4 are not
SUPPORTED_FAMILIES = ("llava-1.5", "llava-next", "qwen2-vl", "qwen2.5-vl")
CHUNK = 256  # requests per LLM.generate call: vLLM batches inside a call; a kill loses at most one chunk


def import_vllm() -> Any:
    """The ``vllm`` module, or one actionable :class:`BenchError` when it is not installed."""
    try:
        import vllm  # optional dependency, imported only when --backend vllm is selected
    except ImportError:
        raise BenchError(VLLM_MISSING) from None
    return vllm


def backend_label(vllm: Any) -> str:
    """The backend part of the checkpoint fingerprint: ``vllm/<version>`` (a new vLLM may decode differently)."""
    return f"{BACKEND}/{getattr(vllm, '__version__', 'unknown')}"


@dataclass
class VllmModel:
    """A loaded ``vllm.LLM`` with the family preprocessor that builds its prompts."""

    llm: Any
    vllm: Any
    pre: Any
    family: str
    folder: str
    seed: int = 0

    @property
    def backend(self) -> str:
        return backend_label(self.vllm)

    def close(self) -> None:
        """Drop the engine so a later transformers model (``--verify-against-bs1``) gets the GPU memory."""
        self.llm = None
        gc.collect()
        try:
            import torch  # already imported by the caller; only to release cached GPU blocks

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass


def model_folder(entry: Any) -> Path:
    """The local folder of a model entry (a hub snapshot already in the cache, a local folder, the embedded
    tiny model): vLLM is given the same files the transformers backend loads, never a name to download."""
    if hasattr(entry, "resolve"):
        return Path(entry.resolve())
    source = entry.weights_source()
    if "path" not in source:
        raise BenchError(f"model {entry.name}: --backend vllm needs a local checkpoint folder")
    return Path(source["path"])


def open_vllm_model(entry: Any, adapter: str | None, dtype: str, seed: int = 0, **llm_kwargs: Any) -> VllmModel:
    """``vllm.LLM`` on the entry's folder (``dtype`` a name: ``float32``, ``bfloat16`` …) and the family's
    preprocessor read from the same folder."""
    vllm = import_vllm()
    if adapter is not None:
        raise BenchError(f"--backend vllm evaluates one merged checkpoint folder, not an adapter ({adapter}): merge it"
                         " with `python -m bench export CHECKPOINT --out DIR` and pass --model DIR")
    from transformers import AutoConfig  # CLI start-up time: transformers loads only when a model is opened

    folder = model_folder(entry)
    family = read_family(folder)
    if family.name not in SUPPORTED_FAMILIES:
        raise BenchError(f"--backend vllm: the {family.name} family is not wired to vLLM (supported:"
                         f" {', '.join(SUPPORTED_FAMILIES)}); use the default backend")
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    pre = family.make_preprocessor(family.load_processor(folder, local_files_only=True), config)
    return open_folder(folder, pre, family.name, dtype, seed, **llm_kwargs)


def open_folder(folder: str | Path, pre: Any, family: str, dtype: str, seed: int = 0, **llm_kwargs: Any) -> VllmModel:
    """``vllm.LLM`` on a checkpoint folder, prompts built by ``pre`` (``bench perf eval`` passes its own)."""
    vllm = import_vllm()
    llm = vllm.LLM(model=str(folder), tokenizer=str(folder), dtype=dtype, seed=seed,
                   limit_mm_per_prompt={"image": 1}, **llm_kwargs)
    return VllmModel(llm=llm, vllm=vllm, pre=pre, family=family, folder=str(folder), seed=seed)


def prompt_token_ids(pre: Any, question: str, image_size: tuple[int, int]) -> list[int]:
    """The preprocessor's prompt ids with the run of image tokens collapsed to one placeholder (vLLM expands it)."""
    ids = pre.prompt_ids(question, image_size)
    image_id = pre.image_token_id
    out: list[int] = []
    for tok in ids:
        if tok == image_id and out and out[-1] == image_id:
            continue
        out.append(tok)
    if out.count(image_id) != 1:
        raise BenchError(f"prompt of {question!r} holds {out.count(image_id)} image placeholder runs (want 1)")
    return out


def vllm_image(pre: Any, image: Any) -> Any:
    """The image as the project prepares it before the processor (LLaVA-1.5's pad-to-square)."""
    if getattr(pre, "pad_square", False):
        return pad_to_square(image, pre.background)
    return image


def request(pre: Any, item: EvalItem) -> dict:
    """One vLLM prompt dict for ``item`` (raises :class:`DataError` on an unreadable image)."""
    image = load_image(item.image, item=item.id)
    return {"prompt_token_ids": prompt_token_ids(pre, item.question, image.size),
            "multi_modal_data": {"image": vllm_image(pre, image)}}


def sampling_params(vllm: Any, gen: GenerationSettings, eos_id: int | None, seed: int = 0) -> Any:
    """``SamplingParams`` of a protocol's settings: greedy = temperature 0; beam search is refused."""
    if gen.num_beams != 1:
        raise BenchError(f"--backend vllm does not run beam search (num_beams={gen.num_beams}); evaluate this"
                         " benchmark with the default backend")
    kwargs: dict[str, Any] = {"max_tokens": gen.max_new_tokens, "n": 1,
                              "temperature": gen.temperature if gen.do_sample else 0.0}
    if gen.do_sample:
        kwargs["seed"] = seed
    if eos_id is not None:
        kwargs["stop_token_ids"] = [eos_id]
    return vllm.SamplingParams(**kwargs)


def generate(vm: VllmModel, items: list[EvalItem], gen: GenerationSettings
             ) -> tuple[list[str | None], dict[str, str]]:
    """Texts of ``items`` in their order (None for a skipped item) and the skip reasons, in one ``generate`` call."""
    skipped: dict[str, str] = {}
    good: list[EvalItem] = []
    prompts: list[dict] = []
    for it in items:
        if not Path(it.image).exists():
            skipped[it.id] = f"image not found: {it.image}"
            continue
        try:
            prompts.append(request(vm.pre, it))
        except DataError as exc:
            skipped[it.id] = str(exc)
            continue
        good.append(it)
    texts: dict[int, str] = {}
    if prompts:
        tok = vm.pre.tokenizer
        params = sampling_params(vm.vllm, gen, tok.eos_token_id, vm.seed)
        outputs = vm.llm.generate(prompts, params, use_tqdm=False)
        if len(outputs) != len(prompts):
            raise BenchError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} requests")
        for k, (it, out) in enumerate(zip(good, outputs)):
            new = list(out.outputs[0].token_ids)
            texts[k] = postprocess(tok.decode(new, skip_special_tokens=True), gen)
    by_item = {id(it): texts[k] for k, it in enumerate(good)}
    return [by_item.get(id(it)) for it in items], skipped


def run_benchmark_vllm(model: VllmModel, pre: Any, bench: Benchmark, data_root: Path, pred_path: Path,
                       checkpoint_fp: str, device: str = "cpu", batch_size: int = 8, limit: int | None = None,
                       progress: bool = True, reuse_prefix: bool = True, rank: int = 0, world: int = 1) -> dict:
    """Generate every missing prediction of ``bench`` with vLLM; the engine's statistics dict.

    Same file format, keys, resume and stale rules as :func:`bench.eval.engine.run_benchmark`; ``pre``,
    ``device``, ``batch_size`` and ``reuse_prefix`` are accepted for its signature and unused (vLLM schedules its
    own batches; :data:`CHUNK` requests per call)."""
    if world > 1:
        raise BenchError("--backend vllm runs in one process (vLLM shards a model itself: tensor_parallel_size);"
                         " run it without `accelerate launch`")
    gen = bench.generation
    every, keys, items = plan(bench, data_root, checkpoint_fp, limit)
    stored = load_cached(pred_path, keys)
    selected = {it.id for it in items}
    cached = {i: r for i, r in stored.items() if i in selected}
    todo = [it for it in items if it.id not in cached]
    skipped: dict[str, str] = {}
    t0 = time.perf_counter()
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        texts, chunk_skipped = generate(model, chunk, gen)
        skipped.update(chunk_skipped)
        lines = []
        for it, text in zip(chunk, texts):
            if text is None:
                continue
            if not text:
                skipped.setdefault(it.id, "empty generation (kept and scored as generated)")
            lines.append({"id": it.id, "text": text, "key": keys[it.id], "backend": BACKEND})
        append_jsonl(pred_path, lines)
        stored.update((line["id"], line) for line in lines)
    write_in_order(pred_path, [it.id for it in every], stored)
    return {"items": len(items), "cached": len(cached), "generated": len(todo) - len(skipped),
            "skipped": skipped, "path": BACKEND, "backend": BACKEND, "wall_s": round(time.perf_counter() - t0, 3),
            "timings_s": {}}
