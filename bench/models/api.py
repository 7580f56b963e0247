"""API-served models (``--model openai:<name> --base-url URL``): a vision chat model behind an
OpenAI-compatible endpoint (vLLM, SGLang, a hosted API), evaluated through the same benchmarks, prediction
cache, records and scorers as local weights. Evaluation only: training one is refused.

Request per benchmark item (one user message, no system message: the server applies the model's own
chat template and default system prompt)::

    {"model": <name>, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/<type>;base64,<the image file's bytes>"}},
        {"type": "text", "text": <the protocol's question>}]}],
     "max_tokens": <protocol max_new_tokens>, "temperature": 0.0 (greedy) | <protocol temperature> (sampling)}

The image comes first, as LLaVA's ``<image>\\n{question}`` puts it; the server's processor does the image
preprocessing (LLaVA-1.5's pad-to-square is not applied here — the file is sent as it is). The reply's
text is post-processed exactly as local generations are (stripped, cut at the protocol's stop strings).

Deviations a user must know: protocols that decode with beam search (``shr``, ``chair-opera``) are refused
for API models — the chat-completions API has no beam search, and greedy output would silently be a
different protocol; a sampled protocol is not seeded by bench (the endpoint's sampling decides).

Prediction cache key: :meth:`ApiModel.fingerprint` hashes the model name, the base URL and the request
format version; :func:`bench.eval.engine.prediction_key` adds the protocol fingerprint and its generation
settings (from which ``max_tokens`` and ``temperature`` are derived). An API model's weights are unknown
to bench: if the server swaps the weights behind the same name and URL, cached predictions are reused as
if nothing changed — delete ``predictions/`` (or serve under a new name) after changing the served model.
The model names the server reports in its replies are recorded in ``run.json`` (``api.served_models``).

The API key is read from ``$OPENAI_API_KEY`` at request time (optional: a local server needs none) and is
never written anywhere (records, logs, caches, errors; see :mod:`bench.openai_client`).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.fingerprint import api_fingerprint
from bench.openai_client import ChatClient, chat_body, check_reachable, normalise_base_url, user_message
from bench.paths import data_dir

API_PREFIX = "openai:"
REQUEST_FORMAT = "chat-completions/image-first/v1"  # bump when the request built from an item changes
KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"


@dataclass
class ApiConfig:
    """Settings of an API-served model (overrides ``eval.api.KEY=V``; ``--base-url`` sets base_url).

    base_url: the endpoint's base, e.g. ``http://127.0.0.1:8000/v1`` (vLLM/SGLang) or
        ``https://api.openai.com/v1``; None reads ``$OPENAI_BASE_URL``. Part of the prediction cache key.
    concurrency: requests in flight at once (servers batch concurrent requests).
    min_interval_s: rate limit, minimum seconds between the starts of two requests (0 = none).
    timeout_s: per request. max_retries: attempts per item (429, 5xx, timeouts, malformed replies).
    backoff_s: first retry wait, doubled per attempt, capped at max_sleep_s (``Retry-After`` wins).
    preflight_timeout_s: the reachability check before any work.
    """

    base_url: str | None = None
    concurrency: int = 4
    min_interval_s: float = 0.0
    timeout_s: float = 120.0
    max_retries: int = 6
    backoff_s: float = 2.0
    max_sleep_s: float = 60.0
    preflight_timeout_s: float = 10.0


def is_api_model(name: str | None) -> bool:
    return isinstance(name, str) and name.startswith(API_PREFIX)


def training_refused(spec: str) -> str:
    return (f"{spec} is served behind an HTTP endpoint: bench evaluates it (`bench eval`, or `bench run --methods"
            " base`) but cannot train it (its weights are not here); train a local checkpoint instead")


class ApiModel:
    """Model entry for ``openai:<name>``: the served model's name, its endpoint and the request mapping."""

    api_served = True
    version = "1"
    default_benchmarks = ["pope", "chair", "mhalubench"]  # the greedy protocols (SHR decodes with beams)
    train_profile: dict = {}
    pipeline_source = None

    def __init__(self, spec: str, base_url: str | None = None, settings: ApiConfig | None = None):
        if not is_api_model(spec) or not spec[len(API_PREFIX):].strip():
            raise BenchError(f"model {spec!r}: expected openai:<served model name>, e.g. openai:llava-1.5-7b-hf")
        self.spec = spec
        self.served_name = spec[len(API_PREFIX):].strip()
        # a folder-safe name for OUT/<model>/ and the leaderboard (served names hold '/' and ':')
        self.name = "openai-" + re.sub(r"[^A-Za-z0-9._-]+", "-", self.served_name).strip("-")
        self.description = f"{self.served_name} behind an OpenAI-compatible endpoint (evaluation only)"
        self.settings = settings or ApiConfig()
        self.base_url = normalise_base_url(base_url) if base_url else None
        self.client: ChatClient | None = None
        self.served_models: set[str] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ entry interface
    def load(self, dtype: Any = None, device: str = "cpu"):
        raise BenchError(training_refused(self.spec))

    def default_data_root(self) -> Path:
        return data_dir()

    # ------------------------------------------------------------------ requests
    def fingerprint(self) -> str:
        """Checkpoint fingerprint for the prediction cache: name + base URL + request format (no weights)."""
        return api_fingerprint(self.served_name, self.base_url, REQUEST_FORMAT)

    def check_protocol(self, bench: Any) -> None:
        gen = bench.generation
        if gen.num_beams > 1:
            raise BenchError(f"protocol {bench.name} decodes with beam search ({gen.num_beams} beams), which an"
                             " OpenAI-compatible chat endpoint does not offer; evaluate it with local weights, or"
                             " choose a greedy protocol (e.g. chair, pope, mhalubench)")

    def request_body(self, question: str, image: str | Path, gen: Any) -> dict:
        temperature = float(gen.temperature) if gen.do_sample else 0.0
        return chat_body(self.served_name, [user_message(question, [image], images_first=True)], temperature,
                         int(gen.max_new_tokens))

    def generate(self, question: str, image: str | Path, gen: Any) -> str:
        """The endpoint's reply text for one item (raw; the caller post-processes it)."""
        if self.client is None:
            raise BenchError(f"{self.spec}: not connected (use bench.models.api.open_api_model)")
        text, payload = self.client.complete(self.request_body(question, image, gen))
        served = payload.get("model") if isinstance(payload, dict) else None
        if isinstance(served, str):
            with self._lock:
                self.served_models.add(served)
        return text

    def record(self) -> dict:
        """What run.json says about the endpoint (never the key)."""
        return {"served_name": self.served_name, "base_url": self.base_url, "request_format": REQUEST_FORMAT,
                "weights": "unknown (API-served; the cache key names the endpoint, not the weights)",
                "served_models": sorted(self.served_models),
                "requests": self.client.attempts if self.client is not None else 0}


def open_api_model(spec: str, settings: ApiConfig | None = None, adapter: str | None = None,
                   preflight: bool = True) -> ApiModel:
    """An :class:`ApiModel` ready to send requests: base URL resolved and reachable (one-line error if not)."""
    settings = settings or ApiConfig()
    if adapter:
        raise BenchError(f"{spec}: --adapter does not apply to an API-served model (its weights are not here)")
    base_url = settings.base_url or os.environ.get(BASE_URL_ENV)
    if not base_url:
        raise BenchError(f"{spec}: pass --base-url URL (e.g. http://127.0.0.1:8000/v1 for a vLLM or SGLang server)"
                         f" or set ${BASE_URL_ENV}")
    model = ApiModel(spec, base_url, settings)
    if preflight:
        problem = check_reachable(model.base_url, timeout=settings.preflight_timeout_s)
        if problem:
            raise BenchError(f"{spec}: {problem}")
    model.client = ChatClient(model.base_url, KEY_ENV, key_required=False, timeout=settings.timeout_s,
                              max_retries=settings.max_retries, min_interval=settings.min_interval_s,
                              backoff=settings.backoff_s, max_sleep=settings.max_sleep_s, label=f"model {spec}")
    return model
