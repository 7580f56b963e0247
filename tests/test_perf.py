"""``bench perf eval|train`` at the tiny shape: the JSON holds the promised nested keys, measured values, and
the engine's answers agree with batch-1 ``generate`` (the perf commands never assert a speed)."""

import json

import pytest

from bench.cli import main


def test_perf_eval_writes_engine_and_generate_timings_with_full_agreement(tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["perf", "eval", "--shape", "tiny", "--images", "2", "--questions", "4", "--caption-images", "3",
                 "--caption-tokens", "6", "--beam-images", "3", "--beam-tokens", "5", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == res
    for name, path in (("pope", "packed"), ("caption", "batched"), ("beam", "beams")):
        w = res[name]
        assert w["engine_path"] == path
        for key in ("engine_s", "hf_generate_bs1_s", "hf_generate_bs8_s"):
            assert w[key] > 0, key
        assert w["agreement"] == 1.0 and w["agreement_items"] == w["items"]
        assert set(w["engine_split_s"]) == {"vision", "prefill", "decode"}
    assert res["pope"]["items"] == 8 and res["pope"]["images"] == 2
    assert res["caption"]["items"] == 3 and res["caption"]["new_tokens"] == 6
    assert res["beam"]["items"] == 3 and res["beam"]["new_tokens"] == 5 and res["beam"]["num_beams"] == 5


def test_perf_eval_times_batch_1_on_a_subset_when_asked(tmp_path):
    out = tmp_path / "eval.json"
    assert main(["perf", "eval", "--shape", "tiny", "--workloads", "pope", "--images", "2", "--questions", "3",
                 "--bs1-items", "2", "--json", str(out)]) == 0
    pope = json.loads(out.read_text())["pope"]
    assert pope["hf_generate_bs1_items"] == 2 and pope["agreement_items"] == 2
    assert "caption" not in json.loads(out.read_text())


def test_perf_eval_times_batched_generate_on_a_subset_and_extrapolates_per_item(tmp_path):
    out = tmp_path / "eval.json"
    assert main(["perf", "eval", "--shape", "tiny", "--workloads", "caption", "--caption-images", "5",
                 "--caption-tokens", "4", "--generate-items", "2", "--bs1-items", "caption=3,pope=1", "--json",
                 str(out)]) == 0
    cap = json.loads(out.read_text())["caption"]
    assert cap["items"] == 5 and cap["hf_generate_bs8_items"] == 2
    assert cap["hf_generate_bs8_s"] == pytest.approx(cap["hf_generate_bs8_s_measured"] * 5 / 2, rel=1e-3, abs=5e-4)
    assert cap["speedup_vs_hf_generate_bs8"] == pytest.approx(cap["hf_generate_bs8_s"] / cap["engine_s"], rel=1e-2)
    assert cap["hf_generate_bs8_agreement"] == 1.0 and cap["agreement"] == 1.0 and cap["agreement_items"] == 3


def test_perf_train_reports_the_loop_and_trl_on_the_same_data(tmp_path):
    pytest.importorskip("trl", reason="TRL is not importable: perf train --trl needs trl>=1.0")
    out = tmp_path / "train.json"
    assert main(["perf", "train", "--trl", "--shape", "tiny", "--pairs", "2", "--steps", "1", "--warmup", "1",
                 "--response-words", "8", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    for side in ("bench", "bench_no_reference_cache", "bench_share_prefix", "trl"):
        assert res[side]["pairs_per_s"] > 0 and res[side]["steps_timed"] == 1, side
        assert res[side]["peak_mem_gib"] is None  # CPU: no allocator peak
    # share_prefix holds each pair's prompt once: fewer real tokens per pair than two padded sequences
    assert res["bench_share_prefix"]["tokens_per_pair"] < res["bench"]["tokens_per_pair"]
    assert res["speedup_share_prefix"] == pytest.approx(
        res["bench_share_prefix"]["pairs_per_s"] / res["bench"]["pairs_per_s"], rel=1e-2)
    # the same data on both sides: token counts per sequence within a few tokens (TRL adds no BOS)
    assert abs(res["bench"]["tokens_per_sequence"] - res["trl"]["tokens_per_sequence"]) <= 3
    assert res["speedup_bench_vs_trl"] == pytest.approx(res["bench"]["pairs_per_s"] / res["trl"]["pairs_per_s"],
                                                        rel=1e-2)


def test_bs1_items_takes_one_count_or_one_per_workload():
    import argparse

    from bench.perf_eval import bs1_items

    assert bs1_items("8") == {"*": 8}
    assert bs1_items("pope=1000,caption=16") == {"pope": 1000, "caption": 16}
    for bad in ("pope=x", "vqa=3", "pope"):
        with pytest.raises(argparse.ArgumentTypeError):
            bs1_items(bad)
