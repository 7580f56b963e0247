"""Judges (registry ``bench.judges``): text in, text out, every reply cached on disk.

A judge is a callable ``judge(prompt, attempt=0) -> reply``. The entries:

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
* ``annotation``, ``mmhal-annotation``, ``llava-bench-annotation`` — offline, deterministic judges that read
  their inputs back out of a benchmark's own judge prompt; each is defined beside that prompt
  (:class:`metrics.shr.AnnotationJudge`, :class:`metrics.mmhal.MMHalAnnotationJudge`,
  :class:`metrics.llava_bench.LlavaBenchAnnotationJudge`) on the bases here (:class:`CachedJudge`,
  :class:`OfflineJudge`) and registered when its protocol's module is imported. They see COCO-object
  mentions only (:mod:`bench.text`), so their protocols are **different metrics** from the GPT-4 ones.

Cache (:class:`bench.openai_client.ReplyCache`): append-only JSONL (``bench.io.append_jsonl``) of
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
from bench.io import sha256_text
from bench.openai_client import (DEFAULT_BASE_URL, ChatClient, ReplyCache, chat_body, normalise_base_url,  # noqa: F401
                                 redact)  # (redact re-exported)
from bench.registry import JUDGES


CACHE_FILE = "judge_replies.jsonl"


class JudgeError(BenchError):
    """The judge could not produce a reply (configuration, refused request, or retries exhausted)."""


def _sleep(seconds: float) -> None:  # indirection so tests can record the waits
    time.sleep(seconds)


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


class OfflineJudge(CachedJudge):
    """A deterministic judge with no settings (the annotation-grounded judges of the SHR, MMHal-Bench and
    LLaVA-Bench protocols, each defined beside the prompt it reads: :mod:`metrics.shr`, :mod:`metrics.mmhal`,
    :mod:`metrics.llava_bench`)."""

    def __init__(self, cache_dir: str | os.PathLike | None = None, **unknown: Any):
        if unknown:
            raise JudgeError(f"judge {self.judge_id}: unknown setting(s) {', '.join(sorted(unknown))}")
        super().__init__(cache_dir)


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


JUDGES.add("openai", OpenAIJudge)


def make_judge(spec: str, cache_dir: str | os.PathLike | None = None, **settings: Any) -> CachedJudge:
    """A judge from a spec ``"<registry name>[:<model>]"`` (``"openai:gpt-4"``, ``"annotation"``)."""
    name, _, model = spec.partition(":")
    if model:
        settings = {**settings, "model": model}
    return JUDGES.get(name)(cache_dir=cache_dir, **settings)
