"""``--backend vllm``: requests built from the family's own prompt ids and images, outputs mapped back to item ids,
skipped images, the record labels, a cache key of its own, the missing-package error and the bs-1 agreement check.

vLLM cannot be installed here: a fake ``vllm`` module (``tests/fake_vllm.py``) generates with the same checkpoint
through transformers, so these tests check the backend's plumbing, never the real engine's numerics."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from bench.benchmark import EvalItem, GenerationSettings
from bench.cli import main
from bench.errors import BenchError
from tests import fake_vllm


def _eval(tmp_path, world, *args):
    return main(["eval", "--model", "tiny-llava", "--benchmarks", "pope", "--data-root", str(world),
                 "--out", str(tmp_path / "runs"), "--quiet", "eval.n_boot=20", "--limit", "2", *args])


def _lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


@pytest.fixture
def world(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "bench-data"))
    dst = tmp_path / "world"
    shutil.copytree(synthetic_root, dst)
    return dst


@pytest.fixture
def tiny():
    from bench.models.llava import make_preprocessor
    from bench.plugins import load_plugins
    from bench.registry import MODELS

    load_plugins()
    entry = MODELS.get("tiny-llava")
    model, proc = entry.load()
    return entry, model, make_preprocessor(proc, model.config)


def test_missing_vllm_is_one_actionable_error_before_any_work(tmp_path, world, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` fails, whatever is installed
    assert _eval(tmp_path, world, "--backend", "vllm") == 2
    err = capsys.readouterr().err
    assert "pip install vllm" in err and "default backend" in err and "needs nothing extra" in err
    assert not (tmp_path / "runs" / "tiny-llava").exists()  # nothing was started
    from bench.eval.vllm_backend import import_vllm

    with pytest.raises(BenchError, match="pip install vllm"):
        import_vllm()


def test_vllm_run_is_labelled_and_matches_the_default_texts_item_by_item(tmp_path, world, monkeypatch):
    assert _eval(tmp_path, world) == 0
    base = tmp_path / "runs" / "tiny-llava" / "base"
    reference = {r["id"]: r for r in _lines(base / "predictions" / "pope.jsonl")}
    fake_vllm.install(monkeypatch)
    assert _eval(tmp_path, world, "--backend", "vllm") == 0
    run_dir = tmp_path / "runs" / "tiny-llava" / "base-vllm"  # its own folder and leaderboard row
    lines = _lines(run_dir / "predictions" / "pope.jsonl")
    assert [r["id"] for r in lines] == list(reference)  # item order, every selected item
    assert all(r["backend"] == "vllm" for r in lines)
    # the fake decodes the same checkpoint greedily in float32: same texts, mapped to the right ids
    assert {r["id"]: r["text"] for r in lines} == {i: r["text"] for i, r in reference.items()}
    assert all(r["key"] != reference[r["id"]]["key"] for r in lines)  # a cache key of its own
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["eval"]["backend"] == "vllm" and rec["fingerprint_parts"]["backend"] == "vllm/0.0-fake"
    assert rec["checkpoint_fingerprint"] != json.loads((base / "run.json").read_text())["checkpoint_fingerprint"]
    score = json.loads((run_dir / "scores" / "pope.json").read_text())
    assert score["backend"] == "vllm"
    assert "backend" not in json.loads((base / "scores" / "pope.json").read_text())  # default output unchanged
    assert "backend" not in reference[lines[0]["id"]]
    (llm,) = fake_vllm.LLM.instances
    assert llm.kwargs["dtype"] == "float32" and llm.kwargs["limit_mm_per_prompt"] == {"image": 1}
    assert Path(llm.kwargs["model"]).name == "tiny-llava"  # the folder the transformers backend loads
    (params,) = llm.params  # one generate call for the whole selection
    from bench.registry import BENCHMARKS

    assert params.temperature == 0.0 and params.n == 1
    assert params.max_tokens == BENCHMARKS.get("pope").generation.max_new_tokens
    assert params.stop_token_ids == [2]  # the tokenizer's EOS
    assert len(llm.requests) == len(lines)


def test_requests_carry_the_family_prompt_ids_and_the_padded_image(tiny, synthetic_root, monkeypatch):
    from bench.eval import vllm_backend
    from bench.models.llava import load_image

    vllm = fake_vllm.install(monkeypatch)
    entry, model, pre = tiny
    vm = vllm_backend.open_vllm_model(entry, None, "float32")
    img = sorted((synthetic_root / "coco" / "val2014").glob("*.png"))[0]
    req = vllm_backend.request(vm.pre, EvalItem("a", str(img), "Is there a dog in the image?"))
    size = load_image(str(img)).size
    full = pre.prompt_ids("Is there a dog in the image?", size)
    ids = req["prompt_token_ids"]
    k = ids.index(pre.image_token_id)
    n = pre.num_image_tokens
    assert ids[:k] == full[:k] and ids[k + 1:] == full[k + n:] and full[k:k + n] == [pre.image_token_id] * n
    image = req["multi_modal_data"]["image"]
    assert image.size[0] == image.size[1] == max(size)  # LLaVA-1.5's pad-to-square, done before vLLM
    sampled = vllm_backend.sampling_params(vllm, GenerationSettings(max_new_tokens=7, do_sample=True,
                                                                    temperature=0.7), 2, seed=3)
    assert (sampled.temperature, sampled.seed, sampled.max_tokens) == (0.7, 3, 7)
    with pytest.raises(BenchError, match="beam search"):
        vllm_backend.sampling_params(vllm, GenerationSettings(num_beams=5), 2)


def test_outputs_map_back_to_items_and_bad_images_are_skipped(tiny, synthetic_root, tmp_path, monkeypatch):
    from bench.eval import vllm_backend
    from bench.eval.decode import generate_batch

    fake_vllm.install(monkeypatch)
    entry, model, pre = tiny
    vm = vllm_backend.open_vllm_model(entry, None, "float32")
    imgs = sorted((synthetic_root / "coco" / "val2014").glob("*.png"))[:2]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    items = [EvalItem("q0", str(imgs[1]), "Describe this image in detail."),
             EvalItem("gone", str(tmp_path / "missing.png"), "Is there a dog in the image?"),
             EvalItem("q1", str(imgs[0]), "Is there a cat in the image?"),
             EvalItem("bad", str(broken), "Is there a car in the image?"),
             EvalItem("q2", str(imgs[1]), "Is there a dog in the image?")]
    gen = GenerationSettings(max_new_tokens=12)
    texts, skipped = vllm_backend.generate(vm, items, gen)
    assert texts[1] is None and texts[3] is None
    assert skipped["gone"].startswith("image not found") and "bad" in skipped and set(skipped) == {"gone", "bad"}
    for it, text in zip(items, texts):
        if text is not None:
            assert text == generate_batch(model, pre, [it], gen, "cpu", use_hf_generate=True)[0], it.id


def test_a_transformers_cache_is_never_served_to_vllm_nor_the_reverse(tmp_path, world, monkeypatch):
    assert _eval(tmp_path, world, "--label", "same") == 0
    run_dir = tmp_path / "runs" / "tiny-llava" / "same"
    pred = run_dir / "predictions" / "pope.jsonl"
    first = _lines(pred)
    fake_vllm.install(monkeypatch)
    assert _eval(tmp_path, world, "--label", "same", "--backend", "vllm") == 0
    gen = json.loads((run_dir / "run.json").read_text())["benchmarks"]["pope"]["generation"]
    assert gen["cached"] == 0 and gen["generated"] == len(first)
    assert _lines(pred.with_name("pope.jsonl.stale")) == first  # set aside, not lost, not reused
    assert all(r["backend"] == "vllm" for r in _lines(pred))
    assert _eval(tmp_path, world, "--label", "same") == 0  # and back: the vLLM lines are not served either
    gen = json.loads((run_dir / "run.json").read_text())["benchmarks"]["pope"]["generation"]
    assert gen["cached"] == 0 and gen["generated"] == len(first)
    assert [r["text"] for r in _lines(pred)] == [r["text"] for r in first]


def test_verify_against_bs1_compares_vllm_outputs_with_transformers(tmp_path, world, monkeypatch, capsys):
    fake_vllm.install(monkeypatch)
    assert _eval(tmp_path, world, "--backend", "vllm", "--verify-against-bs1", "3") == 0
    out = capsys.readouterr().out
    assert "pope: vllm backend vs batch-1 HF generate: 3/3 identical (agreement 1.0000)" in out
    # a wrong stored text is reported as a difference: the check reads the vLLM predictions file
    pred = tmp_path / "runs" / "tiny-llava" / "base-vllm" / "predictions" / "pope.jsonl"
    from bench.eval.engine import verify_against_bs1
    from bench.registry import BENCHMARKS

    lines = _lines(pred)
    lines = [{**r, "text": r["text"] + " (edited)"} for r in lines]
    pred.write_text("".join(json.dumps(r) + "\n" for r in lines))
    from bench.models.loading import load_for_eval

    model, pre, _ = load_for_eval("tiny-llava", None)
    check = verify_against_bs1(model, pre, BENCHMARKS.get("pope")(), world, pred, 3)
    assert check["identical"] == 0 and check["n"] == 3


def test_preflight_refuses_beam_search_adapters_and_unknown_backends(monkeypatch):
    from bench import preflight
    from bench.plugins import load_plugins

    load_plugins()
    fake_vllm.install(monkeypatch)
    assert preflight.backend_problems("transformers", ["shr"], ["x"]) == []
    assert preflight.backend_problems("vllm", ["pope", "chair"], [None]) == []
    problems = preflight.backend_problems("vllm", ["pope", "shr"], ["runs/m/dpo/checkpoint"])
    assert len(problems) == 2
    assert problems[0].startswith("shr: beam search") and "bench export" in problems[1]
    assert "unknown backend" in preflight.backend_problems("vlm")[0]


def test_perf_eval_adds_vllm_as_an_extra_engine_without_changing_its_keys(tmp_path, monkeypatch):
    out = tmp_path / "eval.json"
    args = ["perf", "eval", "--shape", "tiny", "--images", "2", "--questions", "3", "--caption-images", "2",
            "--caption-tokens", "5", "--json", str(out)]
    assert main(args) == 0
    plain = json.loads(out.read_text())
    fake_vllm.install(monkeypatch)
    assert main([*args, "--backend", "vllm"]) == 0
    res = json.loads(out.read_text())
    assert res["backend"] == "transformers" and res["vllm_backend"] == "vllm/0.0-fake"
    for name in ("pope", "caption"):
        assert set(res[name]) == set(plain[name]) | {"vllm_s", "vllm_agreement"}
        assert res[name]["vllm_s"] > 0 and res[name]["vllm_agreement"] == 1.0
        assert res[name]["agreement"] == plain[name]["agreement"]
    (llm,) = fake_vllm.LLM.instances
    assert len(llm.requests) == 2 + 6 + 2 + 2  # warm-up (2 items) + the workload, for each workload


def test_perf_eval_without_vllm_fails_before_building_a_model(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "vllm", None)
    assert main(["perf", "eval", "--shape", "tiny", "--backend", "vllm"]) == 2
    assert "pip install vllm" in capsys.readouterr().err


def test_bench_run_evaluates_the_base_model_with_vllm_and_refuses_trained_adapters(tmp_path, world, monkeypatch,
                                                                                   capsys):
    fake_vllm.install(monkeypatch)
    common = ["run", "--model", "tiny-llava", "--benchmarks", "pope", "--data-root", str(world), "--quiet",
              "--limit", "1", "--backend", "vllm", "eval.n_boot=20"]
    assert main([*common, "--methods", "dpo", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "not an adapter" in err and "bench export" in err and not (tmp_path / "a" / "tiny-llava").exists()
    assert main([*common, "--methods", "base", "--out", str(tmp_path / "b")]) == 0
    base = tmp_path / "b" / "tiny-llava" / "base"
    assert json.loads((base / "scores" / "pope.json").read_text())["backend"] == "vllm"
    assert json.loads((base / "run.json").read_text())["run"]["config"]["eval"]["backend"] == "vllm"
