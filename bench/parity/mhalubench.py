"""MHaluBench parity cases: ``expected*.json`` whose ``benchmark`` starts with ``MHaluBench`` and that
holds ``parsed`` + ``metrics``; the claims file is the ``*.jsonl`` beside it whose rows carry
``raw_prediction`` (``claims*.jsonl``; a case may name it in ``inputs.claims``)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.io import read_jsonl
from bench.parity import Case, CaseResult, first_difference
from metrics.mhalubench import apply_policy, classification_metrics, parse_strict

TOL = 1e-12


def _claims_file(expected: Path, exp: dict, root: Path) -> Path:
    rel = (exp.get("inputs") or {}).get("claims")
    if rel:
        return root / rel if (root / rel).exists() else expected.parent / Path(rel).name
    stem = expected.stem.replace("expected", "claims")
    for cand in (expected.parent / f"{stem}.jsonl", expected.parent / "claims.jsonl"):
        if cand.exists():
            return cand
    return expected.parent / "claims.jsonl"


def _group_keys(row: dict) -> list[str]:
    return ["overall", f"task_type={row['task_type']}", f"sub_task={row['sub_task']}"]


def _run(path: Path, root: Path) -> CaseResult:
    name = f"mhalubench/{path.name}"
    exp = json.loads(path.read_text())
    rows = read_jsonl(_claims_file(path, exp, root))
    parsed = [parse_strict(r["raw_prediction"]) for r in rows]
    for i, (want, r, got) in enumerate(zip(exp["parsed"], rows, parsed)):
        if (want["id"], want["claim_index"]) != (r["id"], r["claim_index"]):
            return CaseResult(name, False, f"parsed[{i}]: claim order differs ({r['id']}, {r['claim_index']})")
        if want["parsed"] != got:
            return CaseResult(name, False, f"parsed[{i}] {r['raw_prediction']!r}: {got!r} != expected {want['parsed']!r}")
    if "n_unparseable" in exp and exp["n_unparseable"] != parsed.count("unparseable"):
        return CaseResult(name, False, f"n_unparseable {parsed.count('unparseable')} != {exp['n_unparseable']}")
    for policy, groups in exp["metrics"].items():
        for group, want in groups.items():
            idx = [i for i, r in enumerate(rows) if group in _group_keys(r)]
            g, p = apply_policy([rows[i]["gold"] for i in idx], [parsed[i] for i in idx], policy)
            diff = first_difference(want, classification_metrics(g, p), f"metrics.{policy}.{group}", TOL)
            if diff:
                return CaseResult(name, False, diff)
    return CaseResult(name, True)


def discover(folder: Path, root: Path) -> list[Case]:
    cases = []
    for path in sorted(Path(folder).rglob("*.json")):
        try:
            head = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(head, dict) and str(head.get("benchmark", "")).startswith("MHaluBench") and "metrics" in head:
            cases.append(Case(f"mhalubench/{path.name}", lambda p=path: _run(p, root)))
    return cases
