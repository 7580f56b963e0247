"""``bench export`` (bench/export.py): a two-stage POVID checkpoint of tiny-llava (stage 2 also trains the
projector) merged into one HF folder that ``LlavaForConditionalGeneration.from_pretrained`` loads, with exactly
the weights and POPE predictions of the checkpoint evaluated with its adapters."""

import json

import pytest
import torch

import methods  # noqa: F401
from bench.cli import main


@pytest.fixture(scope="module")
def povid_checkpoint(tmp_path_factory):
    """Two POVID stages on four synthetic-vocabulary pairs, 2 steps each at a large lr (weights must move)."""
    from PIL import Image

    from bench.config import merge
    from bench.data.preference import PreferenceRecord
    from bench.models.llava import make_preprocessor
    from bench.registry import MODELS, METHODS
    from bench.train.loop import train
    from tests.conftest import PAIR_TEXTS

    root = tmp_path_factory.mktemp("povid")
    records = []
    for i in range(4):
        img = root / "images" / f"{i}.png"
        img.parent.mkdir(exist_ok=True)
        Image.new("RGB", (40, 28), (40 * i, 255 - 40 * i, 90)).save(img)
        chosen, rejected = PAIR_TEXTS[i % len(PAIR_TEXTS)]
        records.append(PreferenceRecord(id=f"r{i}", image=str(img), question="Describe this image.", chosen=chosen,
                                        rejected=rejected))
    small = {"lr": 5e-3, "max_steps": 2, "batch_size": 2, "grad_accum": 1, "lora_r": 4, "lora_alpha": 8,
             "lora_dropout": 0.0, "max_length": 256, "bf16": False, "warmup_ratio": 0.0}
    method = METHODS.get("povid")()
    cfg = merge(method.default_config(), {"stage1": small, "stage2": {**small, "train_projector": True}})
    entry = MODELS.get("tiny-llava")

    def loader():
        model, processor = entry.load(dtype=torch.float32, device="cpu")
        return model, make_preprocessor(processor, model.config)

    train(method, cfg, loader, records, root / "run", seed=0, progress=False)
    ckpt = root / "run" / "checkpoint"
    assert [s["name"] for s in json.loads((ckpt / "stages.json").read_text())["stages"]] == ["stage1", "stage2"]
    assert (ckpt / "stage2" / "non_lora_trainables.safetensors").exists()
    return ckpt


def test_export_is_a_from_pretrained_folder_with_the_merged_weights(povid_checkpoint, tmp_path, capsys):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from bench.models.loading import apply_checkpoint
    from bench.registry import MODELS

    out = tmp_path / "merged"
    assert main(["export", str(povid_checkpoint), "--out", str(out), "--model", "tiny-llava"]) == 0
    assert "stage1, stage2" in capsys.readouterr().out
    exported = LlavaForConditionalGeneration.from_pretrained(out)
    AutoProcessor.from_pretrained(out)  # the processor and tokenizer travel with it
    rec = json.loads((out / "bench_export.json").read_text())
    assert rec["stages"] == ["stage1", "stage2"] and rec["base_model"] == "tiny-llava"
    assert rec["model_class"] == "LlavaForConditionalGeneration" and any("stage2/adapter" in k for k in rec["merged_files_sha256"])

    base, _ = MODELS.get("tiny-llava").load()
    base_sd = {k: v.clone() for k, v in base.state_dict().items()}
    want = apply_checkpoint(base, povid_checkpoint).state_dict()
    got = exported.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)  # bit-identical to what evaluation builds
    moved = [k for k in want if not torch.equal(want[k], base_sd[k])]
    assert any("multi_modal_projector" in k for k in moved) and any("language_model" in k and "q_proj" in k
                                                                    for k in moved)


def test_exported_folder_predicts_exactly_what_the_checkpoint_with_adapters_predicts(povid_checkpoint, synthetic_root,
                                                                                     tmp_path):
    out = tmp_path / "merged"
    assert main(["export", str(povid_checkpoint), "--out", str(out), "--model", "tiny-llava"]) == 0
    common = ["--benchmarks", "pope", "--data-root", str(synthetic_root), "--limit", "2", "--quiet",
              "--device", "cpu"]
    assert main(["eval", "--model", "tiny-llava", "--adapter", str(povid_checkpoint), "--label", "povid",
                 "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["eval", "--model", str(out), "--out", str(tmp_path / "b"), *common]) == 0

    def preds(path):
        return {r["id"]: r["text"] for r in map(json.loads, path.read_text().splitlines())}

    a = preds(tmp_path / "a" / "tiny-llava" / "povid" / "predictions" / "pope.jsonl")
    b = preds(tmp_path / "b" / "merged" / "base" / "predictions" / "pope.jsonl")
    assert len(a) > 12 and a == b  # every question about the first 2 images
    # and the adapters matter on these items (the equality above is not the base model's answers twice)
    assert main(["eval", "--model", "tiny-llava", "--out", str(tmp_path / "base"), *common]) == 0
    assert preds(tmp_path / "base" / "tiny-llava" / "base" / "predictions" / "pope.jsonl") != a


def test_export_reads_the_base_model_from_the_run_record_beside_the_checkpoint(povid_checkpoint, tmp_path):
    import shutil

    run = tmp_path / "runs" / "tiny-llava" / "povid"
    shutil.copytree(povid_checkpoint, run / "checkpoint")
    (run / "run.json").write_text(json.dumps({"kind": "train", "model": "tiny-llava", "method": "povid"}))
    assert main(["export", str(run / "checkpoint"), "--out", str(tmp_path / "m"), "--dtype", "bfloat16"]) == 0
    rec = json.loads((tmp_path / "m" / "bench_export.json").read_text())
    assert rec["base_model"] == "tiny-llava" and rec["dtype"] == "bfloat16"
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (cfg.get("dtype") or cfg.get("torch_dtype")) == "bfloat16"


def test_export_refuses_a_non_empty_out_and_an_unknown_base(povid_checkpoint, tmp_path, capsys):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    assert main(["export", str(povid_checkpoint), "--out", str(tmp_path / "busy"), "--model", "tiny-llava"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export", str(povid_checkpoint), "--out", str(tmp_path / "new")]) == 2  # no run.json beside it
    assert "pass --model" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "new"), "--model", "tiny-llava"]) == 2
    assert "not a bench checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
