"""MiniGPT-4 (Llama-2-7B chat) from its released parts: :func:`assemble` and the ``minigpt4-llama2-7b`` entry.

MiniGPT-4 is released as pieces (see :mod:`bench.models.families.minigpt4` for how the original wires them):

* the EVA ViT-g + ``ln_vision`` and the Q-Former with its 32 query tokens from BLIP-2's FlanT5-XXL
  pretraining — in transformers layout in ``Salesforce/blip2-flan-t5-xxl`` (``vision_model.*``, ``qformer.*``,
  ``query_tokens``; its ``language_projection`` / T5 weights are not used). MiniGPT-4 builds its ViT from
  ``eva_vit_g.pth`` and then loads ``blip2_pretrained_flant5xxl.pth`` over the whole model (``strict=False``);
  transformers' checkpoint was converted from LAVIS's FlanT5-XXL model built the same way, so these are the
  weights MiniGPT-4 runs;
* the projection ``llama_proj`` trained by MiniGPT-4, ``pretrained_minigpt4_llama2_7b.pth`` (HA-DPO hosts it at
  ``juliozhao/pretrained_minigpt4_llama2_7b``; ``{"model": {"llama_proj.weight", "llama_proj.bias"}}``), read with
  ``torch.load(..., weights_only=True)`` — tensors only, no code executed;
* ``meta-llama/Llama-2-7b-chat-hf`` (safetensors, tokenizer).

:func:`assemble` writes one folder that :class:`~bench.models.families.minigpt4.MiniGPT4ForConditionalGeneration`
loads offline: ``config.json`` (model_type ``minigpt4``: BLIP-2's vision and Q-Former configs with
``use_qformer_text_input=False``, Llama's config, 32 query tokens, the placeholder id), ``model.safetensors``
(the four parts under ``vision_model.``, ``qformer.``, ``query_tokens``, ``llama_proj.``, ``language_model.``),
the Llama tokenizer with ``<ImageHere>`` added as the image placeholder (the embedding and ``lm_head`` grow by one
row, the mean of the others, never read; pad = ``<unk>`` when the tokenizer has none), a ``BlipImageProcessor``
(224×224, bicubic, CLIP mean/std = ``blip2_image_eval``) and ``bench_assembly.json`` (sha256 of every source file
read). Only safetensors are read from the two hub folders; a folder holding only ``.bin`` files is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.errors import BenchError
from bench.io import atomic_write_json, sha256_file

BLIP2_REPO = "Salesforce/blip2-flan-t5-xxl"
LLAMA_REPO = "meta-llama/Llama-2-7b-chat-hf"
PROJECTION_REPO, PROJECTION_FILE = "juliozhao/pretrained_minigpt4_llama2_7b", "pretrained_minigpt4_llama2_7b.pth"
VISION_PREFIXES = ("vision_model.", "qformer.", "query_tokens")
IMAGE_HERE = "<ImageHere>"
IMAGE_SIZE = 224


def _safetensors_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise BenchError(f"{folder}: no *.safetensors files (bench reads released weights from safetensors only)")
    return files


def _read(files: list[Path], keep) -> dict:
    from safetensors import safe_open

    out: dict = {}
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            for k in sf.keys():
                if keep(k):
                    out[k] = sf.get_tensor(k)
    return out


def load_projection(path: Path) -> dict:
    """``llama_proj.weight`` / ``llama_proj.bias`` of MiniGPT-4's checkpoint, read with ``weights_only=True``."""
    import torch

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle with objects other than tensors / containers is refused here
        raise BenchError(f"{path}: not loadable with torch.load(weights_only=True) ({exc})") from None
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not {"llama_proj.weight", "llama_proj.bias"} <= set(state):
        raise BenchError(f"{path}: no llama_proj.weight / llama_proj.bias (a MiniGPT-4 stage-2 checkpoint)")
    return {"llama_proj.weight": state["llama_proj.weight"], "llama_proj.bias": state["llama_proj.bias"]}


def assemble(blip2: str | Path, projection: str | Path, llama: str | Path, out: str | Path) -> Path:
    """Write the MiniGPT-4 folder described in the module docstring; returns ``out``."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, LlamaConfig
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    from bench.models.minigpt4_model import MiniGPT4Config  # on use: pulls in transformers' BLIP-2 code

    blip2, projection, llama, out = Path(blip2), Path(projection), Path(llama), Path(out)
    for folder in (blip2, llama):
        if not (folder / "config.json").is_file():
            raise BenchError(f"{folder}: not a checkpoint folder (no config.json)")
    blip2_cfg = json.loads((blip2 / "config.json").read_text())
    if "vision_config" not in blip2_cfg or "qformer_config" not in blip2_cfg:
        raise BenchError(f"{blip2}/config.json: not a BLIP-2 config (no vision_config / qformer_config)")
    blip2_files, llama_files = _safetensors_files(blip2), _safetensors_files(llama)
    state = _read(blip2_files, lambda k: k.startswith(VISION_PREFIXES))
    qformer_cfg = dict(blip2_cfg["qformer_config"])
    if qformer_cfg.get("use_qformer_text_input"):  # MiniGPT-4 removes the text branch
        state = {k: v for k, v in state.items() if not k.startswith(("qformer.embeddings.word_embeddings",
                                                                      "qformer.embeddings.position_embeddings"))
                 and ".intermediate." not in k and ".output." not in k}
    qformer_cfg["use_qformer_text_input"] = False
    if "query_tokens" not in state:
        raise BenchError(f"{blip2}: no query_tokens in its safetensors")
    proj = load_projection(projection)
    text_cfg = LlamaConfig.from_pretrained(llama)
    lm = _read(llama_files, lambda k: True)
    if proj["llama_proj.weight"].shape != (text_cfg.hidden_size, qformer_cfg.get("hidden_size", 768)):
        raise BenchError(f"{projection}: llama_proj.weight {tuple(proj['llama_proj.weight'].shape)} does not map the"
                         f" Q-Former width to the LLM width {text_cfg.hidden_size}")

    tok = AutoTokenizer.from_pretrained(llama)
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_HERE]})
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token
    image_token_id = tok.convert_tokens_to_ids(IMAGE_HERE)
    if len(tok) > text_cfg.vocab_size:  # one row per added token, the mean of the others (never read)
        grow = len(tok) - text_cfg.vocab_size
        for key in ("model.embed_tokens.weight", "lm_head.weight"):
            if key in lm:
                w = lm[key]
                lm[key] = torch.cat([w, w.float().mean(0, keepdim=True).to(w.dtype).expand(grow, -1)])
        text_cfg.vocab_size = len(tok)
    state.update(proj)
    state.update({f"language_model.{k}": v for k, v in lm.items()})

    config = MiniGPT4Config(vision_config=blip2_cfg["vision_config"], qformer_config=qformer_cfg,
                            text_config=text_cfg.to_dict(), num_query_tokens=int(state["query_tokens"].shape[1]),
                            image_token_index=image_token_id, tie_word_embeddings=False)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    tok.save_pretrained(out)
    size = int(blip2_cfg["vision_config"].get("image_size", IMAGE_SIZE))
    BlipImageProcessorPil(size={"height": size, "width": size}, image_mean=[0.48145466, 0.4578275, 0.40821073],
                          image_std=[0.26862954, 0.26130258, 0.27577711]).save_pretrained(out)
    sources = {str(f): sha256_file(f) for f in [*blip2_files, projection, *llama_files]}
    atomic_write_json(out / "bench_assembly.json", {
        "model": "minigpt4-llama2-7b layout", "blip2": str(blip2), "projection": str(projection),
        "llama": str(llama), "sha256": sources, "image_token": IMAGE_HERE, "image_token_id": image_token_id,
        "made_by": "python -m bench models assemble-minigpt4"})
    return out


def download_hint(env_var: str) -> str:
    return (f"MiniGPT-4 is assembled from three downloads: `hf download {BLIP2_REPO}` (vision + Q-Former),"
            f" `hf download {LLAMA_REPO}` (gated: accept Meta's licence first) and `hf download {PROJECTION_REPO}"
            f" {PROJECTION_FILE}`; then `python -m bench models assemble-minigpt4 --blip2 <blip2 folder> --projection"
            f" <{PROJECTION_FILE}> --llama <llama folder> --out DIR` and point {env_var} (or --model) at DIR")
