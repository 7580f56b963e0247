"""MMHal-Bench parity cases: every ``replies_<name>.json`` with a sibling ``expected_<name>.json`` whose content
is an MMHal summary (``question_types`` + ``informativeness``), found by file-name pattern anywhere under the
folder, so held-out cases in the same format run the same way (format: ``shared/parity/mmhal/README.md``).

Each case is checked twice, at the reference's printed precision (score, hallucination rate and
informativeness ``'{:.2f}'``, per type ``round(x, 2)``; compared exactly):

1. :func:`metrics.mmhal.reference_summary` on the replies in file order (type = index mod 8, as
   ``summarize_gpt_mmhal_review.py`` assumes);
2. the ``mmhal`` protocol's own scorer end to end: a scratch data root holding one question per reply (its
   type = ``question_types[index % 8]``), one prediction per question, and a stub judge serving the canned
   reply of each prompt — so the prompt building, rating parser, per-type grouping and aggregation that a
   real run uses are the ones checked. Its full-precision metrics, formatted as the reference prints
   them, must match too, and every reply with zero or several ratings must be counted in
   ``rating_failures`` and ``skipped``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench.parity import Case, CaseResult, case_name, first_difference
from metrics.mmhal import MMHalProtocol, parse_prompt, parse_rating, reference_summary

PREFIX, SUFFIX = "replies_", ".json"


class _StubJudge:
    """Serves canned reply k to the prompt whose question is ``"question k"``."""

    judge_id = "parity-stub"

    def __init__(self, replies: list[str]):
        self.replies = replies

    def __call__(self, prompt: str, attempt: int = 0) -> str:
        parsed = parse_prompt(prompt)
        if parsed is None:
            raise ValueError("the scorer built a prompt that is not the MMHal template")
        return self.replies[int(parsed[1].rsplit(" ", 1)[1])]


def _contents(replies_path: Path) -> list[str]:
    data = json.loads(replies_path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{replies_path.name}: expected a list of chat-completion objects")
    return [r["choices"][0]["message"]["content"] for r in data]


def _printed(metrics: dict, types: list[str]) -> dict:
    out = {"score": float(f"{metrics['score']:.2f}"),
           "hallucination_rate": float(f"{metrics['hallucination_rate']:.2f}"),
           "informativeness": float(f"{metrics['informativeness'] * 100:.2f}"),
           "per_type": {t: round(metrics[f"{t}/score"], 2) for t in types if f"{t}/score" in metrics}}
    return out


def _check(replies_path: Path, expected_path: Path, name: str) -> CaseResult:
    replies = _contents(replies_path)
    exp = json.loads(expected_path.read_text(encoding="utf-8"))
    types = list(exp["question_types"])
    want = {k: exp[k] for k in ("score", "hallucination_rate", "informativeness", "per_type")}
    diff = first_difference(want, reference_summary(replies, types), "reference_summary")
    if diff:
        return CaseResult(name, False, diff)

    bench = MMHalProtocol()
    bench.params = {**MMHalProtocol.params, "question_types": types}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "mmhal").mkdir()
        rows = [{"question_type": types[i % len(types)], "question_topic": "parity", "image_id": f"img{i}",
                 "image_src": f"https://example.invalid/img{i}.jpg", "image_content": ["Object"],
                 "question": f"question {i}", "gt_answer": "answer", "model_answer": ""} for i in range(len(replies))]
        (root / "mmhal" / "response_template.json").write_text(json.dumps(rows), encoding="utf-8")
        preds = [{"id": str(i), "text": f"response {i}"} for i in range(len(replies))]
        score = bench.score(preds, root, judge=_StubJudge(replies), n_boot=0)
    diff = first_difference(want, _printed(score["metrics"], types), "scorer")
    if diff:
        return CaseResult(name, False, diff)
    bad = {str(i) for i, r in enumerate(replies) if parse_rating(r)[1] != "ok"}
    got_bad = set(score["rating_failures"]["items"])
    if bad != got_bad or not bad <= set(score["skipped"]["reasons"]) or score["n"] != len(replies):
        return CaseResult(name, False, f"rating failures {sorted(got_bad, key=int)} != replies without exactly one"
                                       f" rating {sorted(bad, key=int)} (or not listed in skipped)")
    return CaseResult(name, True)


def discover(folder: Path, root: Path) -> list[Case]:
    """One case per ``replies_<name>.json`` + ``expected_<name>.json`` pair holding an MMHal summary."""
    cases = []
    for rp in sorted(Path(folder).rglob(f"{PREFIX}*{SUFFIX}")):
        if not rp.name.endswith(SUFFIX) or rp.name.endswith(".jsonl"):
            continue
        ep = rp.with_name("expected_" + rp.name[len(PREFIX):])
        if not ep.exists():
            continue
        try:
            head = json.loads(ep.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(head, dict) or "question_types" not in head or "informativeness" not in head:
            continue
        name = case_name("mmhal", ep, folder)
        cases.append(Case(name, lambda r=rp, e=ep, n=name: _check(r, e, n)))
    return cases
