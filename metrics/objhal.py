"""Object HalBench (RLHF-V / RLAIF-V): CHAIR on 300 COCO images with detail-eliciting prompts.

Not the 500-image COCO CHAIR of :mod:`metrics.chair`: a different image set (the 300-question file with 8
prompt variants), a different synonym list (``synonyms_refine.txt``) and different word processing. It is
the "CHAIR" column of RLHF-V, RLAIF-V, OPA-DPO and HSA-DPO.

Reference: ``RLHF-V/RLAIF-V@83d917b:eval/eval_gpt_obj_halbench.py`` (class ``CHAIR``, ``compute_chair``
without ``--use_gpt``) and ``eval/summarize_gpt_obj_halbench_review.py``; synonyms
``eval/data/synonyms_refine.txt`` of that commit (shipped as ``metrics/data/objhal_synonyms_refine.txt``).

Words of a response (:func:`caption_to_words`): ``text.replace("Assistant:", "").strip()``, lower-cased,
``nltk.word_tokenize``, every token lemmatised with ``WordNetLemmatizer().lemmatize(w)`` (noun POS, no
tagger); two-word phrases merged left to right (every multi-word synonym, "home plate", "train track",
"baby/adult <animal>" → animal, "passenger jet/train" → jet/train, "bow tie" → tie, "toilet seat" → toilet,
"wine glas" → wine glass); every "seat" dropped when "toilet" is present; the tokens that are synonyms
(each entry ``strip()``-ed) are mentions, mapped to their row's first word (node word; a surface listed in
two rows maps to the later row). Per response with GT node set G:

    hallucinated mention: node ∉ G;  covered = distinct nodes ∈ G;  words = len(text.split(" "))
    CHAIR_s  = responses with ≥ 1 hallucinated mention / responses with ≥ 1 mention   ("Response Hall",
               the reference's CHAIRs_refine; ``chair_s_all`` divides by all responses, its CHAIRs)
    CHAIR_i  = Σ hallucinated mentions / Σ mentions                                    ("Object Hall")
    recall   = Σ |covered| / Σ |G|                                                     ("Object Recall")
    len      = Σ words / responses                                                     ("Average Length")

GT (:func:`build_gt`): the node words of the image's COCO instance categories ∪ the node words that the same
word processing finds in its COCO reference captions, over train2014 + val2014 annotations (``--coco_path``
of the reference), cached under ``<data root>/objhal/cache/`` keyed by the files' sha256.

Protocols: ``objhal`` — no GPT object extraction, 3-beam search, 1024 new tokens (the reference's
``eval_rlaifv_objhal.sh``: ``--temperature 0 --num_beam 3``), each question's prompt as released; offline.
That script scores with ``--use_gpt`` (objects extracted by gpt-3.5-turbo-0613): protocols ``objhal-gpt`` and
``objhal-gpt-nltk`` of :mod:`metrics.objhal_gpt`, through the judge registry.

spaCy: the reference module loads ``en_core_web_trf`` when it is imported (``nlp = spacy.load(...)``), with or
without ``--use_gpt``, but only the GPT path uses it — ``Token.lemma_`` and ``Token.tag_`` of each extracted
object (``"a <object>"``) to find two-word entries and noun runs (``get_pred_objs_match``, ``postagging``). The
rule-based path of this protocol (NLTK tokens, WordNet noun lemmas) never calls it, so this protocol reproduces
the reference without spaCy and neither loads nor needs it. For the GPT path, ``objhal-gpt`` uses spaCy with
``en_core_web_trf`` when installed (and stops before generation otherwise); ``objhal-gpt-nltk`` is a declared
deviation with an NLTK tagger and WordNet lemmas in its place, its own protocol (see :mod:`metrics.objhal_gpt`).

Deliberate deviations: zero denominators give 0.0 and are listed under ``zero_division`` (the reference
raises); a response for an image outside the question file, a missing response and a missing image are
skipped and reported with their ids (a missing response whose image is absent says so; the reference
asserts that the image sets match); the scores carry the reference's ``overall_metrics`` and printed
summary under ``reference``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from bench import nltk_data
from bench.benchmark import Benchmark, EvalItem, GenerationSettings
from bench.data.synthetic_amber import ensure_objhal
from bench.errors import BenchError, DataError
from bench.io import atomic_write_json, iter_jsonl, read_json, sha256_file, sha256_text
from bench.registry import BENCHMARKS
from bench.stats import bootstrap_ci
from metrics.chair_words import lemma, tokenize

SYNONYMS_FILE = Path(__file__).resolve().parent / "data" / "objhal_synonyms_refine.txt"
REFERENCE = "RLHF-V/RLAIF-V@83d917b"
NLTK_NEEDS = ("tokenizer", "wordnet")
GT_CACHE_FORMAT = "bench.objhal.gt/1"
_ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub")
# per-response count vector
FIELDS = ("hallucinated", "has_mention", "n_hall", "n_mentions", "n_covered", "n_gt", "n_words", "responses")


class Vocabulary(NamedTuple):
    surfaces: frozenset
    inverse: Mapping[str, str]
    double_words: Mapping[str, str]


@lru_cache(maxsize=4)
def vocabulary(path: str = str(SYNONYMS_FILE)) -> Vocabulary:
    """The refined synonym rows and the two-word table, built as the reference's ``CHAIR.__init__``."""
    inverse: dict[str, str] = {}
    surfaces: set[str] = set()
    for line in Path(path).read_text(encoding="utf-8").splitlines(keepends=True):
        row = [s.strip() for s in line.strip().split(", ")]
        surfaces.update(row)
        for s in row:
            inverse[s] = row[0]
    doubles: dict[str, str] = {w: w for w in inverse if len(w.strip().split(" ")) >= 2}
    doubles.update({"home plate": "home plate", "train track": "train track"})
    for animal in _ANIMALS:
        doubles[f"baby {animal}"] = animal
        doubles[f"adult {animal}"] = animal
    doubles.update({"passenger jet": "jet", "passenger train": "train", "bow tie": "tie", "toilet seat": "toilet",
                    "wine glas": "wine glass"})
    return Vocabulary(frozenset(surfaces), inverse, doubles)


def clean_answer(text: str) -> str:
    """The reference's answer loading: ``text.replace("Assistant:", "").strip()``."""
    return text.replace("Assistant:", "").strip()


def caption_to_words(caption: str, vocab: Vocabulary | None = None) -> tuple[list[str], list[str]]:
    """(mentions, node words) of one response, as the reference's ``caption_to_words``."""
    vocab = vocab or vocabulary()
    words = [lemma(w) for w in tokenize(caption.lower())]
    merged: list[str] = []
    i = 0
    while i < len(words):
        pair = " ".join(words[i:i + 2])
        if pair in vocab.double_words:
            merged.append(vocab.double_words[pair])
            i += 2
        else:
            merged.append(words[i])
            i += 1
    if "toilet" in merged and "seat" in merged:
        merged = [w for w in merged if w != "seat"]
    mentions = [w for w in merged if w in vocab.surfaces]
    return mentions, [vocab.inverse[w] for w in mentions]


def judge_response(text: str, gt: Iterable[str], vocab: Vocabulary | None = None) -> dict[str, Any]:
    """Per-response record: mentions, hallucinated mentions, covered GT nodes and the counts."""
    gt_set = set(gt)
    cap = clean_answer(text)
    mentions, nodes = caption_to_words(cap, vocab)
    hallucinated = [[w, n] for w, n in zip(mentions, nodes) if n not in gt_set]
    covered = sorted({n for n in nodes if n in gt_set})
    return {"mentions": mentions, "nodes": nodes, "hallucinated": hallucinated, "covered": covered,
            "n_gt": len(gt_set), "n_words": len(cap.strip().split(" "))}


def counts_of(rec: Mapping[str, Any]) -> np.ndarray:
    return np.array([int(bool(rec["hallucinated"])), int(bool(rec["mentions"])), len(rec["hallucinated"]),
                     len(rec["mentions"]), len(rec["covered"]), rec["n_gt"], rec["n_words"], 1], dtype=np.int64)


def metrics_from_counts(vec: np.ndarray, zero: list[str] | None = None) -> dict[str, float | None]:
    hall, has, n_hall, n_ment, cov, n_gt, n_words, n = (int(x) for x in vec)

    def ratio(a: int, b: int, key: str) -> float | None:
        if b:
            return a / b
        if zero is not None:
            zero.append(key)
            return 0.0
        return None

    return {"chair_s": ratio(hall, has, "chair_s"), "chair_i": ratio(n_hall, n_ment, "chair_i"),
            "recall": ratio(cov, n_gt, "recall"), "chair_s_all": ratio(hall, n, "chair_s_all"),
            "len": ratio(n_words, n, "len")}


def reference_overall(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``compute_chair()['overall_metrics']`` (float accumulation in the reference's order; x/0 → NaN)."""
    num = coco = hall = hall_words = coco_words = gt_words = cls = 0.0
    total_words = 0
    for r in records:
        total_words += r["n_words"]
        gt_words += r["n_gt"]
        coco_words += len(r["nodes"])
        hall_words += len(r["hallucinated"])
        cls += len(r["covered"])
        num += 1
        if r["hallucinated"]:
            hall += 1
        if r["mentions"]:
            coco += 1

    def div(a: float, b: float) -> float:
        return a / b if b else float("nan")

    return {"CHAIRs": div(hall, num), "CHAIRs_refine": div(hall, coco), "CHAIRi": div(hall_words, coco_words),
            "obj_rec": div(cls, gt_words), "sentence_num": num, "coco_sentence_num": coco,
            "coco_word_count": cls, "gt_word_count": gt_words, "avg_word_len": div(float(total_words), num)}


def printed_summary(overall: Mapping[str, float]) -> dict[str, float]:
    """The numbers ``summarize_gpt_obj_halbench_review.py`` prints (×100, ``:.2f``), as floats."""
    return {"Response Hall": float(f"{overall['CHAIRs_refine'] * 100:.2f}"),
            "Object Hall": float(f"{overall['CHAIRi'] * 100:.2f}"),
            "Object Recall": float(f"{overall['obj_rec'] * 100:.2f}"),
            "Average Length": float(f"{overall['avg_word_len']:.2f}")}


# ----------------------------------------------------------------------------------------------- GT
def build_gt(image_ids: Iterable[int], instances: Sequence[Path], captions: Sequence[Path],
             vocab: Vocabulary | None = None) -> dict[int, list[str]]:
    """Node words per image from COCO instances (category names) and reference captions."""
    vocab = vocab or vocabulary()
    gt: dict[int, set[str]] = {int(i): set() for i in image_ids}
    for path in instances:
        data = read_json(path)
        names = {c["id"]: c["name"] for c in data.get("categories", [])}
        for ann in data.get("annotations", []):
            if ann.get("image_id") in gt:
                name = names.get(ann.get("category_id"))
                if name not in vocab.inverse:
                    raise DataError(path, f"category {name!r} is not in the Object HalBench synonym list",
                                    field="category_id")
                gt[ann["image_id"]].add(vocab.inverse[name])
    for path in captions:
        for ann in read_json(path).get("annotations", []):
            if ann.get("image_id") in gt:
                gt[ann["image_id"]].update(caption_to_words(str(ann.get("caption", "")), vocab)[1])
    return {i: sorted(s) for i, s in gt.items()}


def load_gt_file(path: Path) -> dict[int, list[str]]:
    """``{"<image id>": [node words]}`` (the parity format) or ``{"gt_objects": {...}}``."""
    data = read_json(path)
    if isinstance(data, dict) and isinstance(data.get("gt_objects"), dict):
        data = data["gt_objects"]
    if not isinstance(data, dict):
        raise DataError(path, "expected {image id: [node words]}")
    try:
        return {int(k): list(v) for k, v in data.items()}
    except (TypeError, ValueError):
        raise DataError(path, "image ids must be integers") from None


# ------------------------------------------------------------------------------------------- protocol
def _is_synthetic(data_root: Path) -> bool:
    manifest = Path(data_root) / "manifest.json"
    try:
        return manifest.exists() and read_json(manifest).get("generator") == "bench.data.synthetic"
    except (DataError, AttributeError):
        return False


class ObjHalProtocol(Benchmark):
    """Object HalBench (RLAIF-V), no GPT extraction: CHAIR_s/CHAIR_i/recall on 300 images, 3 beams."""

    name = "objhal"
    benchmark = "objhal"
    version = "1"
    description = ("Object HalBench (RLHF-V/RLAIF-V@83d917b, not COCO CHAIR): response/object hallucination on"
                   " 300 COCO images, refined synonyms, WordNet noun lemmas, no GPT extraction, 3 beams, 1024 tokens")
    generation = GenerationSettings(max_new_tokens=1024, num_beams=3)
    params: dict[str, Any] = {"questions": "objhal/questions.jsonl", "gt_splits": ["train2014", "val2014"],
                              "object_extraction": "words", "synonyms": "synonyms_refine.txt@83d917b",
                              "reference": REFERENCE}
    headline = {"chair_s": ("Object HalBench CHAIR_s", False), "chair_i": ("Object HalBench CHAIR_i", False),
                "recall": ("Object HalBench recall", True)}

    @classmethod
    def questions_file(cls, data_root: Path) -> Path:
        return Path(data_root) / cls.params["questions"]

    @classmethod
    def missing_resources(cls, data_root: Path) -> list[str]:
        """Human-readable missing pieces with how to get them (empty: ready); callable on the class (preflight)."""
        out = []
        absent = nltk_data.missing(NLTK_NEEDS, [Path(data_root) / "nltk_data"])
        if absent:
            out.append(f"NLTK data {', '.join(absent)} (Object HalBench word processing): `{nltk_data.FETCH_HINT}`"
                       f" then export {nltk_data.ENV_VAR}=<data root>/nltk_data")
        if not _is_synthetic(data_root):
            if not cls.questions_file(data_root).exists():
                out.append(f"{cls.questions_file(data_root)} not found: python -m bench data fetch objhal --root"
                           f" {data_root}")
            absent_ann = [p.name for p in cls.annotation_files(data_root) if not p.exists()]
            if absent_ann and not (Path(data_root) / "objhal" / "gt_objects.json").exists():
                out.append(f"COCO annotations {', '.join(absent_ann)} (Object HalBench ground truth): python -m"
                           f" bench data fetch coco-val2014 --root {data_root}")
        return out

    def rows(self, data_root: Path) -> list[dict]:
        root = Path(data_root)
        if _is_synthetic(root):
            ensure_objhal(root)
        path = self.questions_file(root)
        if not path.exists():
            raise BenchError(f"{path}: Object HalBench questions not found; run `python -m bench data fetch objhal"
                             f" --root {root}`")
        out, seen = [], set()
        for line, rec in iter_jsonl(path):
            for key in ("image_id", "question", "image"):
                if key not in rec:
                    raise DataError(path, "missing field", line=line, field=key)
            try:
                image_id = int(rec["image_id"])
            except (TypeError, ValueError):
                raise DataError(path, f"image_id {rec['image_id']!r} is not an integer", line=line,
                                field="image_id") from None
            if image_id in seen:
                raise DataError(path, f"image {image_id} listed twice", line=line, field="image_id")
            seen.add(image_id)
            out.append({"image_id": image_id, "question": str(rec["question"]), "image": str(rec["image"])})
        return out

    def items(self, data_root: Path) -> list[EvalItem]:
        problems = [p for p in self.missing_resources(data_root) if p.startswith("NLTK")]
        if problems:
            raise BenchError(f"{self.name}: " + "; ".join(problems))
        return [EvalItem(str(r["image_id"]), str(Path(data_root) / r["image"]), r["question"],
                         {"image_id": r["image_id"]}) for r in self.rows(data_root)]

    @classmethod
    def annotation_files(cls, data_root: Path) -> list[Path]:
        ann = Path(data_root) / "coco" / "annotations"
        return [ann / f"{kind}_{s}.json" for kind in ("instances", "captions") for s in cls.params["gt_splits"]]

    def data_files(self, data_root: Path) -> list[Path]:
        return [self.questions_file(data_root), *self.annotation_files(data_root)]

    def ground_truth(self, data_root: Path, image_ids: Sequence[int], gt_file: Path | None = None
                     ) -> tuple[dict[int, list[str]], dict[str, Any]]:
        root = Path(data_root)
        fixed = gt_file or (root / "objhal" / "gt_objects.json")
        if fixed.exists():
            return load_gt_file(fixed), {"source": "gt-object file", "file": str(fixed)}
        files = [p for p in self.annotation_files(root) if p.exists()]
        inst = [p for p in files if p.name.startswith("instances_")]
        caps = [p for p in files if p.name.startswith("captions_")]
        if not inst or (not _is_synthetic(root) and len(files) < len(self.annotation_files(root))):
            absent = [p.name for p in self.annotation_files(root) if not p.exists()]
            raise BenchError(f"Object HalBench ground truth needs COCO annotations ({', '.join(absent)}): run"
                             f" `python -m bench data fetch coco-val2014 --root {root}`")
        key = sha256_text(json.dumps({"format": GT_CACHE_FORMAT, "files": {p.name: sha256_file(p) for p in files},
                                      "synonyms": sha256_file(SYNONYMS_FILE), "images": sorted(image_ids)},
                                     sort_keys=True))[:16]
        cache = root / "objhal" / "cache" / f"gt_{key}.json"
        if cache.exists():
            return load_gt_file(cache), {"source": "coco annotations", "cache": cache.name, "rebuilt": False}
        gt = build_gt(image_ids, inst, caps)
        try:
            atomic_write_json(cache, {"format": GT_CACHE_FORMAT, "key": key,
                                      "gt_objects": {str(k): v for k, v in gt.items()}})
        except OSError:
            pass  # a read-only data root: the GT is rebuilt next time
        return gt, {"source": "coco annotations", "files": [p.name for p in files], "cache": cache.name,
                    "rebuilt": True}

    def paired_units(self, score: dict):
        rows = (score.get("details") or {}).get("per_item") or []
        if not rows or any("image_id" not in r or "n_gt" not in r for r in rows):
            return None
        units: dict[str, np.ndarray] = {}
        for r in rows:
            units[str(r["image_id"])] = units.get(str(r["image_id"]), 0) + counts_of(r)
        return units, lambda s: {k: (v if v is not None else 0.0) for k, v in metrics_from_counts(s).items()}

    def select(self, predictions: list[dict], data_root: Path, item_ids: set[str] | None = None) -> Selection:
        """The question rows in the selection, those with a response, the responses by id, what is skipped."""
        every = self.rows(data_root)
        protocol_ids = {str(r["image_id"]) for r in every}
        rows = [r for r in every if item_ids is None or str(r["image_id"]) in item_ids]
        texts: dict[str, str] = {}
        duplicates = []
        for p in predictions:
            if str(p["id"]) in texts:
                duplicates.append(str(p["id"]))
            texts[str(p["id"])] = p["text"]
        skipped = {k: f"id not in protocol {self.name}" for k in texts if k not in protocol_ids}
        scored = []
        for r in rows:
            if str(r["image_id"]) in texts:
                scored.append(r)
            else:
                image = Path(data_root) / r["image"]
                skipped[str(r["image_id"])] = "no prediction" + ("" if image.exists() else
                                                                 f" (image not found: {image.name})")
        return Selection(rows, scored, texts, skipped, duplicates)

    def score(self, predictions: list[dict], data_root: Path, *, n_boot: int = 1000,
              item_ids: set[str] | None = None, gt_file: Path | None = None, seed: int = 0, **_: Any) -> dict:
        """Stored responses (``{"id", "text"}``) → Object HalBench metrics, bootstrap CIs over images, details."""
        nltk_data.configure([Path(data_root) / "nltk_data"])
        nltk_data.require(NLTK_NEEDS, [Path(data_root) / "nltk_data"], purpose="Object HalBench")
        sel = self.select(predictions, data_root, item_ids)
        gt, provenance = self.ground_truth(data_root, [r["image_id"] for r in sel.rows], gt_file)
        vocab = vocabulary()
        records = []
        for r in sel.scored:
            rec = judge_response(sel.texts[str(r["image_id"])], gt.get(r["image_id"], ()), vocab)
            records.append({"id": str(r["image_id"]), "image_id": r["image_id"], **rec})
        summary = summarise(records, n_boot=n_boot, seed=seed)
        no_gt = [r["image_id"] for r in sel.scored if r["image_id"] not in gt]
        return {
            "metrics": summary["metrics"], "ci": summary["ci"], "n": summary["n"],
            "skipped": {"count": len(sel.skipped), "reasons": sel.skipped}, "duplicates": sel.duplicates,
            "zero_division": summary["zero_division"], "counts": summary["counts"], "reference": summary["reference"],
            "ground_truth": {**provenance, "images_without_entry": no_gt[:20]},
            "details": summary["details"],
        }


class Selection(NamedTuple):
    rows: list[dict]  # question rows in the selection
    scored: list[dict]  # those with a response
    texts: dict[str, str]  # response by id (the last one of a duplicated id)
    skipped: dict[str, str]  # id -> reason
    duplicates: list[str]


def summarise(records: Sequence[Mapping[str, Any]], *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per-response records → metrics, bootstrap CIs over responses, counts, the reference's numbers, details."""
    table = np.stack([counts_of(r) for r in records]) if records else np.zeros((0, len(FIELDS)), np.int64)
    zero: list[str] = []
    metrics = metrics_from_counts(table.sum(axis=0) if records else np.zeros(len(FIELDS), np.int64), zero)
    ci = bootstrap_ci(list(range(len(records))), lambda idx: metrics_from_counts(table[list(idx)].sum(axis=0)),
                      n_boot=n_boot, seed=seed)
    overall = reference_overall(records)
    return {"metrics": metrics, "ci": ci, "n": len(records), "zero_division": zero,
            "counts": {f: int(x) for f, x in zip(FIELDS, table.sum(axis=0))},
            "reference": {"overall_metrics": overall, "printed": printed_summary(overall) if records and not zero
                          else {}},
            "details": {"per_item": list(records)}}


BENCHMARKS.add(ObjHalProtocol)
