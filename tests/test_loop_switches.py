"""Loop switches that reproduce reference runs: ``scheduler_step_every`` (OPA-DPO steps its scheduler once per
outer rollout step of two updates) and ``sync_gradients`` (OPA-DPO runs every backward in ``no_sync``). Run as
``python -m tests.test_loop_switches MODEL RECORDS OUT`` it is the worker ``accelerate launch`` starts per process."""

import json
import sys
from pathlib import Path

import pytest
import torch

from tests.test_loop_distributed import _accelerate_launch, _loader


def _reference_lrs(peak: float, warmup: int, outer_steps: int, updates_per_outer: int) -> list[float]:
    """The OPA-DPO seed's pattern (``rl_trainer.py``: ``step``/``train``): a cosine schedule over the outer steps,
    stepped after each outer step, which holds ``updates_per_outer`` optimizer updates; lr seen by each update."""
    from transformers import get_cosine_schedule_with_warmup

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    sched = get_cosine_schedule_with_warmup(opt, warmup, outer_steps)
    lrs = []
    for _ in range(outer_steps):
        for _ in range(updates_per_outer):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
        sched.step()
    return lrs


def _lrs(out: Path, stage: str = "dpo") -> list[float]:
    return [json.loads(x)["lr"] for x in (out / "checkpoint" / stage / "log.jsonl").read_text().splitlines()]


def test_scheduler_step_every_two_gives_the_opa_dpo_seeds_staircase_learning_rates(tiny_llava_loader,
                                                                                   make_preference_records, tmp_path):
    from bench.train.loop import train
    from methods.dpo import DpoMethod
    from tests.test_methods import small_config

    records = make_preference_records(2)
    cfg = small_config("dpo", batch_size=1, max_steps=10, warmup_steps=2, lr=1e-3, save_every=0,
                       scheduler_step_every=2)
    train(DpoMethod(), cfg, tiny_llava_loader, records, tmp_path / "every2", seed=0, progress=False)
    expected = _reference_lrs(1e-3, warmup=2, outer_steps=5, updates_per_outer=2)
    assert _lrs(tmp_path / "every2") == pytest.approx(expected, rel=1e-12, abs=0)
    assert expected[0] == expected[1] == 0.0 and expected[2] == expected[3] == pytest.approx(5e-4)  # warmup: 4 updates


def test_opa_dpo_defaults_step_the_schedule_once_per_two_updates_with_five_warmup_steps():
    from methods.opa_dpo import OpaDpoConfig

    cfg = OpaDpoConfig()
    assert cfg.train.scheduler_step_every == 2 and cfg.train.warmup_steps == 5 and cfg.train.sync_gradients
    assert cfg.sft.scheduler_step_every == 1


def _worker(model_dir: Path, records_path: Path, out: Path) -> None:
    """Per process: DPO 3 steps at batch 1 with and without gradient synchronisation; each process saves the
    trainable weights it ends with."""
    import os

    import bench.train.loop as loop
    from bench.data.preference import PreferenceRecord
    from methods.dpo import DpoMethod
    from tests.test_methods import small_config

    records = [PreferenceRecord.from_json(json.loads(line)) for line in records_path.read_text().splitlines()]
    rank = int(os.environ["RANK"])
    for sync in (True, False):
        cfg = small_config("dpo", batch_size=1, max_steps=3, save_every=0, sync_gradients=sync)
        seen = {}
        real = loop._save_state

        def keep(accelerator, model, *args):  # every process calls it (collective) at the end of the stage
            seen.update(loop._trainable_state(model))
            return real(accelerator, model, *args)

        loop._save_state = keep
        try:
            loop.train(DpoMethod(), cfg, _loader(model_dir), records, out / f"sync-{sync}", seed=0, progress=False)
        finally:
            loop._save_state = real
        torch.save(seen, out / f"sync-{sync}-rank{rank}.pt")


def test_unsynchronised_processes_diverge_and_the_main_process_weights_are_saved(tiny_llava_dir,
                                                                               make_preference_records, tmp_path):
    """``sync_gradients=False`` (OPA-DPO's seed): two gloo processes never all-reduce, so their weights differ after
    training and the checkpoint holds the main process's; with the default they stay identical."""
    records = make_preference_records(4)
    records_path = tmp_path / "records.jsonl"
    records_path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
    _accelerate_launch(["-m", "tests.test_loop_switches", str(tiny_llava_dir), str(records_path), str(tmp_path)])
    from safetensors.torch import load_file

    for sync in (True, False):
        r0, r1 = (torch.load(tmp_path / f"sync-{sync}-rank{r}.pt") for r in (0, 1))
        assert r0.keys() == r1.keys() and r0
        same = all(torch.equal(r0[k], r1[k]) for k in r0)
        assert same == sync, f"sync_gradients={sync}: processes {'diverged' if not same else 'stayed equal'}"
        saved = load_file(str(tmp_path / f"sync-{sync}" / "checkpoint" / "dpo" / "adapter" / "adapter_model.safetensors"))
        lora = {k.replace(".default", ""): v for k, v in r0.items() if "lora_" in k}
        assert lora and lora.keys() == saved.keys()
        for k, v in lora.items():
            torch.testing.assert_close(saved[k], v, atol=0, rtol=0)

if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
