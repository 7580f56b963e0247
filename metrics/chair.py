"""CHAIR (Rohrbach, Hendricks et al., EMNLP 2018, arXiv 1809.02156): object hallucination in captions.

Per caption, mentions = COCO-object words found by :func:`metrics.chair_words.caption_to_words`;
a mention is hallucinated iff its head word is not in the image's ground-truth set.

    CHAIR_i = hallucinated mentions / all mentions          (duplicates count; micro over captions)
    CHAIR_s = captions with ≥1 hallucinated mention / captions
    Recall  = Σ |distinct mentioned head words ∩ GT| / Σ |GT|     (micro)
    Len     = mean number of raw tokens per caption          (OPERA's "Len" ×100 = this)

Ground truth per image = head words of its COCO instance categories ∪ head words found in its
reference captions by the same word processing (``get_annotations`` of the references), so it
depends on the flavour; every protocol names its *caption* flavour and its *GT* flavour separately.
``chair-opera`` = WordNet captions + singularize GT: the combination that reproduces OPERA's
published LLaVA-1.5 numbers (what OPERA's code does when it loads the original CHAIR cache).

GT is built from COCO ``instances_*.json`` + ``captions_*.json`` (read with pycocotools) and cached
as JSON keyed by the annotation files' sha256 and the flavour (the cache records both), or read from
a GT-object file like ``shared/reference/chair/coco2014_chair_gt_objects_*.json``.

References: ``LisaAnne/Hallucination@6e4d33c:utils/chair.py``, ``Maxlinn/CHAIR-metric-standalone@640c507``
(singularize), ``shikiw/OPERA@61426ef:chair.py`` (wordnet). Deviations: the reference divides by zero
when no caption mentions an object (CHAIR_i) — here 0.0, listed under ``zero_division``; Pattern's
singularize is re-implemented (see chair_words).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.benchmark import Benchmark, EvalItem, GenerationSettings
from bench.errors import BenchError, DataError
from bench.io import atomic_write_json, iter_jsonl, read_json, sha256_file
from bench.registry import BENCHMARKS
from bench.stats import bootstrap_ci
from metrics.chair_words import caption_to_words, synonyms

PROMPT = "Please describe this image in detail."


def caption_details(caption: str, gt: set[str], flavour: str) -> dict[str, Any]:
    words, nodes, idxs, raw = caption_to_words(caption, flavour)
    hall = [[w, n] for w, n in zip(words, nodes) if n not in gt]
    hall_idxs = [i for i, n in zip(idxs, nodes) if n not in gt]
    covered = len(set(nodes) & gt)
    return {"mentioned_words": words, "node_words": nodes, "mention_idxs": idxs, "hallucinated": hall,
            "hallucination_idxs": hall_idxs, "raw_words": raw, "n_raw_words": len(raw),
            "gt_objects": sorted(gt),
            "metrics": {"CHAIRs": int(bool(hall)), "CHAIRi": len(hall) / len(words) if words else 0.0,
                        "Recall": covered / len(gt) if gt else 0.0},
            "_covered": covered, "_n_gt": len(gt)}


def aggregate(details: list[dict]) -> dict[str, Any]:
    n = len(details)
    mentions = sum(len(d["mentioned_words"]) for d in details)
    halls = sum(len(d["hallucinated"]) for d in details)
    n_gt = sum(d["_n_gt"] for d in details)
    zero = [k for k, den in (("chair_s", n), ("chair_i", mentions), ("recall", n_gt), ("len", n)) if den == 0]
    return {"chair_s": sum(d["metrics"]["CHAIRs"] for d in details) / n if n else 0.0,
            "chair_i": halls / mentions if mentions else 0.0,
            "recall": sum(d["_covered"] for d in details) / n_gt if n_gt else 0.0,
            "len": sum(d["n_raw_words"] for d in details) / n if n else 0.0,
            "zero_division": zero}


def printed(overall: dict[str, float], with_len: bool) -> str:
    """print_metrics() of the references: ``f"{v * 100:.01f}"`` per line."""
    lines = [f"CHAIRs    : {overall['CHAIRs'] * 100:.01f}", f"CHAIRi    : {overall['CHAIRi'] * 100:.01f}",
             f"Recall    : {overall['Recall'] * 100:.01f}"]
    if with_len:
        lines.append(f"Len       : {overall['Len'] * 100:.01f}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- ground truth
def gt_from_object_file(path: str | Path) -> dict[int, set[str]]:
    """``{"gt_objects": {image_id: [head words]}}`` files (shared/reference/chair/*gt_objects*.json)."""
    data = read_json(path)
    if "gt_objects" not in data:
        raise DataError(path, "not a CHAIR GT-object file (no 'gt_objects')")
    return {int(k): set(v) for k, v in data["gt_objects"].items()}


def build_gt(instances: list[Path], captions: list[Path], flavour: str, cache_dir: Path | None = None,
             image_ids: set[int] | None = None) -> dict[int, set[str]]:
    """GT sets from COCO annotation files, cached per (files' sha256, flavour)."""
    from pycocotools.coco import COCO

    digest = "-".join(sha256_file(p)[:12] for p in [*instances, *captions])
    cache = (cache_dir / f"chair_gt_{flavour}_{digest}.json") if cache_dir else None
    if cache is not None and cache.exists():
        data = read_json(cache)
        if data.get("flavour") == flavour and data.get("sources") == digest:
            gt = {int(k): set(v) for k, v in data["gt_objects"].items()}
            return {k: v for k, v in gt.items() if image_ids is None or k in image_ids}
    _, inverse = synonyms()
    gt: dict[int, set[str]] = {}
    for path in instances:
        coco = COCO(str(path))
        cats = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        for img_id in coco.getImgIds():
            gt.setdefault(img_id, set())
        for ann in coco.dataset.get("annotations", []):
            name = cats[ann["category_id"]]
            if name not in inverse:
                raise DataError(path, f"category {name!r} is not a COCO category name of the synonym list")
            gt.setdefault(ann["image_id"], set()).add(inverse[name])
    for path in captions:
        data = read_json(path)
        for ann in data.get("annotations", []):
            _, nodes, _, _ = caption_to_words(ann["caption"], flavour)
            gt.setdefault(ann["image_id"], set()).update(nodes)
    if cache is not None:
        atomic_write_json(cache, {"flavour": flavour, "sources": digest,
                                  "gt_objects": {str(k): sorted(v) for k, v in sorted(gt.items())}})
    return {k: v for k, v in gt.items() if image_ids is None or k in image_ids}


# ---------------------------------------------------------------------------------------- protocols
class ChairProtocol(Benchmark):
    """CHAIR, WordNet-POS captions and GT (OPERA / less-is-more / lmms-eval), greedy, 512 tokens."""

    name = "chair"
    benchmark = "chair"
    version = "1"
    description = "CHAIR (WordNet-POS captions + WordNet-POS GT, as OPERA/less-is-more code), greedy, 512 tokens"
    generation = GenerationSettings(max_new_tokens=512)
    params: dict[str, Any] = {"caption_flavour": "wordnet", "gt_flavour": "wordnet", "prompt": PROMPT,
                              "image_set": "chair/synthetic_eval.jsonl", "gt_file": None}
    headline = {"chair_i": ("CHAIR_i", False), "chair_s": ("CHAIR_s", False), "recall": ("CHAIR recall", True)}

    def image_set(self, data_root: Path) -> list[dict]:
        """Images to caption: the protocol's set file if present, else every image of instances_val2014."""
        path = Path(data_root) / self.params["image_set"]
        if path.exists():
            rows = [rec for _, rec in iter_jsonl(path)]
            for r in rows:
                if "image" not in r:
                    r["image"] = f"COCO_val2014_{int(r['image_id']):012d}.jpg"
            return rows
        inst = read_json(Path(data_root) / "coco" / "annotations" / "instances_val2014.json")
        return [{"image_id": im["id"], "image": im["file_name"]} for im in inst["images"]]

    def items(self, data_root: Path) -> list[EvalItem]:
        return [EvalItem(str(r["image_id"]), str(Path(data_root) / "coco" / "val2014" / r["image"]),
                         self.params["prompt"], {"image_id": int(r["image_id"])}) for r in self.image_set(data_root)]

    def annotation_files(self, data_root: Path) -> tuple[list[Path], list[Path]]:
        ann = Path(data_root) / "coco" / "annotations"
        inst = [p for p in (ann / "instances_train2014.json", ann / "instances_val2014.json") if p.exists()]
        caps = [p for p in (ann / "captions_train2014.json", ann / "captions_val2014.json") if p.exists()]
        if not inst:
            raise BenchError(f"{ann}: COCO instances_*2014.json not found (run `python -m bench data fetch coco-val2014`)")
        return inst, caps

    def data_files(self, data_root: Path) -> list[Path]:
        if self.params.get("gt_file"):
            return [Path(data_root) / self.params["gt_file"]]
        inst, caps = self.annotation_files(data_root)
        return inst + caps

    def ground_truth(self, data_root: Path, image_ids: set[int]) -> dict[int, set[str]]:
        if self.params.get("gt_file"):
            return gt_from_object_file(Path(data_root) / self.params["gt_file"])
        inst, caps = self.annotation_files(data_root)
        return build_gt(inst, caps, self.params["gt_flavour"], Path(data_root) / "chair" / "cache", image_ids)

    def score(self, predictions: list[dict], data_root: Path, n_boot: int = 1000, limit: int | None = None) -> dict:
        items = self.items(data_root)
        if limit is not None:
            items = items[:limit]
        texts = {p["id"]: p["text"] for p in predictions}
        ids = {it.meta["image_id"] for it in items}
        gt = self.ground_truth(data_root, ids)
        details, missing = [], {}
        for it in items:
            if it.id not in texts:
                missing[it.id] = "no prediction"
                continue
            if it.meta["image_id"] not in gt:
                missing[it.id] = "image has no ground truth"
                continue
            d = caption_details(texts[it.id], gt[it.meta["image_id"]], self.params["caption_flavour"])
            d["image_id"] = it.meta["image_id"]
            details.append(d)
        agg = aggregate(details)
        metrics = {k: agg[k] for k in ("chair_s", "chair_i", "recall", "len")}
        ci = bootstrap_ci(details, lambda ds: {k: v for k, v in aggregate(ds).items() if k != "zero_division"},
                          n_boot=n_boot, seed=0)
        per = [{k: d[k] for k in ("image_id", "mentioned_words", "node_words", "hallucinated")} for d in details]
        return {"metrics": metrics, "ci": ci, "n": len(details), "zero_division": agg["zero_division"],
                "flavours": {"caption": self.params["caption_flavour"], "gt": self.params["gt_flavour"]},
                "skipped": {"count": len(missing), "reasons": missing}, "details": {"per_caption": per}}


def _protocol(name: str, description: str, **params: Any) -> None:
    cls = type(f"Chair_{name.replace('-', '_')}", (ChairProtocol,), {
        "name": name, "description": description, "params": {**ChairProtocol.params, **params},
        "__doc__": description})
    BENCHMARKS.add(name, cls)


BENCHMARKS.add("chair", ChairProtocol)
_protocol("chair-singularize", "CHAIR as Rohrbach et al. (singularize captions + singularize GT), greedy, 512 tokens",
          caption_flavour="singularize", gt_flavour="singularize")
_protocol("chair-wordnet", "CHAIR, WordNet-POS captions + WordNet-POS GT (= chair), explicit name",
          caption_flavour="wordnet", gt_flavour="wordnet")
_protocol("chair-opera", "CHAIR as OPERA's published numbers: WordNet-POS captions + singularize GT, OPERA 500 images",
          caption_flavour="wordnet", gt_flavour="singularize", image_set="chair/opera_500.jsonl")
_protocol("chair-lim", "CHAIR on less-is-more's chair-500 images, WordNet-POS captions + GT",
          caption_flavour="wordnet", gt_flavour="wordnet", image_set="chair/lim_chair-500.jsonl")
