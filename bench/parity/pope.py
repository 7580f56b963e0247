"""POPE parity cases: every ``expected*.json`` whose ``benchmark`` is ``POPE``.

A case names its question file and answers file (repo-relative); answers are joined to questions
by position as the references do (the fixtures are in file order). Checked: per-answer labels of
every parser, confusion counts (exact), metrics (|Δ| ≤ 1e-12), the reference's printed output
where we reproduce its format, and — where the reference crashed on a zero division — that we did
not crash and that the undefined metric is reported under ``zero_division``. ``phrasings.json``
tables are checked row by row.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.io import read_jsonl
from bench.parity import Case, CaseResult, first_difference
from metrics.pope import PARSERS, confusion, metrics_from_confusion

TOL = 1e-12
_KEYS = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def _printed(conf: dict, m: dict, with_llava_line: bool) -> str:
    text = (f"TP\tFP\tTN\tFN\t\n{conf['TP']}\t{conf['FP']}\t{conf['TN']}\t{conf['FN']}\n"
            f"Accuracy: {m['accuracy']}\nPrecision: {m['precision']}\nRecall: {m['recall']}\n"
            f"F1 score: {m['f1']}\nYes ratio: {m['yes_ratio']}\n")
    if with_llava_line:
        text += "%.3f, %.3f, %.3f, %.3f, %.3f\n" % (m["f1"], m["accuracy"], m["precision"], m["recall"], m["yes_ratio"])
    return text


def _resolve(root: Path, fixture: Path, rel: str) -> Path:
    for cand in (root / rel, fixture.parent / Path(rel).name):
        if cand.exists():
            return cand
    return root / rel


def _check_case(path: Path, root: Path) -> CaseResult:
    exp = json.loads(path.read_text())
    name = f"pope/{path.name}"
    questions = read_jsonl(_resolve(root, path, exp["question_file"]))
    answers = read_jsonl(_resolve(root, path, exp["answers"]))
    if len(questions) != len(answers):
        return CaseResult(name, False, f"{len(answers)} answers for {len(questions)} questions")
    labels = [q["label"] for q in questions]
    texts = [a["text"] for a in answers]
    per = {p: [PARSERS[p](t) for t in texts] for p in ("official", "opera")}
    for i, row in enumerate(exp.get("per_answer", [])):
        if row["label"] != labels[i]:
            return CaseResult(name, False, f"per_answer[{i}].label: {labels[i]!r} != expected {row['label']!r}")
        for key, parser in (("official", "official"), ("llava", "official"), ("opera", "opera")):
            if key in row and row[key] != per[parser][i]:
                return CaseResult(name, False, f"per_answer[{i}].{key} ({texts[i]!r}): {per[parser][i]!r}"
                                               f" != expected {row[key]!r}")
        if "lmms_eval_pred" in row and row["lmms_eval_pred"] != texts[i].lower().strip():
            return CaseResult(name, False, f"per_answer[{i}].lmms_eval_pred differs")
    for key, ref in exp["parsers"].items():
        parser = {"official": "official", "llava": "official", "opera": "opera", "lmms_eval": "exact"}[key]
        preds = [PARSERS[parser](t) for t in texts]
        conf = confusion(labels, preds)
        if key == "lmms_eval":
            m = metrics_from_confusion(conf, n=len(labels), yes_ratio_from="labels",
                                       n_label_yes=sum(lab == "yes" for lab in labels))
            got_conf = {k: conf[k] for k in ("TP", "FP", "TN", "FN")}
            if ref.get("n_pred_neither_yes_nor_no") is not None and conf["other"] != ref["n_pred_neither_yes_nor_no"]:
                return CaseResult(name, False, f"parsers.lmms_eval.n_pred_neither_yes_nor_no: {conf['other']}"
                                               f" != expected {ref['n_pred_neither_yes_nor_no']}")
        else:
            m = metrics_from_confusion(conf, n=len(labels))
            got_conf = {k: conf[k] for k in ("TP", "FP", "TN", "FN")}
        diff = first_difference(ref["confusion"], got_conf, f"parsers.{key}.confusion")
        if diff:
            return CaseResult(name, False, diff)
        if ref.get("error"):
            # the reference crashed; we must report a guard for what it divided by zero
            if not m["zero_division"]:
                return CaseResult(name, False, f"parsers.{key}: reference raised {ref['error']!r} but no"
                                               " zero_division guard was reported")
            continue
        got = {k: m[k] for k in _KEYS}
        want = {k: ref["metrics"][k] for k in _KEYS if k in ref["metrics"]}
        diff = first_difference(want, got, f"parsers.{key}.metrics", TOL)
        if diff:
            return CaseResult(name, False, diff)
        if ref.get("printed") and key in ("official", "llava"):
            printed = _printed(conf, m, key == "llava")
            if printed != ref["printed"]:
                return CaseResult(name, False, f"parsers.{key}.printed: {printed!r} != expected {ref['printed']!r}")
    return CaseResult(name, True)


def _check_phrasings(path: Path) -> CaseResult:
    exp = json.loads(path.read_text())
    name = f"pope/{path.name}"
    for i, row in enumerate(exp["rows"]):
        text = row["text"]
        for key, parser in (("official", "official"), ("llava", "official"), ("opera", "opera")):
            if key in row and PARSERS[parser](text) != row[key]:
                return CaseResult(name, False, f"rows[{i}] {text!r}: {key} gives {PARSERS[parser](text)!r}"
                                               f" != expected {row[key]!r}")
        if "lmms_eval_pred" in row and text.lower().strip() != row["lmms_eval_pred"]:
            return CaseResult(name, False, f"rows[{i}] {text!r}: lmms_eval_pred differs")
    return CaseResult(name, True)


def discover(folder: Path, root: Path) -> list[Case]:
    cases = []
    for path in sorted(Path(folder).rglob("*.json")):
        try:
            head = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(head, dict) or head.get("benchmark") != "POPE":
            continue
        if "parsers" in head and "question_file" in head:
            cases.append(Case(f"pope/{path.name}", lambda p=path: _check_case(p, root)))
        elif "rows" in head:
            cases.append(Case(f"pope/{path.name}", lambda p=path: _check_phrasings(p)))
    return cases
