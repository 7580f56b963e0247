"""Every registered method trains on the tiny llava on CPU: exactly the intended parameters train (LoRA,
plus the projector / vision LoRA where the method's recipe says so), every one of them changes, everything
else stays bit-identical, losses are finite, and a killed run resumed with ``resume=True`` reproduces the
uninterrupted one step for step (every stage's log.jsonl)."""

import json
import math

import pytest
import torch

import methods  # noqa: F401  (registers the in-tree methods)
from bench.config import merge
from bench.registry import METHODS

SMALL = {"lr": 1e-3, "max_steps": 3, "batch_size": 2, "grad_accum": 1, "max_length": 256, "lora_r": 4,
         "lora_alpha": 8, "warmup_ratio": 0.0, "warmup_steps": None, "save_every": 2}


def small_config(name: str, **extra):
    cfg = METHODS.get(name)().default_config()
    for fname in [f for f in vars(cfg) if type(getattr(cfg, f)).__name__ == "TrainConfig"]:
        cfg = merge(cfg, {fname: {**SMALL, **extra}})
    return cfg


def stage_logs(out) -> dict[str, list[dict]]:
    ckpt = out / "checkpoint"
    return {p.parent.name: [json.loads(x) for x in p.read_text().splitlines()] for p in sorted(ckpt.glob("*/log.jsonl"))}


class Kill(Exception):
    pass


def run(name, loader, records, out, monkeypatch=None, kill_at=None, resume=False, snapshots=None):
    """Train ``name``; ``kill_at=(stage, step)`` raises right after that step's log line (the periodic
    checkpoint before it survives); ``snapshots`` collects per-stage (before, after, requires_grad) params."""
    import bench.train.loop as loop

    if kill_at is not None:
        real_append = loop.append_jsonl

        def append(path, rows):
            real_append(path, rows)
            if path.parent.name == kill_at[0] and rows and rows[0].get("step") == kill_at[1]:
                raise Kill()

        monkeypatch.setattr(loop, "append_jsonl", append)
    if snapshots is not None:
        real_stage = loop.train_stage

        def train_stage(method, stage, mcfg, model, *a, **kw):
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            result = real_stage(method, stage, mcfg, model, *a, **kw)
            trainable = {n for n, p in model.named_parameters() if p.requires_grad}
            after = {n: p.detach().clone() for n, p in model.named_parameters()}
            snapshots[stage.name] = (before, after, trainable, getattr(mcfg, stage.config_key))
            return result

        monkeypatch.setattr(loop, "train_stage", train_stage)
    try:
        return loop.train(METHODS.get(name)(), small_config(name), loader, records, out, seed=0, resume=resume,
                          progress=False)
    finally:
        if monkeypatch is not None:
            monkeypatch.undo()


def expected_trainable(name: str, cfg) -> bool:
    """Whether parameter ``name`` (PeftModel naming) should train under TrainConfig ``cfg``."""
    if "lora_" in name:
        return "language_model" in name or cfg.lora_vision
    return cfg.train_projector and "multi_modal_projector" in name


@pytest.mark.parametrize("name", METHODS.names())
def test_method_trains_exactly_its_parameters_and_resumes_step_for_step(name, tiny_llava_loader,
                                                                        make_preference_records, tmp_path,
                                                                        monkeypatch):
    records = make_preference_records(4)
    snapshots: dict = {}
    summary = run(name, tiny_llava_loader, records, tmp_path / "full", monkeypatch, snapshots=snapshots)
    stages = [s.name for s in METHODS.get(name)().stages(small_config(name))]
    assert list(summary) == stages == list(snapshots)
    full = stage_logs(tmp_path / "full")
    for stage in stages:
        assert [row["step"] for row in full[stage]] == [1, 2, 3]
        assert all(math.isfinite(row["loss"]) and math.isfinite(row["grad_norm"]) for row in full[stage])
        before, after, trainable, cfg = snapshots[stage]
        assert trainable == {n for n in before if expected_trainable(n, cfg)}, f"{stage}: wrong trainable set"
        unchanged = [n for n in trainable if torch.equal(before[n], after[n])]
        assert not unchanged, f"{stage}: trainable parameters that never moved: {unchanged[:4]}"
        moved = [n for n in before if n not in trainable and not torch.equal(before[n], after[n])]
        assert not moved, f"{stage}: frozen parameters changed: {moved[:4]}"
        assert any("lora_B" in n and "language_model" in n for n in trainable)
    # merged result: base weights of embeddings / lm_head / norms never change; the vision tower only
    # through OPA's vision LoRA
    from bench.models.loading import apply_checkpoint

    base, _ = tiny_llava_loader()
    merged = apply_checkpoint(tiny_llava_loader()[0], tmp_path / "full" / "checkpoint")
    b, m = base.state_dict(), merged.state_dict()
    changed = {k for k in b if not torch.equal(b[k], m[k])}
    assert not any("embed_tokens" in k or "lm_head" in k or "norm" in k for k in changed)
    vision_lora = any(snapshots[s][3].lora_vision for s in stages)
    assert any("vision_tower" in k for k in changed) == vision_lora
    projector = any(snapshots[s][3].train_projector or snapshots[s][3].lora_vision for s in stages)
    assert any("multi_modal_projector" in k for k in changed) == projector

    # killed after step 3 of the last stage (checkpoint at step 2), then resumed with the same config
    last = stages[-1]
    with pytest.raises(Kill):
        run(name, tiny_llava_loader, records, tmp_path / "part", monkeypatch, kill_at=(last, 3))
    assert not (tmp_path / "part" / "checkpoint" / last / "DONE").exists()
    run(name, tiny_llava_loader, records, tmp_path / "part", resume=True)
    resumed = stage_logs(tmp_path / "part")
    for stage in stages:
        assert [r["step"] for r in resumed[stage]] == [1, 2, 3]
        assert [r["loss"] for r in resumed[stage]] == pytest.approx([r["loss"] for r in full[stage]], abs=1e-6)
        assert [r["grad_norm"] for r in resumed[stage]] == pytest.approx([r["grad_norm"] for r in full[stage]],
                                                                         rel=1e-5)
