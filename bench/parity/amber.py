"""AMBER parity cases (format: ``shared/parity/amber/README.md``).

Claimed by file-name pattern, confirmed by content: ``expected_<name>.json`` holding ``evaluation_type``
(one of ``a g d de da dr``) and ``metrics`` keyed ``"<Section>/<Metric>"``, with its responses beside it in
``responses_<name>.json`` (the reference's ``--inference_data`` format, ``[{"id", "response"}]``).

Check: the responses are scored in file order with the shipped AMBER data
(``junyangwang0410/AMBER@534babf``) and the similarity backend the fixture names (``"similarity": "none"``
→ the step disabled; ``spacy:<model>`` → spaCy, which must be installed), and
:func:`metrics.amber.reference_printout` must print every expected metric equal at one decimal (the
reference's printed precision). Rows the reference could not score (ids outside the annotations) fail the
case, since the reference itself would have crashed on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.parity import Case, CaseResult, case_name, first_difference, read_fixture_json
from metrics.amber import judge_responses, load_data, reference_printout
from metrics.amber_similarity import make_backend
from metrics.chair_words import ensure_nltk

EVALUATION_TYPES = ("a", "g", "d", "de", "da", "dr")


def _is_amber(exp: Any) -> bool:
    return (isinstance(exp, dict) and exp.get("evaluation_type") in EVALUATION_TYPES
            and isinstance(exp.get("metrics"), dict) and all("/" in str(k) for k in exp["metrics"]))


def check_case(expected_path: Path, responses_path: Path, name: str) -> CaseResult:
    exp = read_fixture_json(expected_path)
    rows = read_fixture_json(responses_path)
    if not isinstance(rows, list) or not all(isinstance(r, dict) and {"id", "response"} <= r.keys() for r in rows):
        return CaseResult(name, False, f"{responses_path.name}: expected a list of {{'id', 'response'}}")
    similarity = exp.get("similarity") or "none"
    backend = make_backend(similarity, float(exp.get("similarity_score", 0.8)))
    missing = backend.missing()
    if missing:
        return CaseResult(name, False, "; ".join(missing))
    ensure_nltk("wordnet")
    records, skipped = judge_responses([(r["id"], r["response"]) for r in rows], load_data(), backend)
    if skipped:
        first = next(iter(skipped.items()))
        return CaseResult(name, False, f"{len(skipped)} response(s) not scorable, e.g. id {first[0]}: {first[1]}")
    printed = reference_printout(records, exp["evaluation_type"])
    want = {k: round(float(v), 1) for k, v in exp["metrics"].items()}
    diff = first_difference(want, printed, "metrics", 1e-9)
    return CaseResult(name, diff is None, diff)


def discover(folder: Path, root: Path) -> list[Case]:
    cases: list[Case] = []
    for path in sorted(Path(folder).rglob("expected_*.json")):
        exp = read_fixture_json(path)
        if not _is_amber(exp):
            continue
        responses = path.with_name("responses_" + path.name[len("expected_"):])
        name = case_name("amber", path, folder)
        if not responses.exists():
            cases.append(Case(name, lambda n=name, r=responses: CaseResult(n, False, f"{r.name} not found")))
            continue
        cases.append(Case(name, lambda p=path, r=responses, n=name: check_case(p, r, n)))
    return cases
