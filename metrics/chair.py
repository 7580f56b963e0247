"""CHAIR (Rohrbach, Hendricks et al., EMNLP 2018, arXiv 1809.02156): object hallucination in captions.

Per caption, the mentions are the COCO-object words that :func:`metrics.chair_words.caption_to_words`
finds (duplicates count); a mention is hallucinated iff its head ("node") word is not in the image's
ground-truth (GT) set. Over the captions scored:

    CHAIR_i = Σ hallucinated mentions / Σ mentions                       (micro)
    CHAIR_s = #captions with ≥ 1 hallucinated mention / #captions
    Recall  = Σ |distinct mentioned node words ∩ GT| / Σ |GT|             (micro)
    Len     = Σ len(raw_words) / #captions    (mean tokens after the two-word merge, punctuation included;
                                              the reference stores 0.01×this and prints it ×100)

Per caption: CHAIRs ∈ {0, 1}, CHAIRi = hallucinated / mentions (0 without mentions), Recall =
|covered| / |GT| (0 with an empty GT).

GT of an image = the head words of its COCO instance categories ∪ the head words that the *same* word
processing finds in its reference captions (``get_annotations`` of the references), so the GT depends on a
flavour as well. Every protocol therefore names its caption flavour and its GT flavour separately:
``chair-opera`` = WordNet-POS captions + singularize GT, the combination that reproduces OPERA's published
LLaVA-1.5 numbers (what OPERA's ``chair.py`` computes when it loads Maxlinn's singularize-built
``chair.pkl``; ``shared/parity/chair/README.md``).

GT sources (:mod:`metrics.chair_gt`): the COCO ``instances_<split>.json`` + ``captions_<split>.json`` files,
read with pycocotools' ``COCO`` class, built once per (files' sha256, flavour, synonym file, NLTK version)
and cached as JSON under ``<data root>/chair/cache/`` (``~/.cache/bench/cache/chair`` if the data root is
read-only; atomic write; the cache records its flavour and key and is rebuilt when either does not match).
Or a GT-object file ``{"gt_objects": {"<image id>": [head words]}}`` such as
``shared/reference/chair/coco2014_chair_gt_objects_<flavour>.json`` (a protocol's ``gt_file`` param or
``score(..., gt_file=...)``; its flavour is checked when the file states it).

References followed: ``LisaAnne/Hallucination@6e4d33c:utils/chair.py`` and
``Maxlinn/CHAIR-metric-standalone@640c507:chair.py`` (singularize), ``shikiw/OPERA@61426ef:chair.py`` and
``yuezih/less-is-more@f26e187:CHAIR-eval/chair.py`` (WordNet-POS, adds Len). :func:`reference_overall` and
:func:`printed` give the references' ``overall_metrics`` and ``print_metrics`` output (parity).

Deliberate deviations (documented, tested):

* zero divisions: the references raise ``ZeroDivisionError`` for CHAIR_i without any mention and for Recall
  with all GT sets empty; here the metric is 0.0 and its name is listed under ``zero_division``;
* GT is built from the annotation files of the protocol's split (``val2014``) only; the references insist on
  train+val, but an image's GT uses only that image's annotations, which all sit in its split's files, so
  the GT of every val2014 image is the same (train files are used too when the protocol lists them);
* an image absent from the GT gets an empty GT set, as the references' ``defaultdict`` does, and is counted
  under ``ground_truth.images_without_entry`` so that a wrong annotation file is visible;
* a caption missing from the predictions is not scored and is listed under ``skipped``;
* Pattern's ``singularize`` is reimplemented (``metrics.chair_words``), with identical results on COCO words.

Image sets: ``<data root>/chair/<set>.jsonl`` (``{"image_id", "image"}`` per line; written by
``python -m bench data fetch chair-sets``): ``opera_500`` (OPERA's LLaVA-1.5 / MiniGPT-4 / Shikra set) and
``lim_chair-500`` (less-is-more's ``chair-500.jsonl``); ``all`` = every image of
``coco/annotations/instances_val2014.json``. In the synthetic world (``manifest.json`` generator
``bench.data.synthetic``) a missing set file falls back to ``all`` — that world's val2014 instances file
holds exactly its evaluation images; on real data a missing set file is an error.

Protocols (data-driven rows of :data:`DECLARATIONS`; all: prompt "Please describe this image in detail.",
greedy unless stated, 512 new tokens as OPERA's ``chair_eval.py``, version 2):

* ``chair`` (default) — WordNet-POS captions + WordNet-POS GT on ``opera_500``. Why: benchmarks.md §2.4/§2.6
  — the WordNet-POS ``caption_to_words`` is the one OPERA, less-is-more and lmms-eval run and most LVLM papers
  copy, and applying the *same* flavour to GT and captions is the self-consistent choice (§2.6: "apply it to
  both"); OPERA's image set, 512 tokens, greedy is the most reported setting;
* ``chair-wordnet`` — the same declaration under its explicit flavour name;
* ``chair-singularize`` — the original (Rohrbach et al. / Maxlinn): singularize captions + singularize GT;
* ``chair-opera`` — WordNet-POS captions + singularize GT: reproduces OPERA's published LLaVA-1.5 numbers;
* ``chair-opera-beam5`` — ``chair-opera`` with OPERA's beam-5 baseline decoding;
* ``chair-lim`` — WordNet-POS captions + GT on less-is-more's ``chair-500`` (less-is-more generated up to
  1024 tokens; 512 here).

Speed: after the one-time NLTK load (WordNet ~4 s), 500 LLaVA-length captions score in ~1.5 s CPU including
1000 bootstrap resamples (``tests/test_chair.py::test_chair_scores_500_captions_fast``); the tagger's
arithmetic is vectorised without changing a tag (:class:`metrics.chair_words._VectorPredict`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from bench import nltk_data, paths
from bench.benchmark import Benchmark, EvalItem, GenerationSettings
from bench.errors import BenchError, DataError
from bench.io import iter_jsonl, read_json
from bench.registry import BENCHMARKS
from bench.stats import bootstrap_ci
from metrics.chair_gt import (GT_CACHE_FORMAT, build_gt, cached_gt,  # noqa: F401 (re-exported)
                              load_gt_object_file)
from metrics.chair_words import Vocabulary, caption_to_words, ensure_nltk, flavour_name, vocabulary

PROMPT = "Please describe this image in detail."


# ------------------------------------------------------------------------------------- per caption
def caption_details(caption: str, gt: Iterable[str], flavour: str, vocab: Vocabulary | None = None) -> dict[str, Any]:
    """``compute_chair``'s per-caption record (the fixture fields) plus the counts the aggregate needs."""
    gt_set = gt if isinstance(gt, (set, frozenset)) else set(gt)
    cw = caption_to_words(caption, flavour, vocab)
    hallucinated: list[list[str]] = []
    hall_idxs: list[int] = []
    covered: set[str] = set()
    for word, node, idx in zip(cw.mentioned, cw.nodes, cw.idxs):
        if node in gt_set:
            covered.add(node)
        else:
            hallucinated.append([word, node])
            hall_idxs.append(idx)
    n_words = len(cw.mentioned)
    return {
        "mentioned_words": list(cw.mentioned), "node_words": list(cw.nodes), "mention_idxs": list(cw.idxs),
        "hallucinated": hallucinated, "hallucination_idxs": hall_idxs,
        "raw_words": list(cw.raw_words), "n_raw_words": len(cw.raw_words), "gt_objects": sorted(gt_set),
        "metrics": {"CHAIRs": int(bool(hallucinated)),
                    "CHAIRi": len(hallucinated) / float(n_words) if n_words else 0.0,
                    "Recall": len(covered) / len(gt_set) if gt_set else 0.0},
        "n_covered": len(covered), "n_gt": len(gt_set),
    }


def _counts(d: Mapping[str, Any]) -> tuple[int, int, int, int, int, int]:
    """(hallucinated caption?, hallucinated mentions, mentions, covered GT, GT size, raw tokens)."""
    return (d["metrics"]["CHAIRs"], len(d["hallucinated"]), len(d["mentioned_words"]), d["n_covered"], d["n_gt"],
            d["n_raw_words"])


def _aggregate_counts(rows: Sequence[tuple[int, ...]]) -> dict[str, Any]:
    n = len(rows)
    hall_caps, hall, mentions, covered, n_gt, raw = (sum(col) for col in zip(*rows)) if rows else (0,) * 6
    zero = [name for name, den in (("chair_s", n), ("chair_i", mentions), ("recall", n_gt), ("len", n)) if not den]
    return {"chair_s": hall_caps / n if n else 0.0, "chair_i": hall / mentions if mentions else 0.0,
            "recall": covered / n_gt if n_gt else 0.0, "len": raw / n if n else 0.0, "zero_division": zero,
            "counts": {"captions": n, "hallucinated_captions": hall_caps, "mentions": mentions,
                       "hallucinated_mentions": hall, "covered_gt_objects": covered, "gt_objects": n_gt,
                       "raw_words": raw}}


def _bootstrap_statistic(details: Sequence[Mapping[str, Any]]):
    """Metrics of a resample given as caption positions (the unit: one image's caption); numpy sums."""
    import numpy as np

    table = np.array([_counts(d) for d in details], dtype=np.int64).reshape(len(details), 6)

    def statistic(positions: Sequence[int]) -> dict[str, float]:
        hall_caps, hall, mentions, covered, n_gt, raw = (int(x) for x in table[list(positions)].sum(axis=0))
        n = len(positions)
        out = {"chair_s": hall_caps / n, "len": raw / n}
        if mentions:
            out["chair_i"] = hall / mentions
        if n_gt:
            out["recall"] = covered / n_gt
        return out

    return statistic


def aggregate(details: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Harness metrics (chair_s, chair_i, recall, len = mean tokens) of per-caption records."""
    return _aggregate_counts([_counts(d) for d in details])


def reference_overall(details: Sequence[Mapping[str, Any]], flavour: str) -> dict[str, float]:
    """``compute_chair()['overall_metrics']`` as the reference of ``flavour`` computes it.

    Maxlinn (singularize): CHAIRs, CHAIRi, Recall; OPERA / less-is-more (wordnet): + ``Len`` = 0.01 × mean
    tokens. Float accumulation in the references' order; ZeroDivisionError becomes NaN here.
    """
    num_caps = hall_caps = hall = words = rec = gts = len_caps = 0.0
    for d in details:
        num_caps += 1
        hall_caps += d["metrics"]["CHAIRs"]
        hall += len(d["hallucinated"])
        words += len(d["node_words"])
        rec += d["n_covered"]
        gts += d["n_gt"]
        len_caps += d["n_raw_words"]

    def div(a: float, b: float) -> float:
        return a / b if b else math.nan

    out = {"CHAIRs": div(hall_caps, num_caps), "CHAIRi": div(hall, words), "Recall": div(rec, gts)}
    if flavour_name(flavour) == "wordnet":
        out["Len"] = div(0.01 * len_caps, num_caps)
    return out


def printed(overall: Mapping[str, float]) -> str:
    """The references' ``print_metrics``: one ``f"{key:<10}: {value*100:.01f}"`` line per metric."""
    return "".join(f"{str(k).ljust(10)}: {v * 100:.01f}\n" for k, v in overall.items())


def score_captions(captions: Sequence[tuple[Any, str]], gt: Mapping[int, Iterable[str]], flavour: str,
                   vocab: Vocabulary | None = None) -> list[dict[str, Any]]:
    """Per-caption records for ``(image_id, caption)`` pairs; an image absent from ``gt`` has an empty GT."""
    vocab = vocab or vocabulary()
    empty: frozenset = frozenset()
    out = []
    for image_id, caption in captions:
        d = caption_details(caption, gt.get(image_id, empty), flavour, vocab)
        d["image_id"] = image_id
        out.append(d)
    return out


# ----------------------------------------------------------------------------------------- protocols
@dataclass(frozen=True)
class ImageRow:
    image_id: int
    file_name: str


def _is_synthetic(data_root: Path) -> bool:
    manifest = Path(data_root) / "manifest.json"
    if not manifest.exists():
        return False
    try:
        return read_json(manifest).get("generator") == "bench.data.synthetic"
    except (DataError, AttributeError):
        return False


class ChairProtocol(Benchmark):
    """CHAIR, WordNet-POS captions and GT (OPERA / less-is-more code), OPERA's 500 images, greedy, 512 tokens."""

    name = "chair"
    benchmark = "chair"
    version = "2"
    description = ("CHAIR: WordNet-POS captions + WordNet-POS GT (OPERA/less-is-more/lmms-eval code), OPERA's"
                   " 500 COCO val2014 images, greedy, 512 new tokens")
    generation = GenerationSettings(max_new_tokens=512)
    params: dict[str, Any] = {"caption_flavour": "wordnet", "gt_flavour": "wordnet", "image_set": "opera_500",
                              "prompt": PROMPT, "gt_splits": ["val2014"], "gt_file": None}
    headline = {"chair_i": ("CHAIR_i", False), "chair_s": ("CHAIR_s", False), "recall": ("CHAIR recall", True)}

    # ------------------------------------------------------------------ inputs
    def image_set_file(self, data_root: Path) -> Path | None:
        name = self.params["image_set"]
        return None if name == "all" else Path(data_root) / "chair" / f"{name}.jsonl"

    def instances_file(self, data_root: Path, split: str = "val2014") -> Path:
        return Path(data_root) / "coco" / "annotations" / f"instances_{split}.json"

    def image_rows(self, data_root: Path) -> tuple[list[ImageRow], str]:
        """(images to caption, where the list came from)."""
        set_file = self.image_set_file(data_root)
        if set_file is not None and set_file.exists():
            rows, seen = [], set()
            for line, rec in iter_jsonl(set_file):
                if "image_id" not in rec:
                    raise DataError(set_file, "missing field", line=line, field="image_id")
                try:
                    image_id = int(rec["image_id"])
                except (TypeError, ValueError):
                    raise DataError(set_file, f"image_id {rec['image_id']!r} is not an integer", line=line,
                                    field="image_id") from None
                if image_id in seen:
                    raise DataError(set_file, f"image {image_id} listed twice", line=line, field="image_id")
                seen.add(image_id)
                rows.append(ImageRow(image_id, str(rec.get("image") or f"COCO_val2014_{image_id:012d}.jpg")))
            return rows, f"chair/{set_file.name}"
        if set_file is not None and not _is_synthetic(data_root):
            raise BenchError(f"{set_file}: CHAIR image set {self.params['image_set']!r} not found; run"
                             f" `python -m bench data fetch chair-sets --root {data_root}`")
        inst = self.instances_file(data_root)
        data = read_json(inst)
        rows = [ImageRow(int(im["id"]), str(im["file_name"])) for im in data.get("images", [])]
        origin = "all images of coco/annotations/instances_val2014.json"
        if set_file is not None:
            origin += f" (synthetic world: chair/{set_file.name} absent)"
        return rows, origin

    def _item(self, data_root: Path, row: ImageRow) -> EvalItem:
        return EvalItem(str(row.image_id), str(Path(data_root) / "coco" / "val2014" / row.file_name),
                        self.params["prompt"], {"image_id": row.image_id})

    def items(self, data_root: Path) -> list[EvalItem]:
        rows, _ = self.image_rows(data_root)
        return [self._item(data_root, r) for r in rows]

    def annotation_files(self, data_root: Path) -> tuple[list[Path], list[Path]]:
        ann = Path(data_root) / "coco" / "annotations"
        inst = [ann / f"instances_{s}.json" for s in self.params["gt_splits"]]
        caps = [ann / f"captions_{s}.json" for s in self.params["gt_splits"]]
        absent = [p for p in inst + caps if not p.exists()]
        if absent:
            raise BenchError(f"CHAIR ground truth needs {', '.join(str(p) for p in absent)}; run"
                             f" `python -m bench data fetch coco-val2014 --root {data_root}` (or use a"
                             " GT-object file via the protocol's gt_file)")
        return inst, caps

    def missing_resources(self, data_root: Path) -> list[str]:
        """The data files, and the NLTK packages the caption flavour needs (shipped with the package;
        ``BENCH_NLTK_DATA`` / ``NLTK_DATA`` win when set)."""
        out = super().missing_resources(data_root)
        try:
            ensure_nltk(flavour_name(self.params["caption_flavour"]), (Path(data_root) / "nltk_data",))
        except BenchError as exc:
            out.append(str(exc))
        return out

    def data_files(self, data_root: Path) -> list[Path]:
        files = []
        set_file = self.image_set_file(data_root)
        if set_file is not None and set_file.exists():
            files.append(set_file)
        if self.params.get("gt_file"):
            return files + [Path(data_root) / self.params["gt_file"]]
        ann = Path(data_root) / "coco" / "annotations"
        return files + [ann / f"{kind}_{s}.json" for s in self.params["gt_splits"] for kind in ("instances", "captions")]

    def ground_truth(self, data_root: Path, gt_cache_dir: Path | None = None,
                     gt_file: Path | None = None) -> tuple[dict[int, frozenset], dict[str, Any]]:
        """(GT sets, provenance) for this protocol's GT flavour."""
        flavour = self.params["gt_flavour"]
        gt_file = gt_file or (Path(data_root) / self.params["gt_file"] if self.params.get("gt_file") else None)
        if gt_file is not None:
            return load_gt_object_file(gt_file, flavour), {"flavour": flavour, "source": "gt-object file",
                                                           "file": str(gt_file)}
        inst, caps = self.annotation_files(data_root)
        dirs = [Path(gt_cache_dir)] if gt_cache_dir else [Path(data_root) / "chair" / "cache", _user_cache_dir()]
        last_error: OSError | None = None
        for cache_dir in dirs:
            try:
                cache_dir.mkdir(parents=True, exist_ok=True)
                gt, path, rebuilt = cached_gt(inst, caps, flavour, cache_dir)
            except OSError as exc:  # a read-only data root: try the user cache
                last_error = exc
                continue
            return gt, {"flavour": flavour, "source": "coco annotations", "files": [p.name for p in inst + caps],
                        "cache": path.name, "rebuilt": rebuilt}
        raise BenchError(f"cannot write the CHAIR ground-truth cache ({last_error})")

    def sample_verdict(self, detail: dict) -> dict:
        """Per-sample log: correct = no hallucinated object; the hallucinated objects (COCO names) and the
        ground-truth objects."""
        halluc = [pair[1] if isinstance(pair, (list, tuple)) else pair for pair in detail.get("hallucinated") or []]
        return {"correct": not halluc, "hallucinated_objects": halluc, "gt_objects": detail.get("gt_objects")}

    def paired_units(self, score: dict):
        """Per-image count vectors (``_counts`` + 1 caption) from ``details.per_caption`` and the statistic
        of their sum (for :func:`bench.stats.paired_bootstrap_delta`); None for files without the counts."""
        import numpy as np

        rows = (score.get("details") or {}).get("per_caption") or []
        if not rows or any("n_gt" not in d for d in rows):
            return None
        units = {str(d["image_id"]): np.array([*_counts(d), 1], dtype=np.int64) for d in rows}

        def statistic(s) -> dict[str, float]:
            hall_caps, hall, mentions, covered, n_gt, raw, n = (int(x) for x in s)
            return {"chair_s": hall_caps / n if n else 0.0, "chair_i": hall / mentions if mentions else 0.0,
                    "recall": covered / n_gt if n_gt else 0.0, "len": raw / n if n else 0.0}

        return units, statistic

    # ------------------------------------------------------------------ scoring
    def score(self, predictions: list[dict], data_root: Path, *, n_boot: int = 1000,
              item_ids: set[str] | None = None, gt_cache_dir: Path | None = None, gt_file: Path | None = None,
              **_: Any) -> dict:
        """Stored captions (``{"id", "text"}``) → CHAIR metrics, bootstrap CIs over images, per-caption details.

        ``gt_cache_dir`` overrides where COCO-built GT is cached; ``gt_file`` uses a GT-object file instead.
        """
        cap_flavour = flavour_name(self.params["caption_flavour"])
        nltk_data.configure([Path(data_root) / "nltk_data"])  # where `bench data fetch nltk` puts it
        ensure_nltk(cap_flavour)
        rows, origin = self.image_rows(data_root)
        items = [self._item(data_root, r) for r in rows]
        if item_ids is not None:
            items = [it for it in items if it.id in item_ids]
        texts = {str(p["id"]): p["text"] for p in predictions}
        gt, provenance = self.ground_truth(data_root, gt_cache_dir, gt_file)
        missing = {it.id: "no prediction" for it in items if it.id not in texts}
        scored = [it for it in items if it.id in texts]
        no_entry = [it.meta["image_id"] for it in scored if it.meta["image_id"] not in gt]
        vocab = vocabulary()
        details = score_captions([(it.meta["image_id"], texts[it.id]) for it in scored], gt, cap_flavour, vocab)
        agg = aggregate(details)
        ci = bootstrap_ci(list(range(len(details))), _bootstrap_statistic(details), n_boot=n_boot, seed=0)
        per_caption = []
        for it, d in zip(scored, details):
            per_caption.append({"id": it.id, "image_id": d["image_id"], **{k: d[k] for k in (
                "mentioned_words", "node_words", "mention_idxs", "hallucinated", "hallucination_idxs",
                "n_raw_words", "gt_objects", "n_covered", "n_gt", "metrics")}})
        return {
            "metrics": {k: agg[k] for k in ("chair_s", "chair_i", "recall", "len")},
            "ci": ci, "n": len(details),
            "skipped": {"count": len(missing), "reasons": missing},
            "zero_division": agg["zero_division"], "counts": agg["counts"],
            "flavours": {"caption": cap_flavour, "gt": flavour_name(self.params["gt_flavour"])},
            "image_set": origin,
            "ground_truth": {**provenance, "images_without_entry": len(no_entry),
                             "images_without_entry_ids": no_entry[:20]},
            "printed": printed(reference_overall(details, cap_flavour)) if details else "",
            "details": {"per_caption": per_caption},
        }


def _user_cache_dir() -> Path:
    return paths.cache_dir() / "chair"


# The declarations: one row per protocol (name, description, generation, params over ChairProtocol's).
DECLARATIONS: list[dict[str, Any]] = [
    {"name": "chair-wordnet", "description": "CHAIR, WordNet-POS captions + WordNet-POS GT (= chair under an"
                                            " explicit name), OPERA's 500 images, greedy, 512 new tokens",
     "params": {}},
    {"name": "chair-singularize", "description": "CHAIR as Rohrbach et al./Maxlinn: singularize captions +"
                                                " singularize GT, OPERA's 500 images, greedy, 512 new tokens",
     "params": {"caption_flavour": "singularize", "gt_flavour": "singularize"}},
    {"name": "chair-opera", "description": "CHAIR as OPERA's published numbers: WordNet-POS captions + singularize"
                                          " GT, OPERA's 500 images, greedy, 512 new tokens",
     "params": {"caption_flavour": "wordnet", "gt_flavour": "singularize"}},
    {"name": "chair-opera-beam5", "description": "chair-opera with OPERA's beam-search baseline (5 beams, no"
                                                " sampling), 512 new tokens",
     "generation": GenerationSettings(max_new_tokens=512, num_beams=5),
     "params": {"caption_flavour": "wordnet", "gt_flavour": "singularize"}},
    {"name": "chair-lim", "description": "CHAIR on less-is-more's chair-500 images, WordNet-POS captions + GT,"
                                        " greedy, 512 new tokens (less-is-more generated up to 1024)",
     "params": {"image_set": "lim_chair-500"}},
]


def _register(decl: Mapping[str, Any]) -> type:
    attrs = {"name": decl["name"], "description": decl["description"], "__doc__": decl["description"],
             "version": decl.get("version", ChairProtocol.version),
             "generation": decl.get("generation", ChairProtocol.generation),
             "params": {**ChairProtocol.params, **decl["params"]}}
    cls = type(f"Chair_{decl['name'].replace('-', '_')}", (ChairProtocol,), attrs)
    BENCHMARKS.add(cls)
    return cls


BENCHMARKS.add(ChairProtocol)
for _decl in DECLARATIONS:
    _register(_decl)

__all__ = ["ChairProtocol", "DECLARATIONS", "GT_CACHE_FORMAT", "PROMPT", "aggregate", "build_gt", "cached_gt",
           "caption_details", "load_gt_object_file", "printed", "reference_overall", "score_captions"]

