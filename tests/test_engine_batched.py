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


def stopping_early(pre, plain: dict[str, str]):
    """``pre`` whose end-of-sequence token is one that several of the ``plain`` outputs emit mid-way: those rows
    stop early, at different steps."""
    counts = {}
    for text in plain.values():
        for tok in text.split()[2:6]:
            counts[tok] = counts.get(tok, 0) + 1
    return dataclasses.replace(pre, tokenizer=_EosTokenizer(pre.tokenizer, int(max(counts, key=counts.get))))


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


def test_row_views_write_into_the_allocated_cache_after_a_copied_prefix():
    cache = GrowingCache(num_layers=2, capacity=6)
    cache.allocate(rows=3, heads=1, head_dim=2, dtype=torch.float32, device="cpu")
    prefix = GrowingCache(num_layers=2, capacity=2)
    p = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    prefix.update(p, -p, 0)
    prefix.update(p, -p, 1)
    cache.fill_prefix(prefix)
    buf = cache.layers[0]._k
    for a, b in ((0, 2), (2, 3)):
        rest = torch.full((b - a, 1, 3, 2), float(a + 10))
        view = cache.row_view(a, b)
        keys, _ = view.update(rest, rest, 0)
        assert keys.shape == (b - a, 1, 5, 2) and torch.equal(keys[:, :, :2], p.expand(b - a, -1, -1, -1))
    cache.set_length(5)
    assert cache.layers[0]._k is buf and cache.get_seq_length() == 5  # written in place, nothing copied
    assert torch.equal(cache.layers[0].keys[:, :, :2], p.expand(3, -1, -1, -1))
    assert torch.equal(cache.layers[1].values[:, :, :2], -p.expand(3, -1, -1, -1))
    assert cache.layers[0].keys[:2, :, 2:].eq(10).all() and cache.layers[0].keys[2, :, 2:].eq(12).all()


def test_batched_captions_equal_batch1_generate_with_prompts_of_different_lengths(tiny):
    model, pre, images = tiny
    items = _captions(images)
    gen = GenerationSettings(max_new_tokens=12)
    ref = _bs1(model, pre, items, gen)
    assert _batched(model, pre, items, gen) == ref
    assert _batched(model, pre, items, gen, max_rows=2) == ref  # several buckets


def test_prefill_chunks_write_into_one_cache_and_give_the_same_outputs(tiny, monkeypatch):
    import bench.eval.batched as batched

    model, pre, images = tiny
    items = _captions(images)
    gen = GenerationSettings(max_new_tokens=8)
    monkeypatch.setitem(batched.PREFILL_TOKENS, "cpu", 60)  # one or two prompts per prefill forward
    assert _batched(model, pre, items, gen) == _bs1(model, pre, items, gen)


def test_vision_in_calls_of_a_few_images_gives_every_row_its_own_image_features(tiny, monkeypatch):
    import bench.eval.batched as batched
    from bench.eval.kvcache import LanguageModel

    model, pre, images = tiny
    items = _captions(images)
    gen = GenerationSettings(max_new_tokens=8)
    calls = []
    image_features = LanguageModel.image_features
    monkeypatch.setattr(LanguageModel, "image_features",
                        lambda self, pixels, extra: calls.append(len(pixels)) or image_features(self, pixels, extra))
    monkeypatch.setitem(batched.VISION_IMAGES, "cpu", 4)  # 6 images in one bucket: calls of 4 and 2
    assert _batched(model, pre, items, gen) == _bs1(model, pre, items, gen)
    assert calls == [4, 2]


@pytest.mark.parametrize("sync_every", [1, 4])
def test_rows_finishing_at_different_steps_leave_the_batch_without_changing_outputs(tiny, sync_every):
    model, pre, images = tiny
    items = _captions(images)
    gen = GenerationSettings(max_new_tokens=12)
    eos_pre = stopping_early(pre, _bs1(model, pre, items, gen))
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


def test_shared_text_prefix_stops_before_the_first_image_token_and_leaves_a_token_to_prefill():
    from bench.eval.batched import MIN_SHARED_PREFIX, shared_text_prefix

    img = 99
    sys_prompt = list(range(1, 21))
    prompts = [sys_prompt + [img, img, 5, 6], sys_prompt + [img, img, 7]]
    assert shared_text_prefix(prompts, img) == 20
    assert shared_text_prefix([p[:-1] + [img] for p in prompts], img) == 20  # image tokens never shared
    assert shared_text_prefix([sys_prompt, sys_prompt], img) == 19  # each row keeps a token of its own
    short = [list(range(1, MIN_SHARED_PREFIX)) + [img, 5], list(range(1, MIN_SHARED_PREFIX)) + [img, 6]]
    assert shared_text_prefix(short, img) == 0  # below the minimum: not worth a separate forward
    assert shared_text_prefix([[1] * 30 + [img], [2] * 30 + [img]], img) == 0


def test_system_prompt_runs_once_per_bucket_and_outputs_still_equal_batch1_generate(tiny, monkeypatch):
    import bench.eval.batched as batched

    model, pre, images = tiny
    items = _captions(images)  # three prompts of different lengths: padding sits between prefix and the rest
    gen = GenerationSettings(max_new_tokens=10)
    shared = []
    real = GrowingCache.fill_prefix

    def spy(self, prefix):
        shared.append((prefix.get_seq_length(), self.layers[0]._k.shape[0]))
        return real(self, prefix)

    monkeypatch.setattr(GrowingCache, "fill_prefix", spy)
    monkeypatch.setitem(batched.PREFILL_TOKENS, "cpu", 120)  # several prefill chunks, each from the prefix
    ref = _bs1(model, pre, items, gen)
    assert _batched(model, pre, items, gen) == ref
    system_len = len(pre.prompt_ids("x")) - len(pre.prompt_ids("x")[pre.prompt_ids("x").index(
        model.config.image_token_id):])
    assert shared and all(length == system_len for length, _ in shared)  # once per bucket, into all its rows
    assert sum(rows for _, rows in shared) == len(items)
    monkeypatch.setattr(batched, "MIN_SHARED_PREFIX", 10**6)  # and without sharing: the same outputs
    assert _batched(model, pre, items, gen) == ref


def test_greedy_head_in_vocabulary_slices_equals_argmax_of_the_full_logits(monkeypatch):
    import bench.eval.kvcache as kvcache

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=True)
    lm = object.__new__(kvcache.LanguageModel)
    lm.head = head
    hidden = torch.randn(7, 16)
    monkeypatch.setattr(kvcache, "HEAD_SLICE", 8)
    assert torch.equal(lm.next_tokens(hidden), head(hidden).argmax(-1))
    with torch.no_grad():  # a tie across two slices: the lower id wins, as with argmax
        head.weight[41] = head.weight[3]
        head.bias[41] = head.bias[3]
        hidden = hidden.clone()
        logits = head(hidden)
        best = logits.argmax(-1)
        head.bias[3] += (logits.max(-1).values - logits[:, 3]).max() + 1.0
        head.bias[41] = head.bias[3]
    got = lm.next_tokens(hidden)
    assert torch.equal(got, torch.full_like(best, 3)) and torch.equal(got, head(hidden).argmax(-1))


def test_vision_tower_runs_only_the_layers_llava_reads_and_gives_bit_identical_features(tiny):
    from bench.models.families.llava import only_used_vision_layers

    model, _, _ = tiny
    cfg = model.config
    encoder_layers = model.model.vision_tower.encoder.layers
    pixels = torch.randn(2, 3, cfg.vision_config.image_size, cfg.vision_config.image_size)
    with torch.no_grad():
        whole = model.model.get_image_features(pixel_values=pixels, vision_feature_layer=cfg.vision_feature_layer,
                                               vision_feature_select_strategy="default").pooler_output
        fast = family_of(model).image_features(model, pixels, {})
    assert torch.equal(torch.stack(list(whole)), fast)
    computed = []
    for i, layer in enumerate(encoder_layers):  # which layers compute (a skipped one returns its input object)
        layer.register_forward_hook(lambda mod, args, out, i=i: computed.append(i) if out is not args[0] else None)
    with torch.no_grad():
        family_of(model).image_features(model, pixels, {})
        assert computed == list(range(len(encoder_layers) - 1))  # feature layer −2: the last layer is skipped
        with pytest.raises(RuntimeError):
            with only_used_vision_layers(model):
                raise RuntimeError("boom")
        computed.clear()
        again = model.model.get_image_features(pixel_values=pixels, vision_feature_layer=cfg.vision_feature_layer,
                                               vision_feature_select_strategy="default").pooler_output
    assert computed == list(range(len(encoder_layers)))  # restored, also after an error: the full tower runs
    assert torch.equal(torch.stack(list(again)), fast)
    for layer in encoder_layers:
        layer._forward_hooks.clear()


def test_prefill_runs_the_last_decoder_layer_at_the_last_position_only_and_keeps_cache_and_answer(tiny):
    from torch.utils.flop_counter import FlopCounterMode

    from bench.eval.kvcache import LanguageModel, last_layer_at_last_position

    model, _, _ = tiny
    lm = LanguageModel(model, family_of(model))
    cfg = model.config.text_config
    d, m = cfg.hidden_size, cfg.intermediate_size
    rows, length = 3, 11
    embeds = torch.randn(rows, length, d)
    pos = torch.arange(length).expand(rows, -1)

    def run(cache, **kw):
        with FlopCounterMode(display=False) as flops:
            hidden = lm.forward(embeds, None, pos, cache, **kw)
        return hidden, flops.get_total_flops()

    with torch.no_grad():
        full_cache, fast_cache = lm.new_cache(length + 2, rows=rows), lm.new_cache(length + 2, rows=rows)
        full, full_flops = run(full_cache)
        fast, fast_flops = run(fast_cache, last_only=True)
        # the last layer's query and output projections (d×d each) and MLP (3 d×m) skip all but one position
        assert full_flops - fast_flops == 2 * rows * (length - 1) * (2 * d * d + 3 * d * m)
        assert torch.allclose(fast[:, -1], full[:, -1], atol=1e-5)
        for a, b in zip(full_cache.layers, fast_cache.layers):  # every layer's keys/values are complete
            assert torch.allclose(a.keys, b.keys, atol=1e-6) and torch.allclose(a.values, b.values, atol=1e-6)
        step = torch.randn(rows, 1, d)  # a decode step (one position) runs as without the guard
        with last_layer_at_last_position(lm.lm):
            got = lm.forward(step, None, pos[:, -1:] + 1, fast_cache)
        assert torch.allclose(got, lm.forward(step, None, pos[:, -1:] + 1, full_cache), atol=1e-5)
        with pytest.raises(RuntimeError):
            with last_layer_at_last_position(lm.lm):
                raise RuntimeError("boom")
        again, again_flops = run(lm.new_cache(length, rows=rows))
    assert again_flops == full_flops and torch.equal(again, full)  # restored, also after an error
    with last_layer_at_last_position(torch.nn.Linear(2, 2)):  # no decoder-layer list: runs whole, no error
        pass


def test_compacting_moves_only_rows_from_the_end_into_finished_rows_in_the_same_buffers():
    torch.manual_seed(0)
    cache = GrowingCache(num_layers=2, capacity=8)
    for layer in range(2):
        k = torch.randn(6, 2, 5, 3)
        cache.update(k, -k, layer)
    before = [(layer.keys.clone(), layer.values.clone(), layer._k.data_ptr()) for layer in cache.layers]
    alive = torch.tensor([0, 2, 4, 5])  # rows 1 and 3 finished
    order = cache.compact(alive)
    assert order.tolist() == [0, 4, 2, 5]  # rows 4 and 5 move into the holes at 1 and 3; 0 and 2 stay put
    for layer, (keys, values, ptr) in zip(cache.layers, before):
        assert torch.equal(layer.keys, keys[order]) and torch.equal(layer.values, values[order])
        assert layer._k.data_ptr() == ptr and layer._k.shape[0] == 4  # same buffers, no allocation
    new = torch.randn(4, 2, 1, 3)  # decoding continues in place on the compacted rows
    keys, _ = cache.update(new, new, 0)
    assert keys.shape == (4, 2, 6, 3) and torch.equal(keys[:, :, -1:], new)
    assert cache.compact(torch.arange(4)).tolist() == [0, 1, 2, 3]  # nobody finished: nothing moves
