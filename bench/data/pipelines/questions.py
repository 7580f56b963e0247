"""Object-existence questions as instruction items of the data pipelines (option ``questions``, default 0).

The seed papers' preference data are not descriptions only: POVID's 17K pairs are drawn from LLaVA-Instruct
(descriptions and conversations), HSA-DPO's carry SVIT conversation ids, OPA-DPO's prompts are RLAIF-V's mixed
questions (methods.md §2.3, §3.3, §4.3). With ``questions = N`` the POVID, HSA-DPO and OPA-DPO pipelines add,
per image, N yes/no questions in POPE's template about the absent objects that co-occur most with the image's
objects in the annotation source (how POPE-adversarial and HA-DPO's POPE-style data pick objects) — the one
question type an annotation-only world can answer. An answer is judged by turning it into a statement
("Yes" → "There is a couch in the image.", "No" → "There is no couch in the image.") and passing that to the
feedback model, so an API feedback model and the offline one judge answers the same way they judge
descriptions; a hallucinated answer's correction is "No" (the minimal revision). Omissions ("No" for a
present object) are not object hallucinations and are not revised — as in the description pipelines.
"""

from __future__ import annotations

import re

from bench.data.pipelines.sources import AnnotationSet
from bench.feedback import FeedbackModel, ImageAnnotations, Review
from bench.text import article, find_mentions

QUESTION = "Is there {article} {name} in the image?"  # POPE's template (article applied to the word only)
_QUESTION_RE = re.compile(r"^\s*is there (?:a|an|any) (.+?) in the image\??\s*$", re.IGNORECASE)
_ANSWER_RE = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


def object_questions(ann: ImageAnnotations, source: AnnotationSet, n: int) -> list[str]:
    """Up to ``n`` questions about absent objects, most co-occurring with a present object first (ties: more
    frequent in the source, then name)."""
    if n <= 0:
        return []
    present = ann.present()
    scores: dict[str, int] = {}
    for p in present:
        for obj, count in source.cooccurrence.get(p, {}).items():
            if obj not in present:
                scores[obj] = max(scores.get(obj, 0), count)
    ranked = sorted(scores, key=lambda o: (-scores[o], -source.frequency.get(o, 0), o))
    return [QUESTION.format(article=article(o), name=o) for o in ranked[:n]]


def asked_object(question: str) -> str | None:
    m = _QUESTION_RE.match(question)
    return m.group(1).strip() if m else None


def answer_word(answer: str) -> str | None:
    """"yes" / "no" from the start of an answer, else None."""
    m = _ANSWER_RE.match(answer or "")
    return m.group(1).lower() if m else None


def as_statement(question: str, answer: str) -> str | None:
    """The claim a yes/no answer makes, as a sentence the feedback model can review (None: not yes/no)."""
    obj, word = asked_object(question), answer_word(answer)
    if obj is None or word is None:
        return None
    return f"There is {article(obj)} {obj} in the image." if word == "yes" else f"There is no {obj} in the image."


def review_answer(fb: FeedbackModel, ann: ImageAnnotations, question: str, answer: str) -> Review | None:
    """The feedback model's review of a yes/no answer (None when the answer is not a yes/no answer)."""
    statement = as_statement(question, answer)
    return None if statement is None else fb.review(ann, statement)


def revised_answer(review: Review, answer: str) -> str:
    """The minimal revision: "No" when the answer claimed an absent object, else the answer unchanged."""
    return "No" if review.hallucinated else answer.strip()


def ground_truth_answer(ann: ImageAnnotations, question: str) -> str | None:
    """"Yes"/"No" from the annotations (None when the question is not an object-existence question)."""
    obj = asked_object(question)
    if obj is None:
        return None
    heads = [m.head for m in find_mentions(f"There is {article(obj)} {obj}.")]
    if not heads:
        return None
    return "Yes" if heads[0] in ann.present() else "No"
