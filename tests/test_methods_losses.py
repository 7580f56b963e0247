"""Every method's loss equals a hand computation on small tensors with weights, masks and padding."""

import math

import pytest
import torch

import methods  # noqa: F401  (registers the in-tree methods)
from bench.data.preference import PreferenceRecord
from bench.registry import METHODS
from bench.train.config import TrainConfig
from bench.train.method import ForwardContext, LogProbs, StepContext, StepInputs


def lp(rows, tokens=None):
    """LogProbs from ragged rows of per-token log-probs (right padding with junk that must not count)."""
    width = max(len(r) for r in rows)
    logps = torch.full((len(rows), width), 7.0)  # padding value: must be masked out
    mask = torch.zeros(len(rows), width)
    toks = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        logps[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
        if tokens is not None:
            toks[i, : len(r)] = torch.tensor(tokens[i])
    return LogProbs(logps, mask, toks)


def pre_context(pre) -> StepContext:
    """A step context that carries only a preprocessor (what OPA-DPO's token weights read)."""
    fwd = ForwardContext(pre=pre, cfg=TrainConfig(), seed=0, epoch=0, device="cpu", pad_id=0)
    return StepContext(model=None, forward=fwd, encoded=None, raw=None, reference_mode=None)


def nls(x: float) -> float:
    """-log sigmoid(x)"""
    return math.log1p(math.exp(-x))


def rec(i="a", **kw):
    return PreferenceRecord(i, "x.png", "q", "c", "r", **kw)


# --------------------------------------------------------------------------------------------- DPO family
POLICY = {"chosen": lp([[-1.0, -2.0], [-0.5]]), "rejected": lp([[-3.0], [-1.0, -1.0, -1.0]])}
REFERENCE = {"chosen": lp([[-1.5, -2.5], [-1.0]]), "rejected": lp([[-2.0], [-2.0, -1.0, -0.5]])}
# sample 0: chosen ratio (-3) - (-4) = 1 ; rejected ratio (-3) - (-2) = -1
# sample 1: chosen ratio (-0.5) - (-1) = 0.5 ; rejected ratio (-3) - (-3.5) = 0.5


@pytest.mark.parametrize("name", ["dpo", "ha-dpo"])
def test_dpo_and_ha_dpo_losses_are_sigmoid_dpo_on_summed_masked_log_probs(name):
    method = METHODS.get(name)()
    cfg = method.default_config()
    (stage,) = method.stages(cfg)
    loss, m = stage.loss(StepInputs([rec("a"), rec("b")], POLICY, REFERENCE), cfg)
    beta = 0.1
    expected = (nls(beta * (1 - -1)) + nls(beta * (0.5 - 0.5))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert m["rewards/chosen"].item() == pytest.approx(beta * (1 + 0.5) / 2, abs=1e-7)
    assert m["rewards/rejected"].item() == pytest.approx(beta * (-1 + 0.5) / 2, abs=1e-7)
    assert m["rewards/margins"].item() == pytest.approx(beta * (2 + 0) / 2, abs=1e-7)
    assert m["rewards/accuracies"].item() == 0.5  # sample 1: equal rewards is not a win


def test_hsa_dpo_scales_the_rejected_log_ratio_by_its_score_and_defaults_missing_scores_to_one():
    from methods.hsa_dpo import HsaDpoConfig, hsa_dpo_loss

    recs = [rec("a", chosen_score=5.0, rejected_score=3.0), rec("b")]
    loss, m = hsa_dpo_loss(StepInputs(recs, POLICY, REFERENCE), HsaDpoConfig(beta=0.5))
    # a: 1 - 3·(-1) = 4 ; b: 0.5 - 1·0.5 = 0 (score absent -> 1.0)
    assert loss.item() == pytest.approx((nls(0.5 * 4) + nls(0.0)) / 2, abs=1e-6)
    assert m["rewards/rejected"].item() == pytest.approx(0.5 * (-1 + 0.5) / 2, abs=1e-7)  # unweighted
    on, _ = hsa_dpo_loss(StepInputs(recs, POLICY, REFERENCE), HsaDpoConfig(beta=0.5, use_chosen_score=True))
    # a: 5·1 - 3·(-1) = 8 ; b: 1·0.5 - 0.5 = 0
    assert on.item() == pytest.approx((nls(0.5 * 8) + nls(0.0)) / 2, abs=1e-6)
    off, _ = hsa_dpo_loss(StepInputs(recs, POLICY, REFERENCE), HsaDpoConfig(beta=0.5, use_rejected_score=False))
    assert off.item() == pytest.approx((nls(0.5 * 2) + nls(0.0)) / 2, abs=1e-6)


def test_hsa_dpo_defaults_are_the_script_values():
    from methods.hsa_dpo import HsaDpoConfig

    cfg = HsaDpoConfig()
    assert (cfg.beta, cfg.use_rejected_score, cfg.use_chosen_score) == (0.1, True, False)
    t = cfg.train
    assert (t.lr, t.epochs, t.lora_r, t.lora_alpha, t.train_projector, t.max_length) == (2e-6, 2, 128, 256, True, 1024)
    assert t.batch_size * t.grad_accum == 16


def test_povid_stage1_is_dpo_and_stage2_mixes_text_and_noise_terms():
    from methods.povid import PovidConfig, PovidMethod

    cfg = PovidConfig(beta=1.0)
    s1, s2 = PovidMethod().stages(cfg)
    assert s1.extra_forward is None and s2.extra_forward is not None
    assert s1.config_key == "stage1" and s2.config_key == "stage2"
    loss1, _ = s1.loss(StepInputs([rec("a"), rec("b")], POLICY, REFERENCE), cfg)
    assert loss1.item() == pytest.approx((nls(2.0) + nls(0.0)) / 2, abs=1e-6)
    policy = dict(POLICY, noise_rejected=lp([[-4.0, -1.0], [-2.0]]))
    reference = dict(REFERENCE, noise_rejected=lp([[-2.0, -2.0], [-3.0]]))
    loss, m = s2.loss(StepInputs([rec("a"), rec("b")], policy, reference), cfg)
    # noise ratios: a (-5) - (-4) = -1 ; b (-2) - (-3) = 1
    text = [nls(1 - -1), nls(0.5 - 0.5)]
    noise = [nls(1 - -1), nls(0.5 - 1)]
    assert loss.item() == pytest.approx(sum(0.5 * t + 0.5 * n for t, n in zip(text, noise)) / 2, abs=1e-6)
    assert m["loss/noise"].item() == pytest.approx(sum(noise) / 2, abs=1e-6)
    assert m["rewards/noise_rejected"].item() == pytest.approx((-1 + 1) / 2, abs=1e-7)
    skew, _ = s2.loss(StepInputs([rec("a"), rec("b")], policy, reference),
                      PovidConfig(beta=1.0, text_weight=1.0, noise_weight=0.0))
    assert skew.item() == pytest.approx(sum(text) / 2, abs=1e-6)


def test_povid_noise_is_the_seed_forward_diffusion_at_step_500_clamped():
    from methods.povid import add_diffusion_noise, diffusion_alpha_bar

    betas = torch.sigmoid(torch.linspace(-6, 6, 1000)) * (0.5e-2 - 1e-5) + 1e-5  # float32, as the seed
    a = float(torch.cumprod(1 - betas, 0)[500])
    assert diffusion_alpha_bar(500) == pytest.approx(a, rel=1e-5)
    assert a == pytest.approx(0.745, abs=2e-3)  # x ≈ 0.863·x0 + 0.505·ε (methods.md §2.1)
    img = torch.rand(3, 5, 4, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(7))
    noisy = add_diffusion_noise(img, torch.Generator().manual_seed(7))
    expected = (diffusion_alpha_bar(500) ** 0.5 * img + (1 - diffusion_alpha_bar(500)) ** 0.5 * eps).clamp(0, 1)
    assert torch.allclose(noisy, expected, atol=1e-6)
    assert noisy.min() == 0 and noisy.max() == 1  # some values were clamped, deliberately


# ------------------------------------------------------------------------------------------------ OPA-DPO
class StubPre:
    """A preprocessor stand-in: one token per word (id = word length + 10), </s> = 2."""

    class tokenizer:  # noqa: N801
        eos_token_id = 2

    @staticmethod
    def response_ids(text):
        return [len(w) + 10 for w in text.split()] + [2]


def opa_record():
    sentences = [{"copied": "a bb", "rewritten": "a cc ddd", "score": 2, "error_type": "image_recognition_error"},
                 {"copied": "eeee", "rewritten": "eeee", "score": 4, "error_type": "correct"},
                 {"copied": "f", "rewritten": "", "score": 1, "error_type": "language_comprehension_error"}]
    return PreferenceRecord("o1", "x.png", "q", "gg hh", "a bb eeee f",
                            extra={"gt": "gg hh", "rollout": "a bb eeee f", "revision": "a cc ddd eeee zz",
                                   "sentences": sentences, "added": "zz"})


def test_opa_sentence_pieces_carry_score_and_error_weights_to_every_token():
    from methods.opa_dpo import response_pieces

    ids, score_w, error_w = response_pieces(StubPre, opa_record(), "own")
    assert ids == [11, 12, 14, 11]  # a bb | eeee | f
    assert score_w == [2.0, 2.0, 1.0, 2.5, 0.0]  # score 2 -> 2.0, 4 -> 1.0, 1 -> 2.5; y_o's </s> unscored
    ids, score_w, error_w = response_pieces(StubPre, opa_record(), "rev")
    assert ids == [11, 12, 13, 14, 12]  # a cc ddd | eeee | (sentence 3 deleted) | Added: zz
    assert score_w == [2.0, 2.0, 2.0, 1.0, 1.0, 1.0]  # Added weight 1; </s> repeats the last weight
    assert error_w == [3.0, 3.0, 3.0, 1.0, 1.0, 1.0]


def _opa_inputs(policy_vals, ref_vals):
    """Two records: the reported one (weights) and a plain one (no sentences: weights 1)."""
    from methods.opa_dpo import response_pieces

    r1 = opa_record()
    r2 = PreferenceRecord("o2", "x.png", "q", "gg", "kk", extra={"gt": "gg", "rollout": "kk", "revision": "mm nn",
                                                               "sentences": [], "added": ""})
    toks = {"own": [response_pieces(StubPre, r, "own")[0] + [2] for r in (r1, r2)],
            "rev": [response_pieces(StubPre, r, "rev")[0] + [2] for r in (r1, r2)]}
    toks["rev_masked"] = toks["rev"]
    policy = {k: lp(v, toks.get(k)) for k, v in policy_vals.items()}
    ref = {k: lp(v, toks.get(k)) for k, v in ref_vals.items()}
    return StepInputs([r1, r2], policy, ref, pre_context(StubPre))


# per-token log-probs; lengths: gt 3 / 2, own 5 / 2, rev 6 / 3 (tokens + </s>)
P = {"gt": [[-1.0, -1.0, -1.0], [-2.0, -1.0]], "own": [[-2.0, -1.0, -1.0, -1.0, -1.0], [-1.0, -1.0]],
     "rev": [[-1.0, -1.0, -1.0, -1.0, -1.0, -1.0], [-1.0, -2.0, -1.0]],
     "gt_masked": [[-1.5, -1.0, -1.0], [-2.0, -2.0]], "rev_masked": [[-1.0, -1.2, -1.0, -1.0, -1.0, -0.5], [-1.0, -1.0, -1.0]]}
R = {"gt": [[-1.2, -1.0, -1.0], [-2.0, -1.5]], "own": [[-1.5, -1.0, -1.0, -1.2, -1.0], [-1.0, -0.5]],
     "rev": [[-1.0, -1.1, -1.0, -1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]],
     "gt_masked": [[-1.0, -1.0, -1.0], [-2.0, -1.0]], "rev_masked": [[-1.0, -1.0, -1.0, -1.0, -1.0, -1.0], [-1.0, -1.5, -1.0]]}


def _delta(k, i):
    return [p - r for p, r in zip(P[k][i], R[k][i])]


def test_opa_five_term_loss_equals_the_hand_computation_in_sequence_form():
    from methods.opa_dpo import OpaDpoConfig, opa_dpo_loss

    cfg = OpaDpoConfig(response_bos=False)
    loss, m = opa_dpo_loss(_opa_inputs(P, R), cfg)
    b = cfg.beta
    score = {"own": [[2.0, 2.0, 1.0, 2.5, 0.0], [1.0, 0.0]], "rev": [[2.0, 2.0, 2.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]}
    error = [[3.0, 3.0, 3.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]

    def wsum(k, i, w=None):
        d = _delta(k, i)
        return sum(x * (1.0 if w is None else w[t]) for t, x in enumerate(d))

    l1 = sum(nls(b * (wsum("gt", i) - wsum("own", i))) for i in range(2)) / 2
    l2 = sum(nls(b * (wsum("rev", i, score["rev"][i]) - wsum("own", i, score["own"][i]))) for i in range(2)) / 2
    l3 = sum(nls(b * (wsum("gt", i) - wsum("gt_masked", i))) for i in range(2)) / 2
    l4 = sum(nls(b * (wsum("rev", i, error[i]) - wsum("rev_masked", i, error[i]))) for i in range(2)) / 2
    anchor = sum(2 * (nls(b * wsum("gt", i)) + nls(-b * wsum("rev", i))) for i in range(2)) / 2
    expected = l1 + l2 + 0.2 * l3 + 0.2 * l4 + anchor
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    for key, v in (("gt_own", l1), ("rev_own", l2), ("gt_masked", l3), ("rev_masked", l4), ("anchor", anchor)):
        assert m[f"loss/{key}"].item() == pytest.approx(v, abs=1e-6), key
    coefs, _ = opa_dpo_loss(_opa_inputs(P, R), OpaDpoConfig(coef_standard=2.0, coef_ai=0.5, coef_image=1.0,
                                                             coef_anchor=0.0, response_bos=False))
    assert coefs.item() == pytest.approx(2 * l1 + 0.5 * l2 + 2 * l3 + 0.5 * l4, abs=1e-6)


def test_opa_per_token_aligned_variant_is_the_seeds_position_mean_over_padded_positions():
    from methods.opa_dpo import OpaDpoConfig, opa_dpo_loss

    cfg = OpaDpoConfig(per_token_aligned=True, response_positions=8, response_bos=False)
    loss, m = opa_dpo_loss(_opa_inputs(P, R), cfg)
    b, n = cfg.beta, 8
    score = {"own": [[2.0, 2.0, 1.0, 2.5, 0.0], [1.0, 0.0]], "rev": [[2.0, 2.0, 2.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]}
    error = [[3.0, 3.0, 3.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]

    def padded(k, i, w=None):
        d = [x * (1.0 if w is None else w[t]) for t, x in enumerate(_delta(k, i))]
        return d + [0.0] * (n - len(d))

    def term(c, r, wc=None, wr=None):
        return sum(nls(b * (x - y)) for i in range(2)
                   for x, y in zip(padded(c, i, None if wc is None else wc[i]), padded(r, i, None if wr is None else wr[i]))
                   ) / (2 * n)

    l1 = term("gt", "own")
    l2 = term("rev", "own", score["rev"], score["own"])
    l3 = term("gt", "gt_masked")
    l4 = term("rev", "rev_masked", error, error)
    anchor = 2 * sum(nls(b * x) + nls(-b * y) for i in range(2) for x, y in zip(padded("gt", i), padded("rev", i))) / (2 * n)
    assert m["loss/gt_own"].item() == pytest.approx(l1, abs=1e-6)
    assert m["loss/anchor"].item() == pytest.approx(anchor, abs=1e-6)
    assert loss.item() == pytest.approx(l1 + l2 + 0.2 * l3 + 0.2 * l4 + anchor, abs=1e-6)


def test_opa_token_weights_refuse_a_sequence_that_does_not_match_its_pieces():
    from bench.errors import BenchError
    from methods.opa_dpo import OpaDpoConfig, opa_dpo_loss

    inputs = _opa_inputs(P, R)
    inputs.policy["own"].tokens[0, 0] = 99
    with pytest.raises(BenchError, match="o1 \\(own\\): token weights do not line up"):
        opa_dpo_loss(inputs, OpaDpoConfig(response_bos=False))


def test_opa_sft_loss_is_the_mean_token_cross_entropy_over_supervised_tokens():
    from methods.opa_dpo import OpaDpoConfig, sft_loss

    policy = {"target": lp([[-1.0, -2.0, -3.0], [-0.5]])}
    loss, _ = sft_loss(StepInputs([rec("a"), rec("b")], policy, {}), OpaDpoConfig())
    assert loss.item() == pytest.approx((1 + 2 + 3 + 0.5) / 4, abs=1e-6)


def test_opa_mask_sets_the_floor_of_thirty_percent_of_positions_to_the_tensor_mean_deterministically():
    from methods.opa_dpo import mask_pixels

    x = torch.arange(3 * 7 * 9, dtype=torch.float32).reshape(3, 7, 9)
    a = mask_pixels(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, mask_pixels(x, torch.Generator().manual_seed(3)))
    changed = (a != x).any(0)
    assert changed.sum().item() == int(7 * 9 * 0.3) == 18  # floor, as the seed's int()
    assert torch.all(a[:, changed] == x.mean()) and torch.equal(a[:, ~changed], x[:, ~changed])


class StubPreBos(StubPre):
    class tokenizer:  # noqa: N801
        eos_token_id = 2
        bos_token_id = 1


def test_opa_response_bos_leads_every_response_with_the_first_sentences_weights():
    """The seed tokenises each report entry with <s> and strips it from all but the first entry: y_o and y_r start
    with <s> carrying sentence 0's score / error weights; an empty first entry on a side leaves that side without."""
    from methods.opa_dpo import response_pieces

    ids, score_w, error_w = response_pieces(StubPreBos, opa_record(), "own", bos=True)
    assert ids == [1, 11, 12, 14, 11] and score_w == [2.0, 2.0, 2.0, 1.0, 2.5, 0.0] and error_w[0] == 3.0
    ids, score_w, error_w = response_pieces(StubPreBos, opa_record(), "rev", bos=True)
    assert ids == [1, 11, 12, 13, 14, 12] and score_w[0] == 2.0 and error_w == [3.0] * 4 + [1.0] * 3
    r = opa_record()
    r.extra["sentences"][0]["rewritten"] = ""
    assert response_pieces(StubPreBos, r, "rev", bos=True)[0][0] != 1
    assert response_pieces(StubPreBos, r, "own", bos=True)[0][0] == 1


def test_opa_bos_log_ratio_cancels_in_the_paired_terms_but_not_in_the_masked_terms_or_the_anchor():
    """With ``response_bos`` the first token of y_gt, y_o, y_r is <s>, scored after the same prompt and image, so
    its log-ratio is one number per sample on the clean image: shifting it changes ℓ3, ℓ4 (masked image) and the
    anchor, never ℓ1 or ℓ2 — the seed's arithmetic."""
    from methods.opa_dpo import OpaDpoConfig, opa_dpo_loss, response_pieces

    def inputs(bos_shift: float):
        r1 = opa_record()
        r2 = PreferenceRecord("o2", "x.png", "q", "gg", "kk", extra={"gt": "gg", "rollout": "kk", "revision": "mm nn",
                                                                   "sentences": [], "added": ""})
        toks = {s: [response_pieces(StubPreBos, r, s if s != "rev_masked" else "rev", True)[0] + [2] for r in (r1, r2)]
                for s in ("own", "rev", "rev_masked")}
        pol = {k: [[bos_shift - 1.0] + row for row in v] for k, v in P.items()}  # prepend the BOS position
        for k in ("gt_masked", "rev_masked"):  # masked image: BOS log-ratio not shifted
            pol[k] = [[-1.0] + row for row in P[k]]
        ref = {k: [[-1.0] + row for row in v] for k, v in R.items()}
        return StepInputs([r1, r2], {k: lp(v, toks.get(k)) for k, v in pol.items()},
                          {k: lp(v, toks.get(k)) for k, v in ref.items()}, pre_context(StubPreBos))

    cfg = OpaDpoConfig()
    assert cfg.response_bos
    _, base = opa_dpo_loss(inputs(0.0), cfg)
    _, moved = opa_dpo_loss(inputs(0.7), cfg)
    for key in ("gt_own", "rev_own"):
        assert moved[f"loss/{key}"].item() == pytest.approx(base[f"loss/{key}"].item(), abs=1e-6), key
    for key in ("gt_masked", "rev_masked", "anchor"):
        assert abs(moved[f"loss/{key}"].item() - base[f"loss/{key}"].item()) > 1e-3, key
