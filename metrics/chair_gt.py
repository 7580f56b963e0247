"""CHAIR ground truth: per-image sets of COCO head words, from COCO annotation files or a GT-object file.

GT of an image = the head ("node") words of its COCO instance categories ∪ the head words that the CHAIR
word processing of a given flavour finds in the image's reference captions — the references'
``get_annotations_from_segments`` + ``get_annotations_from_captions`` (``LisaAnne/Hallucination@6e4d33c:
utils/chair.py``, ``shikiw/OPERA@61426ef:chair.py``). So a GT has a flavour, recorded wherever it is stored.

* :func:`build_gt` reads ``instances_<split>.json`` / ``captions_<split>.json`` with pycocotools' ``COCO``;
  every image of the files gets an entry (possibly empty).
* :func:`cached_gt` keeps the result as JSON (atomic write) in a cache folder, keyed by the sha256 of the
  annotation files, the flavour, the synonym file, the NLTK version and :data:`WORDS_VERSION`; the file
  records its flavour and key and is rebuilt when either does not match (e.g. a cache built by the other
  flavour — the references' pickles do not record which flavour built them).
* :func:`load_gt_object_file` reads ``{"gt_objects": {"<image id>": [head words]}}`` files such as
  ``shared/reference/chair/coco2014_chair_gt_objects_<flavour>.json`` and refuses one of another flavour.

Deviation: the references insist on the train *and* val annotation files; the protocols read only the
split their images come from (val2014). An image's GT uses only that image's annotations, which all sit
in its split's files, so the GT of every val2014 image is identical.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.errors import DataError
from bench.io import atomic_write_json, read_json, sha256_file, sha256_text
from bench.vocab import SYNONYMS_FILE
from metrics.chair_words import Vocabulary, caption_to_words, ensure_nltk, flavour_name, vocabulary

GT_CACHE_FORMAT = "bench.chair.gt/1"
# bump when the word processing changes in a way that changes GT sets (invalidates every GT cache)
WORDS_VERSION = "2"

_FILE_FLAVOURS = {"singularize": "singularize", "wordnet_pos": "wordnet", "wordnet": "wordnet"}


def load_gt_object_file(path: str | Path, flavour: str | None = None) -> dict[int, frozenset]:
    """A GT-object file ``{"gt_objects": {"<image id>": [head words]}, ...}`` (shared/reference/chair or a cache).

    When ``flavour`` is given and the file states one (``flavour`` key, or a ``_<flavour>.json`` name), they
    must agree: a GT built by the other word processing is never used silently.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("gt_objects"), dict):
        raise DataError(path, "not a CHAIR ground-truth object file (no 'gt_objects' mapping)")
    if flavour is not None:
        stated = data.get("flavour")
        if stated is None:
            stem = path.stem.lower()
            stated = next((f for suffix, f in _FILE_FLAVOURS.items() if stem.endswith("_" + suffix)), None)
        if stated is not None and flavour_name(stated) != flavour_name(flavour):
            raise DataError(path, f"ground truth built with the {flavour_name(stated)!r} flavour, but the"
                                  f" {flavour_name(flavour)!r} flavour was asked for")
    out: dict[int, frozenset] = {}
    for key, objects in data["gt_objects"].items():
        try:
            out[int(key)] = frozenset(objects)
        except (TypeError, ValueError):
            raise DataError(path, f"image id {key!r} is not an integer", field="gt_objects") from None
    return out


def _quiet_coco(path: Path):
    from pycocotools.coco import COCO

    if not path.exists():
        raise DataError(path, "file not found")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        try:
            return COCO(str(path))
        except (ValueError, KeyError, TypeError) as exc:  # json errors are ValueErrors
            raise DataError(path, f"not a COCO annotation file ({type(exc).__name__}: {exc})") from None


def build_gt(instances: Sequence[Path], captions: Sequence[Path], flavour: str,
             vocab: Vocabulary | None = None) -> dict[int, set[str]]:
    """GT sets from COCO files: instance categories' head words ∪ objects found in the reference captions.

    Every image of the files gets an entry (possibly empty).
    """
    flavour = flavour_name(flavour)
    vocab = vocab or vocabulary()
    gt: dict[int, set[str]] = {}
    for path in instances:
        coco = _quiet_coco(Path(path))
        names = {}
        for cat in coco.dataset.get("categories", []):
            if cat["name"] not in vocab.inverse:
                raise DataError(path, f"category {cat['name']!r} is not a head word or synonym of the CHAIR"
                                      " synonym list", field="categories")
            names[cat["id"]] = vocab.inverse[cat["name"]]
        for image_id in coco.getImgIds():
            gt.setdefault(int(image_id), set())
        for ann in coco.dataset.get("annotations", []):
            if ann["category_id"] not in names:
                raise DataError(path, f"annotation {ann.get('id')} has unknown category {ann['category_id']}")
            gt.setdefault(int(ann["image_id"]), set()).add(names[ann["category_id"]])
    if captions:
        ensure_nltk(flavour)
    for path in captions:
        coco = _quiet_coco(Path(path))
        for image_id in coco.getImgIds():
            gt.setdefault(int(image_id), set())
        for ann in coco.dataset.get("annotations", []):
            gt.setdefault(int(ann["image_id"]), set()).update(caption_to_words(ann["caption"], flavour, vocab).nodes)
    return gt


def _sha256_memo(path: Path, memo_dir: Path | None) -> str:
    """sha256 of a file, memoised by (size, mtime_ns) in ``memo_dir/sha256_memo.json`` (COCO files are large)."""
    st = path.stat()
    memo_path = memo_dir / "sha256_memo.json" if memo_dir else None
    memo: dict = {}
    if memo_path is not None and memo_path.exists():
        try:
            memo = read_json(memo_path)
        except DataError:
            memo = {}
    key = str(path.resolve())
    hit = memo.get(key)
    if isinstance(hit, dict) and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
        return hit["sha256"]
    digest = sha256_file(path)
    if memo_path is not None:
        memo[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        with contextlib.suppress(OSError):
            atomic_write_json(memo_path, memo)
    return digest


def gt_cache_key(sources: Mapping[str, str], flavour: str, synonyms_path: Path = SYNONYMS_FILE) -> dict[str, Any]:
    """Everything a GT cache depends on: annotation files' sha256, flavour, synonym file, NLTK, word code."""
    import nltk

    ident = {"format": GT_CACHE_FORMAT, "flavour": flavour_name(flavour), "sources": dict(sorted(sources.items())),
             "synonyms_sha256": sha256_file(synonyms_path), "nltk_version": nltk.__version__,
             "words_version": WORDS_VERSION}
    ident["key"] = sha256_text(json.dumps(ident, sort_keys=True))
    return ident


def cached_gt(instances: Sequence[Path], captions: Sequence[Path], flavour: str, cache_dir: Path,
              vocab: Vocabulary | None = None) -> tuple[dict[int, frozenset], Path, bool]:
    """GT sets from a JSON cache in ``cache_dir`` (built and written atomically when absent or stale).

    Returns (GT, cache file, whether it was rebuilt). The cache records its flavour and key; a file whose
    flavour or key does not match (another flavour, changed annotations, synonym list or NLTK) is rebuilt.
    """
    flavour = flavour_name(flavour)
    cache_dir = Path(cache_dir)
    sources = {Path(p).name: _sha256_memo(Path(p), cache_dir) for p in [*instances, *captions]}
    ident = gt_cache_key(sources, flavour)
    path = cache_dir / f"gt_{flavour}_{ident['key'][:16]}.json"
    if path.exists():
        try:
            data = read_json(path)
        except DataError:
            data = {}
        if (isinstance(data, dict) and data.get("flavour") == flavour and data.get("key") == ident["key"]
                and isinstance(data.get("gt_objects"), dict)):
            return {int(k): frozenset(v) for k, v in data["gt_objects"].items()}, path, False
    gt = build_gt(instances, captions, flavour, vocab)
    atomic_write_json(path, {**ident, "gt_objects": {str(k): sorted(v) for k, v in sorted(gt.items())}})
    return {k: frozenset(v) for k, v in gt.items()}, path, True
