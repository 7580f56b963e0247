"""Object HalBench parity cases (format: ``shared/parity/objhal/README.md``).

Claimed by file-name pattern, confirmed by content: ``expected_<name>.json`` whose ``metrics`` hold the
reference's ``overall_metrics`` keys (``CHAIRs_refine``, ``CHAIRi``, ``obj_rec`` …), with
``captions_<name>.jsonl`` (the reference's answer format: ``image_id``, ``question``/``prompt``,
``text``/``answer``) and ``gt_<name>.json`` (``{"<image id>": [node words]}``) beside it.

Check: every caption is scored in file order by :func:`metrics.objhal.judge_response` against the injected
GT, :func:`metrics.objhal.reference_overall` must equal every expected metric within 1e-9 and
:func:`metrics.objhal.printed_summary` every printed value exactly. A caption whose image has no GT entry
fails the case (the reference asserts that the image sets match).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.io import read_jsonl
from bench.parity import Case, CaseResult, case_name, first_difference, read_fixture_json
from metrics.chair_words import ensure_nltk
from metrics.objhal import judge_response, load_gt_file, printed_summary, reference_overall, vocabulary

TOL = 1e-9


def _is_objhal(exp: Any) -> bool:
    return isinstance(exp, dict) and isinstance(exp.get("metrics"), dict) and {"CHAIRs_refine", "CHAIRi"} <= set(
        exp["metrics"]) and exp.get("object_extraction", "words") == "words"  # GPT extraction: parity/objhal_gpt.py


def check_case(expected: Path, captions: Path, gt_path: Path, name: str) -> CaseResult:
    exp = read_fixture_json(expected)
    ensure_nltk("wordnet")
    gt = load_gt_file(gt_path)
    vocab = vocabulary()
    records = []
    for i, row in enumerate(read_jsonl(captions)):
        text = row.get("text", row.get("answer"))
        if text is None or "image_id" not in row:
            return CaseResult(name, False, f"{captions.name} line {i + 1}: needs image_id and text/answer")
        image_id = int(row["image_id"])
        if image_id not in gt:
            return CaseResult(name, False, f"{captions.name} line {i + 1}: image {image_id} has no GT entry")
        records.append(judge_response(str(text), gt[image_id], vocab))
    overall = reference_overall(records)
    diff = first_difference(exp["metrics"], overall, "metrics", TOL)
    if diff is None and exp.get("printed") is not None:
        diff = first_difference(exp["printed"], printed_summary(overall), "printed", 0.0)
    return CaseResult(name, diff is None, diff)


def discover(folder: Path, root: Path) -> list[Case]:
    cases: list[Case] = []
    for path in sorted(Path(folder).rglob("expected_*.json")):
        exp = read_fixture_json(path)
        if not _is_objhal(exp):
            continue
        stem = path.name[len("expected_"):-len(".json")]
        captions, gt = path.with_name(f"captions_{stem}.jsonl"), path.with_name(f"gt_{stem}.json")
        name = case_name("objhal", path, folder)
        absent = [p.name for p in (captions, gt) if not p.exists()]
        if absent:
            cases.append(Case(name, lambda n=name, a=absent: CaseResult(n, False, f"{', '.join(a)} not found")))
            continue
        cases.append(Case(name, lambda p=path, c=captions, g=gt, n=name: check_case(p, c, g, n)))
    return cases
