"""One OpenAI-compatible chat-completions client (standard library only), shared by every caller that
talks to an HTTP model: the GPT judge (:mod:`bench.judges`), the vision feedback model
(:mod:`bench.feedback`) and API-served models under evaluation (:mod:`bench.models.api`).

Protocol: ``POST {base_url}/chat/completions`` with a JSON body ``{"model", "messages", ...}``; the reply
is ``choices[0].message.content`` (a string). Text-only messages carry ``content`` as a string; a message
with images carries a list of parts, ``{"type": "image_url", "image_url": {"url": "data:<mime>;base64,…"}}``
and ``{"type": "text", "text": …}`` (the OpenAI vision format that vLLM and SGLang also accept).

Robustness (:meth:`ChatClient.complete`):

* a per-request timeout; at most ``max_retries`` attempts. Retried: HTTP 429 and 5xx, timeouts, dropped
  connections, and malformed bodies (not JSON, no ``choices``, content not a string). Waits between
  attempts grow exponentially (``backoff · 2^attempt``), capped at ``max_sleep``; a ``Retry-After`` header
  (delta-seconds or an HTTP-date, RFC 9110 §10.2.3) replaces the backoff wait, capped the same way. Any
  other 4xx fails at once, quoting the server's error message.
* a minimum interval between requests (``min_interval`` seconds, a simple rate limit that holds across
  threads).
* the API key is read from the environment variable ``api_key_env`` at request time, never stored on the
  object, sent only in the ``Authorization`` header, and redacted (together with anything shaped like
  ``sk-…``) from every message built from a server reply, so it never reaches logs, records, exceptions
  or caches.

:class:`ReplyCache` is the reply cache of every client and judge: append-only JSONL of ``{"judge",
"prompt_sha256", "attempt", "reply", ...meta}`` keyed by (client or judge id, sha256 of the request text,
attempt); the first reply stored for a key wins, and a torn last line (killed writer) is dropped on load.

:func:`check_reachable` is the preflight: one GET of ``{base_url}/models``; any HTTP answer (even 401 or
404) means the server is there, a refused connection, unknown host or timeout is one line of error.

Deliberate deviation from the two clients this module replaces (``OpenAIJudge``'s and the feedback
model's own loops): one policy for both. ``Retry-After`` is honoured on every retried HTTP status (the judge
read it on 429 only; the feedback client did not parse its HTTP-date form); the feedback client now quotes
the server's (redacted) message on a refused request and no longer sleeps after its last attempt.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import json
import logging
import mimetypes
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from bench.errors import BenchError
from bench.io import append_jsonl, iter_jsonl, sha256_text, truncate_torn_tail

log = logging.getLogger("bench.openai_client")

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def _sleep(seconds: float) -> None:  # module-level indirection: tests record the waits instead of sleeping
    time.sleep(seconds)


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret``, anything shaped like an API key (``sk-…``) and the credential of an echoed
    ``Authorization: Bearer …`` / ``api-key:`` header masked (a ``secret`` under 8 characters is not a real key
    and is not masked, so it cannot mangle ordinary words)."""
    if secret and len(secret) >= 8:
        text = text.replace(secret, "***")
    text = re.sub(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?\s*(?:bearer|basic)\s+)[^\s\"',}]+", r"\1***", text)
    text = re.sub(r"(?i)(\bapi[-_]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+", r"\1***", text)
    return re.sub(r"\bsk-[A-Za-z0-9_\-*]{6,}", "sk-***", text)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def image_data_url(path: str | Path) -> str:
    """The file's bytes as a ``data:<mime>;base64,…`` URL (mime from the file name, PNG if unknown)."""
    path = Path(path)
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def user_message(text: str, images: Iterable[str | Path] = (), images_first: bool = False) -> dict:
    """A ``user`` message: plain text, or text + image parts (images before the text if ``images_first``)."""
    parts = [{"type": "image_url", "image_url": {"url": image_data_url(p)}} for p in images]
    if not parts:
        return {"role": "user", "content": text}
    text_part = [{"type": "text", "text": text}]
    return {"role": "user", "content": parts + text_part if images_first else text_part + parts}


def normalise_base_url(url: str) -> str:
    """``url`` without a trailing slash; refuses what cannot be a chat-completions base (no http(s) scheme,
    no host) and URLs carrying credentials or a query (the key belongs in ``$OPENAI_API_KEY``, and the URL
    is recorded in run records and cache keys)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BenchError(f"base URL {url!r}: expected http(s)://host[:port]/path, e.g. http://127.0.0.1:8000/v1")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise BenchError("base URL: credentials, queries and fragments are not allowed in it (it is written to run"
                         " records); put the API key in $OPENAI_API_KEY")
    return url.strip().rstrip("/")


def check_reachable(base_url: str, timeout: float = 5.0) -> str | None:
    """Preflight: None when an HTTP server answers at ``base_url`` (any status), else a one-line reason."""
    try:
        url = normalise_base_url(base_url)
    except BenchError as exc:
        return str(exc)
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{url}/models", method="GET"), timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:  # it answered: reachable (auth and routes are checked by requests)
        exc.close()
        return None
    except (TimeoutError, socket.timeout):
        return f"model endpoint {url} did not answer within {timeout:g}s"
    except (urllib.error.URLError, ConnectionError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return f"model endpoint {url} did not answer within {timeout:g}s"
        return f"cannot reach the model endpoint {url} ({redact(str(reason) or type(reason).__name__, None)})"


class ChatClient:
    """OpenAI-compatible chat-completions transport: retries, Retry-After, rate limit, key hygiene.

    ``label`` starts every error message (``"judge openai:gpt-4:t0.7:m800"``); ``error`` is the exception
    class raised (a :class:`BenchError` subclass); ``missing_key_hint`` follows "set the API key in $X".
    ``key_required=False`` sends no ``Authorization`` header when the variable is unset (a local server).
    ``sleep`` replaces :func:`_sleep` (tests). Thread-safe: several threads may call :meth:`complete`.
    """

    def __init__(self, base_url: str, api_key_env: str | None = "OPENAI_API_KEY", *, key_required: bool = True,
                 timeout: float = 120.0, max_retries: int = 6, min_interval: float = 0.0, backoff: float = 2.0,
                 max_sleep: float = 60.0, label: str = "openai", error: type[BenchError] = BenchError,
                 missing_key_hint: str = "", sleep: Callable[[float], None] | None = None):
        if max_retries < 1:
            raise error(f"{label}: max_retries must be >= 1")
        self.base_url = base_url.rstrip("/")
        self.api_key_env, self.key_required = api_key_env, key_required
        self.timeout, self.max_retries = float(timeout), int(max_retries)
        self.min_interval, self.backoff, self.max_sleep = float(min_interval), float(backoff), float(max_sleep)
        self.label, self.error, self.missing_key_hint = label, error, missing_key_hint
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last_request = float("-inf")
        self.attempts = 0  # HTTP requests sent, retries included

    def __repr__(self) -> str:  # no key here: it is never stored on the object
        return f"ChatClient({self.label!r}, base_url={self.base_url!r})"

    def sleep(self, seconds: float) -> None:
        (self._sleep or _sleep)(seconds)

    def api_key(self) -> str | None:
        """The key from the environment (None when keyless); a required key that is unset is an error."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key and self.key_required:
            raise self.error(f"{self.label}: set the API key in ${self.api_key_env}{self.missing_key_hint}")
        return key or None

    def _throttle(self) -> None:
        with self._lock:
            wait = self._last_request + self.min_interval - time.monotonic()
            if wait > 0:
                self.sleep(wait)
            self._last_request = time.monotonic()
            self.attempts += 1

    @staticmethod
    def _server_message(exc: urllib.error.HTTPError, key: str | None) -> str:
        try:
            raw = exc.read(2000).decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - an unreadable error body is just absent
            return ""
        try:
            err = json.loads(raw).get("error")
            raw = err.get("message", "") if isinstance(err, dict) else str(err or raw)
        except (ValueError, AttributeError):
            pass
        raw = " ".join(raw.split())[:200]
        return f": {redact(raw, key)}" if raw else ""

    def complete(self, body: dict) -> tuple[str, dict]:
        """POST ``body``; returns (the first choice's content, the decoded reply)."""
        key = self.api_key()
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = f"{self.base_url}/chat/completions"
        last = ""
        for attempt in range(self.max_retries):
            self._throttle()
            wait = min(self.backoff * (2 ** attempt), self.max_sleep)
            try:
                req = urllib.request.Request(url, data=data, method="POST", headers=headers)
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                payload = json.loads(raw.decode("utf-8"))
                content = payload["choices"][0]["message"]["content"]
                if not isinstance(content, str):
                    raise TypeError("content is not a string")
                # a server that echoes the request must not leak the key into caches or predictions
                return redact(content, key), payload
            except urllib.error.HTTPError as exc:
                status = exc.code
                if status == 429 or status >= 500:
                    last = f"HTTP {status}"
                    after = retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None)
                    if after is not None:
                        wait = min(after, self.max_sleep)
                    exc.close()
                else:
                    message = self._server_message(exc, key)
                    exc.close()
                    raise self.error(f"{self.label}: HTTP {status} from {self.base_url}{message}") from None
            except (TimeoutError, socket.timeout):
                last = f"timeout after {self.timeout:g}s"
            except (urllib.error.URLError, ConnectionError, http.client.HTTPException, OSError) as exc:
                reason = getattr(exc, "reason", None) or exc
                if isinstance(reason, (TimeoutError, socket.timeout)):
                    last = f"timeout after {self.timeout:g}s"
                else:
                    last = f"connection error ({redact(str(reason) or type(reason).__name__, key)})"
            except (ValueError, KeyError, IndexError, TypeError, AttributeError, UnicodeDecodeError):
                last = "malformed reply body (not a chat completion)"
            if attempt + 1 < self.max_retries:
                log.warning("%s: %s; retry %d/%d in %.1fs", self.label, last, attempt + 1, self.max_retries - 1, wait)
                self.sleep(wait)
        raise self.error(f"{self.label}: gave up after {self.max_retries} attempts ({last})")


def chat_body(model: str, messages: list[dict], temperature: float, max_tokens: int, **extra: Any) -> dict:
    """The request body (``extra`` fields last, so callers may add ``top_p``, ``stop``, ``seed`` …)."""
    return {"model": model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens, **extra}


# ------------------------------------------------------------------------------------------- reply cache
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
