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

Synonym file parsing is the reference's ``line.strip().split(', ')`` on every line: entries after a
double space keep a leading blank (``" motor bike"``, ``" cheesecake"``) and can never match a token,
``"iPhone"`` can never match lower-cased text, and so ``"motor bike"`` (merged by step 3) is no
mention. The file is ``LisaAnne/Hallucination@6e4d33c:data/synonyms.txt`` (byte-identical to the text
OPERA and Maxlinn embed).

Deviations: none in the results. Pattern cannot be installed (PyPI ``Pattern`` is another project,
``pattern3`` does not import on Python 3.11), so :func:`singularize` is this module's own code that
follows the decision procedure of Pattern 3.6 ``pattern/text/en/inflect.py`` (``clips/pattern@d25511f``,
BSD-3-Clause; the suffix tables below are the facts of that procedure). It agrees with Pattern on every
COCO object word and synonym (singular and plural, tested) and on every token of the parity fixtures;
its quirks are Pattern's: "bus"→"bu", "glass"→"glas" (hence the ``wine glas`` rule), "has"→"ha",
"ties"→"ty", "people"→"person", "four"→"fmy". The NLTK tagger and lemmatizer are cached objects
(``nltk.pos_tag`` re-reads the tagger model on every call); results are the same.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from bench.errors import BenchError

SYNONYMS_FILE = Path(__file__).resolve().parent / "data" / "chair_synonyms.txt"
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


# ----------------------------------------------------------------------------------------- word lists
_SAME = ("motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
         "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball", "baseball bat",
         "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone", "mobile phone", "teddy bear",
         "hair drier", "potted plant", "bow tie", "laptop computer", "stove top oven", "home plate", "train track")
_YOUNG_OLD = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub")

DOUBLE_WORDS: dict[str, str] = {phrase: phrase for phrase in _SAME}
for _animal in _YOUNG_OLD:
    DOUBLE_WORDS[f"baby {_animal}"] = _animal
    DOUBLE_WORDS[f"adult {_animal}"] = _animal
DOUBLE_WORDS["passenger jet"] = "jet"
DOUBLE_WORDS["passenger train"] = "train"
DOUBLE_WORDS["bow tie"] = "tie"  # overrides the identity entry, as in the reference
DOUBLE_WORDS["toilet seat"] = "toilet"
DOUBLE_WORDS["wine glas"] = "wine glass"  # singularize turns "glass" into "glas"


class Vocabulary(NamedTuple):
    surfaces: frozenset  # every surface form, parsed like the reference (may include unmatched ones)
    inverse: dict  # surface form -> head word (COCO category name)
    heads: tuple  # the head words in file order


@lru_cache(maxsize=8)
def vocabulary(path: str = str(SYNONYMS_FILE)) -> Vocabulary:
    """Parse a synonym file exactly as the reference: ``line.strip().split(', ')``, head word first."""
    surfaces: set[str] = set()
    inverse: dict[str, str] = {}
    heads: list[str] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        entries = line.strip().split(", ")
        if entries == [""]:
            continue  # a blank line: the reference adds '' (no token is ever empty); kept out for clarity
        heads.append(entries[0])
        for surface in entries:
            surfaces.add(surface)
            inverse[surface] = entries[0]
    return Vocabulary(frozenset(surfaces), inverse, tuple(heads))


def synonyms(path: str = str(SYNONYMS_FILE)) -> tuple[frozenset, dict]:
    """(surface forms, surface → head word); kept for callers outside the scorer."""
    voc = vocabulary(path)
    return voc.surfaces, voc.inverse


# ------------------------------------------------------------------------------ Pattern-3.6 singularize
_PREPOSITIONS = frozenset(
    "about above across after among around at athwart before behind below beneath beside besides between"
    " betwixt beyond but by during except for from in into near of off on onto out over since till to under"
    " until unto upon with".split())
# Words Pattern leaves alone. Its test is "some listed word ends with the input", so every *suffix* of
# these words (e.g. "s", "es", "ice", "and", "ears") is returned unchanged too.
_INVARIANT = (
    "bison debris headquarters pincers trout bream diabetes herpes pliers tuna breeches djinn high-jinks"
    " proceedings whiting britches eland homework rabies wildebeest carp elk innings salmon chassis flounder"
    " jackanapes scissors christmas gallows mackerel series clippers georgia measles shears cod graffiti mews"
    " species contretemps mumps swine corps news swiss"
    # uncountable nouns, tested the same way
    " advice equipment happiness luggage software bread fruit information mathematics progress"
    " understanding butter furniture ketchup mayonnaise research water cheese garbage knowledge meat rice"
    " electricity gravel love mustard sand").split()
_INVARIANT_SUFFIXES = frozenset(w[i:] for w in _INVARIANT for i in range(len(w) + 1))
# "-ie" nouns: an input ending in one of these + "s" is returned lower-cased and *unchanged* (Pattern
# returns the input there, not the singular). Pattern's list also has "^pie" and "^tie" as literal
# strings, which can never match, so they are left out.
_IE_PLURALS = tuple(w + "s" for w in (
    "alergie cutie hoagie newbie softie veggie auntie doggie hottie nightie sortie weenie beanie eyrie indie"
    " oldie stoolie yuppie birdie freebie junkie sweetie zombie bogie goonie laddie pixie techie bombie"
    " groupie laramie quickie collie hankie lingerie reverie toughie cookie hippie meanie rookie valkyrie"
).split())
# Irregular plurals, tested as *endings* in this order (so "women"→"woman", "four"→"fmy").
_IRREGULAR = (
    ("atlantes", "atlas"), ("atlases", "atlas"), ("axes", "axe"), ("beeves", "beef"), ("brethren", "brother"),
    ("children", "child"), ("corpora", "corpus"), ("corpuses", "corpus"), ("ephemerides", "ephemeris"),
    ("feet", "foot"), ("ganglia", "ganglion"), ("geese", "goose"), ("genera", "genus"), ("genii", "genie"),
    ("graffiti", "graffito"), ("helves", "helve"), ("kine", "cow"), ("leaves", "leaf"), ("loaves", "loaf"),
    ("men", "man"), ("mongooses", "mongoose"), ("monies", "money"), ("moves", "move"), ("mythoi", "mythos"),
    ("numena", "numen"), ("occipita", "occiput"), ("octopodes", "octopus"), ("opera", "opus"),
    ("opuses", "opus"), ("our", "my"), ("oxen", "ox"), ("penes", "penis"), ("penises", "penis"),
    ("people", "person"), ("sexes", "sex"), ("soliloquies", "soliloquy"), ("teeth", "tooth"),
    ("testes", "testis"), ("trilbys", "trilby"), ("turves", "turf"), ("zoa", "zoon"))
_IRREGULAR_RE = tuple((plural, re.compile(plural + "$", re.I), single) for plural, single in _IRREGULAR)
# Suffix rules, first match wins; "I" = case-insensitive (Pattern marks only some rules so). A group
# that did not take part in the match contributes "" to the replacement.
_SUFFIX_RULES = (
    (r"(.)ae$", r"\1a", "I"), (r"(.)itis$", r"\1itis", "I"), (r"(.)eaux$", r"\1eau", "I"),
    (r"(quiz)zes$", r"\1", "I"), (r"(matr)ices$", r"\1ix", "I"), (r"(ap|vert|ind)ices$", r"\1ex", "I"),
    (r"^(ox)en", r"\1", "I"), (r"(alias|status)es$", r"\1", "I"),
    (r"([|ciroptv])i$", r"\1us", "I"),  # a character class in Pattern ("[octop|vir]"): "spaghetti"→"spaghettus"
    (r"(cris|ax|test)es$", r"\1is", "I"), (r"(shoe)s$", r"\1", "I"), (r"(o)es$", r"\1", "I"),
    (r"(bus)es$", r"\1", "I"), (r"([|lm])ice$", r"\1ouse", "I"), (r"(x|ch|ss|sh)es$", r"\1", "I"),
    (r"(m)ovies$", r"\1ovie", "I"), (r"(.)ombies$", r"\1ombie", "I"), (r"(s)eries$", r"\1eries", "I"),
    (r"([^aeiouy]|qu)ies$", r"\1y", "I"),
    (r"([aeo]l)ves$", r"\1f", ""), (r"([^d]ea)ves$", r"\1f", ""), (r"arves$", "arf", ""),
    (r"erves$", "erve", ""), (r"([nlw]i)ves$", r"\1fe", ""), (r"([lr])ves$", r"\1f", "I"),
    (r"([aeo])ves$", r"\1ve", ""), (r"(sive)s$", r"\1", "I"), (r"(tive)s$", r"\1", "I"),
    (r"(hive)s$", r"\1", "I"), (r"([^f])ves$", r"\1fe", "I"),
    (r"(^analy)ses$", r"\1sis", "I"),
    (r"((a)naly|(b)a|(d)iagno|(p)arenthe|(p)rogno|(s)ynop|(t)he)ses$", r"\1\2sis", "I"),
    (r"(.)opses$", r"\1opsis", "I"), (r"(.)yses$", r"\1ysis", "I"),
    (r"(h|d|r|o|n|b|cl|p)oses$", r"\1ose", "I"),
    (r"(fruct|gluc|galact|lact|ket|malt|rib|sacchar|cellul)ose$", r"\1ose", "I"),
    (r"(.)oses$", r"\1osis", "I"), (r"([ti])a$", r"\1um", "I"), (r"(n)ews$", r"\1ews", "I"), (r"s$", "", "I"),
)
_SUFFIX_RE = tuple((re.compile(p, re.I if f == "I" else 0), r) for p, r, f in _SUFFIX_RULES)


@lru_cache(maxsize=1 << 17)
def singularize(word: str) -> str:
    """Pattern-3.6-compatible singular of one token (see the module docstring for the provenance)."""
    if "-" in word:  # "mothers-in-law": singularize the part before a preposition
        head, _, rest = word.partition("-")
        if rest.split("-")[0] in _PREPOSITIONS:
            return singularize(head) + "-" + rest
    if word.endswith("'"):  # "dogs'" -> "dog's" (and a lone "'" -> "'s")
        return singularize(word[:-1]) + "'s"
    low = word.lower()
    if low in _INVARIANT_SUFFIXES:
        return word
    if low.endswith(_IE_PLURALS):
        return low
    for plural, pattern, single in _IRREGULAR_RE:
        if low.endswith(plural):
            return pattern.sub(single, word)
    for pattern, repl in _SUFFIX_RE:
        if pattern.search(word):
            return pattern.sub(repl, word)
    return word


# ---------------------------------------------------------------------------------------------- NLTK
_NLTK_OK: set[str] = set()


def ensure_nltk(flavour: str = "wordnet", extra: tuple = ()) -> None:
    """Configure NLTK's search path (``bench.nltk_data``) and check what ``flavour`` needs; BenchError if not."""
    flavour = flavour_name(flavour)
    if flavour in _NLTK_OK:
        return
    from bench import nltk_data

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
