"""Offline annotation-grounded judges for MMHal-Bench, LLaVA-Bench and Object HalBench prompts (registry
``bench.judges``).

Both read their inputs back out of the benchmark's own judge prompt (the same prompt a GPT-4 judge gets),
find COCO-object mentions with :meth:`bench.judges.AnnotationJudge.mentions` (the CHAIR synonym list,
plurals, multi-word names; a mention is *negated* when "no"/"not"/"without"… precedes it), and answer in
the GPT judge's reply format so the reference parser scores them. They see object existence (and, for
MMHal, colour / count / position words of the standard answer) only — no attributes beyond those, no
reasoning quality — so their protocols (``mmhal-annotation``, ``llava-bench-annotation``) are
**different metrics** from the GPT-4 ones and never share a leaderboard column with them.

``mmhal-annotation`` (prompt: :func:`metrics.mmhal.build_prompt`):
  present = objects named in the image contents. The response *hallucinates* when it asserts an object
  not present or negates one that is. Coverage c = share of the standard answer's key terms the response
  matches: objects the answer asserts (asserted by the response too), objects it negates (negated by the
  response too), and its colour, number (digits and number words up to twelve) and position words (left,
  right, above, below, top, bottom); an answer with none of those is matched on its content words
  (longer than three letters, a few stopwords removed). Rating:
  without hallucination 3 + min(3, ⌊3c⌋) (3 … 6), with hallucination min(2, ⌊3c⌋) (0 … 2) — the
  reference scale's "informative" steps read as coverage thirds. Reply: an explanation line, then
  ``Rating: N``.

``llava-bench-annotation`` (prompt: :func:`metrics.llava_bench.build_prompt`):
  present = objects asserted in the context. Each answer gets
  ``clip(1 + round(9 · coverage) − 3 · errors, 1, 10)`` with coverage = share of the present objects it
  asserts and errors = objects it asserts that are absent + present objects it negates. Reply: ``"s1 s2"``
  on the first line (reference answer, model answer), then an explanation — the reference's format.

``objhal-annotation`` (prompt: :func:`metrics.objhal_gpt.build_prompt`, the GPT object extractor's):
  the examiner's answer is read back out of the prompt; the reply is the JSON list of the COCO objects it
  asserts (node words, in order of first mention; negated mentions are not objects "shown in the image"),
  the extractor's reply format. It finds COCO objects only, where GPT names any object, so
  ``objhal-gpt-annotation`` is a different metric from ``objhal-gpt``.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from bench.judges import AnnotationJudge, CachedJudge, JudgeError
from bench.registry import JUDGES

COLOURS = frozenset({"red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "white", "black",
                     "gray", "grey", "tan", "beige", "silver", "gold"})
POSITIONS = frozenset({"left", "right", "above", "below", "top", "bottom"})
NUMBER_WORDS = {w: str(i) for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                                 "nine", "ten", "eleven", "twelve"])}


def _words(text: str) -> list[str]:
    return [NUMBER_WORDS.get(w, w) for w in re.findall(r"[a-z]+|\d+", text.lower())]


STOPWORDS = frozenset({"there", "these", "those", "this", "that", "with", "image", "picture", "photo", "from",
                       "have", "were", "they", "what", "which", "where", "into", "onto", "some", "about"})


def _key_words(text: str) -> set[str]:
    return {w for w in _words(text) if w in COLOURS or w in POSITIONS or w.isdigit()}


def _content_words(text: str) -> set[str]:
    return {w for w in _words(text) if len(w) > 3 and w not in STOPWORDS}


class _Grounded(CachedJudge):
    """Shared construction: no settings, deterministic, cached like every judge."""

    def __init__(self, cache_dir: str | os.PathLike | None = None, **unknown: Any):
        if unknown:
            raise JudgeError(f"judge {self.judge_id}: unknown setting(s) {', '.join(sorted(unknown))}")
        super().__init__(cache_dir)


class MMHalAnnotationJudge(_Grounded):
    """Offline MMHal-Bench judge: object claims vs image contents + coverage of the standard answer."""

    description = "offline MMHal-Bench judge: COCO-object claims vs image contents, coverage of the standard answer"
    version = "1"
    judge_id = "mmhal-annotation:coco-objects:v1"

    @staticmethod
    def rate(contents: str, gt: str, response: str) -> tuple[int, str]:
        """(rating 0–6, explanation)."""
        present = AnnotationJudge.mentions(contents)[0]
        asserted, negated = AnnotationJudge.mentions(response)
        errors = sorted(asserted - present) + sorted(negated & present)
        gt_asserted, gt_negated = AnnotationJudge.mentions(gt)
        words = _key_words(gt)
        said = set(_words(response))
        if not (gt_asserted or gt_negated or words):  # no object / colour / number / position in the answer
            words = _content_words(gt)
        total = len(gt_asserted) + len(gt_negated) + len(words)
        matched = (len(gt_asserted & asserted) + len(gt_negated & negated) + len(words & said))
        coverage = matched / total if total else 0.0
        step = min(3, math.floor(3 * coverage + 1e-9))
        if errors:
            rating = min(2, step)
            why = f"The response claims {', '.join(errors)} against the image contents."
        else:
            rating = 3 + step
            why = "The response makes no object claim against the image contents."
        why += f" It matches {matched} of {total} key terms of the standard answer."
        return rating, why

    def reply(self, prompt: str) -> str:
        from metrics.mmhal import parse_prompt  # metrics modules import this one: import lazily

        parsed = parse_prompt(prompt)
        if parsed is None:
            return "The prompt is not an MMHal-Bench judge prompt; no rating possible."
        contents, _question, gt, response = parsed
        rating, why = self.rate(contents, gt, response)
        return f"{why}\nRating: {rating}"


class LlavaBenchAnnotationJudge(_Grounded):
    """Offline LLaVA-Bench reviewer: both answers' COCO-object claims vs the context."""

    description = "offline LLaVA-Bench reviewer: COCO-object claims of both answers vs the context"
    version = "1"
    judge_id = "llava-bench-annotation:coco-objects:v1"

    @staticmethod
    def grade(present: set[str], answer: str) -> tuple[int, str]:
        asserted, negated = AnnotationJudge.mentions(answer)
        errors = sorted(asserted - present) + sorted(negated & present)
        coverage = len(asserted & present) / len(present) if present else (0.0 if errors else 1.0)
        score = max(1, min(10, 1 + round(9 * coverage) - 3 * len(errors)))
        why = f"covers {len(asserted & present)} of {len(present)} objects"
        return score, why + (f", wrong about {', '.join(errors)}" if errors else ", no wrong object")

    def reply(self, prompt: str) -> str:
        from metrics.llava_bench import parse_prompt  # metrics modules import this one: import lazily

        parsed = parse_prompt(prompt)
        if parsed is None:
            return "The prompt is not a LLaVA-Bench review prompt."
        context, _question, first, second = parsed
        present = AnnotationJudge.mentions(context)[0]
        (s1, w1), (s2, w2) = self.grade(present, first), self.grade(present, second)
        return f"{s1} {s2}\nAssistant 1 {w1}; Assistant 2 {w2}."


class ObjHalAnnotationJudge(_Grounded):
    """Offline Object HalBench object extractor: the COCO objects the examiner's answer asserts, as a JSON list."""

    description = "offline Object HalBench object extractor: asserted COCO-object mentions of the answer (JSON list)"
    version = "1"
    judge_id = "objhal-annotation:coco-objects:v1"

    def reply(self, prompt: str) -> str:
        import json

        from bench.feedback import NEGATIONS, find_mentions, tokens
        from metrics.objhal_gpt import parse_prompt  # metrics modules import this one: import lazily

        parsed = parse_prompt(prompt)
        if parsed is None:
            return "The prompt is not an Object HalBench extraction prompt."
        toks = tokens(parsed[1])
        found: list[str] = []
        for m in find_mentions(parsed[1]):
            before = toks[max(0, m.first_token - 3):m.first_token]
            if not any(t[2].lower() in NEGATIONS for t in before) and m.head not in found:
                found.append(m.head)
        return json.dumps(found)


JUDGES.add("mmhal-annotation", MMHalAnnotationJudge)
JUDGES.add("llava-bench-annotation", LlavaBenchAnnotationJudge)
JUDGES.add("objhal-annotation", ObjHalAnnotationJudge)
