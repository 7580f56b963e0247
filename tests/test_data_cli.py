"""`python -m bench data prepare|verify|fetch|build` through the command line."""

import json
import os
import subprocess
import sys

import pytest

from bench.cli import main
from bench.data.download import Manifest
from bench.io import sha256_file
from tests.conftest import REPO


def _root_with_manifest(tmp_path):
    root = tmp_path / "root"
    (root / "pope" / "v3").mkdir(parents=True)
    files = {"pope/v3/a.json": b'{"question_id": 1}\n', "coco/annotations/x.json": b"{}"}
    m = Manifest(root)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        m.record(rel, sha256_file(root / rel))
    return root


def test_verify_reports_every_file_and_detects_a_modified_one(tmp_path, capsys):
    root = _root_with_manifest(tmp_path)
    assert main(["data", "verify", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "ok       pope/v3/a.json" in out and f"{root}: OK (2 files)" in out
    (root / "pope" / "v3" / "a.json").write_bytes(b'{"question_id": 2}\n')
    (root / "coco" / "annotations" / "x.json").unlink()
    assert main(["data", "verify", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "MODIFIED pope/v3/a.json" in out and "MISSING  coco/annotations/x.json" in out
    assert f"{root}: 0 ok, 2 problem(s)" in out


def test_verify_without_a_manifest_is_a_one_line_error(tmp_path, capsys):
    assert main(["data", "verify", "--root", str(tmp_path)]) == 2
    assert "no manifest" in capsys.readouterr().err


def test_verify_defaults_to_the_data_root_and_its_synthetic_world(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    assert main(["data", "verify"]) == 2
    from bench.data.synthetic import SYNTHETIC_DIRNAME

    (tmp_path / SYNTHETIC_DIRNAME).mkdir()
    Manifest(tmp_path / SYNTHETIC_DIRNAME).save()
    assert main(["data", "verify"]) == 0
    assert f"{tmp_path / SYNTHETIC_DIRNAME}: OK (0 files)" in capsys.readouterr().out


def test_prepare_writes_the_synthetic_world_that_verify_accepts(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["data", "prepare", "--out", str(out), "--seed", "1"]) == 0
    assert "synthetic world written to" in capsys.readouterr().out
    assert main(["data", "verify", "--root", str(out)]) == 0


def test_fetch_list_shows_every_source(capsys):
    assert main(["data", "fetch", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("coco-val2014", "pope", "vg", "shr", "mhalubench", "nltk", "hadpo-data", "povid-data", "hsa-dpo-data",
                 "opa-dpo-data"):
        assert f"\n{name} " in "\n" + out


def test_fetch_unknown_source_suggests_a_name(tmp_path, capsys):
    assert main(["data", "fetch", "popee", "--root", str(tmp_path)]) == 2
    assert "did you mean 'pope'" in capsys.readouterr().err


def test_offline_fetch_in_a_fresh_process_names_the_command_and_shows_no_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    for name, n in (("coco-val2014", 9), ("mhalubench", 4)):
        proc = subprocess.run([sys.executable, "-m", "bench", "data", "fetch", name, "--root", str(tmp_path)],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        cmd = f"python -m bench data fetch {name} --root {tmp_path.resolve()}"
        assert sum(1 for ln in proc.stderr.splitlines() if ln.startswith("missing:") and cmd in ln) == n
        assert proc.stderr.strip().splitlines()[-1].startswith("error: ")


def test_build_with_the_tiny_model_writes_hsa_dpo_data_and_a_summary(synthetic_root, tmp_path, capsys):
    out = tmp_path / "hsa"
    rc = main(["data", "build", "hsa-dpo", "--model", "tiny-llava", "--data-root", str(synthetic_root), "--out", str(out),
               "--limit", "4", "--max-new-tokens", "24", "--batch-size", "2", "--device", "cpu", "--quiet"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["items"] == 4 and summary["kept"] + summary["dropped"] == 4
    assert summary["generator"].startswith("tiny-llava:") and "greedy" in summary["generator"]
    assert (out / "hsa_dpo_preference.jsonl").exists() and (out / "hsa_dpo_detection.jsonl").exists()
    assert "hsa-dpo: " in capsys.readouterr().out
    rc = main(["data", "build", "hsa-dpo", "--model", "tiny-llava", "--data-root", str(synthetic_root), "--out", str(out),
               "--limit", "4", "--max-new-tokens", "24", "--batch-size", "2", "--device", "cpu", "--quiet"])
    assert rc == 0 and json.loads((out / "summary.json").read_text())["cache"]["reused"] == 4


def test_build_povid_needs_no_model_and_opa_samples_by_default(synthetic_root, tmp_path, monkeypatch):
    import bench.eval.generate as gen

    seen = {}

    def fake_model_generate(model, adapter, device, max_new_tokens, sample, temperature, batch_size, dtype, seed):
        seen.update(sample=sample, temperature=temperature)
        return (lambda images, prompts: ["The image shows a dog."] * len(images)), "fake", None

    monkeypatch.setattr(gen, "model_generate", lambda *a, **k: pytest.fail("POVID loaded a model"))
    assert main(["data", "build", "povid", "--data-root", str(synthetic_root), "--out", str(tmp_path / "p"),
                 "--limit", "3", "--quiet"]) == 0
    assert len(json.loads((tmp_path / "p" / "povid_preference.json").read_text())) > 0
    monkeypatch.setattr(gen, "model_generate", fake_model_generate)
    assert main(["data", "build", "opa_dpo", "--data-root", str(synthetic_root), "--out", str(tmp_path / "o"),
                 "--limit", "3", "--quiet"]) == 0
    assert seen == {"sample": True, "temperature": 1.0}
    assert main(["data", "build", "ha-dpo", "--data-root", str(synthetic_root), "--out", str(tmp_path / "h"),
                 "--limit", "3", "--quiet", "--greedy"]) == 0
    assert seen["sample"] is False


def test_build_errors_are_one_line(synthetic_root, tmp_path, capsys):
    assert main(["data", "build", "hadpo", "--out", str(tmp_path)]) == 2
    assert "unknown data pipeline 'hadpo'; did you mean 'ha-dpo'" in capsys.readouterr().err
    assert main(["data", "build", "povid", "--data-root", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "COCO annotations missing" in capsys.readouterr().err
