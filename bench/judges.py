"""Judges (registry ``bench.judges``): an OpenAI-compatible chat client and an offline annotation judge.

Every reply is cached on disk, append-only JSONL keyed by (judge id, sha256 of the prompt), so a
rerun pays nothing twice; the API key is read from an environment variable and never written to
logs, records, caches or error messages.

* ``openai`` — ``POST {base_url}/chat/completions`` (OpenAI, Azure-compatible gateways, vLLM, …) with
  bounded retries and exponential backoff on HTTP 429 (honouring ``Retry-After``), 5xx and timeouts,
  a minimum interval between requests, and a per-request timeout. Standard library only.
* ``annotation`` — offline and deterministic: reads the region phrases and facts *from the SHR prompt*
  and labels each numbered sentence: *hallucination* if it names a COCO object (CHAIR synonym list)
  absent from the regions and facts, *correct* if every object it names is present, *cannot judge*
  if it names none. It answers in the GPT judge's "Judgement:" format so the same parser scores it.
  It measures object hallucination only — a different metric from GPT-4 SHR (protocol
  ``shr-annotation``), never to be mixed with ``shr`` in one table.
"""

from __future__ import annotations

import abc
import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.io import append_jsonl, iter_jsonl, sha256_text
from bench.registry import JUDGES


class ReplyCache:
    """Append-only JSONL of ``{"judge", "prompt_sha256", "reply"}``; tolerant of a torn last line."""

    def __init__(self, path: Path | None):
        self.path = path
        self.replies: dict[tuple[str, str], str] = {}
        self.hits = self.misses = 0
        if path is not None and path.exists():
            for _, rec in iter_jsonl(path, repair=True):
                self.replies[(rec["judge"], rec["prompt_sha256"])] = rec["reply"]

    def get(self, judge_id: str, prompt: str) -> str | None:
        reply = self.replies.get((judge_id, sha256_text(prompt)))
        if reply is None:
            self.misses += 1
        else:
            self.hits += 1
        return reply

    def put(self, judge_id: str, prompt: str, reply: str) -> None:
        key = (judge_id, sha256_text(prompt))
        self.replies[key] = reply
        if self.path is not None:
            append_jsonl(self.path, [{"judge": judge_id, "prompt_sha256": key[1], "reply": reply}])


class CachedJudge(abc.ABC):
    judge_id = "base"

    def __init__(self, cache_dir: Path | None = None):
        self.cache = ReplyCache(Path(cache_dir) / "judge_replies.jsonl" if cache_dir else None)

    def __call__(self, prompt: str) -> str:
        cached = self.cache.get(self.judge_id, prompt)
        if cached is not None:
            return cached
        reply = self.reply(prompt)
        self.cache.put(self.judge_id, prompt, reply)
        return reply

    @abc.abstractmethod
    def reply(self, prompt: str) -> str:
        """The judge's answer to ``prompt`` (uncached)."""


class OpenAIJudge(CachedJudge):
    """OpenAI-compatible chat completions judge (key from ``api_key_env``, never stored)."""

    description = "OpenAI-compatible chat-completions judge (GPT-4 class or a local server), cached"
    version = "1"

    def __init__(self, model: str = "gpt-4", temperature: float = 0.7, max_tokens: int = 800,
                 base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 max_retries: int = 5, min_interval: float = 0.0, cache_dir: Path | None = None, **_: Any):
        self.model, self.temperature, self.max_tokens = model, temperature, max_tokens
        self.base_url = (base_url or os.environ.get("BENCH_JUDGE_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.api_key_env, self.timeout, self.max_retries, self.min_interval = api_key_env, timeout, max_retries, min_interval
        self.judge_id = f"openai:{model}:t{temperature}:m{max_tokens}"
        self._last = 0.0
        self.requests = 0
        super().__init__(cache_dir)

    def reply(self, prompt: str) -> str:
        key = os.environ.get(self.api_key_env)
        if not key:
            raise BenchError(f"judge {self.judge_id}: set the API key in ${self.api_key_env} (or pick the offline"
                             " `shr-annotation` protocol); cached replies are reused without a key")
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}],
                           "temperature": self.temperature, "max_tokens": self.max_tokens}).encode()
        delay = 1.0
        last_error = ""
        for attempt in range(self.max_retries):
            wait = self.min_interval - (time.monotonic() - self._last)
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()
            self.requests += 1
            req = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, method="POST", headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {key}"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    data = json.loads(resp.read().decode())
                return data["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as exc:
                last_error = f"HTTP {exc.code}"
                if exc.code != 429 and exc.code < 500:
                    raise BenchError(f"judge {self.judge_id}: {last_error} from {self.base_url}") from None
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                sleep = float(retry_after) if retry_after and retry_after.replace(".", "").isdigit() else delay
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                last_error = f"{type(exc).__name__}"
                sleep = delay
            except (KeyError, IndexError, json.JSONDecodeError):
                last_error = "malformed reply"
                sleep = delay
            time.sleep(min(sleep, 60.0))
            delay *= 2
        raise BenchError(f"judge {self.judge_id}: gave up after {self.max_retries} attempts ({last_error})")


class AnnotationJudge(CachedJudge):
    """Offline judge grounded in the regions and facts of the prompt (object mentions only)."""

    description = "offline annotation-grounded judge: object mentions vs regions + facts (not GPT-4 SHR)"
    version = "1"
    judge_id = "annotation:coco-synonyms:v1"

    def __init__(self, cache_dir: Path | None = None, **_: Any):
        super().__init__(cache_dir)

    @staticmethod
    def objects(text: str) -> list[str]:
        from metrics.chair_words import DOUBLE_WORDS, singularize, synonyms

        surfaces, inverse = synonyms()
        words = [singularize(w) for w in re.findall(r"[a-z]+", text.lower())]
        out, i = [], 0
        while i < len(words):
            pair = " ".join(words[i:i + 2])
            if pair in DOUBLE_WORDS:
                w, i = DOUBLE_WORDS[pair], i + 2
            else:
                w, i = words[i], i + 1
            if w in surfaces:
                out.append(inverse[w])
        return out

    def reply(self, prompt: str) -> str:
        try:
            regions = prompt.split("Here are the region descriptions of the image:\n", 1)[1]
            regions, rest = regions.split("\nFactual Information:\n", 1)
            facts, comments = rest.split("Here is the comment for you to judge", 1)
        except ValueError:
            return "Judgement:\n"
        known = set(self.objects(regions)) | set(self.objects(facts))
        lines = ["Judgement:"]
        for ln in comments.split("\n")[1:]:
            m = re.match(r"^(\d+)\. (.*)$", ln)
            if not m:
                continue
            named = self.objects(m.group(2))
            missing = sorted(set(named) - known)
            if missing:
                lines.append(f"{m.group(1)}. hallucination: {', '.join(missing)} not in the annotations.")
            elif named:
                lines.append(f"{m.group(1)}. correct: {', '.join(sorted(set(named)))} annotated.")
            else:
                lines.append(f"{m.group(1)}. cannot judge: no annotated object named.")
        return "\n".join(lines)


JUDGES.add("openai", OpenAIJudge)
JUDGES.add("annotation", AnnotationJudge)


def make_judge(name: str, cache_dir: Path | None = None, **kwargs: Any) -> CachedJudge:
    return JUDGES.get(name)(cache_dir=cache_dir, **kwargs)
