"""CHAIR parity cases (format: ``shared/parity/chair/README.md``).

A case is any JSON file named ``expected_<inputs>__<flavour>__gt_<gtflavour>.json`` (anywhere under the
folder) whose content has ``"benchmark": "CHAIR"``; nothing else is known in advance, so held-out cases
in the same format run the same way. The caption flavour and GT flavour are taken from the file's own
``flavour`` / ``gt`` fields (``singularize`` | ``wordnet_pos``), the inputs from ``inputs``: captions
(JSON or JSONL; ``image_id_key``, ``caption_key``; ``image_id_parse`` set → ids parsed from
``"COCO_val2014_…jpg"``/``"000…jpg"`` strings as less-is-more does) and a GT-object file. Repo-relative
paths resolve against ``root``, then beside the fixture.

Checked, per the README's tolerances: every per-caption list and count exactly, ``CHAIRs`` exactly,
floats within 1e-9, the overall metrics (same keys) within 1e-9, ``overall_printed`` and ``printed``
exactly. ``raw_words`` is compared for the WordNet flavour only: for ``singularize`` the README allows a
reimplemented Pattern to differ on non-object words (ours matches on the visible fixtures anyway; the
count ``n_raw_words`` is still compared). A caption flagged ``nltk_version_dependent`` is compared with
``nltk_3_8_1_output`` when the installed NLTK is older than 3.9.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench.errors import DataError
from bench.io import read_jsonl
from bench.parity import Case, CaseResult, first_difference
from metrics.chair import caption_details, load_gt_object_file, printed, reference_overall
from metrics.chair_words import flavour_name, vocabulary

TOL = 1e-9
NAME_RE = re.compile(r"^expected_(?P<inputs>.+?)__(?P<flavour>[a-z_]+?)__gt_(?P<gt>[a-z_]+)\.json$")
_EXACT_LISTS = ("mentioned_words", "node_words", "mention_idxs", "hallucinated", "hallucination_idxs",
                "gt_objects", "n_raw_words")


def _resolve(rel: str, root: Path, fixture: Path) -> Path:
    rel_path = Path(rel)
    for cand in (rel_path if rel_path.is_absolute() else Path(root) / rel_path, fixture.parent / rel_path.name):
        if cand.exists():
            return cand
    raise DataError(fixture, f"input {rel!r} not found under root {root} nor beside the fixture", field="inputs")


def _read_captions(path: Path) -> list[dict]:
    """The references' ``load_generated_captions``: a ``.json`` list or ``.jsonl`` lines."""
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise DataError(path, "expected a JSON list of caption records")
    return data


def parse_image_id(value: Any, parse: Any) -> int:
    """Integer COCO id; with ``parse`` (less-is-more) strip ``COCO_val2014_`` and ``.jpg`` first."""
    if parse or isinstance(value, str):
        return int(str(value).replace("COCO_val2014_", "").replace(".jpg", ""))
    return int(value)


def _nltk_before_3_9() -> bool:
    import nltk

    nums = [int("".join(c for c in x if c.isdigit()) or 0) for x in nltk.__version__.split(".")[:2]]
    return tuple(nums) < (3, 9)


def run_case(path: Path, root: Path) -> CaseResult:
    name = f"chair/{path.name}"
    exp = json.loads(Path(path).read_text(encoding="utf-8"))
    flavour = flavour_name(exp["flavour"])
    gt_flavour = flavour_name(exp["gt"])
    inp = exp["inputs"]
    rows = _read_captions(_resolve(inp["captions"], root, path))
    gt = load_gt_object_file(_resolve(inp["gt"], root, path), gt_flavour)
    want_rows = exp["per_caption"]
    if len(rows) != len(want_rows):
        return CaseResult(name, False, f"per_caption: {len(rows)} captions in the input != {len(want_rows)} expected")
    vocab = vocabulary()
    old_nltk = _nltk_before_3_9()
    details = []
    for i, (row, want) in enumerate(zip(rows, want_rows)):
        image_id = parse_image_id(row[inp.get("image_id_key") or "image_id"], inp.get("image_id_parse"))
        caption = row[inp.get("caption_key") or "caption"]
        d = caption_details(caption, gt.get(image_id, frozenset()), flavour, vocab)
        details.append(d)
        got: dict[str, Any] = {"index": i, "image_id": image_id, **{k: d[k] for k in _EXACT_LISTS},
                               "metrics": d["metrics"]}
        if "case_id" in want:
            got["case_id"] = row.get("case_id")
        if "caption" in want:
            got["caption"] = caption
        if flavour == "wordnet":
            got["raw_words"] = d["raw_words"]
        target = dict(want)
        if want.get("nltk_version_dependent") and old_nltk and isinstance(want.get("nltk_3_8_1_output"), dict):
            target.update(want["nltk_3_8_1_output"])
        target = {k: v for k, v in target.items() if k in got}
        diff = first_difference(target, got, f"per_caption[{i}]", TOL)
        if diff:
            return CaseResult(name, False, diff)
    overall = reference_overall(details, flavour)
    if set(overall) != set(exp["overall"]):
        return CaseResult(name, False, f"overall keys {sorted(overall)} != expected {sorted(exp['overall'])}")
    if not old_nltk or not any(w.get("nltk_version_dependent") for w in want_rows):
        diff = first_difference(exp["overall"], overall, "overall", TOL)
        if diff:
            return CaseResult(name, False, diff)
        text = printed(overall)
        if "overall_printed" in exp:
            got_printed = {k: f"{v * 100:.01f}" for k, v in overall.items()}
            diff = first_difference(exp["overall_printed"], got_printed, "overall_printed")
            if diff:
                return CaseResult(name, False, diff)
        if exp.get("printed") is not None and text != exp["printed"]:
            return CaseResult(name, False, f"printed: {text!r} != expected {exp['printed']!r}")
    return CaseResult(name, True)


def _is_chair_fixture(path: Path) -> bool:
    try:
        with path.open("r", encoding="utf-8") as fh:
            head = fh.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    if not re.search(r'"benchmark"\s*:\s*"CHAIR"', head):
        # the key may come later in a file written with other key order: fall back to a full parse
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return False
        return isinstance(data, dict) and data.get("benchmark") == "CHAIR"
    return True


def discover(folder: Path, root: Path) -> list[Case]:
    """Every CHAIR parity case under ``folder`` (file-name pattern + ``"benchmark": "CHAIR"``)."""
    folder, root = Path(folder), Path(root)
    cases = []
    for path in sorted(folder.rglob("expected_*__*__gt_*.json")):
        if NAME_RE.match(path.name) and _is_chair_fixture(path):
            cases.append(Case(f"chair/{path.name}", lambda p=path: run_case(p, root)))
    return cases
