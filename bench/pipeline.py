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
import torch.distributed as dist

from bench import preflight
from bench.benchmark import select_items
from bench.config import config_hash, merge, to_dict
from bench.data.method_data import build_method_data
from bench.errors import BenchError
from bench.eval.api import run_benchmark_api
from bench.eval.engine import merge_shards, run_benchmark
from bench.eval.vllm_backend import open_vllm_model, run_benchmark_vllm
from bench.fingerprint import digest_of, image_sha256, model_fingerprint
from bench.io import atomic_write_json
from bench.leaderboard.write import write_leaderboards
from bench.models.api import ApiConfig, is_api_model, open_api_model, training_refused
from bench.models.loading import load_for_eval, make_preprocessor, model_entry
from bench.plugins import load_plugins
from bench.predictions import read_predictions
from bench.records import file_hashes, new_record, score_integrity, update_record
from bench.registry import BENCHMARKS, METHODS
from bench.runtime import DTYPES, distributed_rank, is_main_process, resolve_device, resolve_dtype
from bench.samples import samples_path, write_samples
from bench.train.config import TrainConfig
from bench.train.loop import check_checkpoint_identity, run_identity, train



@dataclass
class EvalConfig:
    """batch_size: batch of the ``generate`` path (beam search, sampling; the greedy fast paths size their own
    batches, ``bench.eval.fastpath``), 1 = the reference path (``generate`` one item at a time); limit: the first N images of each benchmark with
    all their items (every question and split about them; None = all; ``bench.benchmark.select_items``) —
    recorded in run.json and the score file, and a limited score is its own leaderboard column;
    n_boot: bootstrap resamples for the 95% CIs; dtype: ``auto`` (bfloat16 on CUDA, float32 on CPU),
    ``bfloat16``, ``float16`` or ``float32`` — part of the predictions' cache key; api: endpoint settings of
    an ``openai:<name>`` model (bench.models.api; unused otherwise); backend: ``transformers`` (the engine,
    default) or ``vllm`` (``bench.eval.vllm_backend``, optional package; part of the cache key and recorded)."""

    batch_size: int = 8
    limit: int | None = None
    n_boot: int = 1000
    dtype: str = "auto"
    api: ApiConfig = field(default_factory=ApiConfig)
    backend: str = "transformers"

    def __post_init__(self) -> None:
        problems = []
        if self.backend not in preflight.BACKENDS:
            problems.append(f"backend={self.backend!r} must be one of {', '.join(preflight.BACKENDS)}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size!r} must be an integer >= 1")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            problems.append(f"limit={self.limit!r} must be an integer >= 1 (images) or none")
        if not isinstance(self.n_boot, int) or self.n_boot < 1:
            problems.append(f"n_boot={self.n_boot!r} must be an integer >= 1")
        if self.dtype != "auto" and self.dtype not in DTYPES:
            problems.append(f"dtype={self.dtype!r} must be one of auto, {', '.join(DTYPES)}")
        if problems:
            raise BenchError("eval: " + "; ".join(problems))


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


def resolve_methods(names: list[str]) -> list[str]:
    if names == ["all"] or names == "all":
        return METHODS.names()
    if names == ["base"] or names == "base":  # evaluate the untrained model only
        return []
    for n in names:
        METHODS.get(n)
    if len(set(names)) != len(names):
        raise BenchError(f"--methods {','.join(names)}: a method is named twice")
    return list(names)


def resolve_benchmarks(names: list[str], entry: Any) -> list[str]:
    if names == ["all"] or names == "all":
        defaults = getattr(entry, "default_benchmarks", None) or ["pope", "chair", "shr", "mhalubench"]
        return [b for b in defaults if b in BENCHMARKS]
    for n in names:
        BENCHMARKS.get(n)
    if len(set(names)) != len(names):
        raise BenchError(f"--benchmarks {','.join(names)}: a benchmark is named twice")
    return list(names)


def train_config_fields(cfg: Any) -> list[str]:
    """Names of the TrainConfig fields of a method config (``train`` for one-stage methods, ``stage1`` and
    ``stage2`` for POVID, …): settings such as ``--max-steps`` apply to every one of them."""
    return [f for f in vars(cfg) if isinstance(getattr(cfg, f), TrainConfig)]


def method_config(method_name: str, entry: Any, overrides: dict | None = None) -> Any:
    """Paper defaults → model scale profile → user overrides."""
    method = METHODS.get(method_name)()
    cfg = method.default_config()
    profile = getattr(entry, "train_profile", {}) or {}
    for key, value in profile.items():
        if key == "*train":  # applies to every TrainConfig field of the method config
            for fname in train_config_fields(cfg):
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


def train_method(method_name: str, entry: Any, mcfg_overrides: dict | None, out_dir: Path, data: str | None,
                 data_root: Path, seed: int, device: str, resume: bool = False, progress: bool = True,
                 force: bool = False) -> dict:
    if getattr(entry, "api_served", False):
        raise BenchError(training_refused(entry.spec))
    method, mcfg = method_config(method_name, entry, mcfg_overrides)
    data_build = None
    if data:
        data_path = Path(data)
    elif getattr(entry, "pipeline_source", None) and method.data_pipeline:
        data_path, data_build = build_method_data(method.data_pipeline, entry, data_root,
                                                  out_dir.parent / "_data" / method.data_pipeline, seed, device)
    else:
        data_path = method.default_data(data_root)
    if not data_path.exists():
        raise BenchError(f"{data_path}: training data not found (run `python -m bench data prepare` or pass --data)")
    records = method.load_records(data_path, mcfg)
    if not records:
        raise BenchError(f"{data_path}: no training records")
    # before run.json is (re)written: a folder trained from other data/config is refused, never relabelled
    check_checkpoint_identity(out_dir, run_identity(method, mcfg, records, seed), force)
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
                      progress=progress, force=force)
    updates = {"wall_s": {"train": round(time.perf_counter() - t0, 3)}, "train": summaries}
    if not main:
        return {**rec, "wall_s": {**rec["wall_s"], **updates["wall_s"]}, "train": summaries}
    return update_record(out_dir / "run.json", updates)


def eval_checkpoint(entry_name: str, adapter: str | None, method_label: str, benchmarks: list[str], out_dir: Path,
                    data_root: Path, seed: int, device: str, ecfg: EvalConfig, progress: bool = True) -> dict:
    rank, world = distributed_rank()
    if world > 1 and device.startswith("cuda"):
        device = f"cuda:{rank % torch.cuda.device_count()}"
    torch.manual_seed(seed)
    generate = run_benchmark
    if is_api_model(entry_name):  # an endpoint, not weights: HTTP requests instead of a forward (bench.eval.api)
        model, pre, generate = open_api_model(entry_name, ecfg.api, adapter), None, run_benchmark_api
        entry, fp = model, model.fingerprint()
        fp_parts = {"api": True, "dtype": "n/a (served)"}
    elif ecfg.backend == "vllm":  # vLLM's engine on the same folder (bench.eval.vllm_backend; optional package)
        entry, dtype = model_entry(entry_name), resolve_dtype(ecfg.dtype, device)
        model = open_vllm_model(entry, adapter, str(dtype).replace("torch.", ""), seed)
        pre, generate = model.pre, run_benchmark_vllm
        fp, fp_parts = model_fingerprint(entry, adapter, dtype, device, None, backend=model.backend)
    else:
        dtype = resolve_dtype(ecfg.dtype, device)
        model, pre, entry = load_for_eval(entry_name, adapter, dtype=dtype, device=device)
        fp, fp_parts = model_fingerprint(entry, adapter, dtype, device, model)
    run_path = out_dir / "run.json"
    if rank == 0:
        if not run_path.exists():
            atomic_write_json(run_path, new_record("eval", entry.name, method_label, ecfg, seed, device,
                                                   checkpoint=adapter or entry.name))
        update_record(run_path, {"checkpoint_fingerprint": fp, "fingerprint_parts": fp_parts, "eval": to_dict(ecfg),
                                 "dtype": fp_parts["dtype"], "adapter": adapter, "world_size": world})
    extra = (lambda: {"api": model.record()}) if getattr(entry, "api_served", False) else None  # after requests
    try:
        return eval_benchmarks(model, pre, benchmarks, out_dir, data_root, fp, device, ecfg, progress, generate,
                               rank, world, extra)
    finally:
        if ecfg.backend == "vllm":  # the vLLM engine gives its GPU memory back (a verify step may load a model)
            model.close()


def eval_benchmarks(model: Any, pre: Any, benchmarks: list[str], out_dir: Path, data_root: Path, fp: str,
                    device: str, ecfg: EvalConfig, progress: bool = True, generate: Any = None, rank: int = 0,
                    world: int = 1, extra_record: Any = None) -> dict:
    """Each benchmark: generate what is missing (``generate`` = the engine's ``run_benchmark`` unless given),
    score the stored predictions, record both in ``out_dir/run.json`` (plus ``extra_record()``, called after each
    benchmark). Returns {benchmark: score dict}."""
    generate = generate or run_benchmark
    run_path = out_dir / "run.json"
    results = {}
    for name in benchmarks:
        bench = BENCHMARKS.get(name)()
        pred_path = out_dir / "predictions" / f"{name}.jsonl"
        t0 = time.perf_counter()
        gen_stats = generate(model, pre, bench, data_root, pred_path, fp, device=device,
                             batch_size=ecfg.batch_size, limit=ecfg.limit, progress=progress and rank == 0,
                             rank=rank, world=world)
        if world > 1:
            gen_stats = _gather_stats(gen_stats)
            if rank != 0:
                continue
            merge_shards(bench, data_root, pred_path, fp, world, ecfg.limit)
        t_gen = time.perf_counter() - t0
        score = score_predictions(bench, pred_path, data_root, out_dir / "scores" / f"{name}.json", ecfg,
                                  gen_stats["skipped"], backend=ecfg.backend)
        results[name] = score
        update_record(run_path, {
            "benchmarks": {name: {**bench.protocol_header(), "predictions": f"predictions/{name}.jsonl",
                                  "scores": f"scores/{name}.json", "generation": gen_stats,
                                  "selection": score.get("selection")}},
            "data_sha256": file_hashes(bench.data_files(data_root), data_root),
            "wall_s": {f"eval/{name}": round(t_gen, 3)},
            **(extra_record() if extra_record is not None else {}),
        })
    return results


def _gather_stats(stats: dict) -> dict:
    """Barrier + merge per-rank generation statistics (rank 0 gets the union)."""
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
                      skipped: dict | None = None, backend: str = "transformers") -> dict:
    """Stored generations → scores/<benchmark>.json (recomputable without a model).

    ``ecfg.limit`` selects the images scored (:func:`bench.benchmark.select_items`); predictions of other items
    stay in the file. Duplicate lines: the last one wins (``bench/predictions.py``). The score file records the
    selection, the image-content digest of the scored items and an ``integrity`` hash of its own content, which
    the leaderboard checks (a hand-edited or relabelled score file is refused). A backend other than the default
    is labelled (``"backend": "vllm"``); default score files are unchanged.
    """
    if not pred_path.exists():
        raise BenchError(f"{pred_path}: no predictions file to score (generate it with `python -m bench eval`)")
    by_id, _ = read_predictions(pred_path)
    items = bench.items(data_root)
    chosen = select_items(items, ecfg.limit)
    item_ids = {it.id for it in chosen} if ecfg.limit is not None else None
    preds = [{"id": i, "text": r["text"]} for i, r in by_id.items()]
    result = bench.score(preds, data_root, n_boot=ecfg.n_boot, item_ids=item_ids,
                         cache_dir=score_path.parent.parent / "judge")
    images = sorted({it.image for it in chosen})
    hashes = [image_sha256(img) for img in images]
    result = {**bench.protocol_header(), **result,
              "selection": {"limit": ecfg.limit, "images": len(images), "items": len(chosen),
                            "images_sha256": digest_of(hashes)}}
    if backend != "transformers":
        result["backend"] = backend
    if skipped:
        sk = result.setdefault("skipped", {"count": 0, "reasons": {}})
        sk.setdefault("reasons", {}).update({k: v for k, v in skipped.items()})
        sk["count"] = len(sk["reasons"])
    result["integrity"] = score_integrity(result)
    atomic_write_json(score_path, result)
    write_samples(samples_path(score_path.parent.parent, bench.name),
                  bench.sample_rows(result, preds, items))
    return result


def write_leaderboard(out: Path) -> dict:
    return write_leaderboards(out)


def train_data_problems(method_name: str, entry: Any, data: str | None, data_root: Path) -> list[str]:
    """Preflight of one method's training data (what :func:`train_method` will read)."""
    method = METHODS.get(method_name)()
    if data:
        return [] if Path(data).is_file() else [f"{data}: training data file not found (--data)"]
    if getattr(entry, "pipeline_source", None) and method.data_pipeline:
        return []  # built from the model's own generations on the data root (checked by the data root)
    path = method.default_data(data_root)
    return [] if path.exists() else [f"{path}: training data for {method_name} not found (run `python -m bench data"
                                     f" prepare`, `python -m bench data fetch {method_name}-data`, or pass --data)"]


def check_method_overrides(overrides: dict[str, Any], methods: list[str], entry: Any) -> None:
    """``method.<name>.*`` overrides must name a method that runs, with keys and values its config accepts —
    checked before any work starts."""
    for name, values in overrides.items():
        METHODS.get(name)  # unknown name → error with did-you-mean
        if name not in methods:
            raise BenchError(f"method.{name}.*: overrides given for {name}, which is not run"
                             f" (--methods {','.join(methods)})")
        method_config(name, entry, values)


def run(cfg: RunConfig, progress: bool = True, resume: bool = True, force: bool = False) -> dict:
    load_plugins()
    entry = model_entry(cfg.model)
    device = resolve_device(cfg.device)
    methods = resolve_methods(cfg.methods)
    if getattr(entry, "api_served", False) and methods:
        raise BenchError(training_refused(cfg.model) + " (pass --methods base)")
    benchmarks = resolve_benchmarks(cfg.benchmarks, entry)
    check_method_overrides(cfg.method, methods, entry)
    data_root = data_root_for(entry, cfg.data_root)
    out = Path(cfg.out)
    preflight.check([*preflight.output_problems(out), *preflight.model_problems(entry),
                     *preflight.benchmark_problems(benchmarks, data_root),
                     *preflight.backend_problems(cfg.eval.backend, benchmarks,
                                                 [f"{cfg.out}/{entry.name}/{m}/checkpoint" for m in methods]),
                     *[p for m in methods for p in train_data_problems(m, entry, None, data_root)]], "bench run")
    model_dir = out / entry.name
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"config_hash": config_hash(cfg), "methods": {}, "model_dir": str(model_dir),
                               "scores": {}}
    summary["scores"]["base"] = eval_checkpoint(cfg.model, None, "base", benchmarks, model_dir / "base", data_root,
                                                cfg.seed, device, cfg.eval, progress)
    for name in methods:
        mdir = model_dir / name
        train_method(name, entry, cfg.method.get(name), mdir, None, data_root, cfg.seed, device, resume=resume,
                     progress=progress, force=force)
        summary["scores"][name] = eval_checkpoint(cfg.model, str(mdir / "checkpoint"), name, benchmarks, mdir,
                                                  data_root, cfg.seed, device, cfg.eval, progress)
        summary["methods"][name] = str(mdir)
    if not is_main_process():  # under `accelerate launch` only rank 0 writes records and tables
        summary["wall_s"] = round(time.perf_counter() - t0, 1)
        return summary
    for d in [model_dir / "base", *[model_dir / m for m in methods]]:
        update_record(d / "run.json", {"run": {"config": to_dict(cfg), "config_hash": config_hash(cfg)}})
    summary["leaderboard"] = {k: str(v) for k, v in write_leaderboard(out).items()}
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    return summary
