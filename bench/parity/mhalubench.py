"""MHaluBench parity cases (format: ``shared/parity/mhalubench/README.md``).

Claimed by file-name pattern ``expected*.json``, confirmed by content (``benchmark`` starting with
``MHaluBench`` and holding ``parsed`` + ``metrics``). The claims file is ``inputs.claims`` when the case
names one (repo-relative, or beside the fixture), else ``claims<suffix>.jsonl`` beside the fixture for
``expected<suffix>.json`` (``expected_x.json`` → ``claims_x.jsonl``), else the only ``claims*.jsonl``
there.

Checked (README tolerances): each claim's parsed label with the fixture's strict rule
(:func:`metrics.mhalubench.parse_label_strict`), joined by ``(id, claim_index)`` — a missing or extra
claim fails the case; ``n_unparseable``; then for every policy and group (``overall`` or
``<field>=<value>``, any field of the claim rows) the metrics of
:func:`metrics.mhalubench.classification_metrics`: counts exactly, floats within 1e-12.
"""

from __future__ import annotations

from pathlib import Path

from bench.io import read_jsonl
from bench.parity import Case, CaseResult, case_name, first_difference, read_fixture_json, resolve_path
from metrics.mhalubench import UNPARSEABLE, apply_policy, classification_metrics, parse_label_strict

TOL = 1e-12


def claims_file(expected: Path, exp: dict, root: Path) -> Path:
    rel = (exp.get("inputs") or {}).get("claims")
    if rel:
        return resolve_path(rel, root, expected)
    suffix = expected.stem[len("expected"):]
    cand = expected.parent / f"claims{suffix}.jsonl"
    if cand.exists():
        return cand
    others = sorted(expected.parent.glob("claims*.jsonl"))
    return others[0] if len(others) == 1 else cand


def _in_group(row: dict, group: str) -> bool:
    if group == "overall":
        return True
    field, _, value = group.partition("=")
    return str(row.get(field)) == value


def run_case(path: Path, root: Path, name: str) -> CaseResult:
    exp = read_fixture_json(path)
    rows = read_jsonl(claims_file(path, exp, root))
    by_key = {}
    for r in rows:
        key = (r["id"], r["claim_index"])
        if key in by_key:
            return CaseResult(name, False, f"claims file: duplicate claim {key}")
        by_key[key] = r
    parsed_of: dict[tuple, str] = {}
    for i, want in enumerate(exp["parsed"]):
        key = (want["id"], want["claim_index"])
        row = by_key.get(key)
        if row is None:
            return CaseResult(name, False, f"parsed[{i}]: claim {key} is not in the claims file")
        got = parse_label_strict(row["raw_prediction"])
        if got != want["parsed"]:
            return CaseResult(name, False, f"parsed[{i}].parsed (raw {row['raw_prediction']!r}): {got!r}"
                                           f" != expected {want['parsed']!r}")
        parsed_of[key] = got
    extra = [k for k in by_key if k not in parsed_of]
    if extra:
        return CaseResult(name, False, f"parsed: {len(extra)} claims of the claims file are not in the fixture"
                                       f" (first: {extra[0]})")
    n_unp = sum(p == UNPARSEABLE for p in parsed_of.values())
    if "n_unparseable" in exp and exp["n_unparseable"] != n_unp:
        return CaseResult(name, False, f"n_unparseable: {n_unp} != expected {exp['n_unparseable']}")
    for policy, groups in exp["metrics"].items():
        for group, want in groups.items():
            keys = [k for k, r in by_key.items() if _in_group(r, group)]
            gold, pred = apply_policy([by_key[k]["gold"] for k in keys], [parsed_of[k] for k in keys], policy)
            diff = first_difference(want, classification_metrics(gold, pred), f"metrics.{policy}.{group}", TOL)
            if diff:
                return CaseResult(name, False, diff)
    return CaseResult(name, True)


def discover(folder: Path, root: Path) -> list[Case]:
    cases: list[Case] = []
    folder = Path(folder)
    for path in sorted(folder.rglob("expected*.json")):
        head = read_fixture_json(path)
        if not isinstance(head, dict) or not str(head.get("benchmark", "")).startswith("MHaluBench"):
            continue
        if "parsed" in head and "metrics" in head:
            name = case_name("mhalubench", path, folder)
            cases.append(Case(name, lambda p=path, n=name: run_case(p, root, n)))
    return cases
