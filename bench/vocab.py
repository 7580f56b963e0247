"""The COCO object vocabulary: CHAIR's synonym list, its two-word table, and Pattern-3.6 ``singularize``.

Shared by the CHAIR word processing (:mod:`metrics.chair_words`), the object-mention finder of
:mod:`bench.text` (feedback models, data pipelines, offline judges) and the data sources. It lives below
all of them (nothing of the project but :mod:`bench.errors` is imported here).

Synonym file parsing is the reference's ``line.strip().split(', ')`` on every line: entries after a
double space keep a leading blank (``" motor bike"``, ``" cheesecake"``) and can never match a token,
``"iPhone"`` can never match lower-cased text, and so ``"motor bike"`` (merged by the two-word table) is no
mention. The file (``bench/assets/chair_synonyms.txt``) is ``LisaAnne/Hallucination@6e4d33c:data/synonyms.txt``
(byte-identical to the text OPERA and Maxlinn embed; licence and attribution in ``bench/assets/SOURCES.md``).

:data:`DOUBLE_WORDS` is the reference's two-word table (55 entries; "wine glas" because singularize turns
"glass" into "glas").

Deviation: Pattern cannot be installed (PyPI ``Pattern`` is another project, ``pattern3`` does not import on
Python 3.11), so :func:`singularize` is this module's own code that follows the decision procedure of
Pattern 3.6 ``pattern/text/en/inflect.py`` (``clips/pattern@d25511f``, BSD-3-Clause; the suffix tables below
are the facts of that procedure). It agrees with Pattern on every COCO object word and synonym (singular and
plural, tested) and on every token of the parity fixtures; its quirks are Pattern's: "bus"→"bu",
"glass"→"glas", "has"→"ha", "ties"→"ty", "people"→"person", "four"→"fmy".
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

SYNONYMS_FILE = Path(__file__).resolve().parent / "assets" / "chair_synonyms.txt"


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
