"""The Python API: ``bench.evaluate``, ``bench.train``, ``bench.leaderboard`` (re-exported lazily by ``bench``).

The same verbs as the command line, with keyword arguments and return values instead of printed text;
every call leaves the same files on disk (run records, predictions, per-sample logs, scores) so the
results can be re-scored, shown and put on a leaderboard exactly like a CLI run::

    import bench
    scores = bench.evaluate(model="tiny-llava", benchmarks=["pope"], out="runs", limit=30)
    scores["pope"]["metrics"]["random/accuracy"]          # the score file's content, per benchmark
    rec = bench.train(method="dpo", model="tiny-llava", out="runs", max_steps=2)
    df = bench.leaderboard("runs")                         # pandas.DataFrame, one row per (run, metric)

``evaluate`` accepts a registered model name, a local llava-hf directory, or an already-loaded model with
its processor (``model=<LlavaForConditionalGeneration>, processor=<LlavaProcessor>``; then ``data_root``
must be given, as no model entry says where its benchmark data lives). For a loaded model the prediction
cache key is a hash of its weights (every parameter and buffer), so changed weights are never scored with
stale generations.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import torch

from bench.config import merge, to_dict
from bench.errors import BenchError
from bench.fingerprint import checkpoint_fingerprint, dtype_name, state_fingerprint
from bench.io import atomic_write_json
from bench.leaderboard.frame import LEADERBOARD_COLUMNS, leaderboard  # noqa: F401  (the API's third verb)
from bench.models.llava import LlavaPreprocessor, make_preprocessor
from bench.models.loading import model_entry
from bench.pipeline import (EvalConfig, data_root_for, eval_benchmarks, eval_checkpoint, resolve_benchmarks,
                            train_config_fields, train_method)
from bench.plugins import load_plugins
from bench.records import new_record, update_record
from bench.registry import METHODS
from bench.runtime import resolve_device


def _eval_config(limit: int | None, batch_size: int | None, n_boot: int | None):
    updates = {k: v for k, v in (("limit", limit), ("batch_size", batch_size), ("n_boot", n_boot)) if v is not None}
    return merge(EvalConfig(), updates, where="bench.evaluate") if updates else EvalConfig()


def evaluate(model: Any = "tiny-llava", benchmarks: Sequence[str] | str = "all", out: str | Path = "runs", *,
             processor: Any = None, adapter: str | Path | None = None, label: str | None = None,
             data_root: str | Path | None = None, limit: int | None = None, batch_size: int | None = None,
             n_boot: int | None = None, seed: int = 0, device: str = "auto", progress: bool = False) -> dict[str, dict]:
    """Evaluate a model on benchmarks; returns ``{benchmark: score dict}`` (the content of each
    ``scores/<benchmark>.json``). Files go to ``out/<model>/<label>/`` (label: ``base`` without an adapter,
    else the adapter's parent folder name; a loaded model's folder is ``out/<model.config.model_type or
    "model">/<label or "in-memory">``).

    ``model``: a registered name (``bench list``), a path to a llava-hf directory, or a loaded
    ``torch.nn.Module`` (then pass ``processor`` — an HF processor or a
    :class:`bench.models.llava.LlavaPreprocessor` — and ``data_root``). ``benchmarks``: names or ``"all"``
    (the model entry's defaults). ``limit``/``batch_size``/``n_boot``: as ``eval.limit`` etc.
    """
    load_plugins()
    names = [benchmarks] if isinstance(benchmarks, str) else list(benchmarks)
    ecfg = _eval_config(limit, batch_size, n_boot)
    dev = resolve_device(device)
    if isinstance(model, (str, Path)):
        entry = model_entry(str(model))
        lab = label or ("base" if not adapter else Path(adapter).resolve().parent.name)
        return eval_checkpoint(str(model), str(adapter) if adapter else None, lab,
                               resolve_benchmarks(names, entry), Path(out) / entry.name / lab,
                               data_root_for(entry, str(data_root) if data_root else None), seed, dev, ecfg,
                               progress=progress)
    if not isinstance(model, torch.nn.Module):
        raise BenchError(f"bench.evaluate: model must be a registered name, a path or a torch.nn.Module, got"
                         f" {type(model).__name__}")
    if processor is None or data_root is None:
        raise BenchError("bench.evaluate: a loaded model needs processor= (its HF processor) and data_root="
                         " (where the benchmark files are)")
    if adapter is not None:
        raise BenchError("bench.evaluate: adapter= applies to a named model; merge it into the loaded model instead")
    return _evaluate_loaded(model, processor, names, Path(out), label or "in-memory", Path(data_root), seed, dev,
                            ecfg, progress)


def _evaluate_loaded(model: torch.nn.Module, processor: Any, names: list[str], out: Path, label: str,
                     data_root: Path, seed: int, device: str, ecfg: Any, progress: bool) -> dict[str, dict]:
    if names in (["all"], "all"):
        raise BenchError("bench.evaluate: name the benchmarks for a loaded model (no model entry gives defaults)")
    pre = processor if isinstance(processor, LlavaPreprocessor) else make_preprocessor(processor, model.config)
    model_name = str(getattr(model.config, "model_type", None) or "model")
    out_dir = out / model_name / label
    weights = state_fingerprint(model)
    dtype = dtype_name(next(model.parameters()).dtype)
    backend = f"transformers/{getattr(model.config, '_attn_implementation', None) or 'default'}"
    fp = checkpoint_fingerprint(f"state:{weights}", None, dtype, device, backend)  # content, dtype, device, backend
    model.to(device).eval()
    torch.manual_seed(seed)
    run_path = out_dir / "run.json"
    if not run_path.exists():
        atomic_write_json(run_path, new_record("eval", model_name, label, ecfg, seed, device,
                                               checkpoint=f"in-memory:{fp}"))
    update_record(run_path, {"checkpoint_fingerprint": fp, "eval": to_dict(ecfg), "adapter": None, "dtype": dtype,
                             "fingerprint_parts": {"weights": f"state:{weights}", "dtype": dtype, "backend": backend}})
    return eval_benchmarks(model, pre, names, out_dir, data_root, fp, device, ecfg, progress)


def train(method: str = "dpo", model: str = "tiny-llava", data: str | Path | None = None, out: str | Path = "runs",
          *, overrides: dict | None = None, max_steps: int | None = None, data_root: str | Path | None = None,
          seed: int = 0, device: str = "auto", resume: bool = False, progress: bool = False) -> dict:
    """Train one method; returns the run record (``out/<model>/<method>/run.json``; the checkpoint is its
    ``checkpoint`` entry). ``data``: a preference JSONL file (default: the method's own data — built by its
    pipeline for the embedded ``tiny-llava``). ``overrides``: the method config, e.g.
    ``{"beta": 0.2, "train": {"lr": 1e-4}}``; ``max_steps`` is a shortcut for ``train.max_steps``."""
    load_plugins()
    entry = model_entry(str(model))
    ov = copy.deepcopy(overrides) if overrides else {}
    if max_steps is not None:  # every TrainConfig of the method (POVID has one per stage)
        for name in train_config_fields(METHODS.get(method)().default_config()):
            ov.setdefault(name, {})["max_steps"] = int(max_steps)
    return train_method(method, entry, ov, Path(out) / entry.name / method, str(data) if data else None,
                        data_root_for(entry, str(data_root) if data_root else None), seed, resolve_device(device),
                        resume=resume, progress=progress)
