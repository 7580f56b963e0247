"""Object HalBench GPT-extraction parity cases (format: ``tests/data/parity/objhal-gpt/README.md``).

Claimed by file-name pattern, confirmed by content: ``expected_<name>.json`` with ``"object_extraction": "gpt"``,
beside ``captions_<name>.jsonl``, ``gt_<name>.json`` and ``replies_<name>.json`` (canned extraction replies by
prompt sha256, in the order the reference was served them).

Check, in this order (the first difference fails the case):

1. the request the protocol's judge would send — model, temperature, top_p, max_tokens, penalties and the
   message roles — equals the one the reference sent;
2. per caption in file order, with :mod:`metrics.objhal_gpt`'s own functions: a short answer asks nothing; any
   other answer's prompt must have canned replies (a prompt that differs by one byte has none), replies are
   consumed by :func:`metrics.objhal_gpt.extract` exactly as often as the reference asked, and the refined
   objects (analyser named by the case, ``nltk`` for the committed ones) equal the reference's;
3. :func:`metrics.objhal.reference_overall` (+ ``correct_rate``, ``object_correct_rate``) within 1e-9 and
   :func:`metrics.objhal_gpt.printed_summary_full` equal to what ``summarize_gpt_obj_halbench_review.py`` printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.io import read_jsonl, sha256_text
from bench.parity import Case, CaseResult, case_name, first_difference, read_fixture_json

TOL = 1e-9


def _is_case(exp: Any) -> bool:
    return isinstance(exp, dict) and exp.get("object_extraction") == "gpt" and isinstance(exp.get("metrics"), dict)


def check_case(expected: Path, captions: Path, gt_path: Path, replies_path: Path, name: str) -> CaseResult:
    # the scorer is imported here: the parity runner imports every discoverer and must not need NLTK to start
    from metrics.judged import build_judge
    from metrics.objhal import clean_answer, load_gt_file, reference_overall, vocabulary
    from metrics.objhal_gpt import (Extraction, ObjHalGptProtocol, build_prompt, extract, is_short, judge_objects,
                                    make_analyser, printed_summary_full, refine_objects)

    exp, replies = read_fixture_json(expected), read_fixture_json(replies_path)
    if not isinstance(replies, dict):
        return CaseResult(name, False, f"{replies_path.name}: expected {{prompt sha256: [replies]}}")
    analyser = make_analyser(str(exp.get("analyser", "nltk")))
    absent = analyser.missing()
    if absent:
        return CaseResult(name, False, absent[0])
    params = ObjHalGptProtocol.params
    body = build_judge(params["judge"], ObjHalGptProtocol.judge_settings()).body("")
    request = {**{k: v for k, v in body.items() if k != "messages"}, "roles": [m["role"] for m in body["messages"]]}
    diff = first_difference(exp.get("request", {}), request, "request", 0.0)
    if diff:
        return CaseResult(name, False, diff)
    gt, vocab = load_gt_file(gt_path), vocabulary()
    records, objects, calls = [], [], {}
    for i, row in enumerate(read_jsonl(captions)):
        text, question = row.get("text", row.get("answer")), row.get("question", row.get("prompt"))
        if text is None or question is None or "image_id" not in row:
            return CaseResult(name, False, f"{captions.name} line {i + 1}: needs image_id, question and text")
        image_id = int(row["image_id"])
        if image_id not in gt:
            return CaseResult(name, False, f"{captions.name} line {i + 1}: image {image_id} has no GT entry")
        answer = clean_answer(str(text))
        if is_short(answer):
            ex = Extraction([], short=True)
        else:
            prompt = build_prompt(str(question), answer)
            sha = sha256_text(prompt)
            queue = replies.get(sha)
            if not isinstance(queue, list):
                return CaseResult(name, False, f"{captions.name} line {i + 1}: no canned reply for bench's prompt"
                                               f" (sha256 {sha[:12]}…): the prompt differs from the reference's")
            used = calls.get(sha, 0)
            ex = extract(prompt, lambda a, q=queue, u=used: q[u + a] if u + a < len(q) else None,
                         int(params["max_attempts"]))
            calls[sha] = used + ex.attempts
            if ex.texts is None:
                return CaseResult(name, False, f"{captions.name} line {i + 1}: {ex.problem}")
        objs = refine_objects(ex.texts, analyser, vocab)
        objects.append(objs)
        records.append(judge_objects(objs, answer, gt[image_id], vocab))
    diff = (first_difference(exp.get("calls", {}), calls, "calls", 0.0)
            or (None if set(calls) <= set(exp.get("calls", {})) else "calls: bench asked prompts the reference did not")
            or first_difference(exp.get("objects", []), objects, "objects", 0.0))
    if diff:
        return CaseResult(name, False, diff)
    overall = reference_overall(records)
    overall.update(correct_rate=1 - overall["CHAIRs_refine"], object_correct_rate=1 - overall["CHAIRi"])
    diff = first_difference(exp["metrics"], overall, "metrics", TOL)
    if diff is None and exp.get("printed") is not None:
        diff = first_difference(exp["printed"], printed_summary_full(overall), "printed", 0.0)
    return CaseResult(name, diff is None, diff)


def discover(folder: Path, root: Path) -> list[Case]:
    cases: list[Case] = []
    for path in sorted(Path(folder).rglob("expected_*.json")):
        if not _is_case(read_fixture_json(path)):
            continue
        stem = path.name[len("expected_"):-len(".json")]
        files = [path.with_name(f"{kind}_{stem}.{ext}") for kind, ext in
                 (("captions", "jsonl"), ("gt", "json"), ("replies", "json"))]
        name = case_name("objhal-gpt", path, folder)
        absent = [p.name for p in files if not p.exists()]
        if absent:
            cases.append(Case(name, lambda n=name, a=absent: CaseResult(n, False, f"{', '.join(a)} not found")))
            continue
        cases.append(Case(name, lambda p=path, f=files, n=name: check_case(p, *f, n)))
    return cases
