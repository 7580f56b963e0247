"""Generation primitives shared by every decoding path: a left-padded batch through transformers' own
``generate`` (the batch-1 reference path, beam search and sampling) or a plain greedy loop, the KV-cache
argument of the installed transformers, and the protocol's post-processing of a decoded text (strip, cut at
the first stop string). :mod:`bench.eval.fastpath` chooses between these and the packed / batched paths;
:mod:`bench.eval.engine` runs benchmarks on top."""

from __future__ import annotations

from typing import Any

import torch

from bench.benchmark import EvalItem, GenerationSettings
from bench.models.family import family_of, prompt_images
from bench.models.llava import LlavaPreprocessor, load_image


def generate_batch(model, pre: LlavaPreprocessor, items: list[EvalItem], gen: GenerationSettings, device: str,
                   use_hf_generate: bool = False) -> list[str]:
    """Left-padded batch. Greedy runs our loop with position ids from the mask; beams/sampling and
    ``use_hf_generate=True`` (the batch-1 reference path) use HF ``generate``."""
    images = [load_image(it.image, item=it.id) for it in items]
    prompts = [pre.prompt_ids(it.question, im.size) for it, im in zip(items, images)]
    pixels, extra = prompt_images(pre, images, [it.question for it in items])
    pixels = pixels.to(device=device, dtype=next(model.parameters()).dtype)
    extra = {k: v.to(device) for k, v in extra.items()}
    length = max(len(p) for p in prompts)
    pad = pre.tokenizer.pad_token_id if pre.tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(items), length), pad, dtype=torch.long)
    att = torch.zeros((len(items), length), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, length - len(p):] = torch.tensor(p)
        att[i, length - len(p):] = 1
    family = family_of(model)
    if gen.num_beams == 1 and not gen.do_sample and not use_hf_generate and family.own_greedy():
        pos = (att.cumsum(-1) - 1).clamp(min=0)
        new = greedy_decode(model, ids.to(device), att.to(device), pos.to(device), gen.max_new_tokens,
                            pre.tokenizer.eos_token_id, pixel_values=pixels, image_extra=extra)
        return [postprocess(pre.tokenizer.decode(t, skip_special_tokens=True), gen) for t in new]
    kwargs: dict[str, Any] = dict(max_new_tokens=gen.max_new_tokens, num_beams=gen.num_beams, do_sample=gen.do_sample,
                                  pad_token_id=pad, eos_token_id=pre.tokenizer.eos_token_id)
    if gen.do_sample:
        kwargs["temperature"] = gen.temperature
    out = model.generate(input_ids=ids.to(device), attention_mask=att.to(device), pixel_values=pixels, **extra,
                         **family.generate_inputs(model, ids.to(device)), **kwargs)
    texts = pre.tokenizer.batch_decode(out[:, length:], skip_special_tokens=True)
    return [postprocess(t, gen) for t in texts]


def _cache_kwarg(model) -> str:
    """The KV-cache argument of ``model.forward``: ``cache`` (transformers >= 5.x, which deprecates
    ``past_key_values``) or ``past_key_values`` (older releases)."""
    import inspect

    fn = getattr(model, "forward", model)
    return "cache" if "cache" in inspect.signature(fn).parameters else "past_key_values"


def _cache_of(output):
    """The KV cache of a forward's output, under either attribute name."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


@torch.no_grad()
def greedy_decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                  max_new_tokens: int, eos_id: int, past=None, pixel_values=None,
                  image_extra: dict | None = None) -> list[list[int]]:
    """Greedy decoding with explicit attention mask and position ids (holes in the mask allowed).

    ``attention_mask`` covers the cached prefix plus ``input_ids``; ``position_ids`` those of
    ``input_ids``. Stops per row at ``eos_id``; returns the new tokens per row (without EOS).
    """
    batch = input_ids.shape[0]
    done = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
    out: list[list[int]] = [[] for _ in range(batch)]
    kwargs = {"pixel_values": pixel_values, **(image_extra or {})} if pixel_values is not None else {}
    cache_kw = _cache_kwarg(model)
    ids, pos, mask = input_ids, position_ids, attention_mask
    for _ in range(max_new_tokens):
        res = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                    **{cache_kw: past}, **kwargs)
        kwargs = {}
        past = _cache_of(res)
        nxt = res.logits[:, -1].argmax(-1)
        for i in range(batch):
            if not done[i]:
                if int(nxt[i]) == eos_id:
                    done[i] = True
                else:
                    out[i].append(int(nxt[i]))
        if bool(done.all()):
            break
        ids = nxt[:, None]
        pos = pos[:, -1:] + 1
        mask = torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype, device=mask.device)], dim=1)
    return out


def postprocess(text: str, gen: GenerationSettings) -> str:
    text = text.strip()
    for stop in gen.stop:
        if stop in text:
            text = text[: text.index(stop)]
    return text
