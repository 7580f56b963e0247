"""``python -m bench data prepare|verify|fetch``."""

from __future__ import annotations

import json
from pathlib import Path

from bench.errors import BenchError
from bench.io import read_json, sha256_file
from bench.paths import data_dir


def verify(root: Path) -> list[str]:
    """Re-check every sha256 recorded in ``root/manifest.json``; returns the problems found."""
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        raise BenchError(f"{manifest_path}: no manifest (run `python -m bench data prepare` or `bench data fetch`)")
    problems = []
    for rel, digest in read_json(manifest_path).get("files", {}).items():
        path = root / rel
        if not path.exists():
            problems.append(f"{rel}: missing")
        elif sha256_file(path) != digest:
            problems.append(f"{rel}: sha256 mismatch")
    return problems


def main_data(args) -> int:
    if args.data_cmd == "prepare":
        from bench.data.synthetic import prepare_synthetic

        out = Path(args.out) if args.out else data_dir() / "synthetic"
        manifest = prepare_synthetic(out, seed=args.seed)
        print(f"synthetic world written to {out}: {manifest['images']} images, {len(manifest['files'])} files")
        return 0
    if args.data_cmd == "verify":
        root = Path(args.root) if args.root else data_dir() / "synthetic"
        problems = verify(root)
        for p in problems:
            print(p)
        print(f"{root}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    if args.data_cmd == "fetch":
        try:
            from bench.data.fetch import main_fetch
        except ModuleNotFoundError:
            raise BenchError("`bench data fetch` is not available in this build (bench/data/fetch.py missing)") from None
        return main_fetch(args)
    raise BenchError(f"unknown data command {args.data_cmd!r}")
