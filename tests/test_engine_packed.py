"""Packed prefix sharing (bench.eval.packed): row planning edge cases, and answers identical to transformers'
``generate`` at batch 1 (float32, CPU) on a tiny random LLaVA, including budget splits and EOS at the first token."""

import dataclasses

import pytest
import torch

from bench.benchmark import EvalItem, GenerationSettings
from bench.eval.engine import generate_batch
from bench.eval.fastpath import choose_path, stream
from bench.eval.packed import Row, common_prefix, forward_batches, plan_rows
from bench.models.block_mask import segments_allowed


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from bench.perf_shapes import build_model
    from bench.perf_eval import make_images

    model, pre = build_model("tiny", "cpu")
    images = make_images(tmp_path_factory.mktemp("img"), 4)
    return model, pre, images


def _bs1(model, pre, items, gen):
    return {it.id: generate_batch(model, pre, [it], gen, "cpu", use_hf_generate=True)[0] for it in items}


def _packed(model, pre, items, gen, **kw):
    out, skipped = {}, {}
    from bench.eval.packed import stream_packed
    from bench.models.family import family_of

    with torch.no_grad():
        for chunk, tokens, skip in stream_packed(model, family_of(model), pre, items, gen, "cpu", **kw):
            skipped.update(skip)
            out.update((it.id, None if t is None else pre.tokenizer.decode(t)) for it, t in zip(chunk, tokens))
    return out, skipped


# ---------------------------------------------------------------------------------------------- planning
def test_common_prefix_leaves_every_sequence_a_token():
    assert common_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert common_prefix([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert common_prefix([[7, 8]]) == 1


def test_one_question_per_image_gets_one_row_with_a_one_token_tail():
    rows = plan_rows("a.png", [(0, [1, 2, 3, 4])], token_budget=100)
    assert len(rows) == 1 and rows[0].prefix == [1, 2, 3] and rows[0].tails == [(0, [4])]


def test_questions_over_the_budget_are_split_into_rows_that_each_repeat_the_prefix():
    prompts = [(i, [1, 2, 3] + [10 + i] * (1 + i)) for i in range(6)]  # tails of 1..6 tokens after prefix [1,2,3]
    rows = plan_rows("a.png", prompts, token_budget=10)
    assert len(rows) > 1
    assert all(r.prefix == [1, 2, 3] for r in rows)
    assert [idx for r in rows for idx, _ in r.tails] == list(range(6))  # every question once, in order
    assert all(len(r) <= 10 or len(r.tails) == 1 for r in rows)


def test_a_single_question_longer_than_the_budget_still_gets_its_own_row():
    rows = plan_rows("a.png", [(0, [1, 2] + [5] * 30), (1, [1, 2, 6])], token_budget=8)
    assert [[i for i, _ in r.tails] for r in rows] == [[0], [1]]


def test_image_tokens_after_the_common_prefix_give_one_row_per_question():
    rows = plan_rows("a.png", [(0, [1, 9, 3, 3]), (1, [1, 8, 3, 3])], token_budget=100, image_token_id=3)
    assert [(r.prefix, r.tails) for r in rows] == [([1, 9, 3], [(0, [3])]), ([1, 8, 3], [(1, [3])])]


def test_forward_batches_keep_rows_in_order_within_the_token_budget():
    rows = [Row("a", [1] * 5, [(i, [2] * 5)]) for i in range(5)]  # 10 tokens each
    batches = forward_batches(rows, token_budget=25)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [r for b in batches for r in b] == rows


def test_prefill_mask_is_causal_and_blocks_other_questions():
    seg = torch.tensor([[0, 0, 1, 1, 2, 2, -1]])
    allowed = segments_allowed(seg)[0]
    assert allowed[3].tolist() == [True, True, True, True, False, False, False]  # tail 1: prefix + itself
    assert allowed[5].tolist() == [True, True, False, False, True, True, False]  # tail 2 skips tail 1
    assert allowed[1].tolist() == [True, True, False, False, False, False, False]  # prefix: causal
    assert allowed[6].tolist() == [True, True, False, False, False, False, True]  # padding: never an empty row


# ---------------------------------------------------------------------------------------------- exactness
def _questions(images, per_image):
    objects = ["dog", "dining table", "a very small red fire hydrant next to the old wooden bench", "cup", "car"]
    return [EvalItem(f"{i}/{q}", img, f"Is there a {objects[q % len(objects)]} in the image?")
            for i, img in enumerate(images) for q in range(per_image)]


def test_packed_answers_equal_batch1_generate_with_very_different_question_lengths(tiny):
    model, pre, images = tiny
    items = _questions(images, 5)
    gen = GenerationSettings(max_new_tokens=6)
    ref = _bs1(model, pre, items, gen)
    out, skipped = _packed(model, pre, items, gen)
    assert not skipped and out == ref
    assert len(set(ref.values())) > 1  # the comparison is not between constant outputs


def test_packed_answers_equal_batch1_with_one_question_per_image(tiny):
    model, pre, images = tiny
    items = _questions(images, 1)
    gen = GenerationSettings(max_new_tokens=4)
    assert _packed(model, pre, items, gen)[0] == _bs1(model, pre, items, gen)


def test_packed_answers_equal_batch1_when_the_budget_splits_an_image_over_rows_and_forwards(tiny):
    model, pre, images = tiny
    items = _questions(images[:2], 6)
    gen = GenerationSettings(max_new_tokens=5)
    prompt = len(pre.prompt_ids(items[0].question))
    out, _ = _packed(model, pre, items, gen, token_budget=prompt + 12)  # a few tails per row, one row per forward
    assert out == _bs1(model, pre, items, gen)


def test_packed_eos_at_the_first_token_gives_an_empty_answer_like_generate(tiny):
    model, pre, images = tiny
    items = _questions(images[:2], 4)
    gen = GenerationSettings(max_new_tokens=5)
    first = [t.split()[0] for t in _bs1(model, pre, items, gen).values()]
    eos_pre = dataclasses.replace(pre, tokenizer=_EosTokenizer(pre.tokenizer, int(first[0])))
    ref = _bs1(model, eos_pre, items, gen)
    out, _ = _packed(model, eos_pre, items, gen)
    assert out == ref
    assert "" in ref.values()  # at least the first question stops at once


def test_missing_image_skips_its_questions_and_answers_the_others(tiny, tmp_path):
    model, pre, images = tiny
    items = _questions([images[0], str(tmp_path / "gone.png")], 2)
    out, skipped = _packed(model, pre, items, GenerationSettings(max_new_tokens=3))
    assert set(skipped) == {"1/0", "1/1"} and all("image not found" in r for r in skipped.values())
    assert out["0/0"] and out["0/1"] and out["1/0"] is None


def test_engine_chooses_packed_for_several_questions_per_image_and_the_reference_at_batch_1(tiny):
    model, pre, images = tiny
    greedy = GenerationSettings(max_new_tokens=3)
    assert choose_path(model, _questions(images, 3), greedy, 8) == "packed"
    assert choose_path(model, _questions(images, 1), greedy, 8) == "batched"
    assert choose_path(model, _questions(images, 3), GenerationSettings(num_beams=3), 8) == "beams"
    assert choose_path(model, _questions(images, 3), GenerationSettings(num_beams=3, do_sample=True), 8) == "generate"
    assert choose_path(model, _questions(images, 3), greedy, 1) == "reference"
    texts = {it.id: t for chunk, out, _ in stream(model, pre, _questions(images[:1], 2), greedy, "cpu", 1)
             for it, t in zip(chunk, out)}
    assert texts == _bs1(model, pre, _questions(images[:1], 2), greedy)


class _EosTokenizer:
    """The perf id tokenizer with another end-of-sequence id (to make a model stop at a chosen token)."""

    def __init__(self, inner, eos: int):
        self.inner, self.eos_token_id = inner, eos
        self.bos_token_id, self.pad_token_id = inner.bos_token_id, inner.pad_token_id

    def __call__(self, *a, **k):
        return self.inner(*a, **k)

    def decode(self, ids, skip_special_tokens=True):
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return self.inner.decode([i for i in ids if i != self.eos_token_id], skip_special_tokens)

    def batch_decode(self, rows, skip_special_tokens=True):
        return [self.decode(r, skip_special_tokens) for r in rows]


def test_a_family_whose_image_features_read_the_question_can_opt_out_of_the_fast_paths(tiny, monkeypatch):
    from bench.models.family import family_of

    model, pre, images = tiny
    monkeypatch.setattr(family_of(model), "fast_paths", False, raising=False)
    assert choose_path(model, _questions(images, 3), GenerationSettings(max_new_tokens=3), 8) == "generate"
