"""CHAIR word processing (``caption_to_words``) in both reference flavours, plus the word lists.

Steps, as the reference ``CHAIR.caption_to_words`` does them (``shared/research/benchmarks.md`` §2.2):

1. ``nltk.word_tokenize(caption.lower())``;
2. normalise every token (punctuation included):
   * ``singularize`` — ``LisaAnne/Hallucination@6e4d33c:utils/chair.py`` and
     ``Maxlinn/CHAIR-metric-standalone@640c507:chair.py``: Pattern 3.6 ``pattern.en.singularize``
     (no POS); reimplemented here, see :func:`singularize`;
   * ``wordnet`` (fixture name ``wordnet_pos``) — ``shikiw/OPERA@61426ef:chair.py``,
     ``yuezih/less-is-more@f26e187:CHAIR-eval/chair.py``, lmms-eval: ``nltk.pos_tag`` over the
     tokens, Penn tag → WordNet POS (J→a, V→v, N→n, R→r, anything else → n), then
     ``WordNetLemmatizer().lemmatize(token, pos)``;
3. merge two-word phrases left to right with :data:`DOUBLE_WORDS` (55 entries), remembering for each
   merged token the index of its first original token. The merged list is ``raw_words``
   (its length is OPERA's "Len");
4. if ``toilet`` and ``seat`` both occur in the merged list, every ``seat`` is dropped. The reference
   then picks first-token indices *by position in the filtered list* from the unfiltered index list,
   so indices after a dropped ``seat`` are shifted — reproduced on purpose;
5. keep the tokens that are surface forms of the synonym list and map each to its head word (the COCO
   category, "node word"); duplicates are kept, every mention counts.

The word lists (the synonym file, parsed as the reference does, and :data:`DOUBLE_WORDS`) and the
reimplementation of Pattern 3.6 ``singularize`` (Pattern cannot be installed; same results on every COCO word
and on the parity fixtures, quirks included: "bus"→"bu", "glass"→"glas") are in :mod:`bench.vocab`, below
this module, because the feedback models, the data pipelines and the offline judges find object mentions
with them too (:mod:`bench.text`). The NLTK tagger and lemmatizer are cached objects (``nltk.pos_tag``
re-reads the tagger model on every call); results are the same.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from bench import nltk_data
from bench.errors import BenchError
from bench.vocab import DOUBLE_WORDS, Vocabulary, singularize, vocabulary
from bench.vocab import SYNONYMS_FILE, synonyms  # noqa: F401  (re-exported: part of this module's documented word API)

FLAVOURS = ("singularize", "wordnet")
_FLAVOUR_ALIASES = {"singularize": "singularize", "wordnet": "wordnet", "wordnet_pos": "wordnet",
                    "gt_singularize": "singularize", "gt_wordnet": "wordnet", "gt_wordnet_pos": "wordnet"}
# logical NLTK resources each flavour needs (bench.nltk_data names)
NLTK_NEEDS = {"singularize": ("tokenizer",), "wordnet": ("tokenizer", "tagger", "wordnet")}


def flavour_name(name: str) -> str:
    """Canonical flavour (``singularize`` | ``wordnet``); accepts the fixtures' ``wordnet_pos``/``gt_*``."""
    try:
        return _FLAVOUR_ALIASES[name]
    except KeyError:
        raise BenchError(f"unknown CHAIR word-processing flavour {name!r}; choose one of {FLAVOURS}") from None


# ---------------------------------------------------------------------------------------------- NLTK
_NLTK_OK: set[str] = set()


def ensure_nltk(flavour: str = "wordnet", extra: tuple = ()) -> None:
    """Configure NLTK's search path (``bench.nltk_data``) and check what ``flavour`` needs; BenchError if not."""
    flavour = flavour_name(flavour)
    if flavour in _NLTK_OK:
        return
    nltk_data.require(NLTK_NEEDS[flavour], extra, purpose=f"CHAIR ({flavour} word processing)")
    _NLTK_OK.add(flavour)


def tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize`` (Punkt sentences + Treebank words)."""
    import nltk

    return nltk.word_tokenize(text)


class _VectorPredict:
    """Drop-in for ``AveragedPerceptron.predict`` with the same result, about 5× faster.

    NLTK adds ``value * weight`` per (feature, label) into a ``defaultdict(float)`` in feature order and
    returns ``max(classes, key=(score, label))``. Here each feature's weights are a dense vector over the
    sorted classes (0.0 where NLTK has no entry; adding 0.0 leaves a float unchanged), summed in the same
    feature order, so every score is the same float; ties go to the largest label, as in NLTK.
    """

    def __init__(self, model) -> None:
        import numpy as np

        self._np = np
        self._model = model
        self._original = model.predict
        self._classes = sorted(model.classes)
        self._index = {c: i for i, c in enumerate(self._classes)}
        self._rows: dict = {}

    def _row(self, feat):
        """Dense weight vector of a feature (built on first use); False for a feature without weights."""
        row = self._rows.get(feat)
        if row is None:
            weights = self._model.weights.get(feat)
            if weights is None:
                row = False
            else:
                row = self._np.zeros(len(self._classes))
                for label, weight in weights.items():
                    k = self._index.get(label)
                    if k is not None:  # labels outside ``classes`` never win in NLTK either
                        row[k] = weight
            self._rows[feat] = row
        return row

    def __call__(self, features, return_conf=False):
        if return_conf:
            return self._original(features, return_conf)
        total = None
        for feat, value in features.items():
            if value == 0:
                continue
            row = self._row(feat)
            if row is False:
                continue
            if value != 1:
                row = value * row
            if total is None:
                total = row.copy()  # NLTK starts from 0.0; 0.0 + w == w
            else:
                total += row
        if total is None:
            total = self._np.zeros(len(self._classes))
        # the last index holding the maximum = the largest label among ties (classes are sorted)
        return self._classes[len(self._classes) - 1 - int(total[::-1].argmax())], None


@lru_cache(maxsize=1)
def _tagger():
    from nltk.tag.perceptron import PerceptronTagger

    tagger = PerceptronTagger()
    model = getattr(tagger, "model", None)
    if isinstance(getattr(model, "weights", None), dict) and getattr(model, "classes", None):
        model.predict = _VectorPredict(model)  # instance attribute: NLTK's tag() loop calls it
    return tagger


@lru_cache(maxsize=1)
def _lemmatizer():
    from nltk.stem import WordNetLemmatizer

    return WordNetLemmatizer()


def _wordnet_pos(tag: str) -> str:
    # wordnet.ADJ/VERB/NOUN/ADV are the strings "a", "v", "n", "r"
    return {"J": "a", "V": "v", "N": "n", "R": "r"}.get(tag[:1], "n")


@lru_cache(maxsize=1 << 17)
def _lemma(word: str, pos: str) -> str:
    return _lemmatizer().lemmatize(word, pos=pos)


def pos_tag(words: list[str]) -> list[tuple[str, str]]:
    """``nltk.pos_tag`` (English perceptron tagger, Penn tags) with the cached, vectorised tagger."""
    return _tagger().tag(words)


def lemma(word: str, pos: str = "n") -> str:
    """``WordNetLemmatizer().lemmatize(word, pos)``, cached (``pos`` defaults to noun, as NLTK's)."""
    return _lemma(word, pos)


def lemmatize_pos(words: list[str]) -> list[str]:
    """``pos_tag`` + ``WordNetLemmatizer().lemmatize(w, pos)`` per token (the OPERA flavour)."""
    return [_lemma(w, _wordnet_pos(t)) for w, t in _tagger().tag(words)]


def clear_caches() -> None:
    """Forget per-word results (singulars, lemmas); loaded NLTK models stay."""
    singularize.cache_clear()
    _lemma.cache_clear()


def normalise(words: list[str], flavour: str) -> list[str]:
    return [singularize(w) for w in words] if flavour == "singularize" else lemmatize_pos(words)


# ------------------------------------------------------------------------------------ caption_to_words
class CaptionWords(NamedTuple):
    mentioned: list  # surface forms found (after normalisation + merge), in order, duplicates kept
    nodes: list  # head word of each mention
    idxs: list  # first-token index of each mention (with the reference's toilet/seat shift)
    raw_words: list  # tokens after normalisation and merge (punctuation included)


def merge_double_words(words: list[str]) -> tuple[list[str], list[int]]:
    """Step 3: (merged tokens, index of each merged token's first original token)."""
    merged: list[str] = []
    idxs: list[int] = []
    i, n = 0, len(words)
    while i < n:
        idxs.append(i)
        pair = words[i] + " " + words[i + 1] if i + 1 < n else words[i]
        if pair in DOUBLE_WORDS:
            merged.append(DOUBLE_WORDS[pair])
            i += 2
        else:
            merged.append(words[i])
            i += 1
    return merged, idxs


def find_mentions(merged: list[str], idxs: list[int], vocab: Vocabulary) -> CaptionWords:
    """Steps 4-5 on merged tokens."""
    kept = [w for w in merged if w != "seat"] if ("toilet" in merged and "seat" in merged) else merged
    mentioned, nodes, where = [], [], []
    for k, w in enumerate(kept):
        if w in vocab.surfaces:
            mentioned.append(w)
            nodes.append(vocab.inverse[w])
            where.append(idxs[k])  # position in the *filtered* list, as the reference indexes it
    return CaptionWords(mentioned, nodes, where, merged)


def caption_to_words(caption: str, flavour: str, vocab: Vocabulary | None = None) -> CaptionWords:
    """The reference's ``caption_to_words`` for one caption in the given flavour."""
    flavour = flavour_name(flavour)
    ensure_nltk(flavour)
    words = normalise(tokenize(caption.lower()), flavour)
    merged, idxs = merge_double_words(words)
    return find_mentions(merged, idxs, vocab or vocabulary())
