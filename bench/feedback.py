"""Feedback models (registry ``bench.feedback``): who finds, grades and fixes hallucinations when the
data pipelines (:mod:`bench.data.pipelines`) build preference data.

The four methods' papers use GPT-4 / GPT-4V for this step (methods.md §1.4, §2.4, §3.4, §4.4). Two
entries implement one interface (:class:`FeedbackModel`):

* ``openai`` — an OpenAI-compatible *vision* chat model (``POST {base_url}/chat/completions``, images
  sent as base64 ``data:`` URLs). The HTTP client (:class:`VisionChatClient`) uses the transport shared
  with :class:`bench.judges.OpenAIJudge` (:class:`bench.openai_client.ChatClient`) and its reply cache
  (:class:`bench.openai_client.ReplyCache`, append-only JSONL keyed by client id + sha256 of the request, here including the images' sha256):
  key read from an environment variable and never written anywhere, bounded retries with exponential
  backoff on HTTP 429 (honouring ``Retry-After``), 5xx, timeouts and malformed replies, a minimum
  interval between requests. Replies are asked for as JSON; a reply that does not parse raises
  :class:`FeedbackError` and the pipeline drops that item with the reason recorded.
* ``annotation`` — offline and deterministic, grounded in the image's annotations
  (:class:`ImageAnnotations`: COCO instances, VG region phrases or the synthetic world's COCO files).
  It only knows *objects*:

  - object words are found by :func:`bench.text.find_mentions` with the CHAIR word lists of
    :mod:`metrics.chair_words` (the 80 COCO categories + synonyms, its two-word table, its
    ``singularize``); sentences are :func:`bench.text.split_at_breaks`. Deviation from CHAIR's tokeniser,
    so that no NLTK data is needed and spans can be edited: tokens are ``[A-Za-z]+`` runs, a token
    matches if its lower-cased form *or* its singular is a synonym surface (so "bus" and "glass" match,
    which Pattern's singularize turns into "bu"/"glas"), and multi-word surfaces ("dining table",
    "hot dog", "teddy bear") are matched longest-first. Homographs ("orange" the colour, "mouse" the
    animal) are matched as objects, like CHAIR does;
  - a mention is a hallucination iff its head word is not among the annotated objects; a mention
    preceded (within three words) by "no"/"not"/"without"/"nor" is a negation and is a hallucination
    iff the object *is* annotated;
  - with instance counts (COCO), a number word ("two", "3") right before a mention that disagrees
    with the annotated count is an *attribute* (count) error;
  - severity (HSA-DPO's scale, 1 Minor … 3 Major): count error 1; hallucinated object in a sentence
    that also names an annotated object 2; sentence whose every named object is absent (or a negation
    of a present object) 3;
  - fix (minimal, sentence by sentence): a hallucinated mention is *replaced* by an annotated object
    the text does not mention yet ("wrong -> right", article and number adjusted), else *removed* from
    its coordination list ("a, b and c"), else the sentence is dropped; count errors get the annotated
    count;
  - injection (POVID): an absent object that co-occurs most with the present ones in the annotation
    set (POPE-adversarial style) is added as a new sentence next to a present anchor ("There is also a
    bottle next to the cup."), or substituted for a present mention, or (with counts) a count is
    changed;
  - style-consistent rewrites (HA-DPO): fixed phrase-level rewrites applied identically to the positive
    and the negative, so both keep their (non-)hallucinated status (re-checked by the pipeline).

  It measures and fixes object hallucination only: attribute, relation and reasoning errors that
  GPT-4V would catch are invisible to it. Data built with it is labelled with its feedback id.
"""

from __future__ import annotations

import abc

import json
import os
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bench.errors import BenchError
from bench.io import sha256_file
from bench.openai_client import (DEFAULT_BASE_URL, ChatClient, ReplyCache, chat_body, image_data_url,  # noqa: F401
                                 user_message)
from bench.registry import Registry
from bench.text import (DETERMINERS, NUMBER_WORDS, NUMBERS, Mention, article, asserted_objects, find_mentions,
                        negated, pluralize, split_at_breaks, tokens)
from bench.vocab import synonyms

FEEDBACK: Registry = Registry("feedback model", "bench.feedback")


class FeedbackError(BenchError):
    """A feedback model could not give a usable answer for one item (the pipeline drops the item)."""


# ------------------------------------------------------------------------------------------ data types
@dataclass
class ImageAnnotations:
    """What the offline feedback model knows about one image."""

    image_id: str
    image: str  # path of the image file
    objects: dict[str, int]  # CHAIR head word -> annotated instances (1 when counts are unknown)
    counts_known: bool = False  # True for COCO instances, False for objects read from VG phrases
    regions: list[str] = field(default_factory=list)  # VG region phrases
    captions: list[str] = field(default_factory=list)  # reference captions (COCO)
    width: int | None = None
    height: int | None = None

    def present(self) -> set[str]:
        return {k for k, v in self.objects.items() if v > 0}


@dataclass
class Finding:
    kind: str  # "object" | "attribute" | "relationship"
    span: str  # the text at fault
    wrong: str  # what the text claims (object head word, or a count)
    right: str | None  # the fix (None = removed)
    severity: int  # 1 Minor, 2 Moderate, 3 Major
    reason: str


@dataclass
class SentenceVerdict:
    index: int
    sentence: str
    rewritten: str  # "" = the sentence is dropped
    findings: list[Finding] = field(default_factory=list)
    reason: str = ""

    @property
    def hallucinated(self) -> bool:
        return bool(self.findings)

    @property
    def severity(self) -> int:
        return max((f.severity for f in self.findings), default=0)

    @property
    def type(self) -> str | None:
        if not self.findings:
            return None
        return max(self.findings, key=lambda f: f.severity).kind


@dataclass
class Review:
    feedback_id: str
    sentences: list[SentenceVerdict]
    added: str = ""  # content a full revision adds (OPA-DPO "Added")

    @property
    def hallucinated(self) -> bool:
        return any(s.hallucinated for s in self.sentences)

    @property
    def findings(self) -> list[Finding]:
        return [f for s in self.sentences for f in s.findings]

    def hallucinated_objects(self) -> list[str]:
        out: list[str] = []
        for f in self.findings:
            if f.kind == "object" and f.wrong and f.wrong not in out:
                out.append(f.wrong)
        return out

    def corrected(self, with_added: bool = False) -> str:
        text = " ".join(s.rewritten for s in self.sentences if s.rewritten.strip())
        if with_added and self.added.strip():
            text = (text + " " + self.added.strip()).strip()
        return text

    def to_json(self) -> dict:
        return {"feedback_id": self.feedback_id, "added": self.added,
                "sentences": [{"index": s.index, "sentence": s.sentence, "rewritten": s.rewritten, "reason": s.reason,
                               "findings": [asdict(f) for f in s.findings]} for s in self.sentences]}

    @classmethod
    def from_json(cls, obj: dict) -> "Review":
        return cls(obj["feedback_id"], [SentenceVerdict(s["index"], s["sentence"], s["rewritten"],
                                                        [Finding(**f) for f in s["findings"]], s.get("reason", ""))
                                        for s in obj["sentences"]], obj.get("added", ""))


@dataclass
class Injection:
    text: str
    injected: list[Finding]


class FeedbackModel(abc.ABC):
    """Interface of a feedback model (see module docstring)."""

    feedback_id = "base"
    description = ""
    version = "1"

    @abc.abstractmethod
    def review(self, ann: ImageAnnotations, text: str) -> Review:
        """Sentence-level verdicts on ``text`` about the image."""

    @abc.abstractmethod
    def inject(self, ann: ImageAnnotations, text: str, seed: int = 0, n: int = 1) -> Injection:
        """``text`` with hallucinations inserted (the injected findings listed)."""

    @abc.abstractmethod
    def restyle_pair(self, ann: ImageAnnotations, chosen: str, rejected: str, n: int = 3) -> list[tuple[str, str]]:
        """``n`` rephrasings of a (chosen, rejected) pair that keep their facts."""


def _np_start(text: str, toks: list[tuple[int, int, str]], first: int) -> tuple[int, str | None]:
    """Start offset of the noun phrase ending in the mention at token ``first``, and its determiner."""
    for back in range(1, 5):
        k = first - back
        if k < 0:
            break
        between = text[toks[k][1]:toks[k + 1][0]]
        if between.strip():  # punctuation between: the phrase does not extend further
            break
        w = toks[k][2].lower()
        if w in DETERMINERS or w.isdigit():
            return toks[k][0], w
        if w in ("and", "or", "with", "of", "on", "in", "is", "are", "there", "shows", "has", "have"):
            break
    return toks[first][0], None


def _count_before(toks: list[tuple[int, int, str]], text: str, first: int) -> tuple[int, int, int] | None:
    """(start, end, value) of a number word directly before the mention (adjectives allowed between)."""
    for back in range(1, 3):
        k = first - back
        if k < 0 or text[toks[k][1]:toks[k + 1][0]].strip():
            return None
        w = toks[k][2].lower()
        if w in NUMBERS:
            return toks[k][0], toks[k][1], NUMBERS[w]
        if w.isdigit():
            return toks[k][0], toks[k][1], int(w)
        if w in DETERMINERS:
            return None
    return None


def _replace_mention(sentence: str, m: Mention, new_word: str) -> str:
    """Put ``new_word`` (singular, plural if the mention was plural) in place of mention ``m``,
    fixing an "a"/"an" right before it."""
    word = pluralize(new_word) if m.plural else new_word
    if m.text[:1].isupper():
        word = word[:1].upper() + word[1:]
    before, after = sentence[: m.start], sentence[m.end:]
    art = re.search(r"\b(a|an|A|An)(\s+)$", before)
    if art and not m.plural:
        # only when the article is directly before the mention (no adjective in between)
        new_art = article(word)
        new_art = new_art.capitalize() if art.group(1)[0].isupper() else new_art
        before = before[: art.start()] + new_art + art.group(2)
    return before + word + after


def _remove_from_list(sentence: str, start: int, end: int) -> str | None:
    """Remove the noun phrase [start, end) from an "a, b and c" list; None if it is not in a list."""
    before, after = sentence[:start], sentence[end:]
    det = r"(a|an|the|one|two|three|four|five|six|some|several|\d+)\b"
    if after.startswith(", "):
        return before + after[2:]
    if before.endswith(", "):
        return before[:-2] + after
    if before.endswith(" and "):
        head = before[:-5]
        k = head.rfind(", ")
        if k >= 0 and re.match(det, head[k + 2:], re.I):
            head = head[:k] + " and " + head[k + 2:]
        return head + after
    if after.startswith(" and "):
        rest = after[5:]
        return before + rest
    return None


def _capitalise(s: str) -> str:
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"\s+([,.!?])", r"\1", s)
    return s[:1].upper() + s[1:] if s else s


# ------------------------------------------------------------------------------------------ offline model
STYLE_RULES: list[list[tuple[str, str]]] = [
    [(r"\bThe image shows\b", "This picture shows"), (r"\bthe image\b", "the picture"), (r"\bThe image\b", "The picture"),
     (r"\bThere is also\b", "Also visible is"), (r"\bnext to\b", "beside")],
    [(r"\bThe image shows\b", "In this image, we can see"), (r"\bThere is also\b", "We can also see"),
     (r"\bThere is\b", "We can see"), (r"\bThere are\b", "We can see"), (r"\bnext to\b", "near")],
    [(r"\bThe image shows\b", "The scene contains"), (r"\bin the image\b", "in the scene"), (r"\bThe image\b", "The scene"),
     (r"\bThere is also\b", "The scene also has"), (r"\bnext to\b", "close to")],
    [(r"\bThe image shows\b", "Visible in the photo are"), (r"\bin the image\b", "in the photo"),
     (r"\bThe image\b", "The photo"), (r"\bthe image\b", "the photo")],
]


def _apply_style(text: str, rules: list[tuple[str, str]]) -> str:
    out = text
    for pat, rep in rules:
        out = re.sub(pat, rep, out)
    return out


class AnnotationFeedback(FeedbackModel):
    """Offline, deterministic, annotation-grounded: object hallucinations only (module docstring)."""

    description = "offline annotation-grounded feedback (COCO/VG/synthetic objects; object hallucinations only)"
    version = "1"
    feedback_id = "annotation:coco-synonyms:v1"

    def __init__(self, cooccurrence: dict[str, Counter] | None = None, frequency: Counter | None = None,
                 add_missing: int = 1, **_: Any):
        self.cooccurrence = cooccurrence or {}
        self.frequency = frequency or Counter()
        self.add_missing = add_missing

    # -------------------------------------------------------------- review
    def review(self, ann: ImageAnnotations, text: str) -> Review:
        present = ann.present()
        mentioned_all = {m.head for m in find_mentions(text)}
        spare = [o for o in ann.objects if o in present and o not in mentioned_all]
        verdicts = []
        for idx, sent in enumerate(split_at_breaks(text)):
            verdicts.append(self._review_sentence(idx, sent, ann, present, spare))
        review = Review(self.feedback_id, verdicts)
        if self.add_missing:
            still = {m.head for m in find_mentions(review.corrected())}
            missing = [o for o in ann.objects if o in present and o not in still][: self.add_missing]
            if missing:
                listed = " and ".join(f"{article(o)} {o}" for o in missing)
                review.added = f"There is also {listed} in the image."
        return review

    def _review_sentence(self, idx: int, sent: str, ann: ImageAnnotations, present: set[str],
                         spare: list[str]) -> SentenceVerdict:
        mentions = find_mentions(sent)
        toks = tokens(sent)
        tok_index = {t[0]: k for k, t in enumerate(toks)}
        named_present = any(m.head in present and not negated(toks, m.first_token) for m in mentions)
        findings: list[Finding] = []
        edits: list[tuple[int, int, str, Finding]] = []  # (start, end, replacement or "\0remove", finding)
        drop = False
        for m in mentions:
            neg = negated(toks, m.first_token)
            if neg:
                if m.head in present:
                    findings.append(Finding("object", m.text, m.head, None, 3,
                                            f"says there is no {m.head}, but one is annotated"))
                    drop = True
                continue
            if m.head not in present:
                sev = 2 if named_present else 3
                if spare:
                    right = spare.pop(0)
                    f = Finding("object", m.text, m.head, right, sev, f"no {m.head} is annotated in the image")
                    edits.append((m.start, m.end, "\0replace:" + right, f))
                else:
                    f = Finding("object", m.text, m.head, None, sev, f"no {m.head} is annotated in the image")
                    start, _ = _np_start(sent, toks, tok_index[m.start])
                    edits.append((start, m.end, "\0remove", f))
                findings.append(f)
                continue
            if ann.counts_known:
                cnt = _count_before(toks, sent, tok_index[m.start])
                true = ann.objects.get(m.head, 0)
                if cnt and cnt[2] != true and true > 0:
                    new = NUMBER_WORDS.get(true, str(true))
                    f = Finding("attribute", sent[cnt[0]:m.end], str(cnt[2]), str(true), 1,
                                f"{true} {m.head}{'' if true == 1 else 's'} annotated, not {cnt[2]}")
                    edits.append((cnt[0], cnt[1], "\0count:" + new, f))
                    findings.append(f)
        if not findings:
            return SentenceVerdict(idx, sent, sent, [], "every named object is annotated" if mentions else "names no object")
        rewritten = sent
        if not drop:
            for start, end, op, f in sorted(edits, key=lambda e: -e[0]):
                if op.startswith("\0replace:"):
                    m = next(mm for mm in mentions if mm.start == start)
                    rewritten = _replace_mention(rewritten, m, op.split(":", 1)[1])
                elif op.startswith("\0count:"):
                    new = op.split(":", 1)[1]
                    if rewritten[start:end][:1].isupper():
                        new = new.capitalize()
                    rewritten = rewritten[:start] + new + rewritten[end:]
                else:
                    cut = _remove_from_list(rewritten, start, end)
                    if cut is None:
                        drop = True
                        break
                    rewritten = cut
                    f.right = None
        if drop:
            rewritten = ""
        else:
            rewritten = _capitalise(rewritten)
            if rewritten and asserted_objects(rewritten) - present:
                rewritten = ""  # the fix did not remove every hallucination: drop the sentence
        reason = "; ".join(f.reason for f in findings)
        return SentenceVerdict(idx, sent, rewritten, findings, reason)

    # -------------------------------------------------------------- inject
    def candidates(self, ann: ImageAnnotations) -> list[tuple[str, str]]:
        """(absent object, present anchor) pairs ranked by co-occurrence, then global frequency."""
        present = ann.present()
        scores: list[tuple[int, int, str, str]] = []
        pool = set(self.frequency) | {b for c in self.cooccurrence.values() for b in c} | set(_coco_heads())
        for obj in sorted(pool - present):
            best = max(((self.cooccurrence.get(p, Counter())[obj], p) for p in sorted(present)), default=(0, ""))
            scores.append((best[0], self.frequency[obj], obj, best[1] or (sorted(present)[0] if present else "")))
        scores.sort(key=lambda s: (-s[0], -s[1], s[2]))
        return [(s[2], s[3]) for s in scores]

    def inject(self, ann: ImageAnnotations, text: str, seed: int = 0, n: int = 1) -> Injection:
        rng = random.Random(seed)
        cands = self.candidates(ann)
        if not cands:
            raise FeedbackError("no absent object to inject")
        sentences = split_at_breaks(text)
        injected: list[Finding] = []
        used: set[str] = set()
        for _ in range(n):
            mentions = [(si, m) for si, s in enumerate(sentences) for m in find_mentions(s)
                        if m.head in ann.present() and not negated(tokens(s), m.first_token)]
            strategies = ["add", "add", "substitute"] + (["count"] if ann.counts_known and mentions else [])
            kind = rng.choice(strategies) if mentions else "add"
            top = [c for c in cands[:3] if c[0] not in used] or [c for c in cands if c[0] not in used]
            if not top:
                break
            obj, anchor = top[0] if kind != "substitute" else rng.choice(top)
            if kind == "substitute":
                si, m = rng.choice(mentions)
                sentences[si] = _capitalise(_replace_mention(sentences[si], m, obj))
                injected.append(Finding("object", obj, obj, None, 2, f"{m.head} replaced by absent {obj}"))
            elif kind == "count":
                si, m = rng.choice(mentions)
                s = sentences[si]
                toks = tokens(s)
                tok_index = {t[0]: k for k, t in enumerate(toks)}
                true = ann.objects.get(m.head, 1)
                wrong = true + rng.choice([1, 2])
                cnt = _count_before(toks, s, tok_index[m.start])
                start = cnt[0] if cnt else _np_start(s, toks, tok_index[m.start])[0]
                if cnt is None and start == m.start:
                    continue
                noun = pluralize(m.head) if wrong > 1 else m.head
                sentences[si] = _capitalise(s[:start] + f"{NUMBER_WORDS.get(wrong, str(wrong))} {noun}" + s[m.end:])
                injected.append(Finding("attribute", noun, str(wrong), str(true), 1, f"count of {m.head} changed"))
                continue
            else:
                anchor_at = next((si for si, m in mentions if m.head == anchor), None)
                if anchor_at is None and mentions:
                    anchor_at, m0 = mentions[0]
                    anchor = m0.head
                phrase = f"There is also {article(obj)} {obj}" + (f" next to the {anchor}." if anchor else " in the image.")
                pos = (anchor_at + 1) if anchor_at is not None else len(sentences)
                sentences.insert(pos, phrase)
                injected.append(Finding("object", obj, obj, None, 3, f"absent {obj} added (co-occurs with {anchor})"))
            used.add(obj)
        if not injected:
            raise FeedbackError("no injection possible")
        return Injection(" ".join(sentences), injected)

    # -------------------------------------------------------------- restyle
    def restyle_pair(self, ann: ImageAnnotations, chosen: str, rejected: str, n: int = 3) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        seen = {(chosen, rejected)}
        for rules in STYLE_RULES:
            pair = (_capitalise(_apply_style(chosen, rules)), _capitalise(_apply_style(rejected, rules)))
            if pair not in seen:
                seen.add(pair)
                out.append(pair)
            if len(out) >= n:
                break
        # sentence-order variant: the same sentences, the first one last
        c, r = split_at_breaks(chosen), split_at_breaks(rejected)
        if len(out) < n and len(c) > 1 and len(r) > 1:
            pair = (" ".join(c[1:] + c[:1]), " ".join(r[1:] + r[:1]))
            if pair not in seen:
                out.append(pair)
        return out[:n]


def _coco_heads() -> list[str]:
    _, inverse = synonyms()
    return sorted(set(inverse.values()))


# ------------------------------------------------------------------------------------------ HTTP client
class VisionChatClient:
    """OpenAI-compatible chat-completions client with images and a shared reply cache.

    The cache key is ``(client_id, sha256(system + text + image sha256s))`` so a rerun pays nothing
    twice and a changed image is a new request. The transport (retries, ``Retry-After``, rate limit, key
    read from ``api_key_env`` at request time and never stored or printed) is the shared
    :class:`bench.openai_client.ChatClient`.
    """

    def __init__(self, model: str = "gpt-4o", base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 temperature: float = 0.0, max_tokens: int = 1500, timeout: float = 120.0, max_retries: int = 5,
                 min_interval: float = 0.0, backoff: float = 1.0, max_sleep: float = 60.0,
                 cache_dir: str | Path | None = None):
        self.model, self.temperature, self.max_tokens = model, temperature, max_tokens
        self.base_url = (base_url or os.environ.get("BENCH_FEEDBACK_BASE_URL") or os.environ.get("BENCH_JUDGE_BASE_URL")
                         or DEFAULT_BASE_URL).rstrip("/")
        self.api_key_env = api_key_env
        self.client_id = f"vision:{model}:t{temperature}:m{max_tokens}"
        self.client = ChatClient(self.base_url, api_key_env, key_required=True, timeout=timeout,
                                 max_retries=max_retries, min_interval=min_interval, backoff=backoff,
                                 max_sleep=max_sleep, label=f"feedback model {self.client_id}",
                                 missing_key_hint=" (or use the offline `--feedback annotation`); cached replies"
                                                  " are reused without a key")
        self.cache = ReplyCache(Path(cache_dir) / "feedback_replies.jsonl" if cache_dir else None)

    @property
    def requests(self) -> int:
        """HTTP requests sent, retries included."""
        return self.client.attempts

    def _cache_text(self, text: str, images: list[str], system: str | None) -> str:
        digests = [sha256_file(p) for p in images]
        return json.dumps({"system": system, "text": text, "images": digests}, sort_keys=True)

    def chat(self, text: str, images: Iterable[str | Path] = (), system: str | None = None) -> str:
        images = [str(p) for p in images]
        key_text = self._cache_text(text, images, system)
        cached = self.cache.get(self.client_id, key_text)
        if cached is not None:
            return cached
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user_message(text, images)["content"] if images
             else [{"type": "text", "text": text}]}]
        reply = self.post(chat_body(self.model, messages, self.temperature, self.max_tokens))
        self.cache.put(self.client_id, key_text, reply)
        return reply

    def post(self, body: dict) -> str:
        return self.client.complete(body)[0]


def parse_json_reply(reply: str) -> dict:
    """The first JSON object in a model reply (```json fences and prose around it are tolerated)."""
    text = reply.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fence:
        text = fence.group(1)
    start = text.find("{")
    if start < 0:
        raise FeedbackError("reply holds no JSON object")
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        raise FeedbackError(f"reply is not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise FeedbackError("reply JSON is not an object")
    return obj


def describe_annotations(ann: ImageAnnotations, max_regions: int = 40) -> str:
    objs = ", ".join(f"{o} x{c}" if ann.counts_known else o for o, c in ann.objects.items() if c > 0) or "(none)"
    lines = [f"Annotated objects: {objs}"]
    if ann.regions:
        lines.append("Region descriptions: " + "; ".join(ann.regions[:max_regions]))
    if ann.captions:
        lines.append("Reference captions: " + " | ".join(ann.captions[:5]))
    return "\n".join(lines)


REVIEW_SYSTEM = (
    "You are an expert annotator of hallucinations in image descriptions. The image is the primary authority; "
    "the annotations help but may be incomplete. Judge each numbered sentence of the response. A sentence is "
    "hallucinated if it states an object, attribute (colour, count, size, text) or relationship (position, action) "
    "that the image does not show. Give each hallucinated sentence a type (object, attribute or relationship) and a "
    "severity: 1 minor (small count/size/colour slip), 2 moderate (wrong object or relation that changes a detail), "
    "3 major (the sentence is mostly invented). Rewrite each sentence minimally so it is consistent with the image; "
    "keep correct sentences unchanged, never add new hallucinations, use an empty string to delete a sentence. "
    "Answer with JSON only.")

REVIEW_PROMPT = """{annotations}

Question: {question}
Response, one sentence per line:
{numbered}

Return JSON: {{"sentences": [{{"index": 1, "hallucinated": true|false, "type": "object"|"attribute"|"relationship"|null,
"severity": 0-3, "objects": ["wrong -> right", ...], "reason": "...", "rewritten": "..."}}, ...],
"added": "a short sentence with important missing content, or empty"}} with one entry per numbered sentence."""

INJECT_SYSTEM = (
    "You create dispreferred answers for preference training. Rewrite the answer so that it contains {n} plausible "
    "hallucination(s) about the image: objects that often co-occur with what is shown but are absent, wrong "
    "attributes, or wrong relations. Keep everything else, keep the style. Answer with JSON only.")

INJECT_PROMPT = """{annotations}

Question: {question}
Correct answer: {text}

Return JSON: {{"text": "<the answer with the hallucinations>", "injected": [{{"type": "object"|"attribute"|"relationship",
"span": "<the hallucinated words>", "reason": "..."}}]}}"""

RESTYLE_SYSTEM = (
    "You rewrite a pair of image descriptions in {n} different styles. Apply the same stylistic change to both "
    "texts of the pair, keep every fact of each text exactly (do not fix or add errors). Answer with JSON only.")

RESTYLE_PROMPT = """Text A: {chosen}
Text B: {rejected}

Return JSON: {{"variants": [{{"a": "...", "b": "..."}}, ...]}} with {n} variants."""


class OpenAIFeedback(FeedbackModel):
    """GPT-4V-style feedback through an OpenAI-compatible vision endpoint (JSON replies, cached)."""

    description = "OpenAI-compatible vision chat model as feedback (GPT-4V role of the papers), cached replies"
    version = "1"

    def __init__(self, model: str = "gpt-4o", cache_dir: str | Path | None = None, question: str = "", **kwargs: Any):
        client_kw = {k: v for k, v in kwargs.items() if k in (
            "base_url", "api_key_env", "temperature", "max_tokens", "timeout", "max_retries", "min_interval",
            "backoff", "max_sleep")}
        self.client = VisionChatClient(model=model, cache_dir=cache_dir, **client_kw)
        self.feedback_id = f"openai:{self.client.client_id}"
        self.question = question or "Describe this image in detail."

    def review(self, ann: ImageAnnotations, text: str) -> Review:
        sents = split_at_breaks(text)
        if not sents:
            raise FeedbackError("empty response")
        numbered = "\n".join(f"{i + 1}. {s}" for i, s in enumerate(sents))
        reply = self.client.chat(REVIEW_PROMPT.format(annotations=describe_annotations(ann), question=self.question,
                                                      numbered=numbered), [ann.image], REVIEW_SYSTEM)
        obj = parse_json_reply(reply)
        rows = obj.get("sentences")
        if not isinstance(rows, list) or len(rows) != len(sents):
            raise FeedbackError(f"expected {len(sents)} sentence verdicts, got "
                                f"{len(rows) if isinstance(rows, list) else 'none'}")
        verdicts = []
        for i, (sent, row) in enumerate(zip(sents, rows)):
            if not isinstance(row, dict):
                raise FeedbackError(f"sentence {i + 1}: verdict is not an object")
            findings = []
            if row.get("hallucinated"):
                kind = row.get("type") if row.get("type") in ("object", "attribute", "relationship") else "object"
                try:
                    sev = min(3, max(1, int(row.get("severity") or 2)))
                except (TypeError, ValueError):
                    raise FeedbackError(f"sentence {i + 1}: severity {row.get('severity')!r} is not a number") from None
                pairs = [p for p in row.get("objects") or [] if isinstance(p, str)] or [""]
                for p in pairs:
                    wrong, _, right = p.partition("->")
                    findings.append(Finding(kind, wrong.strip(), wrong.strip(), right.strip() or None, sev,
                                            str(row.get("reason", ""))))
            rewritten = row.get("rewritten", sent)
            if not isinstance(rewritten, str):
                raise FeedbackError(f"sentence {i + 1}: rewritten is not a string")
            verdicts.append(SentenceVerdict(i, sent, rewritten.strip() if findings else sent, findings,
                                            str(row.get("reason", ""))))
        added = obj.get("added") or ""
        return Review(self.feedback_id, verdicts, added if isinstance(added, str) else "")

    def inject(self, ann: ImageAnnotations, text: str, seed: int = 0, n: int = 1) -> Injection:
        reply = self.client.chat(INJECT_PROMPT.format(annotations=describe_annotations(ann), question=self.question,
                                                      text=text), [ann.image], INJECT_SYSTEM.format(n=n))
        obj = parse_json_reply(reply)
        new = obj.get("text")
        if not isinstance(new, str) or not new.strip() or new.strip() == text.strip():
            raise FeedbackError("no injected text in the reply")
        injected = [Finding(str(r.get("type", "object")), str(r.get("span", "")), str(r.get("span", "")), None, 2,
                            str(r.get("reason", ""))) for r in obj.get("injected") or [] if isinstance(r, dict)]
        return Injection(new.strip(), injected)

    def restyle_pair(self, ann: ImageAnnotations, chosen: str, rejected: str, n: int = 3) -> list[tuple[str, str]]:
        reply = self.client.chat(RESTYLE_PROMPT.format(chosen=chosen, rejected=rejected, n=n), [],
                                 RESTYLE_SYSTEM.format(n=n))
        obj = parse_json_reply(reply)
        out = []
        for v in obj.get("variants") or []:
            if isinstance(v, dict) and isinstance(v.get("a"), str) and isinstance(v.get("b"), str) \
                    and v["a"].strip() and v["b"].strip():
                out.append((v["a"].strip(), v["b"].strip()))
        return out[:n]


FEEDBACK.add("annotation", AnnotationFeedback)
FEEDBACK.add("openai", OpenAIFeedback)


def make_feedback(name: str, cache_dir: str | Path | None = None, **kwargs: Any) -> FeedbackModel:
    """A registered feedback model by name (``annotation`` needs no network; ``openai`` needs a key)."""
    cls = FEEDBACK.get(name)
    return cls(cache_dir=cache_dir, **kwargs)
