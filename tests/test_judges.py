"""Judges (bench/judges.py): the OpenAI-compatible client against a stub HTTP server on 127.0.0.1
(retries, Retry-After, timeouts, malformed bodies, key hygiene), the reply cache, the offline
annotation judge. No network beyond the loopback stub."""

import json
import logging
import threading
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import bench.judges as J
from bench.judges import JudgeError, OpenAIJudge, ReplyCache, make_judge
from metrics.shr import AnnotationJudge
from bench.registry import BENCHMARKS, JUDGES
from metrics import shr as S

KEY = "sk-test-SECRET-0123456789"
GOOD = "Judgement:\n1. correct: fine"


class _Server:
    """Stub chat-completions server. ``script`` holds one action per request (then ``ok``):
    ``ok``, ``ok:<text>``, ``429``, ``429:<retry-after>``, ``500``, ``503``, ``bad-json``, ``no-choices``,
    ``401-echo`` (echoes the key like OpenAI's "Incorrect API key" message), ``400``, ``slow:<seconds>``."""

    def __init__(self):
        self.script: list[str] = []
        self.seen: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                action = server.script.pop(0) if server.script else "ok"
                kind, _, arg = action.partition(":")
                if kind == "slow":
                    time.sleep(float(arg))
                    kind, arg = "ok", ""
                if kind == "ok":
                    self._send(200, {"model": "gpt-4-0613", "choices": [{"message": {"content": arg or GOOD}}]})
                elif kind == "429":
                    self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": arg} if arg else {})
                elif kind in ("500", "503"):
                    self._send(int(kind), {"error": {"message": "server error"}})
                elif kind == "bad-json":
                    self._send(200, b"{not json")
                elif kind == "no-choices":
                    self._send(200, {"choices": []})
                elif kind == "401-echo":
                    auth = self.headers.get("Authorization", "")
                    self._send(401, {"error": {"message": f"Incorrect API key provided: {auth[7:]}."}})
                else:
                    self._send(400, {"error": {"message": "bad request"}})

            def _send(self, status, payload, headers=None):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    with _Server() as s:
        yield s


@pytest.fixture()
def sleeps(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(J, "_sleep", waits.append)
    return waits


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("BENCH_TEST_KEY", KEY)
    monkeypatch.delenv("BENCH_JUDGE_CACHE", raising=False)
    monkeypatch.delenv("BENCH_JUDGE_BASE_URL", raising=False)


def _judge(server, tmp_path, **kw):
    kw.setdefault("min_interval", 0.0)
    return OpenAIJudge(model="gpt-4", base_url=server.url, api_key_env="BENCH_TEST_KEY", cache_dir=tmp_path, **kw)


# ------------------------------------------------------------------------------------------ requests
def test_request_carries_model_settings_and_bearer_key(server, tmp_path, sleeps):
    judge = _judge(server, tmp_path, extra={"top_p": 1.0, "stop": ["###"]})
    assert judge("prompt A") == GOOD
    (req,) = server.seen
    assert req["path"] == "/v1/chat/completions" and req["auth"] == f"Bearer {KEY}"
    assert req["body"] == {"model": "gpt-4", "messages": [{"role": "user", "content": "prompt A"}],
                           "temperature": 0.7, "max_tokens": 800, "top_p": 1.0, "stop": ["###"]}


def test_429_honours_retry_after_seconds(server, tmp_path, sleeps):
    server.script = ["429:7", "ok"]
    assert _judge(server, tmp_path)("p") == GOOD
    assert sleeps == [7.0] and len(server.seen) == 2


def test_429_honours_retry_after_as_http_date_and_caps_the_wait(server, tmp_path, sleeps):
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    server.script = [f"429:{when}", "429:9999", "ok"]
    assert _judge(server, tmp_path, max_sleep=60.0)("p") == GOOD
    assert 25.0 <= sleeps[0] <= 30.0 and sleeps[1] == 60.0


def test_5xx_and_malformed_bodies_are_retried_with_exponential_backoff(server, tmp_path, sleeps):
    server.script = ["500", "503", "bad-json", "no-choices", "ok"]
    judge = _judge(server, tmp_path, backoff=1.0)
    assert judge("p") == GOOD
    assert sleeps == [1.0, 2.0, 4.0, 8.0] and judge.attempts == 5 and judge.requests == 1


def test_gives_up_after_bounded_attempts_with_the_last_error(server, tmp_path, sleeps):
    server.script = ["500"] * 10
    with pytest.raises(JudgeError, match=r"gave up after 3 attempts \(HTTP 500\)"):
        _judge(server, tmp_path, max_retries=3)("p")
    assert len(server.seen) == 3 and len(sleeps) == 2


def test_timeout_is_retried_and_bounded(server, tmp_path, sleeps):
    server.script = ["slow:2", "slow:2"]
    t0 = time.monotonic()
    with pytest.raises(JudgeError, match=r"gave up after 2 attempts \(timeout after 0.2s\)"):
        _judge(server, tmp_path, timeout=0.2, max_retries=2)("p")
    assert time.monotonic() - t0 < 1.9


def test_timeout_then_success(server, tmp_path, sleeps):
    server.script = ["slow:1", "ok"]
    assert _judge(server, tmp_path, timeout=0.2)("p") == GOOD


def test_other_4xx_fail_at_once_and_the_key_is_redacted_everywhere(server, tmp_path, sleeps, caplog):
    caplog.set_level(logging.DEBUG)
    server.script = ["500", "401-echo"]
    judge = _judge(server, tmp_path)
    with pytest.raises(JudgeError) as err:
        judge("p")
    message = str(err.value)
    assert "HTTP 401" in message and "Incorrect API key provided" in message
    assert KEY not in message and KEY[:12] not in message and err.value.__cause__ is None
    assert KEY not in caplog.text and KEY not in repr(judge) and KEY not in json.dumps(judge.stats())
    assert len(server.seen) == 2  # 500 retried, 401 not
    server.script = ["400"]
    with pytest.raises(JudgeError, match="HTTP 400 .*bad request"):
        judge("q")


def test_missing_key_is_a_clear_error_and_a_keyless_server_needs_none(server, tmp_path, monkeypatch, sleeps):
    monkeypatch.delenv("BENCH_TEST_KEY")
    with pytest.raises(JudgeError, match=r"\$BENCH_TEST_KEY"):
        _judge(server, tmp_path)("p")
    assert server.seen == []
    judge = OpenAIJudge(base_url=server.url, api_key_env=None, cache_dir=tmp_path, min_interval=0)
    assert judge("p") == GOOD and server.seen[0]["auth"] is None


def test_min_interval_spaces_requests(server, tmp_path, sleeps):
    judge = _judge(server, tmp_path, min_interval=5.0)
    judge("a")
    judge("b")
    assert len(sleeps) == 1 and 4.0 < sleeps[0] <= 5.0


def test_base_url_from_environment(server, tmp_path, monkeypatch, sleeps):
    monkeypatch.setenv("BENCH_JUDGE_BASE_URL", server.url + "/")
    judge = OpenAIJudge(api_key_env="BENCH_TEST_KEY", cache_dir=tmp_path, min_interval=0)
    assert judge.base_url == server.url and judge("p") == GOOD


# ------------------------------------------------------------------------------------------ cache
def test_second_run_makes_no_requests(server, tmp_path, sleeps):
    first = _judge(server, tmp_path)
    assert first("prompt A") == GOOD and first.cache.misses == 1 and first.cache.hits == 0
    assert first("prompt A") == GOOD and first.cache.hits == 1
    again = _judge(server, tmp_path)
    assert again("prompt A") == GOOD
    assert len(server.seen) == 1 and again.requests == 0 and again.cache.hits == 1 and again.cache.misses == 0
    rec = json.loads((tmp_path / "judge_replies.jsonl").read_text().splitlines()[0])
    assert rec["judge"] == "openai:gpt-4:t0.7:m800" and rec["prompt_sha256"] == S.sha256_text("prompt A")
    assert rec["reply"] == GOOD and rec["attempt"] == 0 and rec["model"] == "gpt-4-0613" and "date" in rec


def test_cache_key_covers_settings_and_attempt(server, tmp_path, sleeps):
    _judge(server, tmp_path)("p")
    _judge(server, tmp_path, temperature=0.0)("p")  # another judge id
    _judge(server, tmp_path, extra={"top_p": 0.5})("p")  # extra fields hashed into the id
    _judge(server, tmp_path)("p", attempt=1)  # a re-ask is a new sample
    assert len(server.seen) == 4
    ids = {json.loads(x)["judge"] for x in (tmp_path / "judge_replies.jsonl").read_text().splitlines()}
    assert len(ids) == 3


def test_cache_tolerates_a_torn_last_line(server, tmp_path, sleeps):
    _judge(server, tmp_path)("p")
    path = tmp_path / "judge_replies.jsonl"
    path.write_text(path.read_text() + '{"judge": "openai:gpt-4:t0.7:m800", "prompt_sha2')
    judge = _judge(server, tmp_path)
    assert judge("p") == GOOD and judge.requests == 0
    judge("q")
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["reply"] == GOOD for x in lines)


def test_reply_cache_without_a_file_counts_hits_and_misses():
    cache = ReplyCache(None)
    assert cache.get("j", "p") is None
    cache.put("j", "p", "r")
    assert cache.get("j", "p") == "r" and (cache.hits, cache.misses) == (1, 1) and cache.replies == {
        ("j", S.sha256_text("p")): "r"}


def test_shared_cache_directory_from_environment(server, tmp_path, monkeypatch, sleeps):
    monkeypatch.setenv("BENCH_JUDGE_CACHE", str(tmp_path / "shared"))
    _judge(server, tmp_path / "run1")("p")
    judge = _judge(server, tmp_path / "run2")
    assert judge("p") == GOOD and judge.requests == 0 and (tmp_path / "shared" / "judge_replies.jsonl").exists()


# ------------------------------------------------------------------------------------------ through SHR
def _shr_world(root):
    from bench.io import write_jsonl

    write_jsonl(root / "shr" / "images.jsonl", [{"image_id": 7, "image": "vg/images/7.jpg", "width": 10,
                                                 "height": 10}])
    write_jsonl(root / "shr" / "regions.jsonl", [{"image_id": 7, "regions": [
        {"x": 0, "y": 0, "width": 5, "height": 5, "phrase": "a dog"}]}])
    return [{"id": "7", "text": "A dog. A cat."}]


def test_shr_with_the_http_judge_retries_a_reply_without_judgement_then_reruns_for_free(server, tmp_path, sleeps):
    preds = _shr_world(tmp_path)
    bench = BENCHMARKS.get("shr")()
    server.script = ["ok:I am not able to judge.", "ok:Judgement:\n1. correct: dog\n2. hallucination: cat"]
    judge = _judge(server, tmp_path / "cache", **bench.params["judge_settings"])
    res = bench.score(preds, tmp_path, cache_dir=tmp_path / "run" / "judge", judge=judge, n_boot=10)
    assert res["metrics"]["shr"] == 0.5 and res["judge"]["calls"] == 2 and res["judge"]["requests"] == 2
    assert server.seen[0]["body"]["logit_bias"] == {"50256": -100} and server.seen[0]["body"]["stop"] == ["###"]
    # a fresh run directory, same cache: both attempts come from the cache
    judge = _judge(server, tmp_path / "cache", **bench.params["judge_settings"])
    res2 = bench.score(preds, tmp_path, cache_dir=tmp_path / "run2" / "judge", judge=judge, n_boot=10)
    assert res2["metrics"] == res["metrics"] and judge.requests == 0 and judge.cache.hits == 2
    assert len(server.seen) == 2
    for path in [*tmp_path.rglob("*.jsonl"), *tmp_path.rglob("*.json")]:
        assert KEY not in path.read_text()
    assert KEY not in json.dumps(res) and KEY not in json.dumps(res2)


def test_shr_with_malformed_judge_replies_reports_parse_failures(server, tmp_path, sleeps):
    preds = _shr_world(tmp_path)
    bench = BENCHMARKS.get("shr")()
    server.script = ["ok:Judgement\n1. correct\n2. correct"]  # "Judgement" but no "Judgement:"
    res = bench.score(preds, tmp_path, judge=_judge(server, tmp_path), n_boot=10)
    assert res["parse_failures"]["by_status"] == {"no-judgement-colon": 1} and "shr" in res["undefined"]
    assert "shr" not in res["metrics"] and res["metrics"]["sents_per_image"] == 2.0


# ------------------------------------------------------------------------------------------ annotation judge
def _prompt(sentences, regions=("a brown dog", "two people on a bench"), facts="There is a cup.\n"):
    text = S.render_regions([{"x": 0, "y": 0, "width": 5, "height": 5, "phrase": p} for p in regions], 10, 10)
    return S.build_prompt(text, facts, sentences)


def test_annotation_judge_labels_sentences_from_regions_and_facts(tmp_path):
    sentences = ["A dog and two cups", "A giraffe eats", "It is sunny", "There is no dog",
                 "No zebra is visible", "The men sit on the bench"]
    reply = AnnotationJudge(cache_dir=tmp_path)(_prompt(sentences))
    j = S.parse_judgement(reply, len(sentences))
    assert j.status == "ok"
    assert j.labels == ["correct", "hallucination", "cannot judge", "hallucination", "correct", "correct"]
    assert reply.startswith("Judgement:\n1. correct")


def test_annotation_judge_is_deterministic_cached_and_offline(tmp_path):
    prompt = _prompt(["A cat"])
    a = AnnotationJudge(cache_dir=tmp_path)
    assert a(prompt) == a(prompt) and a.requests == 1 and a.cache.hits == 1
    b = AnnotationJudge(cache_dir=tmp_path)
    assert b(prompt).startswith("Judgement:\n1. hallucination: cat") and b.requests == 0
    assert "Judgement:" not in AnnotationJudge()("not an SHR prompt")


def test_registry_and_judge_specs():
    assert {"openai", "annotation"} <= set(JUDGES.names())
    judge = make_judge("openai:gpt-4o-mini", temperature=0.0, max_tokens=10)
    assert judge.model == "gpt-4o-mini" and judge.judge_id == "openai:gpt-4o-mini:t0.0:m10"
    assert make_judge("annotation").judge_id.startswith("annotation:")
    with pytest.raises(JudgeError, match="unknown setting"):
        make_judge("openai", temprature=0.1)


def test_a_reply_echoing_the_authorization_header_is_redacted_before_it_is_cached(server, tmp_path, sleeps):
    server.script = [f"ok:Judgement: fine. Request headers were Authorization: Bearer {KEY} and api-key: {KEY}"]
    judge = _judge(server, tmp_path)
    reply = judge("prompt A")
    assert KEY not in reply and "***" in reply
    cached = (tmp_path / J.CACHE_FILE).read_text()
    assert KEY not in cached and "Bearer ***" in cached


def test_a_judge_base_url_that_is_not_http_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_JUDGE_BASE_URL", "file:///etc")
    with pytest.raises(JudgeError, match="http"):
        OpenAIJudge(model="gpt-4", api_key_env="BENCH_TEST_KEY", cache_dir=tmp_path)
