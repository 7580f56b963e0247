"""``python -m bench models make-tiny --family F --out DIR`` (see :mod:`bench.models.make_tiny`) and
``python -m bench models assemble-minigpt4 --blip2 DIR --projection FILE --llama DIR --out DIR``
(:mod:`bench.models.assembly`).

Imports inside the command functions are deliberate: CLI start-up time
(``bench --help`` and ``bench list`` must not import torch, transformers or every protocol)."""

from __future__ import annotations

import argparse


def cmd_make_tiny(args: argparse.Namespace) -> int:
    from bench.models.make_tiny import make_tiny

    out = make_tiny(args.family, args.out, seed=args.seed, pretrain_steps=args.pretrain_steps,
                    data_root=args.data_root)
    print(f"wrote a tiny random {args.family} checkpoint to {out} (use it with --model {out})")
    return 0


def cmd_assemble_minigpt4(args: argparse.Namespace) -> int:
    from bench.models.assembly import assemble

    out = assemble(args.blip2, args.projection, args.llama, args.out)
    print(f"wrote MiniGPT-4 (Llama-2 chat) to {out} (use it with --model {out}, or BENCH_MODEL_MINIGPT4_LLAMA2_7B={out})")
    return 0


def add_models_parser(sub) -> None:
    """The ``models`` verb and its sub-commands (called from :func:`bench.cli.build_parser`)."""
    from bench.models.make_tiny import FAMILY_NAMES

    sp = sub.add_parser("models", help="model utilities (tiny checkpoints)")
    msub = sp.add_subparsers(dest="models_cmd", required=True)
    mt = msub.add_parser("make-tiny", help="write a tiny random checkpoint of a family (offline, seconds)")
    mt.add_argument("--family", required=True, choices=FAMILY_NAMES)
    mt.add_argument("--out", required=True)
    mt.add_argument("--seed", type=int, default=0)
    mt.add_argument("--pretrain-steps", dest="pretrain_steps", type=int, default=0,
                    help="fine-tune N steps on the synthetic world first (default 0: random weights)")
    mt.add_argument("--data-root", dest="data_root", default=None, help="synthetic world for --pretrain-steps")
    mt.set_defaults(func=cmd_make_tiny)
    am = msub.add_parser("assemble-minigpt4", help="assemble MiniGPT-4 (Llama-2 chat) from its downloaded parts")
    am.add_argument("--blip2", required=True, help="folder of Salesforce/blip2-flan-t5-xxl (vision + Q-Former)")
    am.add_argument("--projection", required=True, help="pretrained_minigpt4_llama2_7b.pth (llama_proj)")
    am.add_argument("--llama", required=True, help="folder of meta-llama/Llama-2-7b-chat-hf")
    am.add_argument("--out", required=True)
    am.set_defaults(func=cmd_assemble_minigpt4)
