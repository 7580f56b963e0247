"""Bad input gives one clear line on stderr and a non-zero exit, without a traceback."""

import subprocess
import sys


def _bench(*args, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def test_unknown_method_suggests_a_name():
    out = _bench("run", "--methods", "hsa_dpo", "--model", "llava-7b", "--benchmarks", "pope")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "unknown method 'hsa_dpo'" in out.stderr


def test_unknown_override_key_is_rejected():
    out = _bench("run", "--model", "tiny-llava", "eval.limt=3")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "limt" in out.stderr and "known keys" in out.stderr


def test_unknown_model_name_is_reported():
    out = _bench("eval", "--model", "llava-7", "--benchmarks", "pope")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "unknown model 'llava-7'" in out.stderr and "llava-7b" in out.stderr


def test_offline_hub_model_fails_fast_with_instructions(tmp_path):
    out = _bench("eval", "--model", "llava-7b", "--benchmarks", "pope", "--out", str(tmp_path),
                 env={"HF_HOME": str(tmp_path / "hf")})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "huggingface-cli download llava-hf/llava-1.5-7b-hf" in out.stderr
    assert "BENCH_MODEL_LLAVA_7B" in out.stderr
