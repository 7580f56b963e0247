"""Command line: ``python -m bench <verb> …``. Errors print one line and exit 2 (no traceback
wall; set ``BENCH_DEBUG=1`` for the traceback). Imports inside the command functions are deliberate: CLI start-up time
(``bench --help`` and ``bench list`` must not import torch, transformers or every protocol)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from bench.errors import BenchError


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _int_at_least(low: int):
    """argparse type: an integer >= ``low`` (checked when the command line is parsed)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _quiet_libraries() -> None:
    """``--quiet``: no progress bars from transformers / huggingface_hub either (weights loading)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def _report(results_by_label: dict[str, dict], out: Path) -> None:
    """End of a run/eval on the console: items skipped per benchmark (with the first reasons) and where the
    files are."""
    for label, results in results_by_label.items():
        for name, score in results.items():
            sk = score.get("skipped") or {}
            reasons = sk.get("reasons") or {}
            count = sk.get("count", len(reasons))
            if count:
                kinds: dict[str, int] = {}
                for why in reasons.values():
                    kinds[str(why).split(":")[0]] = kinds.get(str(why).split(":")[0], 0) + 1
                shown = ", ".join(f"{k} ×{v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:3])
                print(f"warning: {label}/{name}: {count} item(s) skipped ({shown}); see {out / label}"
                      f"/scores/{name}.json", file=sys.stderr)


def _run_config(args) -> "object":
    from bench.config import load_yaml, merge, parse_overrides
    from bench.pipeline import RunConfig

    cfg = RunConfig()
    if getattr(args, "config", None):
        cfg = merge(cfg, load_yaml(args.config), where=str(args.config))
    cli = {}
    for key in ("model", "out", "seed", "device", "data_root"):
        val = getattr(args, key, None)
        if val is not None:
            cli[key] = val
    if getattr(args, "methods", None):
        cli["methods"] = _split(args.methods)
    if getattr(args, "benchmarks", None):
        cli["benchmarks"] = _split(args.benchmarks)
    if getattr(args, "base_url", None):
        cli["eval"] = {"api": {"base_url": _base_url_for(cli.get("model", cfg.model), args)}}
    cfg = merge(cfg, cli, where="command line")
    if args.overrides:
        cfg = merge(cfg, parse_overrides(args.overrides), where="overrides")
    ev = {k: getattr(args, k) for k in ("limit", "batch_size", "dtype", "backend")
          if getattr(args, k, None) is not None}
    if ev:
        cfg = merge(cfg, {"eval": ev}, where="command line")
    return cfg


def _base_url_for(model: str, args) -> str:
    from bench.models.api import is_api_model

    if not is_api_model(model):
        raise BenchError(f"--base-url applies to API-served models (--model openai:<name>), not {model!r}")
    return args.base_url


def _resolve_model(name: str, args) -> object:
    """Resolve ``--model`` once with ``--revision`` / ``--trust-remote-code`` (remembered for the process), so a
    missing hub model fails before any work."""
    from bench.models.loading import model_entry

    return model_entry(name, revision=getattr(args, "revision", None),
                       trust_remote_code=getattr(args, "trust_remote_code", False))


def cmd_run(args) -> int:
    from bench.config import config_hash
    from bench.pipeline import run

    cfg = _run_config(args)
    from bench.pipeline import resolve_methods
    from bench.plugins import load_plugins

    load_plugins()
    resolve_methods(cfg.methods)  # a misspelt method is reported before the model is looked up
    _resolve_model(cfg.model, args)
    print(f"bench run: model={cfg.model} methods={','.join(cfg.methods)} benchmarks={','.join(cfg.benchmarks)}"
          f" out={cfg.out} config_hash={config_hash(cfg)}", file=sys.stderr)
    summary = run(cfg, progress=not args.quiet, resume=not args.no_resume, force=args.force)
    if "leaderboard" in summary:  # the main process; the summary table + files (bench/summary.py)
        from bench.summary import print_summary

        print_summary([Path(summary["model_dir"]) / "base", *summary["methods"].values()], as_json=args.json,
                      extra_files=summary["leaderboard"].values())
    _report(summary.get("scores", {}), Path(summary.get("model_dir", cfg.out)))
    print(f"done in {summary['wall_s']} s; outputs under {cfg.out}", file=sys.stderr)
    return 0


def cmd_train(args) -> int:
    from bench import preflight
    from bench.config import parse_overrides
    from bench.pipeline import data_root_for, method_config, train_config_fields, train_data_problems, train_method
    from bench.plugins import load_plugins
    from bench.runtime import is_main_process, resolve_device
    from bench.registry import METHODS

    load_plugins()
    entry = _resolve_model(args.model, args)
    device = resolve_device(args.device)
    method = METHODS.get(args.method)()
    overrides = parse_overrides(args.overrides) if args.overrides else {}
    if args.max_steps is not None:  # every TrainConfig of the method (one per stage: POVID has two)
        for name in train_config_fields(method.default_config()):
            overrides.setdefault(name, {})["max_steps"] = args.max_steps
    method_config(args.method, entry, overrides)  # unknown keys / bad values fail before any work
    data_root = data_root_for(entry, args.data_root)
    out = Path(args.out) / entry.name / args.method if not args.exact_out else Path(args.out)
    preflight.check([*preflight.output_problems(Path(args.out), need_bytes=256 * 2**20),
                     *preflight.model_problems(entry),
                     *train_data_problems(args.method, entry, args.data, data_root)], "bench train")
    rec = train_method(args.method, entry, overrides, out, args.data, data_root, args.seed, device,
                       resume=args.resume, progress=not args.quiet, force=args.force)
    if is_main_process():  # under `accelerate launch`, one summary, from the main process
        print(json.dumps({"checkpoint": rec.get("checkpoint"), "train": rec.get("train")}, indent=2))
    return 0


def cmd_eval(args) -> int:
    from bench import preflight
    from bench.pipeline import data_root_for, eval_checkpoint, resolve_benchmarks
    from bench.plugins import load_plugins
    from bench.runtime import resolve_device

    load_plugins()
    cfg = _run_config(args)  # the typed config of `run`: eval.* overrides, did-you-mean on unknown keys
    if cfg.method:
        raise BenchError(f"method.* overrides ({', '.join(sorted(cfg.method))}) apply to `bench run`/`bench train`,"
                         " not to `bench eval`")
    entry = _resolve_model(cfg.model, args)
    device = resolve_device(cfg.device)
    benchmarks = resolve_benchmarks(cfg.benchmarks, entry)
    data_root = data_root_for(entry, cfg.data_root)
    preflight.check([*preflight.output_problems(Path(cfg.out)), *preflight.model_problems(entry, args.adapter),
                     *preflight.benchmark_problems(benchmarks, data_root),
                     *preflight.backend_problems(cfg.eval.backend, benchmarks, [args.adapter])], "bench eval")
    if args.verify_against_bs1 and getattr(entry, "api_served", False):
        raise BenchError("--verify-against-bs1 re-decodes with local weights; an API-served model has none here")
    label = args.label or ("base" if not args.adapter else Path(args.adapter).resolve().parent.name)
    if cfg.eval.backend != "transformers" and not args.label:  # its own folder and leaderboard row: base-vllm
        label = f"{label}-{cfg.eval.backend}"
    out = Path(cfg.out) / entry.name / label
    res = eval_checkpoint(cfg.model, args.adapter, label, benchmarks, out, data_root, cfg.seed, device, cfg.eval,
                          progress=not args.quiet)
    if res:  # rank 0 under a distributed launch: the summary table + files (bench/summary.py)
        from bench.summary import print_summary

        print_summary([out], as_json=args.json)
    _report({label: res}, out.parent)
    if args.verify_against_bs1:
        from bench.eval.engine import verify_against_bs1
        from bench.models.loading import load_for_eval
        from bench.runtime import resolve_dtype
        from bench.registry import BENCHMARKS

        model, pre, _ = load_for_eval(cfg.model, args.adapter, dtype=resolve_dtype(cfg.eval.dtype, device),
                                      device=device)
        for name in res:
            check = verify_against_bs1(model, pre, BENCHMARKS.get(name)(), data_root,
                                       out / "predictions" / f"{name}.jsonl", args.verify_against_bs1,
                                       device, seed=cfg.seed)
            engine = "fast path" if cfg.eval.backend == "transformers" else f"{cfg.eval.backend} backend"
            print(f"{name}: {engine} vs batch-1 HF generate: {check['identical']}/{check['n']} identical"
                  f" (agreement {check['agreement']:.4f})")
    return 0


def cmd_export(args) -> int:
    from bench.export import export_checkpoint
    from bench.plugins import load_plugins

    load_plugins()
    rec = export_checkpoint(args.checkpoint, args.out, model=args.model, dtype=args.dtype)
    print(f"exported {rec['source']} ({rec['base_model']} + stages {', '.join(rec['stages']) or '(adapter)'}) to"
          f" {args.out} as {rec['model_class']} ({rec['dtype']})")
    return 0


def cmd_score(args) -> int:
    from bench.config import merge
    from bench.io import read_json
    from bench.pipeline import EvalConfig, score_predictions
    from bench.plugins import load_plugins
    from bench.registry import BENCHMARKS

    load_plugins()
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise BenchError(f"{run_dir}: no such run folder (expected OUT/<model>/<method>/ with predictions/)")
    ecfg = EvalConfig()
    recorded = read_json(run_dir / "run.json").get("eval", {}) if (run_dir / "run.json").exists() else {}
    limit = args.limit if args.limit is not None else (recorded or {}).get("limit")
    ecfg = merge(ecfg, {"limit": limit, **({"n_boot": recorded["n_boot"]} if recorded.get("n_boot") else {})})
    data_root = Path(args.data_root)
    if not data_root.is_dir():
        raise BenchError(f"{data_root}: --data-root is not a folder")
    for name in _split(args.benchmarks):
        bench = BENCHMARKS.get(name)()
        res = score_predictions(bench, run_dir / "predictions" / f"{name}.jsonl", data_root,
                                run_dir / "scores" / f"{name}.json", ecfg,
                                backend=(recorded or {}).get("backend") or "transformers")
        print(name, json.dumps(res.get("metrics", {})))
    return 0


def cmd_show(args) -> int:
    from bench.plugins import load_plugins
    from bench.samples import main_show

    load_plugins()
    return main_show(Path(args.run_dir), args.benchmark, wrong=args.wrong, limit=args.limit, as_json=args.json)


def cmd_list(args) -> int:
    from bench.plugins import load_plugins
    from bench.registry import BENCHMARKS, JUDGES, METHODS, MODELS, describe

    load_plugins()
    for title, reg in (("methods", METHODS), ("benchmarks", BENCHMARKS), ("models", MODELS), ("judges", JUDGES)):
        print(f"{title}:")
        for name, obj in reg.items():
            desc, version = describe(obj)
            print(f"  {name:<22} v{version:<6} {desc}")
    return 0


def cmd_leaderboard(args) -> int:
    from bench.plugins import load_plugins

    load_plugins()
    from bench.leaderboard.cli import main_leaderboard

    return main_leaderboard(out=Path(args.out), formats=_split(args.formats), paper=args.paper,
                            check=Path(args.check) if args.check else None, show_all=args.all)


def cmd_parity(args) -> int:
    from bench.parity import main_parity
    from bench.plugins import load_plugins

    load_plugins()
    return main_parity(Path(args.folder), Path(args.root) if args.root else None)


def cmd_data(args) -> int:
    from bench.data.cli import main_data

    return main_data(args)


def cmd_perf(args) -> int:
    from bench.perf import main_perf

    return main_perf(args)


def _os_error(exc: BaseException) -> str:
    """One line for an environment error: what failed, on which file, and the usual fix."""
    import errno

    if isinstance(exc, UnicodeError):
        return f"text is not valid UTF-8 ({exc}); convert the file to UTF-8"
    name = getattr(exc, "filename", None)
    where = f"{name}: " if name else ""
    text = exc.strerror or str(exc)
    hint = {errno.ENOSPC: "free some disk space or choose another --out; finished work is kept",
            errno.EACCES: "check the folder's permissions or choose another --out",
            errno.EROFS: "the file system is read-only; choose another --out",
            errno.ENAMETOOLONG: "use a shorter path"}.get(exc.errno or -1, "")
    return f"{where}{text}" + (f" ({hint})" if hint else "")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="Hallucination benchmark harness for LVLMs")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, model=True):
        if model:
            sp.add_argument("--model", default=None if sp.prog.endswith("run") else "tiny-llava",
                            help="registered name, local checkpoint folder or hub id")
            sp.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) of a hub id")
            sp.add_argument("--trust-remote-code", dest="trust_remote_code", action="store_true",
                            help="allow the checkpoint's own modelling code (never on by default)")
        sp.add_argument("--seed", type=int, default=None if sp.prog.endswith("run") else 0)
        sp.add_argument("--device", default=None if sp.prog.endswith("run") else "auto")
        sp.add_argument("--data-root", dest="data_root", default=None, help="benchmark/synthetic data root")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        sp.add_argument("overrides", nargs="*", help="key=value overrides")

    sp = sub.add_parser("run", help="train methods, evaluate base + checkpoints, write leaderboard")
    sp.add_argument("--methods", default=None, help="all | a,b")
    sp.add_argument("--benchmarks", default=None, help="all | a,b")
    sp.add_argument("--out", default=None)
    sp.add_argument("--config", default=None, help="YAML file")
    sp.add_argument("--no-resume", action="store_true", help="retrain finished stages")
    sp.add_argument("--force", action="store_true",
                    help="discard checkpoints in --out that were trained from other data/config, and retrain")
    sp.add_argument("--limit", type=_int_at_least(1), default=None, help="= eval.limit: first N images per benchmark")
    sp.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"], default=None,
                    help="= eval.dtype (auto: bfloat16 on CUDA, float32 on CPU)")
    sp.add_argument("--backend", choices=["transformers", "vllm"], default=None,
                    help="= eval.backend: transformers (default) or vllm (optional: pip install vllm)")
    sp.add_argument("--base-url", dest="base_url", default=None,
                    help="endpoint of an --model openai:<name> (OpenAI-compatible, e.g. http://127.0.0.1:8000/v1)")
    sp.add_argument("--json", action="store_true", help="print the run summary as one JSON object")
    common(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("train", help="train one method")
    sp.add_argument("--method", required=True)
    sp.add_argument("--data", default=None, help="preference data file (default: bundled synthetic)")
    sp.add_argument("--max-steps", dest="max_steps", type=_int_at_least(1), default=None,
                    help="optimizer steps of every stage")
    sp.add_argument("--out", default="runs")
    sp.add_argument("--exact-out", action="store_true", help="write into --out itself, not OUT/<model>/<method>")
    sp.add_argument("--resume", action="store_true")
    sp.add_argument("--force", action="store_true",
                    help="discard a checkpoint in the output folder trained from other data/config, and retrain")
    common(sp)
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("eval", help="evaluate a checkpoint (base model + optional adapter)")
    sp.add_argument("--adapter", default=None, help="loop checkpoint dir or peft adapter dir")
    sp.add_argument("--benchmarks", default=None, help="all | a,b (default: the model's benchmarks)")
    sp.add_argument("--out", default=None, help="output root (default runs)")
    sp.add_argument("--label", default=None, help="method label for the output folder")
    sp.add_argument("--limit", type=_int_at_least(1), default=None,
                    help="= eval.limit: the first N images of each benchmark, with all their questions")
    sp.add_argument("--batch-size", dest="batch_size", type=_int_at_least(1), default=None, help="= eval.batch_size")
    sp.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"], default=None,
                    help="= eval.dtype (auto: bfloat16 on CUDA, float32 on CPU); part of the cache key")
    sp.add_argument("--backend", choices=["transformers", "vllm"], default=None,
                    help="= eval.backend: transformers (default) or vllm (optional: pip install vllm; labelled in the"
                         " records and the cache key)")
    sp.add_argument("--verify-against-bs1", dest="verify_against_bs1", type=_int_at_least(0), default=0, metavar="N",
                    help="re-decode N random items at batch 1 without caching and report the agreement")
    sp.add_argument("--base-url", dest="base_url", default=None,
                    help="endpoint of an --model openai:<name> (OpenAI-compatible, e.g. http://127.0.0.1:8000/v1)")
    sp.add_argument("--json", action="store_true", help="print the run summary as one JSON object")
    common(sp)
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("export", help="merge a checkpoint's adapters into its base: a standalone HF model folder")
    sp.add_argument("checkpoint", help="loop checkpoint dir (stages.json) or peft adapter dir")
    sp.add_argument("--out", required=True, help="new folder for the merged model + processor")
    sp.add_argument("--model", default=None, help="base model (default: from the run.json beside the checkpoint)")
    sp.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("score", help="re-score stored predictions (no model)")
    sp.add_argument("run_dir")
    sp.add_argument("--benchmarks", required=True)
    sp.add_argument("--data-root", dest="data_root", required=True)
    sp.add_argument("--limit", type=_int_at_least(1), default=None,
                    help="score the first N images (default: the limit recorded in run.json)")
    sp.set_defaults(func=cmd_score)

    sp = sub.add_parser("show", help="print per-sample records of a run (samples/<benchmark>.jsonl)")
    sp.add_argument("run_dir")
    sp.add_argument("--benchmark", required=True)
    sp.add_argument("--wrong", action="store_true", help="only the items the scorer counted incorrect")
    sp.add_argument("--limit", type=int, default=None, help="print at most N records")
    sp.add_argument("--json", action="store_true", help="one JSON record per line")
    sp.set_defaults(func=cmd_show)

    sp = sub.add_parser("list", help="list registered methods, benchmarks, models, judges")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("leaderboard", help="rebuild tables from run records")
    sp.add_argument("--out", default="runs")
    sp.add_argument("--formats", default="md,csv,tex,json,html")
    sp.add_argument("--paper", default=None)
    sp.add_argument("--all", action="store_true", help="--paper: every reported row, not only those bench can run")
    sp.add_argument("--check", default=None, help="check that tables in DIR are up to date with --out records")
    sp.set_defaults(func=cmd_leaderboard)

    sp = sub.add_parser("parity", help="run parity fixtures against the reference outputs")
    sp.add_argument("folder")
    sp.add_argument("--root", default=None)
    sp.set_defaults(func=cmd_parity)

    sp = sub.add_parser("data", help="prepare / verify / fetch data")
    dsub = sp.add_subparsers(dest="data_cmd", required=True)
    dp = dsub.add_parser("prepare", help="build the synthetic world (seconds)")
    dp.add_argument("--out", default=None)
    dp.add_argument("--seed", type=int, default=0)
    dv = dsub.add_parser("verify", help="re-check sha256 of prepared/fetched data")
    dv.add_argument("--root", default=None)
    df = dsub.add_parser("fetch", help="download a dataset (network); `fetch list` shows the sources")
    df.add_argument("name")
    df.add_argument("--root", default=None)
    df.add_argument("--with-images", dest="with_images", action="store_true", help="hadpo-data/povid-data: images too")
    df.add_argument("--from", dest="from_path", default=None, help="opa-dpo-data: convert a manual download")
    df.add_argument("--quiet", action="store_true")
    from bench.data.cli import add_build_parser

    add_build_parser(dsub)
    sp.set_defaults(func=cmd_data)

    from bench.models.cli import add_models_parser

    add_models_parser(sub)

    sp = sub.add_parser("perf", help="performance benchmarks")
    sp.add_argument("what", choices=["train", "eval"])
    sp.add_argument("rest", nargs=argparse.REMAINDER)
    sp.set_defaults(func=cmd_perf)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # peft 0.21 reads transformers' deprecated ``is_gradient_checkpointing`` alias whenever it wraps or loads an
    # adapter: a warning about our dependencies' code, printed on every run; nothing a user can act on
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    if getattr(args, "quiet", False):
        _quiet_libraries()
    if args.func in (cmd_run, cmd_train, cmd_eval, cmd_perf):  # the commands that run models
        from bench.runtime import keep_freed_memory

        keep_freed_memory()
    try:
        return args.func(args)
    except BenchError as exc:
        if os.environ.get("BENCH_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, UnicodeError) as exc:  # disk full, read-only folder, permissions, name too long, encoding
        if os.environ.get("BENCH_DEBUG"):
            raise
        print(f"error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept on disk, rerun to resume", file=sys.stderr)
        return 130
