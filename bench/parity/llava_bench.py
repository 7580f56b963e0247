"""LLaVA-Bench (in-the-wild) parity cases: every ``replies_<name>.jsonl`` with a sibling ``expected_<name>.json``
holding ``per_category``, found by file-name pattern anywhere under the folder, so held-out cases in the same
format run the same way (format: ``shared/parity/llava-bench/README.md``).

Checked at the reference's printed precision (1 decimal, compared exactly), twice:

1. :func:`metrics.llava_bench.parse_score` on each reply, then :func:`metrics.llava_bench.reference_summary`
   (``summarize_gpt_review.py``: column means rounded to 3 decimals, then ``round(s1/s0*100, 1)``,
   ``round(s0*10, 1)``, ``round(s1*10, 1)``) per category and ``all``;
2. the ``llava-bench`` protocol's own scorer end to end on a scratch data root (one question per reply with
   its category, three questions per image, a context and reference answer each, one prediction each) with
   a stub judge serving the canned replies: its ``details.reference_metrics`` must match, its
   full-precision ``relative`` must agree within 0.1, and every unparseable reply must be counted in
   ``parse_failures`` and ``skipped``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench.parity import Case, CaseResult, case_name, first_difference
from metrics.llava_bench import LlavaBenchProtocol, parse_prompt, parse_score, reference_summary

PREFIX, SUFFIX = "replies_", ".jsonl"


class _StubJudge:
    judge_id = "parity-stub"

    def __init__(self, replies: dict[str, str]):
        self.replies = replies

    def __call__(self, prompt: str, attempt: int = 0) -> str:
        parsed = parse_prompt(prompt)
        if parsed is None:
            raise ValueError("the scorer built a prompt that is not the LLaVA-Bench review layout")
        return self.replies[parsed[1].rsplit(" ", 1)[1]]


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        for key in ("question_id", "category", "content"):
            if key not in r:
                raise ValueError(f"{path.name}: a line lacks {key!r}")
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _check(replies_path: Path, expected_path: Path, name: str) -> CaseResult:
    rows = _rows(replies_path)
    exp = json.loads(expected_path.read_text(encoding="utf-8"))
    want = exp["per_category"]
    by_cat: dict[str, list[list[float]]] = {}
    for r in rows:
        by_cat.setdefault(r["category"], []).append(parse_score(r["content"])[0])
    got = reference_summary(by_cat)
    diff = first_difference(want, got, "per_category")
    if diff:
        return CaseResult(name, False, diff)
    if set(got) != set(want):
        return CaseResult(name, False, f"categories {sorted(got)} != expected {sorted(want)}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "llava-bench"
        folder.mkdir()
        ids = [str(r["question_id"]) for r in rows]
        _write_jsonl(folder / "questions.jsonl", [{"question_id": r["question_id"], "image": f"{k // 3:03d}.jpg",
                                                   "text": f"question {qid}", "category": r["category"]}
                                                  for k, (r, qid) in enumerate(zip(rows, ids))])
        _write_jsonl(folder / "context.jsonl", [{"id": i, "image": f"{i:03d}.jpg", "caption": "A scene."}
                                                for i in range((len(rows) + 2) // 3)])
        _write_jsonl(folder / "answers_gpt4.jsonl", [{"question_id": r["question_id"], "text": "reference"}
                                                     for r in rows])
        preds = [{"id": qid, "text": "model answer"} for qid in ids]
        score = LlavaBenchProtocol().score(preds, Path(tmp),
                                           judge=_StubJudge({qid: r["content"] for qid, r in zip(ids, rows)}), n_boot=0)
    diff = first_difference(want, score["details"]["reference_metrics"], "scorer.reference_metrics")
    if diff:
        return CaseResult(name, False, diff)
    rel = score["metrics"].get("relative")
    if want.get("all", {}).get("relative") is not None and (rel is None or abs(rel - want["all"]["relative"]) > 0.1):
        return CaseResult(name, False, f"scorer relative {rel!r} vs expected {want['all']['relative']!r} (> 0.1 apart)")
    bad = {qid for qid, r in zip(ids, rows) if not parse_score(r["content"])[1]}
    got_bad = set(score["parse_failures"]["items"])
    if bad != got_bad or not bad <= set(score["skipped"]["reasons"]) or score["n"] != len(rows):
        return CaseResult(name, False, f"parse failures {sorted(got_bad)} != unparseable replies {sorted(bad)}"
                                       " (or not listed in skipped)")
    return CaseResult(name, True)


def discover(folder: Path, root: Path) -> list[Case]:
    """One case per ``replies_<name>.jsonl`` + ``expected_<name>.json`` pair with ``per_category``."""
    cases = []
    for rp in sorted(Path(folder).rglob(f"{PREFIX}*{SUFFIX}")):
        ep = rp.with_name("expected_" + rp.name[len(PREFIX):-len(SUFFIX)] + ".json")
        if not ep.exists():
            continue
        try:
            head = json.loads(ep.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(head, dict) or not isinstance(head.get("per_category"), dict):
            continue
        name = case_name("llava-bench", ep, folder)
        cases.append(Case(name, lambda r=rp, e=ep, n=name: _check(r, e, n)))
    return cases
