"""POPE parity cases (format: ``shared/parity/pope/README.md``).

Claimed by file-name pattern, confirmed by content (``"benchmark": "POPE"``):

* ``expected_*.json`` holding ``question_file`` + ``answers`` + ``parsers`` — a scored answer file;
* ``phrasings*.json`` holding ``rows`` — a table of answer strings and the label each reference gives.

Checks, with the README's tolerances. Answers are joined to questions by ``question_id`` (the references
zip by position; a missing/unknown/duplicate id fails the case instead of shifting; answers without ids
fall back to position). Then, per reference key (``official`` and ``llava`` → our ``official`` parser,
``opera`` → ``opera``, ``lmms_eval`` → ``exact`` with the compatibility option
``yes_ratio_from="labels"`` that reproduces lmms-eval's label-based yes-ratio): per-answer labels and
``lmms_eval_pred`` exactly, confusion exactly, ``n_pred_neither_yes_nor_no`` exactly, metrics within
1e-12, and the printed output exactly (``official``/``opera``: the scripts' print format, ``llava``: plus
its 3-decimal line). Where the reference crashed (``error``), we must not crash: the labels and confusion
are still compared, every ratio whose denominator is zero in the expected confusion must be listed in our
``zero_division`` guard, the printed partial output (the confusion lines printed before the crash) must
match, and any metric the fixture does record must match.
"""

from __future__ import annotations

from pathlib import Path

from bench.io import read_jsonl
from bench.parity import Case, CaseResult, case_name, first_difference, read_fixture_json, resolve_path
from metrics.pope import (METRIC_KEYS, PARSERS, confusion, join_answers, metrics_from_confusion, normalise_exact,
                          reference_printout)

TOL = 1e-12
# fixture reference key -> (our parser, yes_ratio_from, print format)
REFERENCES: dict[str, tuple[str, str, str | None]] = {
    "official": ("official", "predictions", "official"),
    "llava": ("official", "predictions", "llava"),
    "opera": ("opera", "predictions", "official"),
    "lmms_eval": ("exact", "labels", None),
}
PER_ANSWER_KEYS = {"official": "official", "llava": "official", "opera": "opera"}


def _expected_zero(conf: dict[str, int]) -> list[str]:
    """Ratios the references divide by zero for this confusion (in the order they compute them)."""
    tp, fp, fn = conf["TP"], conf["FP"], conf["FN"]
    out = []
    if tp + fp == 0:
        out.append("precision")
    if tp + fn == 0:
        out.append("recall")
    if tp == 0:  # P and R are 0 or undefined, so P + R == 0
        out.append("f1")
    return out


def check_answers_case(path: Path, root: Path, name: str) -> CaseResult:
    exp = read_fixture_json(path)
    questions = read_jsonl(resolve_path(exp["question_file"], root, path))
    answers = read_jsonl(resolve_path(exp["answers"], root, path))
    joined = join_answers(questions, answers)
    if not joined.ok:
        return CaseResult(name, False, f"answers vs questions: {joined.problem()}")
    if "n" in exp and exp["n"] != len(joined.pairs):
        return CaseResult(name, False, f"n: {len(joined.pairs)} != expected {exp['n']}")
    labels = [q["label"] for q, _ in joined.pairs]
    texts = [a["text"] if "text" in a else a["answer"] for _, a in joined.pairs]
    qids = [q.get("question_id") for q, _ in joined.pairs]
    parsed = {p: [PARSERS[p](t) for t in texts] for p in PARSERS}

    rows = exp.get("per_answer") or []
    if rows and len(rows) != len(texts):
        return CaseResult(name, False, f"per_answer: length {len(texts)} != expected {len(rows)}")
    for i, row in enumerate(rows):
        if "question_id" in row and row["question_id"] != qids[i]:
            return CaseResult(name, False, f"per_answer[{i}].question_id: {qids[i]!r} != expected {row['question_id']!r}")
        if row.get("label", labels[i]) != labels[i]:
            return CaseResult(name, False, f"per_answer[{i}].label: {labels[i]!r} != expected {row['label']!r}")
        for key, parser in PER_ANSWER_KEYS.items():
            if key in row and row[key] != parsed[parser][i]:
                return CaseResult(name, False, f"per_answer[{i}].{key} (text {texts[i]!r}): {parsed[parser][i]!r}"
                                               f" != expected {row[key]!r}")
        if "lmms_eval_pred" in row and row["lmms_eval_pred"] != normalise_exact(texts[i]):
            return CaseResult(name, False, f"per_answer[{i}].lmms_eval_pred (text {texts[i]!r}):"
                                           f" {normalise_exact(texts[i])!r} != expected {row['lmms_eval_pred']!r}")

    n_label_yes = sum(lab == "yes" for lab in labels)
    for key, ref in exp["parsers"].items():
        if key not in REFERENCES:
            return CaseResult(name, False, f"parsers.{key}: unknown reference (known: {', '.join(REFERENCES)})")
        parser, yes_from, print_format = REFERENCES[key]
        conf = confusion(labels, parsed[parser])
        m = metrics_from_confusion(conf, n=len(labels), yes_ratio_from=yes_from, n_label_yes=n_label_yes)
        got_conf = {k: conf[k] for k in ("TP", "FP", "TN", "FN")}
        diff = first_difference(ref["confusion"], got_conf, f"parsers.{key}.confusion")
        if diff:
            return CaseResult(name, False, diff)
        if ref.get("n_pred_neither_yes_nor_no") is not None and conf["other"] != ref["n_pred_neither_yes_nor_no"]:
            return CaseResult(name, False, f"parsers.{key}.n_pred_neither_yes_nor_no: {conf['other']}"
                                           f" != expected {ref['n_pred_neither_yes_nor_no']}")
        crashed = bool(ref.get("error"))
        if crashed:
            need = _expected_zero(ref["confusion"])
            if not need:
                return CaseResult(name, False, f"parsers.{key}: the reference raised {ref['error']!r} but the"
                                               " expected confusion has no zero denominator")
            absent = [k for k in need if k not in m["zero_division"]]
            if absent:
                return CaseResult(name, False, f"parsers.{key}.zero_division: {m['zero_division']!r} does not"
                                               f" state the guard for {absent} (reference: {ref['error']})")
        want = {k: v for k, v in (ref.get("metrics") or {}).items() if k in METRIC_KEYS}
        diff = first_difference(want, {k: m[k] for k in METRIC_KEYS}, f"parsers.{key}.metrics", TOL)
        if diff:
            return CaseResult(name, False, diff)
        if ref.get("printed") is not None and print_format is not None:
            printed = reference_printout(conf, None if crashed else m, llava_line=print_format == "llava")
            if printed != ref["printed"]:
                return CaseResult(name, False, f"parsers.{key}.printed: {printed!r} != expected {ref['printed']!r}")
    return CaseResult(name, True)


def check_phrasings(path: Path, name: str) -> CaseResult:
    exp = read_fixture_json(path)
    for i, row in enumerate(exp["rows"]):
        text = row["text"]
        for key, parser in PER_ANSWER_KEYS.items():
            if key in row and PARSERS[parser](text) != row[key]:
                return CaseResult(name, False, f"rows[{i}].{key} (text {text!r}): {PARSERS[parser](text)!r}"
                                               f" != expected {row[key]!r}")
        if "lmms_eval_pred" in row and normalise_exact(text) != row["lmms_eval_pred"]:
            return CaseResult(name, False, f"rows[{i}].lmms_eval_pred (text {text!r}): {normalise_exact(text)!r}"
                                           f" != expected {row['lmms_eval_pred']!r}")
    return CaseResult(name, True)


def discover(folder: Path, root: Path) -> list[Case]:
    cases: list[Case] = []
    folder = Path(folder)
    for path in sorted(set(folder.rglob("expected_*.json")) | set(folder.rglob("phrasings*.json"))):
        head = read_fixture_json(path)
        if not isinstance(head, dict) or head.get("benchmark") != "POPE":
            continue
        name = case_name("pope", path, folder)
        if path.name.startswith("expected_") and {"question_file", "answers", "parsers"} <= head.keys():
            cases.append(Case(name, lambda p=path, n=name: check_answers_case(p, root, n)))
        elif path.name.startswith("phrasings") and isinstance(head.get("rows"), list):
            cases.append(Case(name, lambda p=path, n=name: check_phrasings(p, n)))
    return cases
