"""Command line: ``python -m bench <verb> …``. Errors print one line and exit 2 (no traceback
wall; set ``BENCH_DEBUG=1`` for the traceback)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench.errors import BenchError


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _run_config(args) -> "object":
    from bench.config import from_dict, load_yaml, merge, parse_overrides
    from bench.pipeline import RunConfig

    cfg = RunConfig()
    if args.config:
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
    cfg = merge(cfg, cli, where="command line")
    if args.overrides:
        cfg = merge(cfg, parse_overrides(args.overrides), where="overrides")
    return cfg


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
    from bench.pipeline import load_plugins, resolve_methods

    load_plugins()
    resolve_methods(cfg.methods)  # a misspelt method is reported before the model is looked up
    _resolve_model(cfg.model, args)
    print(f"bench run: model={cfg.model} methods={','.join(cfg.methods)} benchmarks={','.join(cfg.benchmarks)}"
          f" out={cfg.out} config_hash={config_hash(cfg)}", file=sys.stderr)
    summary = run(cfg, progress=not args.quiet, resume=not args.no_resume)
    md = Path(cfg.out) / "leaderboard.md"
    if md.exists():
        print(md.read_text())
    print(f"done in {summary['wall_s']} s; outputs under {cfg.out}", file=sys.stderr)
    return 0


def cmd_train(args) -> int:
    from bench.models.loading import model_entry
    from bench.pipeline import data_root_for, load_plugins, resolve_device, train_method
    from bench.config import parse_overrides

    load_plugins()
    entry = _resolve_model(args.model, args)
    overrides = parse_overrides(args.overrides) if args.overrides else {}
    if args.max_steps is not None:
        overrides.setdefault("train", {})["max_steps"] = args.max_steps
    out = Path(args.out) / entry.name / args.method if not args.exact_out else Path(args.out)
    rec = train_method(args.method, entry, overrides, out, args.data, data_root_for(entry, args.data_root), args.seed,
                       resolve_device(args.device), resume=args.resume, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:  # under `accelerate launch`, one summary, from the main process
        print(json.dumps({"checkpoint": rec.get("checkpoint"), "train": rec.get("train")}, indent=2))
    return 0


def cmd_eval(args) -> int:
    from bench.models.loading import model_entry
    from bench.pipeline import EvalConfig, data_root_for, eval_checkpoint, load_plugins, resolve_benchmarks, resolve_device
    from bench.config import merge, parse_overrides

    load_plugins()
    entry = _resolve_model(args.model, args)
    ecfg = EvalConfig()
    if args.overrides:
        ecfg = merge(ecfg, parse_overrides(args.overrides).get("eval", {}), where="overrides")
    if args.limit is not None:
        ecfg = merge(ecfg, {"limit": args.limit})
    if args.batch_size is not None:
        ecfg = merge(ecfg, {"batch_size": args.batch_size})
    label = args.label or ("base" if not args.adapter else Path(args.adapter).resolve().parent.name)
    out = Path(args.out) / entry.name / label
    res = eval_checkpoint(args.model, args.adapter, label, resolve_benchmarks(_split(args.benchmarks), entry), out,
                          data_root_for(entry, args.data_root), args.seed, resolve_device(args.device), ecfg,
                          progress=not args.quiet)
    for name, score in res.items():
        print(name, json.dumps(score.get("metrics", {}), indent=None))
    if args.verify_against_bs1:
        from bench.eval.engine import verify_against_bs1
        from bench.models.loading import load_for_eval
        from bench.registry import BENCHMARKS

        model, pre, _ = load_for_eval(args.model, args.adapter, device=resolve_device(args.device))
        for name in res:
            check = verify_against_bs1(model, pre, BENCHMARKS.get(name)(), data_root_for(entry, args.data_root),
                                       out / "predictions" / f"{name}.jsonl", args.verify_against_bs1,
                                       resolve_device(args.device), seed=args.seed)
            print(f"{name}: fast path vs batch-1 HF generate: {check['identical']}/{check['n']} identical"
                  f" (agreement {check['agreement']:.4f})")
    return 0


def cmd_score(args) -> int:
    from bench.pipeline import EvalConfig, load_plugins, score_predictions
    from bench.registry import BENCHMARKS

    load_plugins()
    run_dir = Path(args.run_dir)
    for name in _split(args.benchmarks):
        bench = BENCHMARKS.get(name)()
        res = score_predictions(bench, run_dir / "predictions" / f"{name}.jsonl", Path(args.data_root),
                                run_dir / "scores" / f"{name}.json", EvalConfig())
        print(name, json.dumps(res.get("metrics", {})))
    return 0


def cmd_list(args) -> int:
    from bench.pipeline import load_plugins
    from bench.registry import BENCHMARKS, JUDGES, METHODS, MODELS, describe

    load_plugins()
    for title, reg in (("methods", METHODS), ("benchmarks", BENCHMARKS), ("models", MODELS), ("judges", JUDGES)):
        print(f"{title}:")
        for name, obj in reg.items():
            desc, version = describe(obj)
            print(f"  {name:<22} v{version:<6} {desc}")
    return 0


def cmd_leaderboard(args) -> int:
    from bench.pipeline import load_plugins

    load_plugins()
    from bench.leaderboard.cli import main_leaderboard

    return main_leaderboard(out=Path(args.out), formats=_split(args.formats), paper=args.paper,
                            check=Path(args.check) if args.check else None)


def cmd_parity(args) -> int:
    from bench.parity import main_parity
    from bench.pipeline import load_plugins

    load_plugins()
    return main_parity(Path(args.folder), Path(args.root) if args.root else None)


def cmd_data(args) -> int:
    from bench.data.cli import main_data

    return main_data(args)


def cmd_perf(args) -> int:
    from bench.perf import main_perf

    return main_perf(args)


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
    common(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("train", help="train one method")
    sp.add_argument("--method", required=True)
    sp.add_argument("--data", default=None, help="preference data file (default: bundled synthetic)")
    sp.add_argument("--max-steps", dest="max_steps", type=int, default=None)
    sp.add_argument("--out", default="runs")
    sp.add_argument("--exact-out", action="store_true", help="write into --out itself, not OUT/<model>/<method>")
    sp.add_argument("--resume", action="store_true")
    common(sp)
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("eval", help="evaluate a checkpoint (base model + optional adapter)")
    sp.add_argument("--adapter", default=None, help="loop checkpoint dir or peft adapter dir")
    sp.add_argument("--benchmarks", default="all")
    sp.add_argument("--out", default="runs")
    sp.add_argument("--label", default=None, help="method label for the output folder")
    sp.add_argument("--limit", type=int, default=None)
    sp.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    sp.add_argument("--verify-against-bs1", dest="verify_against_bs1", type=int, default=0, metavar="N",
                    help="re-decode N random items at batch 1 without caching and report the agreement")
    common(sp)
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("score", help="re-score stored predictions (no model)")
    sp.add_argument("run_dir")
    sp.add_argument("--benchmarks", required=True)
    sp.add_argument("--data-root", dest="data_root", required=True)
    sp.set_defaults(func=cmd_score)

    sp = sub.add_parser("list", help="list registered methods, benchmarks, models, judges")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("leaderboard", help="rebuild tables from run records")
    sp.add_argument("--out", default="runs")
    sp.add_argument("--formats", default="md,csv,tex,json,html")
    sp.add_argument("--paper", default=None)
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
    try:
        return args.func(args)
    except BenchError as exc:
        if os.environ.get("BENCH_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept on disk, rerun to resume", file=sys.stderr)
        return 130
