"""SHR parity cases: every ``<case>.input.json`` with a sibling ``<case>.expected.json`` whose
``benchmark`` is ``SHR`` (format: ``shared/parity/shr/README.md``), found by file-name pattern anywhere
under the folder, so held-out cases run the same way.

The input is turned into what HA-DPO's ``json_eval.py`` reads (images in list order, regions rendered
from the VG-style boxes, facts from ``factual`` keyed by ``str(image_id)``, responses keyed the same way)
and scored with :func:`metrics.shr.evaluate`; the judge is a stub serving each image's canned replies in
order (the retry loop asks again while a reply lacks "Judgement"; the attempt bound is raised to the
number of canned replies, since the reference has none).

Checked, with the README's tolerances: ``metrics`` (HA-DPO's rounded dict, exact), ``judge_calls``
(exact), ``judge_prompts`` (exact strings), per-image ``raw_judgement`` / ``mode_response`` and the
sentence/judgement/label lists (exact), ``per_image`` repetition (``|a-b| <= 1e-12``), numbered
sentences and ``is_repeated`` (exact), and that every image the reference reported with ``error!`` is a
``count-mismatch`` parse failure here (the same set when the reference finished). Where the reference
died (``reference_error``) the case passes when we did not crash or loop, the prompts and calls made
before the crash agree, and the failure is reported in a documented way: a parse failure, an undefined
metric, a skipped image, or a response too short for an n-gram ratio.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

try:
    from bench.parity import Case, CaseResult
except ImportError:  # the runner package not written yet: minimal compatible stand-ins
    from dataclasses import dataclass
    from typing import Callable

    @dataclass
    class CaseResult:  # type: ignore[no-redef]
        name: str
        ok: bool
        first_diff: str | None = None

    @dataclass
    class Case:  # type: ignore[no-redef]
        name: str
        run: Callable[[], CaseResult]

try:
    from bench.parity import first_difference
except ImportError:
    first_difference = None  # type: ignore[assignment]

from metrics.shr import NGRAMS, ShrInput, evaluate, render_facts, render_regions

REPETITION_TOL = 1e-12


def _diff(expected, actual, path: str, tol: float = 0.0) -> str | None:
    if first_difference is not None:
        return first_difference(expected, actual, path, tol)
    if isinstance(expected, dict) and isinstance(actual, dict):
        for k in expected:
            if k not in actual:
                return f"{path}.{k}: missing (expected {expected[k]!r})"
            d = _diff(expected[k], actual[k], f"{path}.{k}", tol)
            if d:
                return d
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return f"{path}: length {len(actual)} != expected {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            d = _diff(e, a, f"{path}[{i}]", tol)
            if d:
                return d
        return None
    if isinstance(expected, float) or isinstance(actual, float):
        if isinstance(expected, (int, float)) and isinstance(actual, (int, float)) and abs(expected - actual) <= tol:
            return None
    if expected != actual:
        return f"{path}: {actual!r} != expected {expected!r}"
    return None


def _first_text_difference(got: str, want: str, context: int = 30) -> str:
    i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    lo = max(0, i - context)
    return (f"first difference at character {i} (lengths {len(got)} vs expected {len(want)}):"
            f" {got[lo:i + context]!r} != expected {want[lo:i + context]!r}")


def _inputs(inp: dict) -> tuple[list[ShrInput], dict[int, list[str]], list[str]]:
    """The json_eval.py view of an input fixture: (inputs in image-list order, canned replies by position in
    ``inputs``, problems the reference would have crashed on). Images the reference cannot read (missing
    response, non-positive size) are left out and named in the problems; an image without regions is
    judged with an empty region block (the reference's ``id2reg`` raises IndexError) and named too."""
    responses = {str(k): v for k, v in inp.get("responses", {}).items()}
    factual = {str(k): v for k, v in inp.get("factual", {}).items()}
    replies = inp.get("replies") or []
    inputs: list[ShrInput] = []
    canned: dict[int, list[str]] = {}
    problems: list[str] = []
    for i, im in enumerate(inp["images"]):
        iid = str(im["image_id"])
        width, height = im.get("width"), im.get("height")
        if iid not in responses:
            problems.append(f"image {iid}: no response (skipped)")
            continue
        if not (isinstance(width, (int, float)) and isinstance(height, (int, float)) and width > 0 and height > 0):
            problems.append(f"image {iid}: image size {width}x{height} (skipped)")
            continue
        if not im.get("regions"):
            problems.append(f"image {iid}: no regions (empty region block)")
        canned[len(inputs)] = list(replies[i]) if i < len(replies) else []
        inputs.append(ShrInput(iid, responses[iid], render_regions(im.get("regions", []), width, height),
                               render_facts(factual.get(iid, []))))
    return inputs, canned, problems


_ERROR_RESPONSE = re.compile(r"error! \njudgement: .*?\nmodel response: (.*?)\n(?=error! \n|\Z)", re.S)


def _check(inp_path: Path, exp_path: Path, name: str) -> CaseResult:
    inp = json.loads(inp_path.read_text(encoding="utf-8"))
    exp = json.loads(exp_path.read_text(encoding="utf-8"))
    inputs, canned, problems = _inputs(inp)
    position = {id(x): k for k, x in enumerate(inputs)}
    prompts: dict[str, str] = {}

    def stub(item: ShrInput, attempt: int) -> str | None:  # each image's own replies, in order
        prompts[item.id] = item.prompt
        queue = canned[position[id(item)]]
        return queue.pop(0) if queue else None

    max_attempts = max([5] + [len(v) for v in canned.values()])  # the reference has no bound
    res = evaluate(inputs, stub, max_attempts)
    ref_error = exp.get("reference_error")
    expected_ids = [str(im["image_id"]) for im in inp["images"]]

    # prompts the reference sent (all of them, or those before it died): exact strings
    for iid, want in (exp.get("judge_prompts") or {}).items():
        got = prompts.get(str(iid))
        if got is None:
            return CaseResult(name, False, f"judge_prompts.{iid}: no prompt built (expected one)")
        if got != want:
            return CaseResult(name, False, f"judge_prompts.{iid}: {_first_text_difference(got, want)}")
    reached_end = set(exp.get("judge_prompts") or {}) >= set(expected_ids)
    if exp.get("judge_calls") is not None and (ref_error is None or reached_end) \
            and exp["judge_calls"] != res.judge_calls:
        return CaseResult(name, False, f"judge_calls: {res.judge_calls} != expected {exp['judge_calls']}")

    # images the reference printed as unparsed ("error! ... model response: <response>")
    printed = _ERROR_RESPONSE.findall(exp.get("stdout") or "")
    ours = {im.response for im in res.images.values() if im.judgement.status == "count-mismatch"}
    for response in printed:
        if response not in ours:
            return CaseResult(name, False, f"stdout: the reference reported an unparsed judgement for {response!r};"
                                           " we parsed it")
    if ref_error is None and len(printed) != sum(1 for im in res.images.values()
                                                 if im.judgement.status == "count-mismatch"):
        return CaseResult(name, False, f"unparsed images: {sorted(ours)} vs the reference's {printed}")

    for iid, want in (exp.get("per_image") or {}).items():
        got_inp = next((x for x in inputs if x.id == str(iid)), None)
        if got_inp is None:
            return CaseResult(name, False, f"per_image.{iid}: no such input")
        got = {f"gram-{n}": res.grams[inputs.index(got_inp)][n] for n in NGRAMS}
        got["numbered_sentences"] = "".join(f"{i}. {s}\n" for i, s in enumerate(got_inp.sentences[0], start=1))
        got["is_repeated"] = got_inp.sentences[1]
        d = _diff(want, got, f"per_image.{iid}", REPETITION_TOL)
        if d:
            return CaseResult(name, False, d)

    if ref_error:
        reported = res.parse_failures()["count"] or res.undefined() or res.notes() or res.missing or problems
        if not reported:
            return CaseResult(name, False, f"the reference failed ({ref_error}) but nothing was reported here")
        return CaseResult(name, True)

    d = _diff(exp["metrics"], res.reference_metrics(), "metrics")
    if d:
        return CaseResult(name, False, d)
    for run, per in (exp.get("judgement") or {}).items():
        for iid, want in per.items():
            im = res.images.get(str(iid))
            if im is None:
                return CaseResult(name, False, f"judgement.{run}.{iid}: image not judged")
            got = {"raw_judgement": im.reply, "mode_response": im.response, "judgement": im.reference_judgement()}
            d = _diff(want, got, f"judgement.{run}.{iid}")
            if d:
                return CaseResult(name, False, d)
    return CaseResult(name, True)


def discover(folder: Path, root: Path) -> list[Case]:
    """One case per ``*.input.json`` + ``*.expected.json`` pair under ``folder`` with ``benchmark`` SHR."""
    cases = []
    for inp_path in sorted(Path(folder).rglob("*.input.json")):
        exp_path = inp_path.with_name(inp_path.name[: -len(".input.json")] + ".expected.json")
        if not exp_path.exists():
            continue
        try:
            head = json.loads(exp_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(head, dict) or str(head.get("benchmark", "")).upper() != "SHR":
            continue
        name = f"shr/{exp_path.name}"

        def run(i: Path = inp_path, e: Path = exp_path, n: str = name) -> CaseResult:
            return _check(i, e, n)

        cases.append(Case(name, run))
    return cases
