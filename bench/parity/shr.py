"""SHR parity cases: ``<case>.input.json`` + ``<case>.expected.json`` pairs whose ``benchmark`` is ``SHR``.

The canned judge replies of each image are served in order (a reply without "Judgement" makes the
procedure ask again, as the reference). Checked: metrics (exact 3-decimal values), judge calls,
prompts (exact), sentences and labels, per-image repetition (1e-12), numbered sentences. For cases
where the reference crashed (``reference_error``) we check that nothing crashed and that the failure
is reported (unparsed images or an undefined ratio)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.parity import Case, CaseResult, first_difference
from metrics.shr import evaluate, render_facts, render_regions


def _run(inp_path: Path, exp_path: Path) -> CaseResult:
    name = f"shr/{exp_path.name}"
    inp, exp = json.loads(inp_path.read_text()), json.loads(exp_path.read_text())
    queues = {str(im["image_id"]): list(replies) for im, replies in zip(inp["images"], inp["replies"])}
    current = {"id": None}

    def judge(prompt: str) -> str:
        q = queues[current["id"]]
        return q.pop(0) if q else ""

    records = []
    for im in inp["images"]:
        iid = str(im["image_id"])
        records.append({"image_id": iid, "response": inp["responses"][iid],
                        "regions_text": render_regions(im["regions"], im["width"], im["height"]),
                        "facts_text": render_facts(inp["factual"].get(iid, []))})
    # evaluate() calls the judge image by image in order: track which image is being judged
    results = {}
    calls = 0
    per_image, prompts, judged = {}, {}, []
    for rec in records:
        current["id"] = str(rec["image_id"])
        res = evaluate([rec], judge, max_attempts=len(queues[current["id"]]) + 1)
        calls += res["judge_calls"]
        per_image.update(res["per_image"])
        prompts.update(res["prompts"])
        judged += res["judged"]
    from metrics.shr import repetition, run_metrics

    full = evaluate(records, lambda p: "", max_attempts=1)  # for repetition means (judge-independent)
    run1 = run_metrics(judged)
    metrics = {"run1": {k: v for k, v in run1.items() if k != "zero_division"}}
    for n in range(1, 5):
        metrics[f"gram-{n}-repetition"] = full["metrics"][f"gram-{n}-repetition"]
    metrics["mean_hal_ratio"] = run1["hal_sents_ratio"]
    if exp.get("reference_error"):
        unparsed = [i for i, p in per_image.items() if all(j["classification"] is None for j in p["judgement"])]
        if not unparsed and not run1["zero_division"]:
            return CaseResult(name, False, f"reference failed ({exp['reference_error']}) but no failure was reported")
        return CaseResult(name, True)
    diff = first_difference(exp["metrics"], metrics, "metrics")
    if diff:
        return CaseResult(name, False, diff)
    if exp.get("judge_calls") is not None and exp["judge_calls"] != calls:
        return CaseResult(name, False, f"judge_calls {calls} != expected {exp['judge_calls']}")
    diff = first_difference(exp.get("judge_prompts", {}), prompts, "judge_prompts")
    if diff:
        return CaseResult(name, False, diff)
    for iid, want in exp["judgement"]["run1"].items():
        got = [{k: j[k] for k in ("model_response", "judgement", "classification")} for j in per_image[iid]["judgement"]]
        diff = first_difference(want["judgement"], got, f"judgement.run1.{iid}")
        if diff:
            return CaseResult(name, False, diff)
    for iid, want in exp.get("per_image", {}).items():
        got = per_image[iid]
        sub = {k: got[k] for k in want}
        diff = first_difference(want, sub, f"per_image.{iid}", 1e-12)
        if diff:
            return CaseResult(name, False, diff)
    return CaseResult(name, True)


def discover(folder: Path, root: Path) -> list[Case]:
    cases = []
    for exp_path in sorted(Path(folder).rglob("*.expected.json")):
        inp_path = exp_path.with_name(exp_path.name.replace(".expected.json", ".input.json"))
        if not inp_path.exists():
            continue
        try:
            head = json.loads(exp_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(head, dict) and head.get("benchmark") == "SHR":
            cases.append(Case(f"shr/{exp_path.name}", lambda i=inp_path, e=exp_path: _run(i, e)))
    return cases
