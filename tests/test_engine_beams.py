"""Beam search on a prompt prefilled once per item (bench.eval.beams): texts identical to transformers' ``generate``
at batch 1 (float32, CPU) with prompts of different lengths, several buckets, beams finishing early and a missing
image; the language model sees each prompt once (not once per beam), and families whose ``generate`` cannot
continue from a cache keep ``generate``."""

import dataclasses

import pytest
import torch

from bench.benchmark import EvalItem, GenerationSettings
from bench.eval.engine import generate_batch
from bench.eval.fastpath import choose_path, stream
from bench.eval.kvcache import GrowingCache
from bench.models.family import family_of
from tests.test_engine_packed import _EosTokenizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from bench.perf_shapes import build_model
    from bench.perf_eval import make_images

    model, pre = build_model("tiny", "cpu")
    return model, pre, make_images(tmp_path_factory.mktemp("img"), 6)


PROMPTS = ["Describe this image in detail.", "What is in the picture?",
           "Please write a long and careful description of every object you can see in this image."]


def _captions(images):
    return [EvalItem(str(i), img, PROMPTS[i % len(PROMPTS)]) for i, img in enumerate(images)]


def _bs1(model, pre, items, gen):
    return {it.id: generate_batch(model, pre, [it], gen, "cpu", use_hf_generate=True)[0] for it in items}


def _engine(model, pre, items, gen, **kw):
    from bench.eval.beams import stream_beams
    from bench.eval.decode import postprocess

    out, skipped = {}, {}
    with torch.no_grad():
        for chunk, tokens, skip in stream_beams(model, family_of(model), pre, items, gen, "cpu", **kw):
            skipped.update(skip)
            out.update((it.id, None if t is None else postprocess(pre.tokenizer.decode(t), gen))
                       for it, t in zip(chunk, tokens))
    return out, skipped


@pytest.mark.parametrize("max_rows", [None, 10, 5])  # one bucket; two items per bucket; one item per bucket
def test_beam_search_equals_batch1_generate_with_prompts_of_different_lengths(tiny, max_rows):
    model, pre, images = tiny
    items = _captions(images)
    gen = GenerationSettings(max_new_tokens=10, num_beams=3)
    ref = _bs1(model, pre, items, gen)
    out, skipped = _engine(model, pre, items, gen, max_rows=max_rows)
    assert out == ref and not skipped
    assert len(set(ref.values())) > 1


def test_beams_finishing_at_different_steps_give_batch1_generate_texts(tiny):
    model, pre, images = tiny
    items = _captions(images)
    gen = GenerationSettings(max_new_tokens=12, num_beams=4)
    plain = _bs1(model, pre, items, gen)
    counts: dict[str, int] = {}
    for text in plain.values():  # a token several answers emit mid-way becomes the end of sequence
        for tok in text.split()[2:6]:
            counts[tok] = counts.get(tok, 0) + 1
    eos = int(max(counts, key=counts.get))
    eos_pre = dataclasses.replace(pre, tokenizer=_EosTokenizer(pre.tokenizer, eos))
    ref = _bs1(model, eos_pre, items, gen)
    assert len({len(t.split()) for t in ref.values()}) > 1  # answers really end at different steps
    assert _engine(model, eos_pre, items, gen)[0] == ref


def test_each_prompt_is_prefilled_once_not_once_per_beam(tiny):
    model, pre, images = tiny
    items = _captions(images[:4])
    beams = 5
    gen = GenerationSettings(max_new_tokens=4, num_beams=beams)
    calls: list[tuple[int, int]] = []
    lm = family_of(model).language_model(model)

    def record(_module, _args, kwargs):
        calls.append(tuple(kwargs["inputs_embeds"].shape[:2]))

    handle = lm.register_forward_pre_hook(record, with_kwargs=True)
    try:
        out, _ = _engine(model, pre, items, gen)
        engine_calls = list(calls)
        calls.clear()
        generate_batch(model, pre, items, gen, "cpu", use_hf_generate=True)
        generate_calls = list(calls)
    finally:
        handle.remove()
    lengths = [len(pre.prompt_ids(it.question, (64, 48))) for it in items]
    prefill_rows = sum(rows for rows, length in engine_calls if length > 1)
    assert prefill_rows <= len(items) + 1  # every item once (+ the system prompt once, at batch 1)
    assert {rows for rows, length in engine_calls if length == 1} == {len(items) * beams}  # then every beam
    hf_prefill = [(rows, length) for rows, length in generate_calls if length > 1]
    assert hf_prefill == [(len(items) * beams, max(lengths))]  # generate's prefill: each prompt `beams` times
    engine_tokens = sum(rows * length for rows, length in engine_calls if length > 1)
    assert engine_tokens < sum(lengths) * beams / 4


def test_missing_image_is_skipped_with_its_reason_and_the_rest_decoded(tiny, tmp_path):
    model, pre, images = tiny
    items = _captions([images[0], str(tmp_path / "gone.png"), images[1]])
    gen = GenerationSettings(max_new_tokens=5, num_beams=2)
    out, skipped = _engine(model, pre, items, gen)
    assert list(skipped) == ["1"] and skipped["1"].startswith("image not found")
    assert out["1"] is None
    assert {k: out[k] for k in ("0", "2")} == _bs1(model, pre, [items[0], items[2]], gen)


def test_engine_takes_the_beams_path_for_beam_search_and_generate_when_the_family_cannot_continue(tiny, monkeypatch):
    model, pre, images = tiny
    items = _captions(images[:3])
    gen = GenerationSettings(max_new_tokens=6, num_beams=3)
    assert choose_path(model, items, gen, 8) == "beams"
    texts = {it.id: t for chunk, out, _ in stream(model, pre, items, gen, "cpu", 8) for it, t in zip(chunk, out)}
    assert texts == _bs1(model, pre, items, gen)
    assert choose_path(model, items, dataclasses.replace(gen, do_sample=True), 8) == "generate"
    monkeypatch.setattr(family_of(model), "generate_continues_cache", False, raising=False)
    assert choose_path(model, items, gen, 8) == "generate"


def test_reordering_the_cache_reuses_two_buffer_sets_and_matches_a_dynamic_cache():
    from transformers import DynamicCache

    torch.manual_seed(0)
    ours, ref = GrowingCache(num_layers=1, capacity=64), DynamicCache()
    k = torch.randn(4, 2, 5, 3)
    ours.update(k, -k, 0)
    ref.update(k, -k, 0)
    ours.keep_rows(torch.tensor([0, 0, 1, 2, 3, 3]))  # rows change: new buffers of the same capacity
    ref.batch_repeat_interleave(1)
    ref.reorder_cache(torch.tensor([0, 0, 1, 2, 3, 3]))
    buffers = []
    for step in range(4):
        new = torch.randn(6, 2, 1, 3)
        ours.update(new, new * 2, 0)
        ref.update(new, new * 2, 0)
        order = torch.randperm(6)
        ours.keep_rows(order)
        ref.reorder_cache(order)
        buffers.append(ours.layers[0]._k.data_ptr())
        assert ours.layers[0]._k.shape[2] == 64  # capacity kept
        assert torch.equal(ours.layers[0].keys, ref.layers[0].keys)
        assert torch.equal(ours.layers[0].values, ref.layers[0].values)
    assert len(set(buffers)) == 2  # two sets of buffers, used in turn: a reorder allocates nothing


def _filled(rows, length, capacity=16, allocate=None):
    """A one-layer GrowingCache whose first ``rows`` rows hold random keys/values of ``length`` slots; with
    ``allocate``, its buffers hold that many rows (as the beam prefill allocates them)."""
    cache = GrowingCache(num_layers=1, capacity=capacity)
    if allocate:
        cache.allocate(allocate, 2, 3, torch.float32, "cpu")
        view = cache.row_view(0, rows)
        k = torch.randn(rows, 2, length, 3)
        view.update(k, -k, 0)
        cache.set_length(length)
    else:
        k = torch.randn(rows, 2, length, 3)
        cache.update(k, -k, 0)
    return cache, k


@pytest.mark.parametrize("allocate", [None, 6])  # rows only for the items; rows for every beam (in place)
def test_repeat_rows_lays_out_beams_like_repeat_interleave(allocate):
    torch.manual_seed(0)
    cache, k = _filled(2, 5, allocate=allocate)
    before = cache.layers[0]._k.data_ptr()
    cache.repeat_rows(2, 3)
    layer = cache.layers[0]
    assert torch.equal(layer.keys, k.repeat_interleave(3, dim=0))
    assert torch.equal(layer.values, -k.repeat_interleave(3, dim=0))
    assert (layer._k.data_ptr() == before) == (allocate is not None)  # no new buffers when allocated for beams
    assert (cache.group, cache.shared) == (3, 5)


def test_beam_reorders_copy_only_the_slots_after_the_shared_prompt_and_match_a_dynamic_cache():
    from transformers import DynamicCache

    torch.manual_seed(0)
    ours, k = _filled(2, 5, allocate=6)
    ours.repeat_rows(2, 3)
    ref = DynamicCache()
    ref.update(k.repeat_interleave(3, dim=0), -k.repeat_interleave(3, dim=0), 0)
    layer = ours.layers[0]
    copies = []
    real_select = torch.index_select

    def spy(src, dim, index, out=None):
        copies.append(src.shape[2])
        return real_select(src, dim, index, out=out)
    for step in range(4):
        new = torch.randn(6, 2, 1, 3)
        ours.update(new, new * 2, 0)
        ref.update(new, new * 2, 0)
        order = torch.cat([torch.randperm(3), 3 + torch.randperm(3)])  # beams stay with their item
        torch.index_select = spy
        try:
            ours.reorder_cache(order)
        finally:
            torch.index_select = real_select
        ref.reorder_cache(order)
        assert torch.equal(layer.keys, ref.layers[0].keys) and torch.equal(layer.values, ref.layers[0].values)
    assert copies == [1, 1, 2, 2, 3, 3, 4, 4]  # keys and values: only the generated slots, never the prompt
    # an order that moves a row to another item: the whole filled part is gathered, still equal
    order = torch.tensor([3, 4, 5, 0, 1, 2])
    ours.reorder_cache(order)
    ref.reorder_cache(order)
    assert torch.equal(layer.keys, ref.layers[0].keys) and (ours.group, ours.shared) == (1, 0)


def test_selecting_rows_forgets_the_beam_groups():
    torch.manual_seed(0)
    cache, _ = _filled(2, 5, allocate=6)
    cache.repeat_rows(2, 3)
    cache.batch_select_indices(torch.tensor([0, 1, 2, 3]))
    assert (cache.group, cache.shared) == (1, 0) and cache.layers[0].keys.shape[0] == 4
