"""SHR — Sentence-level Hallucination Ratio (HA-DPO, Zhao et al., arXiv 2311.16839).

Reference followed: ``opendatalab/HA-DPO@42f72c536984: ha_dpo/shr_eval/json_eval.py``, ``shr_utils.py``,
``gpt_utils.py`` and ``ha_dpo/models/llava-v1_5/shr_eval.py`` (notes: ``shared/research/benchmarks.md`` §3).

Procedure, per image (as coded there):

1. Regions: every VG region with a non-empty phrase becomes ``f"{box}: {phrase}\\n"`` where ``box`` is the
   Python list repr of ``[x/W, y/H, (x+w)/W, (y+h)/H]``, each value ``float('%.2f' % v)`` (``0.1``, not
   ``0.10``). Facts: each fact + ``"\\n"`` (empty when the image has none).
2. Sentences for the prompt: ``response.split(".")``, each stripped; empty pieces, exact repeats and pieces
   contained (substring) in an earlier kept one are dropped (the image is then "repeated"); numbered
   ``"1. s\\n2. s\\n"``. The prompt is the template (``data/shr_judge_prompt_template.txt``, HA-DPO's
   ``GPT_JUDGE_PROMPT``) ``.format(regions, facts, numbered)``.
3. The judge is asked again while its reply lacks the substring ``"Judgement"``.
4. Parsing: the response is re-split the same way, each kept sentence + ``"."`` (also after ``!``/``?``);
   the reply's non-empty lines after the first line containing ``"Judgement:"`` lose their first
   space-separated token, are stripped, empty ones dropped; label = text before the first ``":"``,
   lower-cased. If the number of verdict lines differs from the number of sentences, every sentence of
   the image is labelled ``None``.
5. Metrics over judged images (``get_metric``; each ``round(x, 3)`` in the reference's dict):
   ``sents_per_image`` / ``words_per_image`` (words = ``len(sentence.split(" "))`` of the dotted sentence,
   all sentences incl. unlabelled), ``hal_sents_per_image`` / ``hal_words_per_image``;
   ``hal_sents_ratio`` = #hallucination / #sentences labelled hallucination|correct|cannot judge, pooled over
   images ("cannot judge" is in the denominator; unparsed images and unknown labels are not);
   ``hal_words_ratio`` likewise in words. **SHR** = ``mean_hal_ratio`` = ``hal_sents_ratio`` of the single
   run. ``gram-n-repetition`` (n = 1..4) = mean over images of |unique n-grams| / |n-grams| of the response
   after deleting ``. : \\n ? ,`` (so a newline glues two words) and splitting on whitespace.

Score file: ``metrics`` holds the values at full precision (``shr``, ``hal_words_ratio``, per-image
averages, ``gram-n-repetition``); ``details.reference_metrics`` holds HA-DPO's ``metrics.json`` dict
(3-decimal rounding, ``run1`` / ``mean_hal_ratio`` keys). ``ci``: percentile bootstrap over images
(:func:`bench.stats.bootstrap_ci`) of the pooled ratios and per-image averages.

Deliberate deviations (reference bugs fixed; each is visible in the score file):

* Bounded retries: at most ``max_attempts`` judge calls per image (the reference loops forever while the
  reply lacks "Judgement"); an image that never gets one is a parse failure with status ``no-judgement``.
* A reply that contains "Judgement" but no line with "Judgement:" is a parse failure (status
  ``no-judgement-colon``, all labels ``None``) — the reference raises IndexError and loses the whole run.
* Parse failures (``count-mismatch``, ``no-judgement-colon``, ``no-judgement``) are counted and listed per
  image in ``parse_failures``; labels outside the three verdicts are counted in ``unknown_labels``. Both are
  excluded from the ratios exactly as the reference excludes them, but never silently.
* Zero denominators (no labelled sentence; no image) leave the metric out of ``metrics`` and name it in
  ``undefined`` with the reason (the reference raises ZeroDivisionError). A response shorter than n words
  has no n-gram ratio: it is left out of that ``gram-n`` mean and counted in ``undefined``/notes (the
  reference raises ZeroDivisionError).
* An image whose prediction is missing is skipped with a reason (the reference raises KeyError); an image
  without VG regions gets an empty region block (the reference raises KeyError).
* The LLaVA script's rule is kept as a protocol parameter: an image whose judge prompt exceeds
  ``max_prompt_chars`` (15000) characters is not judged (skipped with a reason) but, as there, still
  counts in the repetition means. ``json_eval.py`` (the parity reference) has no such rule.

Recomputation: generations are stored (``predictions/<protocol>.jsonl``) and so are judge replies
(``judge/<protocol>.jsonl``: ``{"id", "judge", "prompt_sha256", "attempt", "reply"}``), so
``score(predictions, data_root, judge_replies=...)`` recomputes every number without a model or a
network. A stored reply is used only for the same judge id and the same prompt (sha256).

Protocols: ``shr`` — GPT-4 judge (``openai:gpt-4``, temperature 0.7, max_tokens 800, top_p 1, stop
``###``, HA-DPO's ``logit_bias``), generation "Describe this image in detail.", beam 5, 512 new tokens,
no sampling (HA-DPO). ``shr-annotation`` — the same procedure with the offline annotation-grounded judge
:class:`AnnotationJudge` (defined here, beside the prompt it reads; registered as judge ``annotation``); it only sees COCO-object hallucination and is a **different metric**: never put it
in a column with ``shr``.

Data layout under ``<data_root>/shr/`` (JSON Lines, one record per image; written by ``bench data fetch
shr`` from the real files, and by the synthetic world):

* ``images.jsonl``  ``{"image_id", "image": path relative to <data_root>, "width", "height"}`` — the SHR
  image list (``juliozhao/SHR: val_images_final.json``, its order) with width/height from VG
  ``image_data.json`` and the image at ``vg/images/<image_id>.jpg`` (VG ``url``).
* ``regions.jsonl`` ``{"image_id", "regions": [{"x", "y", "width", "height", "phrase"}, ...]}`` — VG
  ``region_descriptions.json`` (``[{"id", "regions": [{"region_id", "image_id", "x", "y", "width",
  "height", "phrase"}]}]``), in VG's region order (it is the prompt's order).
* ``facts.jsonl``   ``{"image_id", "facts": [str, ...]}`` — ``shr_factual_part1.jsonl`` then
  ``shr_factual_part2.jsonl`` (lines ``{"<image_id>": [facts]}``); optional, missing → no facts.
"""

from __future__ import annotations

import functools
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from bench.benchmark import Benchmark, EvalItem, GenerationSettings
from bench.errors import BenchError, DataError
from bench.io import append_jsonl, iter_jsonl, sha256_text, truncate_torn_tail
from bench.judges import CachedJudge, JudgeError, make_judge
from bench.registry import BENCHMARKS, JUDGES
from bench.stats import bootstrap_ci
from bench.text import object_mentions

TEMPLATE_FILE = Path(__file__).resolve().parent / "data" / "shr_judge_prompt_template.txt"
LABELS = ("hallucination", "correct", "cannot judge")
ACCEPT_MARK = "Judgement"  # the reference's retry test
PARSE_MARK = "Judgement:"  # the reference's parser anchor
REPETITION_DELETE = (".", ":", "\n", "?", ",")
NGRAMS = (1, 2, 3, 4)

# ------------------------------------------------------------------------------------------ prompt


@functools.lru_cache(maxsize=1)
def template() -> str:
    return TEMPLATE_FILE.read_text(encoding="utf-8")


def template_sha256() -> str:
    return sha256_text(template())


def region_box(region: dict, width: float, height: float) -> list[float]:
    """``[x1, y1, x2, y2]`` normalised by the image size, each value ``float('%.2f' % v)``."""
    x, y, w, h = region["x"], region["y"], region["width"], region["height"]
    return [float("%.2f" % v) for v in (x / width, y / height, (x + w) / width, (y + h) / height)]


def render_regions(regions: Iterable[dict], width: float, height: float) -> str:
    """The region block of the prompt: ``"[x1, y1, x2, y2]: phrase\\n"`` per region with a phrase."""
    return "".join(f"{region_box(r, width, height)}: {r['phrase']}\n" for r in regions if r.get("phrase"))


def render_facts(facts: Iterable[str]) -> str:
    return "".join(f"{f}\n" for f in facts)


def split_at_periods(response: str) -> tuple[list[str], bool]:
    """Sentences sent to the judge (no final period) and whether a repeat was dropped (``get_model_cap``): the
    response cut at every ``.`` (only), pieces stripped, a piece already kept or inside a kept one dropped.
    SHR's own rule; the general ones are :func:`bench.text.split_at_breaks` / :func:`~bench.text.split_at_terminators`."""
    kept: list[str] = []
    repeated = False
    for piece in response.split("."):
        s = piece.strip()
        if s in kept or (s and any(s in k for k in kept)):
            repeated = True
            continue
        if s:
            kept.append(s)
    return kept, repeated


def segment(response: str) -> list[str]:
    """Sentences the labels attach to: kept pieces + ``"."`` (``seg_cap``; the "." is appended even after
    ``!``/``?``). Same pieces as :func:`split_at_periods`."""
    kept: list[str] = []
    for piece in response.split("."):
        s = piece.strip()
        if s in kept or any(s in k for k in kept):
            continue
        if s:
            kept.append(s + ".")
    return kept


def numbered(sentences: Sequence[str]) -> str:
    return "".join(f"{i}. {s}\n" for i, s in enumerate(sentences, start=1))


def build_prompt(regions_text: str, facts_text: str, sentences: Sequence[str]) -> str:
    """The judge prompt, byte for byte HA-DPO's ``GPT_JUDGE_PROMPT.format(regions, facts, numbered)``."""
    return template().format(regions_text, facts_text, numbered(sentences))


def parse_prompt(prompt: str) -> tuple[str, str, list[str]] | None:
    """Inverse of :func:`build_prompt`: (regions text, facts text, sentences), or None if not an SHR prompt."""
    head, sep1, sep2, tail = template().split("{}")
    if not (prompt.startswith(head) and prompt.endswith(tail)) or len(prompt) < len(head) + len(tail):
        return None
    middle = prompt[len(head):len(prompt) - len(tail)]
    regions, found1, rest = middle.partition(sep1)
    facts, found2, block = rest.partition(sep2)
    if not (found1 and found2):
        return None
    sentences: list[str] = []
    for line in (block[:-1] if block.endswith("\n") else block).split("\n"):
        mark = f"{len(sentences) + 1}. "
        if line.startswith(mark):
            sentences.append(line[len(mark):])
        elif sentences:
            sentences[-1] += "\n" + line
    return regions, facts, sentences


# ------------------------------------------------------------------------------------------ replies


def accepts(reply: str) -> bool:
    """The reference's retry test: a reply is kept once it contains ``"Judgement"``."""
    return ACCEPT_MARK in reply


@dataclass
class Judgement:
    """Parsed verdicts of one image. ``status``: ``ok`` | ``count-mismatch`` | ``no-judgement-colon`` |
    ``no-judgement`` (set by the retry loop); labels/texts are all ``None`` unless ``ok``."""

    labels: list[str | None]
    texts: list[str | None]
    status: str = "ok"
    detail: str = ""


def parse_judgement(reply: str, n_sentences: int) -> Judgement:
    """``post_process_no_revise`` with a defined result where the reference raises IndexError."""
    lines = [ln for ln in reply.split("\n") if len(ln) > 0]
    start = next((i for i, ln in enumerate(lines) if PARSE_MARK in ln), None)
    if start is None:
        return Judgement([None] * n_sentences, [None] * n_sentences, "no-judgement-colon",
                         "no line contains 'Judgement:' (HA-DPO raises IndexError)")
    texts = [" ".join(ln.split(" ")[1:]).strip() for ln in lines[start + 1:]]
    texts = [t for t in texts if len(t) > 0]
    if len(texts) != n_sentences:
        return Judgement([None] * n_sentences, [None] * n_sentences, "count-mismatch",
                         f"{len(texts)} verdict lines for {n_sentences} sentences")
    return Judgement([t.split(":")[0].lower() for t in texts], list(texts))


def repetition(response: str, n: int) -> float | None:
    """|unique n-grams| / |n-grams| (``cal_repetition``); None when the response has fewer than n words."""
    text = response
    for ch in REPETITION_DELETE:
        text = text.replace(ch, "")
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


# ------------------------------------------------------------------------------------------ evaluation


@dataclass
class ShrInput:
    """One image: prediction id, response, prompt blocks; ``judge=False`` → repetition only."""

    id: str
    response: str
    regions_text: str
    facts_text: str
    judge: bool = True

    @functools.cached_property
    def sentences(self) -> tuple[list[str], bool]:
        return split_at_periods(self.response)

    @functools.cached_property
    def prompt(self) -> str:
        return build_prompt(self.regions_text, self.facts_text, self.sentences[0])

    @functools.cached_property
    def prompt_sha256(self) -> str:
        return sha256_text(self.prompt)


@dataclass
class ImageResult:
    id: str
    response: str
    prompt: str
    sentences: list[str]  # dotted (``seg_cap``)
    judgement: Judgement
    reply: str | None  # the accepted reply (or the last one tried)
    attempts: int
    is_repeated: bool
    numbered_sentences: str

    def counts(self) -> np.ndarray:
        """[images, sentences, words, labelled sentences, labelled words, hal sentences, hal words]."""
        c = [1, 0, 0, 0, 0, 0, 0]
        for s, lab in zip(self.sentences, self.judgement.labels):
            nw = len(s.split(" "))
            c[1] += 1
            c[2] += nw
            if lab in LABELS:
                c[3] += 1
                c[4] += nw
                if lab == "hallucination":
                    c[5] += 1
                    c[6] += nw
        return np.array(c, dtype=np.int64)

    def reference_judgement(self) -> list[dict]:
        return [{"model_response": s, "judgement": t, "classification": lab}
                for s, t, lab in zip(self.sentences, self.judgement.texts, self.judgement.labels)]


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def pooled(counts: np.ndarray) -> dict[str, float | None]:
    """``get_metric`` (unrounded) from summed per-image counts; None where the reference divides by zero."""
    n_img, sents, words, lab_s, lab_w, hal_s, hal_w = (int(v) for v in counts)
    return {"num_images": n_img, "sents_per_image": _ratio(sents, n_img), "words_per_image": _ratio(words, n_img),
            "hal_sents_per_image": _ratio(hal_s, n_img), "hal_words_per_image": _ratio(hal_w, n_img),
            "hal_sents_ratio": _ratio(hal_s, lab_s), "hal_words_ratio": _ratio(hal_w, lab_w)}


def _r3(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _mean(values: Iterable[float]) -> float | None:
    total, n = 0, 0
    for v in values:  # left-to-right like the reference's running sum
        total += v
        n += 1
    return total / n if n else None


ReplySource = Callable[[ShrInput, int], "str | None"]


@dataclass
class ShrResult:
    images: dict[str, ImageResult] = field(default_factory=dict)
    grams: list[dict[int, float | None]] = field(default_factory=list)  # one per input (judged or not)
    judge_calls: int = 0
    used_replies: list[dict] = field(default_factory=list)  # {"id", "prompt_sha256", "attempt", "reply"}
    missing: dict[str, str] = field(default_factory=dict)  # id -> why no judgement could be replayed

    def total_counts(self) -> np.ndarray:
        if not self.images:
            return np.zeros(7, dtype=np.int64)
        return np.sum([im.counts() for im in self.images.values()], axis=0)

    def gram_means(self) -> dict[int, float | None]:
        return {n: _mean(g[n] for g in self.grams if g[n] is not None) for n in NGRAMS}

    def reference_metrics(self) -> dict[str, Any]:
        """HA-DPO's ``metrics.json`` shape (3-decimal values; None where the reference crashes)."""
        run1 = {k: (v if k == "num_images" else _r3(v)) for k, v in pooled(self.total_counts()).items()}
        out: dict[str, Any] = {"run1": run1}
        for n, v in self.gram_means().items():
            out[f"gram-{n}-repetition"] = _r3(v)
        out["mean_hal_ratio"] = _r3(run1["hal_sents_ratio"])
        return out

    def metrics(self) -> dict[str, float | None]:
        m = pooled(self.total_counts())
        out: dict[str, float | None] = {"shr": m["hal_sents_ratio"], "hal_words_ratio": m["hal_words_ratio"],
                                        "sents_per_image": m["sents_per_image"],
                                        "words_per_image": m["words_per_image"],
                                        "hal_sents_per_image": m["hal_sents_per_image"],
                                        "hal_words_per_image": m["hal_words_per_image"]}
        for n, v in self.gram_means().items():
            out[f"gram-{n}-repetition"] = v
        return out

    def undefined(self) -> dict[str, str]:
        """Metric → why it has no value (where HA-DPO would have crashed)."""
        out: dict[str, str] = {}
        m = self.metrics()
        if not self.images:
            for k in ("shr", "hal_words_ratio", "sents_per_image", "words_per_image", "hal_sents_per_image",
                      "hal_words_per_image"):
                out[k] = "no image was judged (HA-DPO: ZeroDivisionError)"
        else:
            for k in ("shr", "hal_words_ratio"):
                if m[k] is None:
                    out[k] = ("no sentence got a hallucination/correct/cannot judge label — every judged image"
                              " was unparsed or empty (HA-DPO: ZeroDivisionError)")
        for n in NGRAMS:
            short = sum(1 for g in self.grams if g[n] is None)
            if short and m[f"gram-{n}-repetition"] is None:
                out[f"gram-{n}-repetition"] = f"every response is shorter than {n} words (HA-DPO: ZeroDivisionError)"
        return out

    def notes(self) -> list[str]:
        notes = []
        for n in NGRAMS:
            short = sum(1 for g in self.grams if g[n] is None)
            if short and len(self.grams) > short:
                notes.append(f"gram-{n}-repetition: {short} response(s) shorter than {n} words left out of the mean"
                             " (HA-DPO: ZeroDivisionError)")
        return notes

    def parse_failures(self) -> dict[str, Any]:
        bad = {i: im.judgement.status for i, im in self.images.items() if im.judgement.status != "ok"}
        return {"count": len(bad), "by_status": dict(Counter(bad.values())),
                "images": {i: f"{s}: {self.images[i].judgement.detail}" for i, s in bad.items()}}

    def unknown_labels(self) -> dict[str, int]:
        return dict(Counter(lab for im in self.images.values() for lab in im.judgement.labels
                            if lab is not None and lab not in LABELS))


def evaluate(inputs: Sequence[ShrInput], source: ReplySource, max_attempts: int = 5) -> ShrResult:
    """Run the SHR procedure on ``inputs``; ``source(input, attempt)`` gives the judge's reply to
    ``input.prompt`` for that attempt (a live judge, stored replies, or canned ones) or None when none is
    available (the image then goes to ``missing``, unjudged). Images are keyed by id (a repeated id keeps
    the last judgement, like the reference's dict); repetition covers every input."""
    res = ShrResult()
    for inp in inputs:
        res.grams.append({n: repetition(inp.response, n) for n in NGRAMS})
        if not inp.judge:
            continue
        kept, repeated = inp.sentences
        sentences = segment(inp.response)
        reply, accepted, attempts = None, False, 0
        for attempt in range(max_attempts):
            got = source(inp, attempt)
            if got is None:
                break
            attempts += 1
            res.judge_calls += 1
            reply = got
            res.used_replies.append({"id": inp.id, "prompt_sha256": inp.prompt_sha256, "attempt": attempt,
                                     "reply": got})
            if accepts(got):
                accepted = True
                break
        if not accepted and attempts < max_attempts:
            res.missing[inp.id] = ("no stored judge reply" if attempts == 0 else
                                   f"judge retries incomplete ({attempts} stored replies without 'Judgement')")
            continue
        if accepted:
            judgement = parse_judgement(reply, len(sentences))
        else:
            judgement = Judgement([None] * len(sentences), [None] * len(sentences), "no-judgement",
                                  f"no reply with 'Judgement' in {max_attempts} attempts (HA-DPO retries forever)")
        res.images[inp.id] = ImageResult(inp.id, inp.response, inp.prompt, sentences, judgement, reply, attempts,
                                         repeated, numbered(kept))
    return res


def stored_source(replies: Iterable[dict], judge_id: str | None) -> tuple[ReplySource, int]:
    """A :data:`ReplySource` over stored reply records (first record per (id, prompt, attempt) wins) and the
    number of records ignored because another judge produced them."""
    table: dict[tuple[str, str, int], str] = {}
    ignored = 0
    for rec in replies:
        if judge_id is not None and rec.get("judge") != judge_id:
            ignored += 1
            continue
        key = (str(rec["id"]), str(rec["prompt_sha256"]), int(rec.get("attempt", 0)))
        table.setdefault(key, rec["reply"])
    return (lambda inp, attempt: table.get((inp.id, inp.prompt_sha256, attempt))), ignored


def _bootstrap_stat(units: Sequence[np.ndarray]) -> dict[str, float | None]:
    m = pooled(np.sum(units, axis=0))
    return {"shr": m["hal_sents_ratio"], "hal_words_ratio": m["hal_words_ratio"],
            "sents_per_image": m["sents_per_image"], "words_per_image": m["words_per_image"],
            "hal_sents_per_image": m["hal_sents_per_image"], "hal_words_per_image": m["hal_words_per_image"]}


# ------------------------------------------------------------------------------------------ protocols


def _read_rows(path: Path, required: tuple[str, ...]) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for line, rec in iter_jsonl(path):
        for key in required:
            if key not in rec:
                raise DataError(path, "missing field", line=line, field=key)
        iid = str(rec["image_id"])
        if iid in rows:
            raise DataError(path, f"image_id {iid} appears twice", line=line, field="image_id")
        rows[iid] = rec
    return rows


# ------------------------------------------------------------------------------------------- offline judge
class AnnotationJudge(CachedJudge):
    """Offline annotation-grounded SHR judge (registry ``bench.judges``, entry ``annotation``; protocol
    ``shr-annotation``): COCO-object mentions vs regions + facts (not GPT-4 SHR).

    It reads the region descriptions, the facts and the numbered sentences back out of the SHR judge prompt
    (:func:`parse_prompt`) and labels each sentence from its COCO-object mentions
    (:func:`bench.text.object_mentions`: the CHAIR synonym list, plural forms, multi-word names):
    *hallucination* if it asserts an object absent from every region phrase and fact (or negates one that is
    present: "no dog" when a dog is annotated), *correct* if it names objects and all of them agree with the
    annotations, *cannot judge* if it names no COCO object. It answers in the GPT judge's ``Judgement:`` text
    format so the same parser scores it. It sees object hallucination only (no attributes, counts,
    relations, or objects outside the 80 COCO classes).
    """

    description = "offline annotation-grounded judge: object mentions vs VG regions + facts (not GPT-4 SHR)"
    version = "2"
    judge_id = "annotation:coco-objects:v2"

    def __init__(self, cache_dir: str | os.PathLike | None = None, **unknown: Any):
        if unknown:
            raise JudgeError(f"judge annotation: unknown setting(s) {', '.join(sorted(unknown))}")
        super().__init__(cache_dir)

    # (asserted, negated) COCO object heads of a text: a mention is negated when one of the three words before
    # it is a negation ("no", "not", "without", …)
    mentions = staticmethod(object_mentions)

    def verdict(self, sentence: str, known: set[str]) -> str:
        asserted, negated = self.mentions(sentence)
        absent = sorted(asserted - known)
        denied = sorted(negated & known)
        if absent or denied:
            why = []
            if absent:
                why.append(f"{', '.join(absent)} not in the region descriptions or facts")
            if denied:
                why.append(f"{', '.join(denied)} is annotated but the sentence denies it")
            return "hallucination: " + "; ".join(why) + "."
        if asserted or negated:
            return f"correct: {', '.join(sorted(asserted | negated))} consistent with the annotations."
        return "cannot judge: the sentence names no COCO object class."

    def reply(self, prompt: str) -> str:
        parsed = parse_prompt(prompt)
        if parsed is None:
            return "The prompt is not an SHR judge prompt; no Judgement possible."
        regions, facts, sentences = parsed
        known: set[str] = set()
        for line in (regions + "\n" + facts).split("\n"):
            known |= self.mentions(line.split("]: ", 1)[-1])[0]
        lines = ["Judgement:"]
        lines += [f"{i}. {self.verdict(s, known)}" for i, s in enumerate(sentences, start=1)]
        return "\n".join(lines)


JUDGES.add("annotation", AnnotationJudge)


class ShrProtocol(Benchmark):
    """SHR (HA-DPO) with the GPT-4 judge: needs an OpenAI-compatible endpoint and its key."""

    name = "shr"
    benchmark = "shr"
    version = "2"
    description = "SHR (HA-DPO): GPT-4 judges each sentence against VG regions + facts; beam 5, 512 tokens"
    generation = GenerationSettings(max_new_tokens=512, num_beams=5, do_sample=False, temperature=1.0)
    params: dict[str, Any] = {
        "prompt": "Describe this image in detail.",
        "judge": "openai:gpt-4",
        "judge_settings": {"temperature": 0.7, "max_tokens": 800,
                           "extra": {"top_p": 1.0, "n": 1, "stop": ["###"], "presence_penalty": 0.0,
                                     "frequency_penalty": 0.0, "logit_bias": {"50256": -100}}},
        "max_attempts": 5,
        "max_prompt_chars": 15000,
        "template_sha256": template_sha256(),
    }
    headline = {"shr": ("SHR", False)}

    # -------------------------------------------------------------- data
    @staticmethod
    def folder(data_root: Path) -> Path:
        return Path(data_root) / "shr"

    def data_files(self, data_root: Path) -> list[Path]:
        folder = self.folder(data_root)
        files = [folder / "images.jsonl", folder / "regions.jsonl"]
        return files + ([folder / "facts.jsonl"] if (folder / "facts.jsonl").exists() else [])

    def _images(self, data_root: Path) -> dict[str, dict]:
        path = self.folder(data_root) / "images.jsonl"
        rows = _read_rows(path, ("image_id", "image", "width", "height"))
        for iid, rec in rows.items():
            for key in ("width", "height"):
                v = rec[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                    raise DataError(path, f"image {iid}: {key} must be a positive number, got {v!r}", field=key)
        return rows

    def items(self, data_root: Path) -> list[EvalItem]:
        return [EvalItem(iid, str(Path(data_root) / rec["image"]), self.params["prompt"],
                         {"image_id": rec["image_id"]})
                for iid, rec in self._images(data_root).items()]

    def inputs(self, predictions: list[dict], data_root: Path, item_ids: set[str] | None = None
               ) -> tuple[list[ShrInput], dict[str, str], list[str]]:
        """(judge inputs in image-list order, skipped id → reason, ids without VG regions)."""
        folder = self.folder(data_root)
        images = self._images(data_root)
        regions = _read_rows(folder / "regions.jsonl", ("image_id", "regions"))
        facts = _read_rows(folder / "facts.jsonl", ("image_id", "facts")) if (folder / "facts.jsonl").exists() else {}
        texts = {str(p["id"]): p["text"] for p in predictions}
        ids = [i for i in images if item_ids is None or i in item_ids]
        out, skipped, no_regions = [], {}, []
        cap = self.params.get("max_prompt_chars")
        for iid in ids:
            if iid not in texts:
                skipped[iid] = "no prediction"
                continue
            img = images[iid]
            if not regions.get(iid, {}).get("regions"):
                no_regions.append(iid)  # HA-DPO raises (KeyError / IndexError building id2reg)
            try:
                regions_text = render_regions(regions.get(iid, {}).get("regions", []), img["width"], img["height"])
            except (KeyError, TypeError) as exc:
                raise DataError(folder / "regions.jsonl", f"image {iid}: malformed region ({exc!r});"
                                                          " each needs x, y, width, height, phrase") from None
            inp = ShrInput(iid, texts[iid] or "", regions_text, render_facts(facts.get(iid, {}).get("facts", [])))
            if cap and len(inp.prompt) > cap:
                inp.judge = False
                skipped[iid] = f"judge prompt is {len(inp.prompt)} > {cap} characters (not judged, as HA-DPO)"
            out.append(inp)
        return out, skipped, no_regions

    def missing_resources(self, data_root: Path) -> list[str]:
        try:
            judge_missing = self.make_judge(None).missing_resources()
        except BenchError as exc:  # a judge that cannot even be configured (bad URL, unknown setting)
            judge_missing = [str(exc)]
        return [*super().missing_resources(data_root), *judge_missing]

    # -------------------------------------------------------------- judge
    def make_judge(self, cache_dir: Path | None = None):
        return make_judge(self.params["judge"], cache_dir=cache_dir, **self.params.get("judge_settings", {}))

    @staticmethod
    def replies_path(cache_dir: Path, name: str) -> Path:
        return Path(cache_dir) / f"{name}.jsonl"

    def run_judge(self, inputs: Sequence[ShrInput], judge: Any = None, cache_dir: Path | None = None,
                  out: Path | None = None) -> tuple[ShrResult, Any, int]:
        """Judge ``inputs`` (through the judge's cache), replaying replies already in ``out``
        (``judge/<protocol>.jsonl``) and appending new ones there. Returns (result, judge, ignored)."""
        judge = judge if judge is not None else self.make_judge(cache_dir)
        stored: list[dict] = []
        if out is not None and Path(out).exists():
            truncate_torn_tail(out)
            stored = [r for _, r in iter_jsonl(out, repair=True)]
        replay, ignored = stored_source(stored, judge.judge_id)

        def source(inp: ShrInput, attempt: int) -> str:
            reply = replay(inp, attempt)
            if reply is not None:
                return reply
            reply = judge(inp.prompt, attempt)
            if out is not None:
                append_jsonl(out, [{"id": inp.id, "judge": judge.judge_id, "prompt_sha256": inp.prompt_sha256,
                                    "attempt": attempt, "reply": reply}])
            return reply

        return evaluate(inputs, source, self.params["max_attempts"]), judge, ignored

    # -------------------------------------------------------------- score
    def paired_units(self, score: dict):
        """Per-image ``[labelled sentences, hallucination sentences]`` from ``details.per_image`` and the
        statistic ``shr`` = hallucination / labelled of a summed array (for
        :func:`bench.stats.paired_bootstrap_delta`); None when the score file has no per-image labels."""
        per_image = (score.get("details") or {}).get("per_image")
        if not isinstance(per_image, dict) or not per_image:
            return None
        units = {}
        for iid, d in per_image.items():
            labels = d.get("labels") or []
            units[str(iid)] = np.array([sum(lab in LABELS for lab in labels),
                                        sum(lab == "hallucination" for lab in labels)], dtype=np.int64)
        return units, lambda c: {"shr": _ratio(int(c[1]), int(c[0]))}

    def sample_verdict(self, detail: dict) -> dict:
        """Per-sample log (one image): the judge's sentence labels; correct = judged and no sentence labelled
        hallucination (None when the judgement failed)."""
        labels = detail.get("labels") or []
        ok = detail.get("status") == "ok"
        return {"correct": (all(lab != "hallucination" for lab in labels) if ok else None), "labels": labels}

    def score(self, predictions: list[dict], data_root: Path, judge_replies: Iterable[dict] | str | Path | None = None,
              cache_dir: Path | None = None, n_boot: int = 1000, item_ids: set[str] | None = None,
              judge: Any = None, **_: Any) -> dict:
        """Stored generations (+ stored judge replies, or a judge run through the cache) → score dict.

        ``judge_replies`` (records or a ``judge/<protocol>.jsonl`` path): pure recomputation, no judge call;
        images without a stored reply are skipped with a reason. Otherwise the judge runs (replies
        appended to ``cache_dir/<protocol>.jsonl`` when ``cache_dir`` is given)."""
        inputs, skipped, no_regions = self.inputs(predictions, data_root, item_ids)
        if judge_replies is not None:
            if isinstance(judge_replies, (str, Path)):
                judge_replies = [r for _, r in iter_jsonl(judge_replies, repair=True)]
            judge_id = judge.judge_id if judge is not None else self.make_judge(None).judge_id
            source, ignored = stored_source(judge_replies, judge_id)
            res = evaluate(inputs, source, self.params["max_attempts"])
            judge_info: dict[str, Any] = {"id": judge_id, "requests": 0, "recomputed_from_stored_replies": True}
        else:
            out = self.replies_path(cache_dir, self.name) if cache_dir is not None else None
            res, judge_obj, ignored = self.run_judge(inputs, judge, cache_dir, out)
            judge_info = (judge_obj.stats() if hasattr(judge_obj, "stats")
                          else {"id": getattr(judge_obj, "judge_id", "?")})
            if out is not None:
                judge_info["replies_file"] = out.name
        judge_info.update({"spec": self.params["judge"], "calls": res.judge_calls,
                           "ignored_replies_of_other_judges": ignored})
        for iid, why in res.missing.items():
            skipped[iid] = why

        metrics = {k: float(v) for k, v in res.metrics().items() if v is not None and not math.isnan(v)}
        units = [im.counts() for im in res.images.values()]
        ci = bootstrap_ci(units, _bootstrap_stat, n_boot=n_boot, seed=0) if units else {}
        gram_units = [g for g in res.grams]
        for n in NGRAMS:
            vals = [g[n] for g in gram_units if g[n] is not None]
            if vals:
                ci.update(bootstrap_ci(vals, lambda u, n=n: {f"gram-{n}-repetition": _mean(u)}, n_boot=n_boot, seed=0))
        per_image = {iid: {"status": im.judgement.status, "labels": im.judgement.labels, "attempts": im.attempts,
                           "n_sentences": len(im.sentences), "is_repeated": im.is_repeated}
                     for iid, im in res.images.items()}
        return {
            "metrics": metrics,
            "ci": ci,
            "n": len(res.images),
            "skipped": {"count": len(skipped), "reasons": skipped},
            "undefined": res.undefined(),
            "parse_failures": res.parse_failures(),
            "unknown_labels": res.unknown_labels(),
            "judge": judge_info,
            "notes": res.notes() + ([f"{len(no_regions)} image(s) without VG regions (empty region block)"]
                                    if no_regions else []),
            "details": {"reference_metrics": res.reference_metrics(), "per_image": per_image},
        }


class ShrAnnotationProtocol(ShrProtocol):
    """SHR procedure with the offline annotation-grounded judge — a different metric from GPT-4 SHR."""

    name = "shr-annotation"
    description = ("SHR procedure, offline annotation-grounded judge (COCO-object mentions vs regions + facts);"
                   " not comparable with GPT-4 SHR")
    params = {**{k: v for k, v in ShrProtocol.params.items() if k != "judge_settings"}, "judge": "annotation"}
    headline = {"shr": ("SHR (annotation judge)", False)}


BENCHMARKS.add(ShrProtocol)
BENCHMARKS.add(ShrAnnotationProtocol)
