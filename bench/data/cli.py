"""``python -m bench data prepare|verify|fetch|build``.

* ``prepare [--out DIR] [--seed N]`` — the synthetic glyph world (:func:`bench.data.synthetic.prepare_synthetic`),
  default ``<data_dir>/synthetic``.
* ``verify [--root DIR]`` — re-check every sha256 recorded in ``<root>/manifest.json`` and report each
  file (ok / MODIFIED / MISSING); exit 1 if any is not ok. Without ``--root``: the data root and the
  synthetic world under it, whichever have a manifest.
* ``fetch NAME [--root DIR] [--with-images] [--from PATH]`` — :mod:`bench.data.fetch` (``fetch list``
  prints the table of sources).
* ``build METHOD --model M --out DIR`` — the method's data pipeline (:mod:`bench.data.pipelines`):
  generations of checkpoint M (+ ``--adapter``) on annotated images of ``--data-root`` (default: the
  model's data root, the synthetic world for ``tiny-llava``), feedback from ``--feedback`` (``annotation``
  offline, or ``openai``), released format + ``summary.json`` in DIR; resumable.

Imports inside the command functions are deliberate: CLI start-up time
(``bench --help`` and ``bench list`` must not import torch, transformers or every protocol).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.errors import BenchError
from bench.io import read_json, sha256_file
from bench.paths import data_dir


def verify_report(root: Path) -> list[tuple[str, str]]:
    """``[(relpath, "ok"|"MODIFIED"|"MISSING")]`` for every file recorded in ``root/manifest.json``."""
    manifest_path = Path(root) / "manifest.json"
    if not manifest_path.exists():
        raise BenchError(f"{manifest_path}: no manifest (run `python -m bench data prepare` or"
                         " `python -m bench data fetch NAME` first)")
    out = []
    for rel, digest in sorted(read_json(manifest_path).get("files", {}).items()):
        path = Path(root) / rel
        if not path.exists():
            out.append((rel, "MISSING"))
        elif sha256_file(path) != digest:
            out.append((rel, "MODIFIED"))
        else:
            out.append((rel, "ok"))
    return out


def verify(root: Path) -> list[str]:
    """Problems found in ``root`` (kept for callers of the earlier API): ``"<rel>: missing"`` / ``"<rel>:
    sha256 mismatch"``."""
    words = {"MISSING": "missing", "MODIFIED": "sha256 mismatch"}
    return [f"{rel}: {words[state]}" for rel, state in verify_report(root) if state != "ok"]


def cmd_verify(args) -> int:
    if args.root:
        roots = [Path(args.root)]
    else:
        from bench.data.synthetic import SYNTHETIC_DIRNAME

        roots = [r for r in (data_dir(), data_dir() / SYNTHETIC_DIRNAME) if (r / "manifest.json").exists()]
        if not roots:
            raise BenchError(f"no manifest under {data_dir()} (run `python -m bench data prepare` or"
                             " `python -m bench data fetch NAME`, or pass --root)")
    bad_total = 0
    for root in roots:
        report = verify_report(root)
        bad = [(rel, st) for rel, st in report if st != "ok"]
        quiet = getattr(args, "quiet", False)
        for rel, state in report:
            if state != "ok" or not quiet:
                print(f"{state:<8} {rel}")
        print(f"{root}: {len(report) - len(bad)} ok, {len(bad)} problem(s)" if bad else f"{root}: OK ({len(report)} files)")
        bad_total += len(bad)
    return 1 if bad_total else 0


# --------------------------------------------------------------------------------------------- build
def cmd_build(args) -> int:
    # imported here, not at module level: CLI start-up time (the pipelines and the eval engine pull in torch)
    from bench.data.pipelines import PIPELINES, BuildOptions, format_summary, load_source, run_pipeline
    from bench.eval.generate import model_generate
    from bench.feedback import AnnotationFeedback, make_feedback

    method = args.method.replace("_", "-")
    pipeline = PIPELINES.get(method)()
    generate, gid, entry = None, "none", None
    if pipeline.needs_model:
        sample = pipeline.sample_rollouts if args.sample is None else args.sample
        temperature = args.temperature if args.temperature is not None else 1.0
        generate, gid, entry = model_generate(args.model, args.adapter, args.device, args.max_new_tokens, sample,
                                              temperature, args.batch_size, args.dtype, args.seed)
    if args.data_root:
        root = Path(args.data_root)
    else:
        if entry is None:
            from bench.models.loading import model_entry
            from bench.plugins import load_plugins

            load_plugins()
            entry = model_entry(args.model)
        root = Path(entry.default_data_root())
    source = load_source(args.source, root, split=args.split, limit=args.limit, seed=args.seed)
    out = Path(args.out)
    fb_kwargs = {}
    if args.feedback == "openai":
        fb_kwargs = {"model": args.feedback_model, "api_key_env": args.api_key_env, "question": args.prompt}
        if args.feedback_base_url:
            fb_kwargs["base_url"] = args.feedback_base_url
        feedback = make_feedback("openai", cache_dir=out / "cache", **fb_kwargs)
    elif args.feedback == "annotation":
        feedback = AnnotationFeedback(cooccurrence=source.cooccurrence, frequency=source.frequency)
    else:
        feedback = make_feedback(args.feedback, cache_dir=out / "cache")
    params = {k: v for k, v in (("variants", args.variants), ("score", args.score), ("injections", args.injections),
                                 ("questions", args.questions)) if v is not None}
    opts = BuildOptions(out=out, feedback=feedback, generate=generate, generator_id=gid, seed=args.seed,
                        batch_size=args.batch_size, prompt=args.prompt, progress=not args.quiet, images=args.images,
                        params=params)
    summary = run_pipeline(pipeline, source, opts)
    print(format_summary(summary))
    print(f"summary: {out / 'summary.json'}", file=sys.stderr)
    return 0


def add_build_parser(dsub) -> None:
    """The ``data build`` sub-command's arguments (called from :func:`bench.cli.build_parser`)."""
    db = dsub.add_parser("build", help="build a method's preference data with its pipeline (model + feedback)")
    db.add_argument("method", help="the method whose pipeline builds the data (bench.data.pipelines: one per method)")
    db.add_argument("--model", default="tiny-llava", help="checkpoint that generates (registered name or llava-hf dir)")
    db.add_argument("--adapter", default=None, help="loop checkpoint / peft adapter applied to --model")
    db.add_argument("--out", required=True)
    db.add_argument("--data-root", dest="data_root", default=None, help="annotated images (default: the model's data root)")
    db.add_argument("--source", default="coco", choices=["coco", "vg"], help="coco (also the synthetic world) or vg")
    db.add_argument("--split", default="train", help="COCO split (default train; val2014 holds the eval images)")
    db.add_argument("--limit", type=int, default=None, help="use a seeded sample of N images")
    db.add_argument("--feedback", default="annotation", help="annotation (offline) | openai | a plugin")
    db.add_argument("--feedback-model", dest="feedback_model", default="gpt-4o")
    db.add_argument("--feedback-base-url", dest="feedback_base_url", default=None)
    db.add_argument("--api-key-env", dest="api_key_env", default="OPENAI_API_KEY")
    db.add_argument("--prompt", default="Describe this image in detail.")
    db.add_argument("--seed", type=int, default=0)
    db.add_argument("--batch-size", dest="batch_size", type=int, default=8)
    db.add_argument("--device", default="auto")
    db.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    db.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=512)
    db.add_argument("--sample", dest="sample", action="store_true", default=None,
                    help="sample instead of greedy (default: the pipeline's choice — sampled on-policy rollouts where it"
                         " declares sample_rollouts, greedy otherwise)")
    db.add_argument("--greedy", dest="sample", action="store_false")
    db.add_argument("--temperature", type=float, default=None)
    db.add_argument("--images", default="link", choices=["link", "copy"], help="hard-link (default) or copy images")
    db.add_argument("--variants", type=int, default=None, help="ha-dpo: style variants per pair (default 3)")
    db.add_argument("--score", default=None, help="hsa-dpo: rejected_score aggregation max|mean|sum (default max)")
    db.add_argument("--injections", type=int, default=None, help="povid: hallucinations injected per answer (default 1)")
    db.add_argument("--questions", type=int, default=None,
                    help="povid, hsa-dpo, opa-dpo: yes/no object questions per image besides the description (default 0)")
    db.add_argument("--quiet", action="store_true", help="no progress bars")


# --------------------------------------------------------------------------------------------- entry
def main_data(args) -> int:
    if args.data_cmd == "prepare":
        from bench.data.synthetic import SYNTHETIC_DIRNAME, prepare_synthetic

        out = Path(args.out) if args.out else data_dir() / SYNTHETIC_DIRNAME
        manifest = prepare_synthetic(out, seed=args.seed)
        print(f"synthetic world written to {out}: {manifest['images']} images, {len(manifest['files'])} files")
        return 0
    if args.data_cmd == "verify":
        return cmd_verify(args)
    if args.data_cmd == "fetch":
        from bench.data.fetch import main_fetch

        return main_fetch(args)
    if args.data_cmd == "build":
        return cmd_build(args)
    raise BenchError(f"unknown data command {args.data_cmd!r}")
