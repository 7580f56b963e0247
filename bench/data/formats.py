"""Released preference-data formats of the four seed methods → :class:`PreferenceRecord`.

One loader per format (field names as ``shared/research/methods.md`` §1.3, §2.3, §3.3, §4.3), plus our
own PreferenceRecord JSONL. :func:`load_any` recognises the format of a path and dispatches; every
``Method.load_records`` goes through it. Schema errors are :class:`DataError` naming the file, the line
(JSONL) or record number (JSON lists, 1-based) and the field; a record whose image file is missing is an
error at load time, not a crash (or a silent zero image, as the HSA-DPO seed does) hours into training.

* **HA-DPO** (``juliozhao/hadpo-data``; ``opendatalab/HA-DPO@42f72c5: ha_dpo/models/llava-v1_5/train_dpo.py
  (LazySupervisedDataset.desc_process, pope_process)``): a folder (or either file) with ``desc_data.json`` =
  ``{image_id: {"chosen": [str], "rejected": [str]}}`` (a list of ``{"image_id", "chosen", "rejected"}`` is
  accepted too) and ``pope_data.json`` = ``[{"image_id", "question", "chosen", "reject", "answer",
  "correct"}]``. Assembly as the seed: ``random.seed(42)``; per image, in file order, one chosen, then one
  rejected, then one of the four describe-prompts, each ``random.choice``; POPE rows with a false
  ``correct``; training list = POPE pairs + description pairs twice (the same prompt in both copies).
  Images: Visual Genome via ``<root>/image_data.json`` (``url`` → ``<root>/<folder>/<file>``) when present,
  else ``<root>/<image_id>.jpg|.png`` (our fetch/pipeline layout).
* **POVID** (``YiyangAiLab/POVID_preference_data_for_VLLMs``): a JSON list of ``{"id", "image",
  "conversations": [{"from": "human", "value": "<image>\\n…"}, {"from": "gpt", "value": chosen}],
  "rejected_conversations": [same human turn, {"from": "gpt", "value": rejected}]}``; ``image`` relative to
  the image root (default: the JSON's folder).
* **HSA-DPO** (``WenyiXiao/HSA-DPO`` preference JSONL): ``{"id", "question", "chosen", "rejected",
  "chosen_score"?, "rejected_score"?}``; image ``<root>/<id>.jpg|.png|.jpeg``; scores must be numbers.
* **OPA-DPO** (``make_opadpo_dataset.py`` fields, image as a file instead of base64 bytes): JSONL of
  ``{"id"?, "image", "queries", "standard_response", "original_generate_response", "AI_pseudo_response",
  "AI_json_report"}`` with the GPT-4V report (JSON string or object) ``{"image_description", "0":
  {"copied_content", "score" 1-4, "error_type", "rewritten_content", …}, …, "Added": {"rewritten_content"}}``
  (the seed also accepts the spaced keys ``copied content``/``rewritten content``/``error type``, so do we).
  Sentence entries keep the report's order. Copied sentences are completed against the rollout as the
  seed's ``complete_copied_content`` does (the text between two copied sentences joins the next one) so
  that the sentence pieces cover the rollout; deviation: text after the last copied sentence joins the
  last *sentence* (the seed appends it to the ``Added`` slot, where it is then ignored, dropping it).
  Scores outside 1–4 or not numbers are errors (the seed silently weights them 1.0).
* **bench**: our PreferenceRecord JSONL (``bench.data.loaders``); ids must be unique.

Ids: released formats may repeat an id (POVID ids are COCO image ids); repeats get ``#2``, ``#3`` … since
the reference cache and the per-sample image transforms are keyed by id.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from bench.data.loaders import load_preference_file
from bench.data.preference import PreferenceRecord
from bench.errors import DataError
from bench.io import iter_jsonl, read_json
from bench.text import split_at_terminators

HADPO_PROMPTS = (  # train_dpo.py: desc_process
    "Describe this image in detail.",
    "Take a look at this image and describe what you notice.",
    "Please provide a detailed description of the picture.",
    "Could you describe the contents of this image for me?",
)
OPA_SCORE_WEIGHT = {1: 2.5, 2: 2.0, 3: 1.5, 4: 1.0}  # data_utils_dpo.py: score_mapping
OPA_ERROR_WEIGHT = {"image_recognition_error": 3.0, "correct": 1.0, "language_comprehension_error": 1.0}
IMAGE_EXTS = (".jpg", ".png", ".jpeg")


def _strip_image_tag(question: str) -> str:
    return question.replace("<image>", "").strip()


def _str_field(row: dict, key: str, path: Path, line: int | None, *, allow_empty: bool = False) -> str:
    if key not in row:
        raise DataError(path, "missing field", line=line, field=key)
    value = row[key]
    if not isinstance(value, str):
        raise DataError(path, f"expected a string, got {type(value).__name__}", line=line, field=key)
    if not allow_empty and not value.strip():
        raise DataError(path, "empty text", line=line, field=key)
    return value


def _image_by_id(root: Path, image_id: Any) -> Path | None:
    for ext in IMAGE_EXTS:
        cand = root / f"{image_id}{ext}"
        if cand.exists():
            return cand
    return None


def _resolve(image: str, root: Path) -> Path:
    p = Path(image)
    return p if p.is_absolute() else root / p


def _unique_ids(records: list[PreferenceRecord]) -> list[PreferenceRecord]:
    seen: dict[str, int] = {}
    for rec in records:
        n = seen.get(rec.id, 0) + 1
        seen[rec.id] = n
        if n > 1:
            rec.id = f"{rec.id}#{n}"
    return records


# ---------------------------------------------------------------------------------------------- HA-DPO
def _vg_paths(root: Path) -> dict[str, Path] | None:
    meta = root / "image_data.json"
    if not meta.exists():
        return None
    out = {}
    for row in read_json(meta):
        url = str(row.get("url", ""))
        parts = url.split("/")
        if len(parts) >= 2:
            out[str(row.get("image_id"))] = root / parts[-2] / parts[-1]
    return out


def load_hadpo(desc_path: Path, pope_path: Path, image_root: Path, seed: int = 42) -> list[PreferenceRecord]:
    desc_path, pope_path, image_root = Path(desc_path), Path(pope_path), Path(image_root)
    vg = _vg_paths(image_root)

    def image_of(image_id: Any, path: Path, line: int | None, field: str) -> str:
        p = vg.get(str(image_id)) if vg is not None else _image_by_id(image_root, image_id)
        if p is None or not p.exists():
            where = "in image_data.json" if vg is not None else f"as {image_root}/{image_id}.jpg|.png"
            raise DataError(path, f"image of image_id {image_id} not found {where}", line=line, field=field)
        return str(p)

    if not desc_path.exists():
        raise DataError(desc_path, "file not found (HA-DPO needs desc_data.json and pope_data.json)")
    desc = read_json(desc_path)
    if isinstance(desc, list):
        entries = []
        for i, d in enumerate(desc):
            if not isinstance(d, dict) or "image_id" not in d:
                raise DataError(desc_path, "missing field", line=i + 1, field="image_id")
            entries.append((str(d["image_id"]), d, i + 1))
    elif isinstance(desc, dict):
        entries = [(str(k), v, None) for k, v in desc.items()]
    else:
        raise DataError(desc_path, "expected an object keyed by image id (or a list of records)")
    rng = random.Random(seed)
    desc_records = []
    for image_id, entry, line in entries:
        for key in ("chosen", "rejected"):
            values = entry.get(key) if isinstance(entry, dict) else None
            if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
                raise DataError(desc_path, f"image_id {image_id}: expected a non-empty list of non-empty strings",
                                line=line, field=key)
        # the seed's order of draws: chosen, rejected, then the prompt
        chosen, rejected = rng.choice(entry["chosen"]), rng.choice(entry["rejected"])
        prompt = rng.choice(HADPO_PROMPTS)
        image = image_of(image_id, desc_path, line, "image_id")
        desc_records.append(PreferenceRecord(f"desc-{image_id}", image, prompt, chosen, rejected))
    pope_records = []
    if pope_path.exists():
        rows = read_json(pope_path)
        if not isinstance(rows, list):
            raise DataError(pope_path, "expected a list of records")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise DataError(pope_path, "expected an object", line=i + 1)
            if "correct" not in row:
                raise DataError(pope_path, "missing field", line=i + 1, field="correct")
            if not isinstance(row["correct"], (bool, int)):
                raise DataError(pope_path, f"expected true/false, got {row['correct']!r}", line=i + 1, field="correct")
            if row["correct"]:  # the seed keeps the rows the model got wrong
                continue
            if "image_id" not in row:
                raise DataError(pope_path, "missing field", line=i + 1, field="image_id")
            rec = PreferenceRecord(f"pope-{row['image_id']}-{i + 1}", image_of(row["image_id"], pope_path, i + 1, "image_id"),
                                   _strip_image_tag(_str_field(row, "question", pope_path, i + 1)),
                                   _str_field(row, "chosen", pope_path, i + 1), _str_field(row, "reject", pope_path, i + 1))
            pope_records.append(rec)
    second = [PreferenceRecord(r.id + "#2", r.image, r.question, r.chosen, r.rejected) for r in desc_records]
    return pope_records + desc_records + second


# ----------------------------------------------------------------------------------------------- POVID
def load_povid(path: Path, image_root: Path | None = None) -> list[PreferenceRecord]:
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    rows = read_json(path)
    if not isinstance(rows, list):
        raise DataError(path, "expected a JSON list of records")
    out = []
    for i, row in enumerate(rows):
        line = i + 1
        if not isinstance(row, dict):
            raise DataError(path, "expected an object", line=line)
        turns = {}
        for key in ("conversations", "rejected_conversations"):
            conv = row.get(key)
            if not isinstance(conv, list) or len(conv) < 2 or not all(isinstance(t, dict) for t in conv[:2]):
                raise DataError(path, "expected [human turn, gpt turn]", line=line, field=key)
            if conv[0].get("from") != "human" or conv[1].get("from") != "gpt":
                raise DataError(path, "expected a human turn then a gpt turn", line=line, field=key)
            turns[key] = (_str_field(conv[0], "value", path, line), _str_field(conv[1], "value", path, line))
        question = _strip_image_tag(turns["conversations"][0])
        if _strip_image_tag(turns["rejected_conversations"][0]) != question:
            raise DataError(path, "the rejected conversation asks another question than the chosen one", line=line,
                            field="rejected_conversations")
        image = _resolve(_str_field(row, "image", path, line), root)
        if not image.exists():
            raise DataError(path, f"image file not found: {image}", line=line, field="image")
        rec_id = str(row.get("id", line))
        out.append(PreferenceRecord(rec_id, str(image), question, turns["conversations"][1],
                                    turns["rejected_conversations"][1]))
    if not out:
        raise DataError(path, "no records")
    return _unique_ids(out)


# --------------------------------------------------------------------------------------------- HSA-DPO
def load_hsa(path: Path, image_root: Path | None = None) -> list[PreferenceRecord]:
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    out = []
    for line, row in iter_jsonl(path):
        if "id" not in row:
            raise DataError(path, "missing field", line=line, field="id")
        rec_id = str(row["id"])
        image = _image_by_id(root, rec_id)
        if image is None:
            raise DataError(path, f"image file not found ({root}/{rec_id}.jpg|.png|.jpeg)", line=line, field="id")
        rec = PreferenceRecord(rec_id, str(image), _strip_image_tag(_str_field(row, "question", path, line)),
                               _str_field(row, "chosen", path, line), _str_field(row, "rejected", path, line),
                               chosen_score=row.get("chosen_score"), rejected_score=row.get("rejected_score"))
        rec.validate(path=path, line=line)
        out.append(rec)
    if not out:
        raise DataError(path, "no records")
    return _unique_ids(out)


# --------------------------------------------------------------------------------------------- OPA-DPO
def complete_copied(original: str, copied: list[str]) -> list[str]:
    """Stretch the copied sentences so that, in order, they cover ``original``: each takes the text since the
    previous one (``complete_copied_content``); the tail joins the last non-empty one. Unchanged when a
    sentence cannot be found in order."""
    fixed, rest = [], original
    for s in copied:
        t = s.strip()
        if not t:
            fixed.append("")
            continue
        pos = rest.find(t)
        if pos < 0:
            return list(copied)
        fixed.append(rest[: pos + len(t)].strip(" "))
        rest = rest[pos + len(t):]
    if rest.strip():
        last = max((k for k, s in enumerate(fixed) if s), default=None)
        if last is not None:
            fixed[last] = fixed[last] + rest.rstrip()
    return fixed


def _report_entries(report: dict, path: Path, line: int) -> tuple[list[dict], str]:
    sentences, added = [], ""
    for key, entry in report.items():
        if key in ("image_description", "image description"):
            continue
        if not isinstance(entry, dict):
            raise DataError(path, f"report entry {key!r} is not an object", line=line, field="AI_json_report")
        rewritten = entry.get("rewritten content", entry.get("rewritten_content", "")) or ""
        if not isinstance(rewritten, str):
            raise DataError(path, f"report entry {key!r}: rewritten_content is not a string", line=line,
                            field="AI_json_report")
        if key == "Added":
            added = rewritten
            continue
        copied = entry.get("copied content", entry.get("copied_content", "")) or ""
        score = entry.get("score", 4)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or score not in OPA_SCORE_WEIGHT:
            raise DataError(path, f"report entry {key!r}: score must be a number in 1-4, got {score!r}", line=line,
                            field="AI_json_report")
        error_type = entry.get("error type", entry.get("error_type", "correct"))
        if not isinstance(copied, str) or not isinstance(error_type, str):
            raise DataError(path, f"report entry {key!r}: copied_content/error_type must be strings", line=line,
                            field="AI_json_report")
        sentences.append({"copied": copied, "rewritten": rewritten, "score": int(score), "error_type": error_type})
    return sentences, added


def load_opa(path: Path, image_root: Path | None = None) -> list[PreferenceRecord]:
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    out = []
    for line, row in iter_jsonl(path):
        query = _strip_image_tag(_str_field(row, "queries", path, line))
        gt = _str_field(row, "standard_response", path, line)
        rollout = _str_field(row, "original_generate_response", path, line)
        if "AI_json_report" not in row:
            raise DataError(path, "missing field (OPA-DPO needs the GPT-4V sentence report)", line=line,
                            field="AI_json_report")
        report = row["AI_json_report"]
        if isinstance(report, str):
            try:
                report = json.loads(report)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"AI_json_report is not JSON ({exc.msg})", line=line,
                                field="AI_json_report") from None
        if not isinstance(report, dict) or not report:
            raise DataError(path, "empty or non-object report", line=line, field="AI_json_report")
        sentences, added = _report_entries(report, path, line)
        completed = complete_copied(rollout, [s["copied"] for s in sentences])
        for s, c in zip(sentences, completed):
            s["copied"] = c
        revision = row.get("AI_pseudo_response")
        if revision is not None and not isinstance(revision, str):
            raise DataError(path, "expected a string", line=line, field="AI_pseudo_response")
        revision = (revision or "").strip() or " ".join(
            [s["rewritten"].strip() for s in sentences if s["rewritten"].strip()] + ([added.strip()] if added.strip() else []))
        if not revision or not (any(s["rewritten"].strip() for s in sentences) or added.strip()):
            raise DataError(path, "empty revision", line=line, field="AI_pseudo_response")
        image = _resolve(_str_field(row, "image", path, line), root)
        if not image.exists():
            raise DataError(path, f"image file not found: {image}", line=line, field="image")
        out.append(PreferenceRecord(str(row.get("id", line)), str(image), query, chosen=gt, rejected=rollout,
                                    extra={"gt": gt, "rollout": rollout, "revision": revision,
                                           "sentences": sentences, "added": added}))
    if not out:
        raise DataError(path, "no records")
    return _unique_ids(out)


def opa_extra_from_pair(rec: PreferenceRecord) -> dict:
    """OPA fields for a plain pair (the bundled synthetic data): y_gt = y_r = chosen, y_o = rejected, the
    sentence report aligned by position (a differing sentence: score 2, ``image_recognition_error``)."""
    own, rev = split_at_terminators(rec.rejected), split_at_terminators(rec.chosen)
    sentences = []
    for i in range(max(len(own), len(rev))):
        o = own[i] if i < len(own) else ""
        r = rev[i] if i < len(rev) else ""
        same = o == r
        sentences.append({"copied": o, "rewritten": r, "score": 4 if same else 2,
                          "error_type": "correct" if same else "image_recognition_error"})
    return {"gt": rec.chosen, "rollout": rec.rejected, "revision": rec.chosen, "sentences": sentences, "added": ""}


# ------------------------------------------------------------------------------------------ dispatching
def load_bench(path: Path, image_root: Path | None = None) -> list[PreferenceRecord]:
    """Our PreferenceRecord JSONL, with images checked and ids required to be unique."""
    path = Path(path)
    records = load_preference_file(path, image_root=image_root)
    lines = [line for line, _ in iter_jsonl(path)]
    seen: set[str] = set()
    for line, rec in zip(lines, records):
        if rec.id in seen:
            raise DataError(path, f"duplicate id {rec.id!r}", line=line, field="id")
        seen.add(rec.id)
        if not Path(rec.image).exists():
            raise DataError(path, f"image file not found: {rec.image}", line=line, field="image")
    return records


def sniff_format(path: Path) -> str:
    """``ha-dpo`` | ``povid`` | ``hsa-dpo`` | ``opa-dpo`` | ``bench`` (from the first record)."""
    path = Path(path)
    if path.is_dir() or path.name in ("desc_data.json", "pope_data.json"):
        return "ha-dpo"
    if not path.exists():
        raise DataError(path, "file not found")
    with open(path, encoding="utf-8") as fh:
        head = fh.read(1 << 16).lstrip()
    if head.startswith("["):
        data = read_json(path)
        first = data[0] if isinstance(data, list) and data else {}
        if isinstance(first, dict) and "rejected_conversations" in first:
            return "povid"
        if isinstance(first, dict) and "reject" in first and "correct" in first:
            return "ha-dpo"
        raise DataError(path, "unrecognised JSON list (expected POVID conversations or HA-DPO pope_data)")
    first = next((row for _, row in iter_jsonl(path)), None)
    if first is None:
        raise DataError(path, "no records")
    if "AI_json_report" in first:
        return "opa-dpo"
    if "image" in first and "chosen" in first:
        return "bench"
    if {"question", "chosen", "rejected"} <= set(first):
        return "hsa-dpo"
    raise DataError(path, f"unrecognised preference record (keys {sorted(first)})", line=1)


def load_any(path: str | Path, image_root: str | Path | None = None, seed: int = 42) -> list[PreferenceRecord]:
    """Records of any format above (the format is recognised from the path / first record)."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else None
    fmt = sniff_format(path)
    if fmt == "ha-dpo":
        folder = path if path.is_dir() else path.parent
        return load_hadpo(folder / "desc_data.json", folder / "pope_data.json", root or folder, seed)
    return {"povid": load_povid, "hsa-dpo": load_hsa, "opa-dpo": load_opa, "bench": load_bench}[fmt](path, root)

