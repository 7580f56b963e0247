"""The verbs composed: train a method, evaluate a checkpoint, score, and the full ``run``.

data → (train) → checkpoint → predictions (cached) → scores → leaderboard; each arrow is one
function here calling one module, and each leaves a file on disk (see docs/CONVENTIONS.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.config import config_hash, from_dict, merge, to_dict
from bench.errors import BenchError
from bench.io import atomic_write_json, read_jsonl, sha256_file, sha256_text
from bench.records import file_hashes, new_record, update_record
from bench.registry import BENCHMARKS, METHODS


@dataclass
class EvalConfig:
    """batch_size: generation batch (1 = reference path); limit: first N items per benchmark
    (None = all); n_boot: bootstrap resamples for the 95% CIs."""

    batch_size: int = 8
    limit: int | None = None
    n_boot: int = 1000


@dataclass
class RunConfig:
    """The resolved configuration of a ``bench run`` (hashed into every run record).

    method: per-method overrides, e.g. ``{"dpo": {"beta": 0.2, "train": {"lr": 1e-4}}}``
    (CLI: ``method.dpo.train.lr=1e-4``).
    """

    model: str = "tiny-llava"
    methods: list[str] = field(default_factory=lambda: ["all"])
    benchmarks: list[str] = field(default_factory=lambda: ["all"])
    out: str = "runs"
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    method: dict[str, dict] = field(default_factory=dict)


def load_plugins() -> None:
    """Import in-tree registrations (methods, metrics, models)."""
    import bench.models  # noqa: F401
    import bench.models.loading  # noqa: F401
    import methods  # noqa: F401
    import metrics  # noqa: F401
    try:
        import bench.judges  # noqa: F401
    except ModuleNotFoundError:
        pass


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_methods(names: list[str]) -> list[str]:
    if names == ["all"] or names == "all":
        return METHODS.names()
    for n in names:
        METHODS.get(n)
    return list(names)


def resolve_benchmarks(names: list[str], entry: Any) -> list[str]:
    if names == ["all"] or names == "all":
        defaults = getattr(entry, "default_benchmarks", None) or ["pope", "chair", "shr", "mhalubench"]
        return [b for b in defaults if b in BENCHMARKS]
    for n in names:
        BENCHMARKS.get(n)
    return list(names)


def method_config(method_name: str, entry: Any, overrides: dict | None = None) -> Any:
    """Paper defaults → model scale profile → user overrides."""
    method = METHODS.get(method_name)()
    cfg = method.default_config()
    profile = getattr(entry, "train_profile", {}) or {}
    for key, value in profile.items():
        if key == "*train":  # applies to every TrainConfig field of the method config
            for fname in [f for f in vars(cfg) if type(getattr(cfg, f)).__name__ == "TrainConfig"]:
                cfg = merge(cfg, {fname: value}, where=f"profile[{entry.name}]")
        elif key == method_name:
            cfg = merge(cfg, value, where=f"profile[{entry.name}].{method_name}")
    if overrides:
        cfg = merge(cfg, overrides, where=f"method.{method_name}")
    return method, cfg


def data_root_for(entry: Any, override: str | None) -> Path:
    if override:
        return Path(override)
    return Path(entry.default_data_root())


def checkpoint_fingerprint(model_name: str, adapter: str | Path | None) -> str:
    parts = [model_name]
    if adapter:
        for f in sorted(Path(adapter).rglob("*.safetensors")):
            if "ref_logps" in f.name:
                continue
            parts.append(sha256_file(f))
    return sha256_text("|".join(parts))[:16]


def is_main_process() -> bool:
    """True on the process that writes run records: rank 0 under ``accelerate launch``/torchrun (``RANK``),
    and always when not launched distributed (no ``RANK`` set)."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


def train_method(method_name: str, entry: Any, mcfg_overrides: dict | None, out_dir: Path, data: str | None,
                 data_root: Path, seed: int, device: str, resume: bool = False, progress: bool = True) -> dict:
    from bench.models.loading import make_preprocessor
    from bench.train.loop import train

    method, mcfg = method_config(method_name, entry, mcfg_overrides)
    data_build = None
    if data:
        data_path = Path(data)
    elif getattr(entry, "pipeline_source", None) and method.data_pipeline:
        from bench.data.method_data import build_method_data

        data_path, data_build = build_method_data(method.data_pipeline, entry, data_root,
                                                  out_dir.parent / "_data" / method.data_pipeline, seed, device)
    else:
        data_path = method.default_data(data_root)
    if not data_path.exists():
        raise BenchError(f"{data_path}: training data not found (run `python -m bench data prepare` or pass --data)")
    records = method.load_records(data_path, mcfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    rec = new_record("train", entry.name, method_name, mcfg, seed, device, checkpoint=str(out_dir / "checkpoint"))
    rec["data_sha256"] = file_hashes([data_path])
    rec["data"] = {"path": str(data_path), "records": len(records)}
    if data_build is not None:
        rec["data"]["pipeline"] = {k: data_build[k] for k in ("method", "source", "feedback", "generator", "seed",
                                                               "config_hash", "items", "kept", "dropped",
                                                               "dropped_reasons", "outputs", "wall_s")}
    main = is_main_process()  # under `accelerate launch` only rank 0 writes run.json
    if main:
        atomic_write_json(out_dir / "run.json", rec)

    def base_loader():
        model, processor = entry.load(dtype=torch.float32, device="cpu")
        return model, make_preprocessor(processor, model.config)

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    summaries = train(method, mcfg, base_loader, records, out_dir, seed, resume=resume, device=device,
                      progress=progress)
    updates = {"wall_s": {"train": round(time.perf_counter() - t0, 3)}, "train": summaries}
    if not main:
        return {**rec, "wall_s": {**rec["wall_s"], **updates["wall_s"]}, "train": summaries}
    return update_record(out_dir / "run.json", updates)


def eval_checkpoint(entry_name: str, adapter: str | None, method_label: str, benchmarks: list[str], out_dir: Path,
                    data_root: Path, seed: int, device: str, ecfg: EvalConfig, progress: bool = True) -> dict:
    from bench.eval.engine import merge_shards, run_benchmark
    from bench.models.loading import load_for_eval

    rank, world = distributed_rank()
    if world > 1 and device.startswith("cuda"):
        device = f"cuda:{rank % torch.cuda.device_count()}"
    torch.manual_seed(seed)
    model, pre, entry = load_for_eval(entry_name, adapter, device=device)
    fp = checkpoint_fingerprint(entry.name, adapter)
    run_path = out_dir / "run.json"
    if rank == 0:
        if not run_path.exists():
            atomic_write_json(run_path, new_record("eval", entry.name, method_label, ecfg, seed, device,
                                                   checkpoint=adapter or entry.name))
        update_record(run_path, {"checkpoint_fingerprint": fp, "eval": to_dict(ecfg), "adapter": adapter,
                                 "world_size": world})
    results = {}
    for name in benchmarks:
        bench = BENCHMARKS.get(name)()
        pred_path = out_dir / "predictions" / f"{name}.jsonl"
        t0 = time.perf_counter()
        gen_stats = run_benchmark(model, pre, bench, data_root, pred_path, fp, device=device,
                                  batch_size=ecfg.batch_size, limit=ecfg.limit, progress=progress and rank == 0,
                                  rank=rank, world=world)
        if world > 1:
            gen_stats = _gather_stats(gen_stats)
            if rank != 0:
                continue
            merge_shards(bench, data_root, pred_path, fp, world, ecfg.limit)
        t_gen = time.perf_counter() - t0
        score = score_predictions(bench, pred_path, data_root, out_dir / "scores" / f"{name}.json", ecfg,
                                  gen_stats["skipped"], limit=ecfg.limit)
        results[name] = score
        update_record(run_path, {
            "benchmarks": {name: {**bench.protocol_header(), "predictions": f"predictions/{name}.jsonl",
                                  "scores": f"scores/{name}.json", "generation": gen_stats}},
            "data_sha256": file_hashes(bench.data_files(data_root), data_root),
            "wall_s": {f"eval/{name}": round(t_gen, 3)},
        })
    return results


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) under ``accelerate launch``/torchrun; initialises the process group."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _gather_stats(stats: dict) -> dict:
    """Barrier + merge per-rank generation statistics (rank 0 gets the union)."""
    import torch.distributed as dist

    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, stats)
    merged = {"items": 0, "cached": 0, "generated": 0, "skipped": {}, "wall_s": 0.0, "timings_s": {}}
    for st in gathered:
        for key in ("items", "cached", "generated"):
            merged[key] += st[key]
        merged["skipped"].update(st["skipped"])
        merged["wall_s"] = max(merged["wall_s"], st["wall_s"])
        for k, v in st["timings_s"].items():
            merged["timings_s"][k] = merged["timings_s"].get(k, 0.0) + v
    return merged


def score_predictions(bench: Any, pred_path: Path, data_root: Path, score_path: Path, ecfg: EvalConfig,
                      skipped: dict | None = None, limit: int | None = None) -> dict:
    """Stored generations → scores/<benchmark>.json (recomputable without a model)."""
    preds = read_jsonl(pred_path, repair=True) if pred_path.exists() else []
    preds = [{"id": p["id"], "text": p["text"]} for p in preds]
    kwargs: dict[str, Any] = {}
    import inspect

    params = inspect.signature(bench.score).parameters
    if "n_boot" in params:
        kwargs["n_boot"] = ecfg.n_boot
    if "limit" in params and limit is not None:
        kwargs["limit"] = limit
    if "cache_dir" in params:
        kwargs["cache_dir"] = score_path.parent.parent / "judge"
    result = bench.score(preds, data_root, **kwargs)
    result = {**bench.protocol_header(), **result}
    if skipped:
        sk = result.setdefault("skipped", {"count": 0, "reasons": {}})
        sk.setdefault("reasons", {}).update({k: v for k, v in skipped.items()})
        sk["count"] = len(sk["reasons"])
    atomic_write_json(score_path, result)
    return result


def write_leaderboard(out: Path) -> dict:
    from bench.leaderboard import write_leaderboards

    return write_leaderboards(out)


def run(cfg: RunConfig, progress: bool = True, resume: bool = True) -> dict:
    from bench.models.loading import model_entry

    load_plugins()
    entry = model_entry(cfg.model)
    device = resolve_device(cfg.device)
    methods = resolve_methods(cfg.methods)
    benchmarks = resolve_benchmarks(cfg.benchmarks, entry)
    data_root = data_root_for(entry, cfg.data_root)
    out = Path(cfg.out)
    model_dir = out / entry.name
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"config_hash": config_hash(cfg), "methods": {}}
    eval_checkpoint(cfg.model, None, "base", benchmarks, model_dir / "base", data_root, cfg.seed, device, cfg.eval,
                    progress)
    for name in methods:
        mdir = model_dir / name
        train_method(name, entry, cfg.method.get(name), mdir, None, data_root, cfg.seed, device, resume=resume,
                     progress=progress)
        eval_checkpoint(cfg.model, str(mdir / "checkpoint"), name, benchmarks, mdir, data_root, cfg.seed, device,
                        cfg.eval, progress)
        summary["methods"][name] = str(mdir)
    if not is_main_process():  # under `accelerate launch` only rank 0 writes records and tables
        summary["wall_s"] = round(time.perf_counter() - t0, 1)
        return summary
    for d in [model_dir / "base", *[model_dir / m for m in methods]]:
        update_record(d / "run.json", {"run": {"config": to_dict(cfg), "config_hash": config_hash(cfg)}})
    summary["leaderboard"] = {k: str(v) for k, v in write_leaderboard(out).items()}
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    return summary
