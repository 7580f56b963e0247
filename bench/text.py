"""Text utilities shared by the feedback models, the data pipelines, the offline judges and the data formats.

Sentence splitting — two rules, two names (SHR's own rule, periods only with repeats dropped, is part of
that protocol: :func:`metrics.shr.split_at_periods`):

* :func:`split_at_breaks` — a sentence ends at ``.``/``!``/``?`` *followed by whitespace*, or at a newline;
  ``"3.5 m"`` stays one piece. Used by the feedback models and the pipelines.
* :func:`split_at_terminators` — every run of ``.``/``!``/``?`` ends a piece, whitespace or not; the pieces
  are the text as written. Used to align OPA-DPO sentence reports (:mod:`bench.data.formats`).

Tokens and object mentions (no NLTK data needed, and every mention keeps its character span so that it
can be edited): tokens are ``[A-Za-z]+`` or digit runs (:func:`tokens`). :func:`find_mentions` finds
COCO-object mentions with the CHAIR word lists of :mod:`metrics.chair_words` (the 80 categories and their
synonyms, its two-word table, its ``singularize``). Deviation from CHAIR's tokeniser: a token matches if its
lower-cased form *or* its singular is a synonym surface (so "bus" and "glass" match, which Pattern's
singularize turns into "bu"/"glas"), and multi-word surfaces ("dining table", "hot dog", "teddy bear")
are matched longest-first. Homographs ("orange" the colour, "mouse" the animal) are matched as objects,
as CHAIR does. A mention is *negated* when one of the three tokens before it is a negation word
(:data:`NEGATIONS`: "no dog", "not a cat", "without a cup"); :func:`object_mentions` gives the asserted
and the negated object heads of a text, :func:`asserted_objects` the asserted ones sentence by sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench.vocab import DOUBLE_WORDS, singularize, synonyms


# ------------------------------------------------------------------------------------------ sentences
_SENT_END = re.compile(r"(?<=[.!?])\s+|\n+")


def split_at_breaks(text: str) -> list[str]:
    """Sentences ending in . ! ? (kept), split at the whitespace after them and at newlines (``"3.5 m"`` stays
    one piece). The feedback models' and pipelines' rule."""
    return [s.strip() for s in _SENT_END.split(text.strip()) if s and s.strip()]


def split_at_terminators(text: str) -> list[str]:
    """Pieces of ``text`` as they appear in it, each ending at a run of ``.``/``!``/``?`` (terminators kept,
    nothing added; ``"3.5"`` is two pieces)."""
    return [m.group(0).strip() for m in re.finditer(r"[^.!?]+(?:[.!?]+|$)", text) if m.group(0).strip()]


# ------------------------------------------------------------------------------------------ object words
_WORD = re.compile(r"[A-Za-z]+|\d+")
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
           "ten": 10, "eleven": 11, "twelve": 12}
NUMBER_WORDS = {v: k for k, v in NUMBERS.items()}
DETERMINERS = {"a", "an", "the", "some", "several", "many", "another", "any", "this", "that", "these", "those",
               "its", "his", "her", "their", "one", *NUMBERS}
NEGATIONS = {"no", "not", "without", "nor", "neither", "never"}


@dataclass
class Mention:
    start: int
    end: int
    text: str
    head: str
    plural: bool
    first_token: int  # index of the first token of the mention in the token list


def _vocab() -> tuple[frozenset, dict, dict[str, str]]:
    surfaces, inverse = synonyms()
    multi = {s: s for s in surfaces if " " in s and not s.startswith(" ")}
    multi.update(DOUBLE_WORDS)  # two-word phrase -> surface
    return surfaces, inverse, multi


def tokens(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]


def find_mentions(text: str) -> list[Mention]:
    """COCO-object mentions of ``text`` with character spans (see module docstring for the rules)."""
    surfaces, inverse, multi = _vocab()
    toks = tokens(text)
    low = [t[2].lower() for t in toks]
    sing = [singularize(w) for w in low]
    out: list[Mention] = []
    i = 0
    while i < len(toks):
        hit = None
        for n in (3, 2):
            if i + n > len(toks) or any(text[toks[k][1]:toks[k + 1][0]].strip() for k in range(i, i + n - 1)):
                continue
            for words in (low[i:i + n], low[i:i + n - 1] + [sing[i + n - 1]]):
                phrase = " ".join(words)
                if phrase in multi and multi[phrase] in inverse:
                    hit = (n, inverse[multi[phrase]], low[i + n - 1] != sing[i + n - 1])
                    break
            if hit:
                break
        if hit is None:
            if low[i] in surfaces and not low[i].isdigit():
                hit = (1, inverse[low[i]], low[i] != sing[i] and sing[i] in surfaces)
            elif sing[i] in surfaces:
                hit = (1, inverse[sing[i]], True)
        if hit is None:
            i += 1
            continue
        n, head, plural = hit
        if low[i] in ("people", "children", "men", "women"):
            plural = True
        out.append(Mention(toks[i][0], toks[i + n - 1][1], text[toks[i][0]:toks[i + n - 1][1]], head, plural, i))
        i += n
    return out


def negated(toks: list[tuple[int, int, str]], first: int) -> bool:
    """Whether one of the three tokens before token ``first`` is a negation ("no dog", "not a cat")."""
    return any(toks[k][2].lower() in NEGATIONS for k in range(max(0, first - 3), first))


def object_mentions(text: str) -> tuple[set[str], set[str]]:
    """(asserted, negated) COCO object heads of ``text`` (a mention is negated when one of the three tokens
    before it is a negation word)."""
    toks = tokens(text)
    asserted, negated_heads = set(), set()
    for m in find_mentions(text):
        (negated_heads if negated(toks, m.first_token) else asserted).add(m.head)
    return asserted, negated_heads


def asserted_objects(text: str) -> set[str]:
    """Head words of the non-negated object mentions of ``text``."""
    out = set()
    for sent in split_at_breaks(text) or [text]:
        toks = tokens(sent)
        out |= {m.head for m in find_mentions(sent) if not negated(toks, m.first_token)}
    return out


# ------------------------------------------------------------------------------------------ inflection
def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def pluralize(word: str) -> str:
    irregular = {"person": "people", "man": "men", "woman": "women", "child": "children", "mouse": "mice",
                 "knife": "knives", "sheep": "sheep", "skis": "skis", "scissors": "scissors"}
    last = word.split(" ")[-1]
    stem = word[: len(word) - len(last)]
    if last in irregular:
        return stem + irregular[last]
    if re.search(r"(s|x|z|ch|sh)$", last):
        return stem + last + "es"
    if re.search(r"[^aeiou]y$", last):
        return stem + last[:-1] + "ies"
    return stem + last + "s"
