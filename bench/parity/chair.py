"""CHAIR parity cases: ``expected_<inputs>__<flavour>__gt_<gtflavour>.json`` files whose ``benchmark`` is
``CHAIR``. Captions and GT come from the paths in ``inputs`` (resolved against ROOT, then beside the
fixture). Checked: every per-caption list and count exactly (``raw_words`` only for the WordNet
flavour — our singularizer may differ from Pattern on non-object words, as allowed), floats within
1e-9, and the printed output exactly."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench.io import read_jsonl
from bench.parity import Case, CaseResult, first_difference
from metrics.chair import caption_details, gt_from_object_file, printed

TOL = 1e-9
_NAME = re.compile(r"^expected_(?P<inputs>.+)__(?P<flavour>[a-z_]+)__gt_(?P<gt>[a-z_]+)\.json$")


def _resolve(root: Path, fixture: Path, rel: str) -> Path:
    for cand in (root / rel, fixture.parent / Path(rel).name, root / "shared" / "reference" / "chair" / Path(rel).name):
        if cand.exists():
            return cand
    return root / rel


def _image_id(value, parse: str | None) -> int:
    if parse:
        return int(str(value).replace("COCO_val2014_", "").replace(".jpg", ""))
    return int(value)


def _run(path: Path, root: Path) -> CaseResult:
    name = f"chair/{path.name}"
    exp = json.loads(path.read_text())
    flavour = {"wordnet_pos": "wordnet", "singularize": "singularize"}[exp["flavour"]]
    inp = exp["inputs"]
    rows = read_jsonl(_resolve(root, path, inp["captions"]))
    gt = gt_from_object_file(_resolve(root, path, inp["gt"]))
    details = []
    for i, (row, want) in enumerate(zip(rows, exp["per_caption"])):
        img = _image_id(row[inp["image_id_key"]], inp.get("image_id_parse"))
        d = caption_details(row[inp["caption_key"]], gt.get(img, set()), flavour)
        details.append(d)
        got = {k: d[k] for k in ("mentioned_words", "node_words", "mention_idxs", "hallucinated",
                                 "hallucination_idxs", "gt_objects", "metrics")}
        keys = list(got)
        if flavour == "wordnet":
            got["raw_words"], got["n_raw_words"] = d["raw_words"], d["n_raw_words"]
            keys += ["raw_words", "n_raw_words"]
        want_sub = {k: want[k] for k in keys if k in want}
        if want.get("nltk_version_dependent"):
            want_sub = {k: v for k, v in want_sub.items()}  # main fields are the NLTK >= 3.9 result
        diff = first_difference(want_sub, got, f"per_caption[{i}]", TOL)
        if diff:
            return CaseResult(name, False, diff)
    if len(details) != len(exp["per_caption"]):
        return CaseResult(name, False, f"{len(details)} captions != expected {len(exp['per_caption'])}")
    n = len(details)
    mentions = sum(len(d["mentioned_words"]) for d in details)
    overall = {"CHAIRs": sum(d["metrics"]["CHAIRs"] for d in details) / n,
               "CHAIRi": sum(len(d["hallucinated"]) for d in details) / mentions if mentions else 0.0,
               "Recall": sum(d["_covered"] for d in details) / sum(d["_n_gt"] for d in details)}
    with_len = "Len" in exp["overall"]
    if with_len:
        overall["Len"] = 0.01 * sum(d["n_raw_words"] for d in details) / n
    diff = first_difference(exp["overall"], overall, "overall", TOL)
    if diff:
        return CaseResult(name, False, diff)
    text = printed(overall, with_len)
    if exp.get("printed") is not None and text != exp["printed"]:
        return CaseResult(name, False, f"printed: {text!r} != expected {exp['printed']!r}")
    return CaseResult(name, True)


def discover(folder: Path, root: Path) -> list[Case]:
    cases = []
    for path in sorted(Path(folder).rglob("expected_*__*__gt_*.json")):
        if not _NAME.match(path.name):
            continue
        try:
            head = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(head, dict) and head.get("benchmark") == "CHAIR":
            cases.append(Case(f"chair/{path.name}", lambda p=path: _run(p, root)))
    return cases
