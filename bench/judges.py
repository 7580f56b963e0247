"""Judges (registry ``bench.judges``): text in, text out, every reply cached on disk.

A judge is a callable ``judge(prompt, attempt=0) -> reply``. Two entries:

* ``openai`` — an OpenAI-compatible chat-completions client (``POST {base_url}/chat/completions``:
  OpenAI itself, Azure-style gateways, vLLM, llama.cpp server …) over the shared transport
  :class:`bench.openai_client.ChatClient` (standard library only).
  Settings: model id, base URL (argument, else ``$BENCH_JUDGE_BASE_URL``, else the OpenAI URL), the
  *name* of the environment variable that holds the API key (default ``OPENAI_API_KEY``; ``None`` for a
  keyless local server), temperature, max_tokens and any extra request fields (HA-DPO also sends
  ``top_p``, ``stop`` and ``logit_bias``) and an optional system message (LLaVA's reviewer sends one; it
  enters the judge id), and the role of the prompt's message (``prompt_role``: ``user``, or ``system`` as
  RLAIF-V's Object HalBench extractor sends it; a non-user role enters the id). Robustness: a per-request
  timeout; bounded attempts with
  exponential backoff on HTTP 429 (``Retry-After`` honoured, in seconds or as an HTTP date), 5xx,
  timeouts, dropped connections and malformed (non-JSON / choice-less) bodies; any other 4xx fails at
  once; a minimum interval between requests (a simple rate limit). The key is read from the environment
  at request time, is never stored on the object, and is redacted from every message built from a
  server reply; it never reaches logs, records, exceptions or caches.
* ``annotation`` — offline and deterministic. It reads the region descriptions, the facts and the
  numbered sentences back out of the SHR judge prompt (:func:`metrics.shr.parse_prompt`) and labels each
  sentence from its COCO-object mentions (:func:`bench.feedback.find_mentions`: the CHAIR synonym list,
  plural forms, multi-word names): *hallucination* if it asserts an object absent from every region
  phrase and fact (or negates one that is present: "no dog" when a dog is annotated), *correct* if it
  names objects and all of them agree with the annotations, *cannot judge* if it names no COCO object.
  It answers in the GPT judge's ``Judgement:`` text format so the same parser scores it. It sees object
  hallucination only (no attributes, counts, relations, or objects outside the 80 COCO classes), so it is
  a **different metric** from GPT-4 SHR: protocol ``shr-annotation``, never mixed with ``shr``.

Cache (:class:`ReplyCache`): append-only JSONL (``bench.io.append_jsonl``) of
``{"judge", "prompt_sha256", "attempt", "reply", ...meta}`` keyed by (judge id, sha256 of the prompt,
attempt). The judge id names the model and every setting that changes replies
(``openai:gpt-4:t0.7:m800:<hash of extra fields>``); the base URL and the key are not part of it. The
attempt index lets a caller re-ask the same prompt (a fresh sample at temperature > 0) and still pay
nothing on a rerun. A torn last line (killed writer) is dropped on load and cut off before the next
append. ``hits`` / ``misses`` count lookups. The file lives in ``cache_dir`` (``judge_replies.jsonl``),
or in ``$BENCH_JUDGE_CACHE`` when that is set (one cache shared by every run directory).
"""

from __future__ import annotations

import abc
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.io import append_jsonl, iter_jsonl, sha256_text, truncate_torn_tail
from bench.openai_client import (DEFAULT_BASE_URL, ChatClient, chat_body, normalise_base_url,  # noqa: F401
                                 redact)  # (redact re-exported)
from bench.registry import JUDGES


CACHE_FILE = "judge_replies.jsonl"


class JudgeError(BenchError):
    """The judge could not produce a reply (configuration, refused request, or retries exhausted)."""


def _sleep(seconds: float) -> None:  # indirection so tests can record the waits
    time.sleep(seconds)


# ------------------------------------------------------------------------------------------- cache
class ReplyCache:
    """Append-only JSONL reply cache keyed by (judge id, sha256(prompt), attempt)."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path is not None else None
        self.records: dict[tuple[str, str, int], dict] = {}
        self.hits = self.misses = 0
        if self.path is not None and self.path.exists():
            for _, rec in iter_jsonl(self.path, repair=True):
                try:
                    key = (str(rec["judge"]), str(rec["prompt_sha256"]), int(rec.get("attempt", 0)))
                except (KeyError, TypeError, ValueError):
                    continue  # a foreign line is not ours to interpret
                if isinstance(rec.get("reply"), str):
                    self.records.setdefault(key, rec)  # first reply wins (what the first run used)
            truncate_torn_tail(self.path)

    @property
    def replies(self) -> dict[tuple[str, str], str]:
        """First-attempt replies by (judge id, prompt sha256) (read-only view)."""
        return {(j, s): r["reply"] for (j, s, a), r in self.records.items() if a == 0}

    def lookup(self, judge_id: str, prompt: str, attempt: int = 0) -> dict | None:
        rec = self.records.get((judge_id, sha256_text(prompt), attempt))
        if rec is None:
            self.misses += 1
        else:
            self.hits += 1
        return rec

    def get(self, judge_id: str, prompt: str, attempt: int = 0) -> str | None:
        rec = self.lookup(judge_id, prompt, attempt)
        return None if rec is None else rec["reply"]

    def put(self, judge_id: str, prompt: str, reply: str, attempt: int = 0, **meta: Any) -> dict:
        rec = {"judge": judge_id, "prompt_sha256": sha256_text(prompt), "attempt": attempt, "reply": reply, **meta}
        self.records.setdefault((judge_id, rec["prompt_sha256"], attempt), rec)
        if self.path is not None:
            append_jsonl(self.path, [rec])
        return rec

    def __len__(self) -> int:
        return len(self.records)


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path | None:
    env = os.environ.get("BENCH_JUDGE_CACHE")
    if env:
        return Path(env)
    return Path(cache_dir) if cache_dir is not None else None


# ------------------------------------------------------------------------------------------- base
class CachedJudge(abc.ABC):
    """Base class: ``judge(prompt, attempt)`` answers from the cache or asks :meth:`reply` once."""

    judge_id: str = "base"
    description: str = ""
    version: str = "1"

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        folder = resolve_cache_dir(cache_dir)
        self.cache = ReplyCache(folder / CACHE_FILE if folder is not None else None)
        self.requests = 0  # uncached calls of :meth:`reply`

    def __call__(self, prompt: str, attempt: int = 0) -> str:
        rec = self.cache.lookup(self.judge_id, prompt, attempt)
        if rec is not None:
            return rec["reply"]
        self.requests += 1
        reply, meta = self.reply_with_meta(prompt)
        self.cache.put(self.judge_id, prompt, reply, attempt, **meta)
        return reply

    def reply_with_meta(self, prompt: str) -> tuple[str, dict]:
        """The reply and what to record beside it in the cache (served model, date)."""
        return self.reply(prompt), {}

    def missing_resources(self) -> list[str]:
        """What this judge needs that is not configured (API key, endpoint), one line each with the fix."""
        return []

    @abc.abstractmethod
    def reply(self, prompt: str) -> str:
        """The judge's answer to ``prompt`` (uncached)."""

    def stats(self) -> dict:
        return {"id": self.judge_id, "requests": self.requests, "cache_hits": self.cache.hits,
                "cache_misses": self.cache.misses,
                "cache_file": self.cache.path.name if self.cache.path is not None else None,
                "cache_shared": bool(os.environ.get("BENCH_JUDGE_CACHE"))}


# ------------------------------------------------------------------------------------------- openai
def _fmt(value: float) -> str:
    return repr(float(value)) if isinstance(value, (int, float)) else str(value)


class OpenAIJudge(CachedJudge):
    """OpenAI-compatible chat-completions judge (GPT-4 class or a local server), cached."""

    description = "OpenAI-compatible chat-completions judge (GPT-4 class or a local server), cached"
    version = "2"

    def __init__(self, model: str = "gpt-4", temperature: float = 0.7, max_tokens: int = 800,
                 base_url: str | None = None, api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 120.0,
                 max_retries: int = 6, min_interval: float = 0.5, backoff: float = 2.0, max_sleep: float = 60.0,
                 extra: dict | None = None, system: str | None = None, prompt_role: str = "user",
                 cache_dir: str | os.PathLike | None = None, **unknown: Any):
        if unknown:
            raise JudgeError(f"judge openai: unknown setting(s) {', '.join(sorted(unknown))}")
        self.model, self.temperature, self.max_tokens = model, float(temperature), int(max_tokens)
        try:
            self.base_url = normalise_base_url(base_url or os.environ.get("BENCH_JUDGE_BASE_URL") or DEFAULT_BASE_URL)
        except BenchError as exc:
            raise JudgeError(f"judge base URL (argument or $BENCH_JUDGE_BASE_URL): {exc}") from None
        self.api_key_env = api_key_env
        self.extra = dict(extra or {})
        self.system = system  # a system message sent before the prompt (LLaVA's reviewers send one)
        if prompt_role not in ("user", "system"):
            raise JudgeError(f"judge openai: prompt_role must be 'user' or 'system', not {prompt_role!r}")
        self.prompt_role = prompt_role  # RLAIF-V's object extractor sends its prompt as the only, system, message
        self.judge_id = f"openai:{model}:t{_fmt(self.temperature)}:m{self.max_tokens}"
        if self.extra:
            self.judge_id += ":" + sha256_text(json.dumps(self.extra, sort_keys=True))[:8]
        if system is not None:
            self.judge_id += ":sys" + sha256_text(system)[:8]
        if prompt_role != "user":
            self.judge_id += f":as-{prompt_role}"
        # the transport (retries, Retry-After, rate limit, key hygiene) is the shared client; ``_sleep`` is
        # looked up at call time so tests can record this module's waits
        self.client = ChatClient(self.base_url, api_key_env, key_required=True, timeout=timeout,
                                 max_retries=max_retries, min_interval=min_interval, backoff=backoff,
                                 max_sleep=max_sleep, label=f"judge {self.judge_id}", error=JudgeError,
                                 missing_key_hint=" (or score the offline `shr-annotation` protocol); replies"
                                                  " already cached are reused without a key",
                                 sleep=lambda seconds: _sleep(seconds))
        super().__init__(cache_dir)

    def __repr__(self) -> str:  # no key here: it is never stored on the object
        return f"OpenAIJudge({self.judge_id!r}, base_url={self.base_url!r})"

    @property
    def attempts(self) -> int:
        """HTTP requests sent, retries included."""
        return self.client.attempts

    def missing_resources(self) -> list[str]:
        if self.api_key_env is not None and not os.environ.get(self.api_key_env):
            return [f"judge {self.judge_id}: no API key in ${self.api_key_env} (export it; the endpoint is"
                    f" {self.base_url}, set $BENCH_JUDGE_BASE_URL for another; or use an offline protocol such as"
                    " `shr-annotation`)"]
        return []

    def body(self, prompt: str) -> dict:
        messages = [{"role": "system", "content": self.system}] if self.system is not None else []
        return chat_body(self.model, messages + [{"role": self.prompt_role, "content": prompt}], self.temperature,
                         self.max_tokens, **self.extra)

    def reply_with_meta(self, prompt: str) -> tuple[str, dict]:
        content, payload = self.client.complete(self.body(prompt))
        served = payload.get("model") if isinstance(payload, dict) else None
        return content, {"model": served or self.model,
                         "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    def reply(self, prompt: str) -> str:
        return self.reply_with_meta(prompt)[0]


# ------------------------------------------------------------------------------------------- annotation
class AnnotationJudge(CachedJudge):
    """Offline annotation-grounded SHR judge: COCO-object mentions vs regions + facts (not GPT-4 SHR)."""

    description = "offline annotation-grounded judge: object mentions vs VG regions + facts (not GPT-4 SHR)"
    version = "2"
    judge_id = "annotation:coco-objects:v2"

    def __init__(self, cache_dir: str | os.PathLike | None = None, **unknown: Any):
        if unknown:
            raise JudgeError(f"judge annotation: unknown setting(s) {', '.join(sorted(unknown))}")
        super().__init__(cache_dir)

    @staticmethod
    def mentions(text: str) -> tuple[set[str], set[str]]:
        """(asserted, negated) COCO object heads of ``text``: a mention is negated when one of the three
        words before it is a negation ("no", "not", "without", …)."""
        from bench.feedback import NEGATIONS, find_mentions, tokens

        toks = tokens(text)
        asserted, negated = set(), set()
        for m in find_mentions(text):
            before = toks[max(0, m.first_token - 3):m.first_token]
            (negated if any(t[2].lower() in NEGATIONS for t in before) else asserted).add(m.head)
        return asserted, negated

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
        from metrics.shr import parse_prompt

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


JUDGES.add("openai", OpenAIJudge)
JUDGES.add("annotation", AnnotationJudge)


def make_judge(spec: str, cache_dir: str | os.PathLike | None = None, **settings: Any) -> CachedJudge:
    """A judge from a spec ``"<registry name>[:<model>]"`` (``"openai:gpt-4"``, ``"annotation"``)."""
    name, _, model = spec.partition(":")
    if model:
        settings = {**settings, "model": model}
    return JUDGES.get(name)(cache_dir=cache_dir, **settings)
