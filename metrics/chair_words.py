"""CHAIR word processing (``caption_to_words``), both flavours, written to the references' semantics.

Steps (``shared/research/benchmarks.md`` §2.2):
1. ``nltk.word_tokenize(caption.lower())``;
2. normalise each token — ``singularize`` flavour (LisaAnne/Hallucination ``utils/chair.py`` and
   Maxlinn/CHAIR-metric-standalone: Pattern 3.6 ``singularize``) or ``wordnet`` flavour (OPERA,
   less-is-more, lmms-eval: ``pos_tag`` + ``WordNetLemmatizer`` with the Penn tag mapped J→ADJ,
   V→VERB, N→NOUN, R→ADV, else NOUN);
3. merge two-word phrases left to right with the 55-entry table (``DOUBLE_WORDS``), recording for
   each merged token the index of its first word;
4. if both ``toilet`` and ``seat`` occur, drop every ``seat`` — *after* which the reference indexes
   its position list by the filtered list, so mention indices after a dropped ``seat`` are shifted;
   reproduced on purpose (quirk);
5. keep tokens in the synonym surface list, map each to its line's head word; duplicates count.

Synonym parsing reproduces ``line.strip().split(', ')``: entries after a double space keep a leading
space and never match (" motor bike", " cheesecake"); "iPhone" never matches lower-cased text.

Deviation: Pattern is not installable, so :func:`singularize` is our own rule set. It is written to
agree with Pattern 3.6 on every COCO object word and synonym, singular and plural (including its
quirks "bus"→"bu", "glass"→"glas", "people"→"person"); on other words its output may differ, which
only changes ``raw_words`` (never the object mentions).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from bench.errors import BenchError

SYNONYMS_FILE = Path(__file__).resolve().parent / "data" / "chair_synonyms.txt"
FLAVOURS = ("singularize", "wordnet")

_COCO_DOUBLE = ["motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
                "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball",
                "baseball bat", "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone",
                "mobile phone", "teddy bear", "hair drier", "potted plant", "laptop computer", "stove top oven",
                "home plate", "train track"]
_ANIMALS = ["bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub"]
DOUBLE_WORDS: dict[str, str] = {w: w for w in _COCO_DOUBLE}
DOUBLE_WORDS.update({f"baby {a}": a for a in _ANIMALS})
DOUBLE_WORDS.update({f"adult {a}": a for a in _ANIMALS})
DOUBLE_WORDS.update({"passenger jet": "jet", "passenger train": "train", "bow tie": "tie", "toilet seat": "toilet",
                     "wine glas": "wine glass"})


@lru_cache(maxsize=None)
def synonyms(path: str = str(SYNONYMS_FILE)) -> tuple[frozenset, dict]:
    """(surface forms, surface → head word), parsed exactly like the reference."""
    surfaces: set[str] = set()
    inverse: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        entries = line.strip().split(", ")
        if not entries or not entries[0]:
            continue
        head = entries[0]
        for s in entries:
            surfaces.add(s)
            inverse[s] = head
    return frozenset(surfaces), inverse


# ---------------------------------------------------------------------------------------------------
# singularize (own rule set; see module docstring)
_IRREGULAR = {"people": "person", "men": "man", "women": "woman", "children": "child", "feet": "foot",
              "teeth": "tooth", "geese": "goose", "mice": "mouse", "oxen": "ox", "knives": "knife",
              "dice": "die",
              "cacti": "cactus", "data": "datum", "criteria": "criterion", "phenomena": "phenomenon",
              }
_UNINFLECTED = {"sheep", "deer", "fish", "bison", "moose", "series", "species", "cattle", "news", "aircraft",
                "scissors", "trousers", "police", "equipment", "is", "as", "christmas", "progress",
                "furniture", "broccoli", "luggage", "information", "rice", "sugar", "water", "bread", "corn"}
_RULES: list[tuple[str, str]] = [
    (r"(quiz)zes$", r"\1"), (r"(matr)ices$", r"\1ix"), (r"(vert|ind)ices$", r"\1ex"), (r"^(ox)en", r"\1"),
    (r"(alias|status)es$", r"\1"), (r"(octop|vir)i$", r"\1us"), (r"(cris|ax|test)es$", r"\1is"),
    (r"(shoe)s$", r"\1"), (r"(o)es$", r"\1"), (r"(bus)es$", r"\1"), (r"([m|l])ice$", r"\1ouse"),
    (r"(x|ch|ss|sh)es$", r"\1"), (r"(m)ovies$", r"\1ovie"), (r"(s)eries$", r"\1eries"),
    (r"([^aeiouy]|qu)ies$", r"\1y"), (r"([lr])ves$", r"\1f"), (r"(tive)s$", r"\1"), (r"(hive)s$", r"\1"),
    (r"ives$", "ife"), (r"ves$", "ve"), (r"(^analy)ses$", r"\1sis"), (r"([ti])a$", r"\1um"), (r"(n)ews$", r"\1ews"),
    (r"s$", ""),
]
_RULES_C = [(re.compile(p, re.I), r) for p, r in _RULES]


@lru_cache(maxsize=65536)
def singularize(word: str) -> str:
    """Plural → singular with Pattern-3.6-compatible results on COCO object words (see docstring)."""
    w = word
    if not w or not w[-1:].isalpha():
        return w
    low = w.lower()
    if low in _UNINFLECTED:
        return w
    if low.endswith("ss"):  # Pattern strips the last "s": "glass" → "glas", "grass" → "gras"
        return w[:-1]
    if low in _IRREGULAR:
        return _IRREGULAR[low]
    for pattern, repl in _RULES_C:
        if pattern.search(w):
            return pattern.sub(repl, w)
    return w


# ---------------------------------------------------------------------------------------------------
# NLTK (wordnet flavour and the tokenizer of both)
_NLTK_READY = False


def ensure_nltk() -> None:
    """Point NLTK at ``BENCH_NLTK_DATA`` / ``NLTK_DATA`` and check the three resources exist."""
    global _NLTK_READY
    if _NLTK_READY:
        return
    import nltk

    for var in ("BENCH_NLTK_DATA", "NLTK_DATA"):
        value = os.environ.get(var)
        if value and value not in nltk.data.path:
            nltk.data.path.insert(0, value)
    missing = []
    for res in ("tokenizers/punkt_tab/english/", "taggers/averaged_perceptron_tagger_eng/", "corpora/wordnet"):
        try:
            nltk.data.find(res if not res.startswith("corpora/wordnet") else "corpora/wordnet.zip")
        except LookupError:
            try:
                nltk.data.find(res)
            except LookupError:
                missing.append(res.split("/")[1])
    if missing:
        raise BenchError(
            f"NLTK data missing: {', '.join(missing)} (searched {nltk.data.path[:4]}...). On a connected machine run"
            " `python -m bench data fetch nltk`, or set BENCH_NLTK_DATA to a folder holding punkt_tab,"
            " averaged_perceptron_tagger_eng and wordnet")
    _NLTK_READY = True


def tokenize(text: str) -> list[str]:
    ensure_nltk()
    import nltk

    return nltk.word_tokenize(text)


def _wordnet_pos(tag: str) -> str:
    from nltk.corpus import wordnet

    if tag.startswith("J"):
        return wordnet.ADJ
    if tag.startswith("V"):
        return wordnet.VERB
    if tag.startswith("N"):
        return wordnet.NOUN
    if tag.startswith("R"):
        return wordnet.ADV
    return wordnet.NOUN


_LEMMATIZER = None


def lemmatize_pos(words: list[str]) -> list[str]:
    global _LEMMATIZER
    ensure_nltk()
    import nltk
    from nltk.stem import WordNetLemmatizer

    if _LEMMATIZER is None:
        _LEMMATIZER = WordNetLemmatizer()
    return [_LEMMATIZER.lemmatize(w, pos=_wordnet_pos(t)) for w, t in nltk.pos_tag(words)]


def caption_to_words(caption: str, flavour: str) -> tuple[list[str], list[str], list[int], list[str]]:
    """(mentioned surface words, their head words, first-token indices, raw_words) of one caption."""
    if flavour not in FLAVOURS:
        raise BenchError(f"unknown CHAIR flavour {flavour!r}; choose from {FLAVOURS}")
    words = tokenize(caption.lower())
    words = [singularize(w) for w in words] if flavour == "singularize" else lemmatize_pos(words)
    merged: list[str] = []
    idxs: list[int] = []
    i = 0
    while i < len(words):
        idxs.append(i)
        pair = " ".join(words[i : i + 2])
        if pair in DOUBLE_WORDS:
            merged.append(DOUBLE_WORDS[pair])
            i += 2
        else:
            merged.append(words[i])
            i += 1
    raw_words = list(merged)
    kept = [w for w in merged if w != "seat"] if ("toilet" in merged and "seat" in merged) else merged
    surfaces, inverse = synonyms()
    # quirk: positions are looked up by the index in the *filtered* list (shifted after a dropped "seat")
    mention_idxs = [idxs[k] for k, w in enumerate(kept) if w in surfaces]
    mentioned = [w for w in kept if w in surfaces]
    return mentioned, [inverse[w] for w in mentioned], mention_idxs, raw_words
