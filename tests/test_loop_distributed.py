"""Data-parallel training: the shipped accelerate configs parse, two gloo processes on the CPU train through
the CLI and leave one checkpoint, and a 2-process run with batch 1 per process equals a 1-process run with
batch 2 (same global batch: sharding, gradient all-reduce and metric averaging are right) and resumes
step for step. Run as ``python -m tests.test_loop_distributed MODEL RECORDS OUT`` it is the worker that
``accelerate launch`` starts in each process."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs" / "accelerate"
EXPECTED = {"single_gpu.yaml": "NO", "multi_gpu.yaml": "MULTI_GPU", "deepspeed_zero2.yaml": "DEEPSPEED",
            "deepspeed_zero3.yaml": "DEEPSPEED", "fsdp_bf16.yaml": "FSDP"}
LAUNCH_TIMEOUT_S = 240


def _launch_env() -> dict:
    """CPU-only environment for ``accelerate launch`` (gloo, no GPU even where one exists)."""
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _accelerate_launch(args: list[str]) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("accelerate.commands.launch") is None:
        pytest.skip("accelerate's launcher (accelerate.commands.launch) is not installed")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "multi_gpu.yaml"),
           "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(_free_port()), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=_launch_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert proc.returncode == 0, f"accelerate launch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_accelerate_config_is_accepted_by_accelerates_launcher(name):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    path = CONFIGS / name
    cfg = load_config_from_file(str(path))
    assert cfg.distributed_type.value == EXPECTED[name]
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(
        ["--config_file", str(path), "-m", "bench", "train", "--method", "dpo"]))
    assert args.mixed_precision == "bf16"
    if name.startswith("deepspeed"):
        assert args.use_deepspeed and args.zero_stage == int(name[-6])
    assert args.use_fsdp == (name == "fsdp_bf16.yaml")
    assert args.multi_gpu == (name == "multi_gpu.yaml")


def test_two_process_cli_run_finishes_and_the_main_process_alone_writes_one_checkpoint(tmp_path):
    out = tmp_path / "run"
    _accelerate_launch(["-m", "bench", "train", "--method", "dpo", "--model", "tiny-llava", "--max-steps", "2",
                        "--out", str(out), "--device", "cpu", "--quiet", "--exact-out"])
    stage = out / "checkpoint" / "dpo"
    assert (stage / "DONE").exists() and (stage / "adapter" / "adapter_model.safetensors").exists()
    assert [p.name for p in (out / "checkpoint").iterdir() if p.is_dir()] == ["dpo"]
    rows = [json.loads(line) for line in (stage / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2], "each step must be logged once, by the main process"
    assert not list(out.rglob("*.tmp")), "no half-written files"
    state = torch.load(stage / "state.pt", weights_only=False)
    assert state["step"] == 2 and len(state["rng"]["per_process"]) == 2
    assert json.loads((out / "run.json").read_text())["train"]["dpo"]["processes"] == 2


def _dpo_config(batch_size: int, max_steps: int = 4, save_every: int = 2):
    from tests.test_methods import small_config

    return small_config("dpo", batch_size=batch_size, max_steps=max_steps, save_every=save_every)


def _loader(model_dir: Path):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from bench.models.llava import make_preprocessor

    def load():
        model = LlavaForConditionalGeneration.from_pretrained(model_dir)
        return model, make_preprocessor(AutoProcessor.from_pretrained(model_dir), model.config)

    return load


class _Killed(Exception):
    pass


def _worker(model_dir: Path, records_path: Path, out: Path) -> None:
    """Per process: an uninterrupted 4-step run (``full``), one killed during step 3 (``part``, checkpoint
    at step 2), then its resume — batch 1 per process."""
    import bench.train.loop as loop
    from bench.data.preference import PreferenceRecord
    from methods.dpo import DpoMethod

    records = [PreferenceRecord.from_json(json.loads(line)) for line in records_path.read_text().splitlines()]
    cfg, load = _dpo_config(batch_size=1), _loader(model_dir)
    loop.train(DpoMethod(), cfg, load, records, out / "full", seed=0, progress=False)
    real, calls = loop._peak_memory, {"n": 0}

    def kill_in_step_3(device):  # called once per step on every process, after the collectives
        calls["n"] += 1
        if calls["n"] == 3:
            raise _Killed()
        return real(device)

    loop._peak_memory = kill_in_step_3
    try:
        loop.train(DpoMethod(), cfg, load, records, out / "part", seed=0, progress=False)
        raise AssertionError("the run was not killed")
    except _Killed:
        pass
    finally:
        loop._peak_memory = real
    loop.train(DpoMethod(), cfg, load, records, out / "part", seed=0, resume=True, progress=False)


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "checkpoint" / "dpo" / "log.jsonl").read_text().splitlines()]


def _adapter(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "checkpoint" / "dpo" / "adapter" / "adapter_model.safetensors"))


def test_two_processes_at_batch_1_equal_one_process_at_batch_2_and_resume_step_for_step(
        tiny_llava_dir, make_preference_records, tmp_path):
    from bench.train.loop import train
    from methods.dpo import DpoMethod

    records = make_preference_records(6)
    records_path = tmp_path / "records.jsonl"
    records_path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
    _accelerate_launch(["-m", "tests.test_loop_distributed", str(tiny_llava_dir), str(records_path), str(tmp_path)])
    train(DpoMethod(), _dpo_config(batch_size=2), _loader(tiny_llava_dir), records, tmp_path / "single", seed=0,
          progress=False)

    single, ddp, resumed = _log(tmp_path / "single"), _log(tmp_path / "full"), _log(tmp_path / "part")
    assert [r["step"] for r in ddp] == [r["step"] for r in resumed] == [1, 2, 3, 4]
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins"):
        assert [r[key] for r in ddp] == pytest.approx([r[key] for r in single], abs=1e-5), key
    assert [r["grad_norm"] for r in ddp] == pytest.approx([r["grad_norm"] for r in single], rel=1e-4)
    assert any(r["loss"] != ddp[0]["loss"] for r in ddp), "the loss never moved: nothing was trained"
    a_single, a_ddp, a_resumed = _adapter(tmp_path / "single"), _adapter(tmp_path / "full"), _adapter(tmp_path / "part")
    assert a_single.keys() == a_ddp.keys() == a_resumed.keys()
    for k in a_ddp:
        torch.testing.assert_close(a_ddp[k], a_single[k], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a_resumed[k], a_ddp[k], atol=1e-6, rtol=0)
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in ddp], abs=1e-6)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
