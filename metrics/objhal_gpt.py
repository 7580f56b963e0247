"""Object HalBench with GPT object extraction (RLAIF-V's ``--use_gpt``): protocols ``objhal-gpt``, ``objhal-gpt-nltk``.

Reference: ``RLHF-V/RLAIF-V@83d917b:eval/eval_gpt_obj_halbench.py`` (``CHAIR.get_gpt_resp``,
``parse_object_list``, ``get_pred_objs_match``, ``postagging``, ``get_double_words_only``,
``caption_objects_to_coco_objects``, ``compute_chair(gpt_process=True)``), ``eval/gpt4_grpc.py``
(``Chat.chat_completion``: the request settings) and ``eval/summarize_gpt_obj_halbench_review.py`` (what is
printed). The released ``script/eval/eval_rlaifv_objhal.sh`` passes ``--use_gpt``: this is how RLAIF-V's own
numbers were measured; the rule-based :mod:`metrics.objhal` (protocol ``objhal``) is the offline protocol.

Per response (answer = the text with every ``"Assistant:"`` removed, then stripped: ``metrics.objhal.clean_answer``):

1. **Short answer**: ``len(answer.strip().split()) <= 3`` → no objects, nothing is sent.
2. **Request**: ``template.replace("{question}", question).replace("{answer}", answer)`` (the template is
   ``data/objhal_gpt_extract_prompt.txt``, the reference's ``prompt_template``) as the *only* message, role
   ``system``; ``gpt-3.5-turbo-0613``, temperature 0.2, top_p 1, max_tokens 512, presence and frequency
   penalty 0 (``Chat.chat_completion``'s defaults).
3. **Reply** (:func:`parse_object_list`): ``json.loads(reply)``; failing that, when the reply contains ``["``,
   ``json.loads`` of its last line (after ``strip``); failing that the reply is *malformed* and the same prompt
   is asked again (attempt 1, 2, …; each attempt is its own cache entry).
4. **Objects** (:func:`refine_objects`): each element ``x`` of the parsed value (Python iteration, as the
   reference: a list gives its items, a dict its keys, a string its characters; ``f"{x}"``) is analysed as
   ``"a {x}"`` into (lemma, Penn tag) tokens. If the lemma sequence holds entries of the two-word table (left
   to right; a hit consumes two tokens; the table of :func:`metrics.objhal.vocabulary`), those mapped words are
   the objects of ``x``; otherwise every maximal run of ``NN``/``NNS``/``NNP``/``NNPS`` tokens, lemmas joined by
   spaces. The response's objects are deduplicated in first-seen order.
5. **CHAIR**: "seat" is dropped when "toilet" is among the objects; the objects in the synonym list are the
   mentions, mapped to node words; then exactly the counts and metrics of :mod:`metrics.objhal` (CHAIR_s =
   "Response Hall", CHAIR_i = "Object Hall", recall, average length from the answer's ``split(" ")``) — only
   the mentions differ (unique extracted objects instead of every word occurrence).

The analysis of step 4 is the reference's spaCy step: ``nlp = spacy.load("en_core_web_trf")``, ``Token.lemma_``
and ``Token.tag_`` of ``nlp("a " + obj)``. Analysers (:data:`ANALYSERS`):

* ``spacy:en_core_web_trf`` (protocol ``objhal-gpt``): the reference's, when spaCy and that model are
  installed (RLAIF-V installs ``en_core_web_trf-3.7.3``); without them the protocol stops before generation.
* ``nltk`` (protocol ``objhal-gpt-nltk``): ``nltk.word_tokenize``, the NLTK perceptron tagger (Penn tags, as
  spaCy's ``tag_``) and the WordNet lemmatizer with the tag's part of speech, lower-cased except for
  ``NNP``/``NNPS`` (spaCy's English lemmatizer keeps proper nouns as written). A different tagger and
  lemmatizer can split or lemmatise an extracted phrase differently, so this is its own protocol, never in a
  column with ``objhal-gpt``. It needs only the NLTK data that ships with bench.

Protocols (the judge model is part of each declaration, its fingerprint and its headline labels; another
extraction model is another protocol): ``objhal-gpt`` and ``objhal-gpt-nltk`` — both need an API key (or
another OpenAI-compatible endpoint) and fail before generation without one (the reference's own offline mode
is the rule-based ``objhal``). ``objhal-gpt-annotation`` — the same procedure with the offline extractor
``objhal-annotation`` (:class:`ObjHalAnnotationJudge`, below: the COCO objects the answer asserts, as a JSON list)
and the NLTK analyser, as MMHal-/LLaVA-Bench have ``-annotation`` protocols: it exercises the GPT path end to
end on the embedded world, and is a **different metric**, never in a column with ``objhal-gpt``.

Recomputation: every reply is stored in ``judge/<protocol>.jsonl`` (``{"id", "judge", "prompt_sha256",
"attempt", "reply", "model"}``) and in the judge's reply cache (judge id + prompt sha256 + attempt), so
``score(..., judge_replies=path)`` recomputes every number without a network. The score file's ``judge`` block
names the judge id, model, settings, version and the models the endpoint says it served.

Deliberate deviations (each visible in the score file): at most ``max_attempts`` (10) requests per response
(the reference re-asks up to 100 times, then records ``-1\\n<no_response>`` and its next step fails an
assertion): a response without a usable object list after them is skipped with its id and reason; so is a
reply whose JSON is a number, ``true``/``false`` or ``null`` (iterating it raises in the reference, ending the
run). The reference asks in 64 threads; here requests are sequential (the replies do not depend on order).
Zero denominators, ids outside the benchmark and missing responses as in :mod:`metrics.objhal`.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from bench import nltk_data
from bench.errors import BenchError
from bench.io import append_jsonl, sha256_text, truncate_torn_tail
from bench.judges import OfflineJudge
from bench.registry import BENCHMARKS, JUDGES
from bench.text import find_mentions, negated, tokens
from metrics.chair_words import _wordnet_pos, lemma, pos_tag, tokenize
from metrics.judged import build_judge, missing_judge, read_replies
from metrics.objhal import REFERENCE, ObjHalProtocol, Vocabulary, clean_answer, summarise, vocabulary

TEMPLATE_FILE = Path(__file__).resolve().parent / "data" / "objhal_gpt_extract_prompt.txt"
NOUN_TAGS = frozenset({"NNP", "NNPS", "NN", "NNS"})
SHORT_WORDS = 3  # answers with at most this many whitespace-separated words are not sent
JUDGE_MODEL = "gpt-3.5-turbo-0613"
JUDGE_SETTINGS: dict[str, Any] = {"temperature": 0.2, "max_tokens": 512, "prompt_role": "system", "timeout": 100.0,
                                  "extra": {"top_p": 1, "presence_penalty": 0, "frequency_penalty": 0}}
NLTK_NEEDS = ("tokenizer", "tagger", "wordnet")


# ------------------------------------------------------------------------------------------ prompt and reply
@functools.lru_cache(maxsize=1)
def template() -> str:
    return TEMPLATE_FILE.read_text(encoding="utf-8")


def build_prompt(question: str, answer: str) -> str:
    """The extraction prompt: ``{question}`` then ``{answer}`` replaced (plain substitution, in that order)."""
    return template().replace("{question}", question).replace("{answer}", answer)


def parse_prompt(prompt: str) -> tuple[str, str] | None:
    """Inverse of :func:`build_prompt`: (question, answer), or None when ``prompt`` is not one."""
    head, rest = template().split("{question}", 1)
    middle, tail = rest.split("{answer}", 1)
    if not (prompt.startswith(head) and prompt.endswith(tail)) or len(prompt) < len(head) + len(tail):
        return None
    question, found, answer = prompt[len(head):len(prompt) - len(tail)].partition(middle)
    return (question, answer) if found else None


class ObjHalAnnotationJudge(OfflineJudge):
    """Offline Object HalBench object extractor, the counterpart of the GPT extractor for the embedded world.

    The examiner's answer is read back out of the extraction prompt (:func:`parse_prompt`); the reply is the
    JSON list of the COCO objects the answer asserts (head words in order of first mention; a mention with a
    negation among the three tokens before it is not an object "shown in the image"), in the extractor's
    reply format. It finds COCO objects only, where GPT names any object, so ``objhal-gpt-annotation`` is a
    different metric from ``objhal-gpt``.
    """

    description = "offline Object HalBench object extractor: asserted COCO-object mentions of the answer (JSON list)"
    version = "1"
    judge_id = "objhal-annotation:coco-objects:v1"

    def reply(self, prompt: str) -> str:
        parsed = parse_prompt(prompt)
        if parsed is None:
            return "The prompt is not an Object HalBench extraction prompt."
        toks = tokens(parsed[1])
        found: list[str] = []
        for m in find_mentions(parsed[1]):
            if not negated(toks, m.first_token) and m.head not in found:
                found.append(m.head)
        return json.dumps(found)


JUDGES.add("objhal-annotation", ObjHalAnnotationJudge)


def is_short(answer: str) -> bool:
    return len(answer.strip().split()) <= SHORT_WORDS


def parse_object_list(reply: str) -> tuple[Any, bool]:
    """(parsed JSON value, True) or (None, False) when the reply is malformed (the reference then re-asks)."""
    try:
        return json.loads(reply), True
    except (ValueError, TypeError, RecursionError):
        pass
    if '["' in reply:
        try:
            return json.loads(reply.strip().split("\n")[-1]), True
        except (ValueError, TypeError, RecursionError):
            pass
    return None, False


def object_texts(value: Any) -> list[str] | None:
    """The extracted object strings, iterating ``value`` as Python does (None when it is not iterable)."""
    if isinstance(value, (list, str)):
        return [f"{x}" for x in value]
    if isinstance(value, dict):
        return [f"{k}" for k in value]
    return None


@dataclass
class Extraction:
    """One response's extraction: the object strings (None = none usable), replies asked, why it failed."""

    texts: list[str] | None
    attempts: int = 0
    short: bool = False
    problem: str | None = None
    statuses: list[str] = field(default_factory=list)


def extract(prompt: str, ask: Callable[[int], str | None], max_attempts: int) -> Extraction:
    """Ask (attempt 0, 1, …) until a reply parses; ``ask`` returns None when no reply is available."""
    out = Extraction(None)
    for attempt in range(max_attempts):
        reply = ask(attempt)
        if reply is None:
            out.problem = f"no stored extraction reply for attempt {attempt}"
            return out
        out.attempts += 1
        value, ok = parse_object_list(reply)
        if not ok:
            out.statuses.append("malformed")
            continue
        texts = object_texts(value)
        if texts is None:
            out.statuses.append(f"json {type(value).__name__}")
            out.problem = (f"extraction reply is JSON {type(value).__name__}, not a list (the reference fails"
                           " iterating it)")
            return out
        out.statuses.append("ok")
        out.texts = texts
        return out
    out.problem = f"no parseable object list in {max_attempts} replies (the reference re-asks up to 100 times)"
    return out


# ------------------------------------------------------------------------------------------ analysers
Token = tuple[str, str]  # (lemma, Penn tag)


class NltkAnalyser:
    """NLTK stand-in for spaCy's lemma_/tag_: Treebank tokens, perceptron tags, WordNet lemmas."""

    name = "nltk"

    def __init__(self) -> None:
        self._ready = False

    def missing(self) -> list[str]:
        absent = nltk_data.missing(NLTK_NEEDS)
        return [f"NLTK data {', '.join(absent)} (objhal-gpt-nltk object analysis): `{nltk_data.FETCH_HINT}`"] \
            if absent else []

    def version(self) -> dict:
        import nltk

        return {"nltk": nltk.__version__}

    def __call__(self, text: str) -> list[Token]:
        if not self._ready:
            nltk_data.require(NLTK_NEEDS, purpose="Object HalBench object analysis (NLTK)")
            self._ready = True
        out = []
        for word, tag in pos_tag(tokenize(text)):
            out.append((word if tag in ("NNP", "NNPS") else lemma(word.lower(), _wordnet_pos(tag)), tag))
        return out


class SpacyAnalyser:
    """spaCy ``Token.lemma_`` / ``Token.tag_`` with a named pipeline (the reference's ``en_core_web_trf``)."""

    def __init__(self, model: str = "en_core_web_trf") -> None:
        self.model = model
        self.name = f"spacy:{model}"
        self._nlp = None

    def missing(self) -> list[str]:
        hint = (f'pip install ".[spacy]" and the {self.model} pipeline (RLAIF-V installs en_core_web_trf-3.7.3 from'
                f" spaCy's model releases), or run `objhal-gpt-nltk` (NLTK tagger and lemmas; a different protocol)")
        if importlib.util.find_spec("spacy") is None:
            return [f"spaCy is not installed (Object HalBench's object lemmas and tags): {hint}"]
        import spacy.util  # optional dependency, only once it is known to be installed

        if not spacy.util.is_package(self.model) and not Path(self.model).is_dir():
            return [f"spaCy pipeline {self.model} is not installed (Object HalBench's object lemmas and tags): {hint}"]
        return []

    def nlp(self):
        if self._nlp is None:
            problems = self.missing()
            if problems:
                raise BenchError(problems[0])
            import spacy  # optional dependency (the `spacy` extra)

            self._nlp = spacy.load(self.model)
        return self._nlp

    def version(self) -> dict:
        nlp = self.nlp()
        import spacy

        return {"spacy": spacy.__version__, self.model: str(nlp.meta.get("version"))}

    def __call__(self, text: str) -> list[Token]:
        return [(t.lemma_, t.tag_) for t in self.nlp()(text)]


ANALYSERS: dict[str, Callable[[], Any]] = {"nltk": NltkAnalyser, "spacy:en_core_web_trf": SpacyAnalyser}


def make_analyser(name: str):
    if name in ANALYSERS:
        return ANALYSERS[name]()
    if name.startswith("spacy:"):
        return SpacyAnalyser(name.partition(":")[2])
    raise BenchError(f"unknown Object HalBench object analyser {name!r}; known: {', '.join(ANALYSERS)} or"
                     " spacy:<pipeline>")


# ------------------------------------------------------------------------------------------ objects
def double_words_only(lemmas: Sequence[str], doubles: Mapping[str, str]) -> list[str]:
    """The mapped two-word entries found left to right (a hit consumes both tokens)."""
    found, i = [], 0
    while i < len(lemmas):
        pair = " ".join(lemmas[i:i + 2])
        if pair in doubles:
            found.append(doubles[pair])
            i += 2
        else:
            i += 1
    return found


def noun_runs(tokens: Sequence[Token]) -> list[str]:
    """Maximal runs of noun-tagged tokens, their lemmas joined by spaces (built as the reference builds them)."""
    runs, current = [], ""
    for lem, tag in tokens:
        if tag in NOUN_TAGS:
            current += f" {lem}"
        elif current != "":
            runs.append(current.strip())
            current = ""
    if current != "":
        runs.append(current.strip())
    return runs


def refine_objects(texts: Iterable[str], analyse: Callable[[str], list[Token]], vocab: Vocabulary | None = None
                   ) -> list[str]:
    """Extracted object strings → the response's object phrases, unique in first-seen order."""
    vocab = vocab or vocabulary()
    out: list[str] = []
    for text in texts:
        tokens = analyse(f"a {text}")
        phrases = double_words_only([lem for lem, _ in tokens], vocab.double_words) or noun_runs(tokens)
        for p in phrases:
            if p not in out:
                out.append(p)
    return out


def judge_objects(objects: Sequence[str], answer: str, gt: Iterable[str], vocab: Vocabulary | None = None
                  ) -> dict[str, Any]:
    """The per-response record of :func:`metrics.objhal.judge_response`, from extracted objects."""
    vocab = vocab or vocabulary()
    gt_set = set(gt)
    words = list(objects)
    if "toilet" in words and "seat" in words:
        words = [w for w in words if w != "seat"]
    mentions = [w for w in words if w in vocab.surfaces]
    nodes = [vocab.inverse[w] for w in mentions]
    hallucinated = [[w, n] for w, n in zip(mentions, nodes) if n not in gt_set]
    covered = sorted({n for n in nodes if n in gt_set})
    return {"objects": list(objects), "mentions": mentions, "nodes": nodes, "hallucinated": hallucinated,
            "covered": covered, "n_gt": len(gt_set), "n_words": len(answer.strip().split(" "))}


def printed_summary_full(overall: Mapping[str, float]) -> dict[str, float]:
    """Everything ``summarize_gpt_obj_halbench_review.py`` prints: rates ×100 ``:.2f``, counts as printed."""
    return {"Response Hall": float(f"{overall['CHAIRs_refine'] * 100:.2f}"),
            "Object Hall": float(f"{overall['CHAIRi'] * 100:.2f}"),
            "Response Correct": float(f"{(1 - overall['CHAIRs_refine']) * 100:.2f}"),
            "Object Correct": float(f"{(1 - overall['CHAIRi']) * 100:.2f}"),
            "Object Recall": float(f"{overall['obj_rec'] * 100:.2f}"),
            "Average Length": float(f"{overall['avg_word_len']:.2f}"),
            "COCO Sent Number": float(overall["coco_sentence_num"]),
            "COCO Word Number": float(overall["coco_word_count"]),
            "GT Word Number": float(overall["gt_word_count"])}


# ------------------------------------------------------------------------------------------ replies
class ReplySource:
    """Extraction replies by (item id, prompt, attempt): the stored replies first (``judge/<protocol>.jsonl``
    records of this judge id), then — unless recomputing — the judge through its reply cache, each new reply
    appended to ``out_file`` when given. Counts the served models and the stored replies of other judges."""

    def __init__(self, judge: Any, stored: Iterable[dict] | str | Path | None, out_file: Path | None,
                 recompute: bool = False) -> None:
        self.judge, self.out_file, self.recompute = judge, out_file, recompute
        self.table: dict[tuple[str, str, int], dict] = {}
        self.ignored = 0
        self.served: dict[str, int] = {}
        if out_file is not None and out_file.exists():
            truncate_torn_tail(out_file)
        for rec in read_replies(stored):
            if rec.get("judge") != judge.judge_id:
                self.ignored += 1
            elif isinstance(rec.get("reply"), str):
                key = (str(rec.get("id")), str(rec.get("prompt_sha256")), int(rec.get("attempt", 0)))
                self.table.setdefault(key, rec)

    def _count(self, model: str | None) -> None:
        self.served[model or "unknown"] = self.served.get(model or "unknown", 0) + 1

    def ask(self, item_id: str, prompt: str, attempt: int) -> str | None:
        sha = sha256_text(prompt)
        rec = self.table.get((item_id, sha, attempt))
        if rec is not None:
            self._count(rec.get("model"))
            return rec["reply"]
        if self.recompute:  # only stored replies count: nothing is asked
            return None
        reply = self.judge(prompt, attempt)
        cached = getattr(getattr(self.judge, "cache", None), "records", {}).get((self.judge.judge_id, sha, attempt))
        model = (cached or {}).get("model")
        self._count(model)
        if self.out_file is not None:
            append_jsonl(self.out_file, [{"id": item_id, "judge": self.judge.judge_id, "prompt_sha256": sha,
                                          "attempt": attempt, "reply": reply, **({"model": model} if model else {})}])
        return reply


# ------------------------------------------------------------------------------------------ protocols
class ObjHalGptProtocol(ObjHalProtocol):
    """Object HalBench, objects extracted by gpt-3.5-turbo-0613 then analysed by spaCy en_core_web_trf."""

    name = "objhal-gpt"
    description = ("Object HalBench (RLAIF-V@83d917b --use_gpt): objects extracted by gpt-3.5-turbo-0613"
                   " (t=0.2), spaCy en_core_web_trf lemmas/tags, refined synonyms; 3 beams, 1024 tokens")
    params: dict[str, Any] = {**ObjHalProtocol.params, "object_extraction": "gpt",
                              "judge": f"openai:{JUDGE_MODEL}", "judge_settings": JUDGE_SETTINGS,
                              "template_sha256": sha256_text(template()), "short_answer_words": SHORT_WORDS,
                              "analyser": "spacy:en_core_web_trf", "max_attempts": 10, "reference": REFERENCE}
    headline = {"chair_s": (f"Object HalBench CHAIR_s ({JUDGE_MODEL} objects)", False),
                "chair_i": (f"Object HalBench CHAIR_i ({JUDGE_MODEL} objects)", False),
                "recall": (f"Object HalBench recall ({JUDGE_MODEL} objects)", True)}
    offline_alternative = "objhal"

    @classmethod
    def judge_settings(cls) -> dict:
        return dict(cls.params["judge_settings"])

    @classmethod
    def missing_resources(cls, data_root: Path) -> list[str]:
        out = super().missing_resources(data_root)
        out += make_analyser(cls.params["analyser"]).missing()
        return out + missing_judge(cls.params["judge"], cls.judge_settings(), cls.offline_alternative)

    def score(self, predictions: list[dict], data_root: Path, *, n_boot: int = 1000,
              item_ids: set[str] | None = None, gt_file: Path | None = None, seed: int = 0,
              cache_dir: Path | None = None, judge_replies: Iterable[dict] | str | Path | None = None,
              judge: Any = None, analyser: Any = None, **_: Any) -> dict:
        """Stored responses (+ stored extraction replies, or the judge through its cache) → score dict."""
        nltk_data.configure([Path(data_root) / "nltk_data"])
        nltk_data.require(("tokenizer", "wordnet"), [Path(data_root) / "nltk_data"], purpose="Object HalBench")
        sel = self.select(predictions, data_root, item_ids)
        analyse = analyser or make_analyser(self.params["analyser"])
        recompute = judge_replies is not None
        judge = judge if judge is not None else build_judge(self.params["judge"], self.judge_settings(),
                                                            None if recompute else cache_dir)
        out_file = Path(cache_dir) / f"{self.name}.jsonl" if cache_dir is not None else None
        source = (ReplySource(judge, judge_replies, None, recompute=True) if recompute
                  else ReplySource(judge, out_file, out_file))
        gt, provenance = self.ground_truth(data_root, [r["image_id"] for r in sel.rows], gt_file)
        vocab = vocabulary()
        records, skipped, extraction = [], dict(sel.skipped), {"short": 0, "asked": 0, "replies": 0, "malformed": 0}
        for r in sel.scored:
            iid = str(r["image_id"])
            answer = clean_answer(sel.texts[iid])
            if is_short(answer):
                ex = Extraction([], short=True)
                extraction["short"] += 1
            else:
                prompt = build_prompt(r["question"], answer)
                ex = extract(prompt, lambda attempt, i=iid, p=prompt: source.ask(i, p, attempt),
                             int(self.params["max_attempts"]))
                extraction["asked"] += 1
                extraction["replies"] += ex.attempts
                extraction["malformed"] += ex.statuses.count("malformed")
            if ex.texts is None:
                skipped[iid] = ex.problem or "no object list"
                continue
            rec = judge_objects(refine_objects(ex.texts, analyse, vocab), answer, gt.get(r["image_id"], ()), vocab)
            records.append({"id": iid, "image_id": r["image_id"], **rec, "attempts": ex.attempts,
                            "short_answer": ex.short})
        result = summarise(records, n_boot=n_boot, seed=seed)
        overall = result["reference"]["overall_metrics"]
        result["reference"]["printed"] = printed_summary_full(overall) if result["reference"]["printed"] else {}
        judge_info = judge.stats() if hasattr(judge, "stats") else {"id": judge.judge_id}
        judge_info.update({"spec": self.params["judge"], "model": self.params["judge"].partition(":")[2]
                           or self.params["judge"], "settings": self.judge_settings(),
                           "version": getattr(judge, "version", None), "served_models": source.served,
                           "ignored_replies_of_other_judges": source.ignored,
                           "recomputed_from_stored_replies": recompute})
        if source.out_file is not None:
            judge_info["replies_file"] = source.out_file.name
        analyser_info = {"name": getattr(analyse, "name", type(analyse).__name__)}
        if records and hasattr(analyse, "version"):
            analyser_info.update(analyse.version())
        no_gt = [r["image_id"] for r in sel.scored if r["image_id"] not in gt]
        return {**result, "skipped": {"count": len(skipped), "reasons": skipped}, "duplicates": sel.duplicates,
                "judge": judge_info, "analyser": analyser_info, "extraction": extraction,
                "ground_truth": {**provenance, "images_without_entry": no_gt[:20]}}


class ObjHalGptNltkProtocol(ObjHalGptProtocol):
    """``objhal-gpt`` with NLTK's tagger and WordNet lemmas in place of spaCy en_core_web_trf."""

    name = "objhal-gpt-nltk"
    description = ("Object HalBench (RLAIF-V@83d917b --use_gpt) with objects extracted by gpt-3.5-turbo-0613 and"
                   " analysed by NLTK (tagger + WordNet lemmas) instead of spaCy en_core_web_trf; 3 beams")
    params = {**ObjHalGptProtocol.params, "analyser": "nltk"}
    headline = {k: (f"{label[:-1]}, NLTK analysis)", hib) for k, (label, hib) in ObjHalGptProtocol.headline.items()}


class ObjHalGptAnnotationProtocol(ObjHalGptNltkProtocol):
    """The ``objhal-gpt`` procedure with the offline extractor ``objhal-annotation`` — a different metric."""

    name = "objhal-gpt-annotation"
    description = ("Object HalBench GPT-extraction procedure with the offline annotation extractor (asserted"
                   " COCO-object mentions) and NLTK analysis; not comparable with objhal-gpt")
    params = {**{k: v for k, v in ObjHalGptNltkProtocol.params.items() if k != "judge_settings"},
              "judge": "objhal-annotation", "judge_settings": {}}
    headline = {"chair_s": ("Object HalBench CHAIR_s (annotation extractor)", False),
                "chair_i": ("Object HalBench CHAIR_i (annotation extractor)", False),
                "recall": ("Object HalBench recall (annotation extractor)", True)}


BENCHMARKS.add(ObjHalGptProtocol)
BENCHMARKS.add(ObjHalGptNltkProtocol)
BENCHMARKS.add(ObjHalGptAnnotationProtocol)
