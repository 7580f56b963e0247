"""Batched greedy decoding (bench.eval.batched) and its cache (bench.eval.kvcache): bucket planning, the
preallocated cache, and outputs identical to transformers' ``generate`` at batch 1 (float32, CPU) with prompts
of different lengths, rows finishing at different steps, and host checks every step or every 4 steps."""

import dataclasses

import pytest
import torch

from bench.benchmark import EvalItem, GenerationSettings
from bench.eval.batched import plan_buckets, stream_batched
from bench.eval.engine import generate_batch
from bench.eval.kvcache import GrowingCache
from bench.models.family import family_of
from tests.test_engine_packed import _EosTokenizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from bench.perf_shapes import build_model
    from bench.perf_eval import make_images

    model, pre = build_model("tiny", "cpu")
    return model, pre, make_images(tmp_path_factory.mktemp("img"), 6)


def _bs1(model, pre, items, gen):
    return {it.id: generate_batch(model, pre, [it], gen, "cpu", use_hf_generate=True)[0] for it in items}


def _batched(model, pre, items, gen, **kw):
    out = {}
    with torch.no_grad():
        for chunk, tokens, _ in stream_batched(model, family_of(model), pre, items, gen, "cpu", **kw):
            out.update((it.id, None if t is None else pre.tokenizer.decode(t)) for it, t in zip(chunk, tokens))
    return out


def _captions(images):
    prompts = ["Describe this image in detail.", "What is in the picture?",
               "Please write a long and careful description of every object you can see in this image."]
    return [EvalItem(str(i), img, prompts[i % len(prompts)]) for i, img in enumerate(images)]


def test_buckets_are_length_sorted_and_fit_the_token_budget():
    lengths = [30, 10, 20, 10, 40]
    buckets = plan_buckets(lengths, max_new=10, budget_tokens=70, max_rows=8)
    assert [i for b in buckets for i in b] == [1, 3, 2, 0, 4]
    for b in buckets:
        assert len(b) == 1 or len(b) * (max(lengths[i] for i in b) + 10) <= 70
    assert plan_buckets([500], 10, 70, 8) == [[0]]  # a row too long for the budget still runs alone
    assert [len(b) for b in plan_buckets([5] * 10, 5, 10**6, 4)] == [4, 4, 2]


def test_growing_cache_writes_in_place_and_drops_rows():
    cache = GrowingCache(num_layers=1, capacity=4)
    k = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).reshape(2, 1, 3, 2)
    keys, _ = cache.update(k, k + 100, 0)
    assert torch.equal(keys, k) and cache.get_seq_length() == 3
    buf = cache.layers[0]._k
    keys, values = cache.update(k[:, :, :1] * -1, k[:, :, :1], 0)
    assert cache.layers[0]._k is buf  # within capacity: no reallocation
    assert torch.equal(keys[:, :, 3], -k[:, :, 0]) and keys.shape[2] == 4
    keys, _ = cache.update(k[:, :, :2], k[:, :, :2], 0)  # over capacity: grows, keeps the history
    assert keys.shape[2] == 6 and torch.equal(keys[:, :, :3], k)
    cache.keep_rows(torch.tensor([1]))
    assert cache.layers[0].keys.shape[0] == 1 and torch.equal(cache.layers[0].keys[0, :, :3], k[1])
    cache.crop(-2)
    assert cache.get_seq_length() == 4 and cache.layers[0].keys.shape[2] == 4


def test_batched_captions_equal_batch1_generate_with_prompts_of_different_lengths(tiny):
    model, pre, images = tiny
    items = _captions(images)
    gen = GenerationSettings(max_new_tokens=12)
    ref = _bs1(model, pre, items, gen)
    assert _batched(model, pre, items, gen) == ref
    assert _batched(model, pre, items, gen, max_rows=2) == ref  # several buckets


def test_prefill_in_chunks_then_one_decode_cache_gives_the_same_outputs(tiny, monkeypatch):
    import bench.eval.batched as batched

    model, pre, images = tiny
    items = _captions(images)
    gen = GenerationSettings(max_new_tokens=8)
    monkeypatch.setitem(batched.PREFILL_TOKENS, "cpu", 60)  # one or two prompts per prefill forward
    assert _batched(model, pre, items, gen) == _bs1(model, pre, items, gen)


@pytest.mark.parametrize("sync_every", [1, 4])
def test_rows_finishing_at_different_steps_leave_the_batch_without_changing_outputs(tiny, sync_every):
    model, pre, images = tiny
    items = _captions(images)
    gen = GenerationSettings(max_new_tokens=12)
    plain = _bs1(model, pre, items, gen)
    # make a token that some rows emit mid-way the end-of-sequence token: those rows stop early
    counts = {}
    for text in plain.values():
        for tok in text.split()[2:6]:
            counts[tok] = counts.get(tok, 0) + 1
    eos = int(max(counts, key=counts.get))
    eos_pre = dataclasses.replace(pre, tokenizer=_EosTokenizer(pre.tokenizer, eos))
    ref = _bs1(model, eos_pre, items, gen)
    lengths = {len(t.split()) for t in ref.values()}
    assert len(lengths) > 1  # rows really finish at different steps
    assert _batched(model, eos_pre, items, gen, sync_every=sync_every) == ref


def test_missing_image_is_skipped_with_its_reason(tiny, tmp_path):
    model, pre, images = tiny
    items = _captions([images[0], str(tmp_path / "gone.png"), images[1]])
    skipped = {}
    with torch.no_grad():
        for _, _, skip in stream_batched(model, family_of(model), pre, items, GenerationSettings(max_new_tokens=3),
                                         "cpu"):
            skipped.update(skip)
    assert list(skipped) == ["1"] and skipped["1"].startswith("image not found")
