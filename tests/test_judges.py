"""Judge client against a stub server on 127.0.0.1: retries, Retry-After, errors, cache, key hygiene."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from bench.errors import BenchError
from bench.judges import AnnotationJudge, OpenAIJudge
from metrics.shr import build_prompt, parse_judgement, render_regions, split_sentences, template


class _Stub(BaseHTTPRequestHandler):
    script: list = []
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Stub.seen.append((self.headers.get("Authorization"), body["model"]))
        kind = _Stub.script.pop(0) if _Stub.script else "ok"
        if kind == "429":
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.end_headers()
        elif kind == "500":
            self.send_response(500)
            self.end_headers()
        elif kind == "bad-json":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{not json")
        elif kind == "401":
            self.send_response(401)
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"choices": [{"message": {"content": "Judgement:\n1. correct: ok"}}]}).encode())

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = HTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Stub.seen.clear()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def _judge(url, tmp_path, **kw):
    return OpenAIJudge(model="gpt-4", base_url=url, api_key_env="BENCH_TEST_KEY", cache_dir=tmp_path, **kw)


def test_retries_429_500_and_malformed_json_then_caches(server, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_KEY", "sk-secret-123")
    monkeypatch.setattr("time.sleep", lambda s: None)
    _Stub.script = ["429", "500", "bad-json", "ok"]
    judge = _judge(server, tmp_path)
    assert judge("prompt A") == "Judgement:\n1. correct: ok"
    assert judge.requests == 4 and _Stub.seen[0] == ("Bearer sk-secret-123", "gpt-4")
    again = _judge(server, tmp_path)  # a rerun pays nothing twice
    assert again("prompt A") == "Judgement:\n1. correct: ok" and again.requests == 0 and again.cache.hits == 1
    assert "sk-secret-123" not in (tmp_path / "judge_replies.jsonl").read_text()


def test_gives_up_after_bounded_retries_without_leaking_the_key(server, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_KEY", "sk-secret-123")
    monkeypatch.setattr("time.sleep", lambda s: None)
    _Stub.script = ["500"] * 10
    with pytest.raises(BenchError) as err:
        _judge(server, tmp_path, max_retries=3)("prompt B")
    assert "gave up after 3 attempts (HTTP 500)" in str(err.value) and "sk-secret" not in str(err.value)
    _Stub.script = ["401"]
    with pytest.raises(BenchError, match="HTTP 401"):
        _judge(server, tmp_path)("prompt C")


def test_timeout_is_retried(tmp_path, monkeypatch):
    import socket

    monkeypatch.setenv("BENCH_TEST_KEY", "k")
    monkeypatch.setattr("time.sleep", lambda s: None)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)  # accepts connections, never answers
    judge = _judge(f"http://127.0.0.1:{silent.getsockname()[1]}/v1", tmp_path, timeout=0.2, max_retries=2)
    with pytest.raises(BenchError, match="gave up after 2 attempts"):
        judge("prompt D")
    silent.close()


def test_missing_key_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_TEST_KEY", raising=False)
    with pytest.raises(BenchError, match=r"\$BENCH_TEST_KEY"):
        _judge("http://127.0.0.1:9/v1", tmp_path)("prompt")


def test_prompt_renders_byte_for_byte():
    regions = render_regions([{"x": 100, "y": 150, "width": 200, "height": 300, "phrase": "a brown dog"},
                              {"x": 0, "y": 0, "width": 5, "height": 5, "phrase": ""}], 800, 600)
    assert regions == "[0.12, 0.25, 0.38, 0.75]: a brown dog\n"
    kept, repeated = split_sentences("A dog runs. A dog runs. dog runs. It is 3.5 m tall!")
    assert kept == ["A dog runs", "It is 3", "5 m tall!"] and repeated
    prompt = build_prompt(regions, "Fact.\n", kept)
    assert prompt == template().format(regions, "Fact.\n", "1. A dog runs\n2. It is 3\n3. 5 m tall!\n")


def test_judgement_parsing_edge_cases():
    assert parse_judgement("Judgement:\n1. Correct: yes\n\n2. hallucination: no: really", 2)[0] == ["correct", "hallucination"]
    labels, _, problem = parse_judgement("Judgement\n1. correct: x", 1)
    assert labels == [None] and problem == "no 'Judgement:' line"
    labels, _, problem = parse_judgement("Judgement:\n1. correct: x\nOverall fine.", 1)
    assert labels == [None] and "2 judgement lines for 1 sentences" in problem


def test_annotation_judge_labels_object_mentions(tmp_path):
    regions = render_regions([{"x": 0, "y": 0, "width": 10, "height": 10, "phrase": "a brown dog"}], 20, 20)
    prompt = build_prompt(regions, "There is a cup.\n", ["A dog and two cups", "A giraffe", "It is sunny"])
    reply = AnnotationJudge(cache_dir=tmp_path)(prompt)
    labels, _, problem = parse_judgement(reply, 3)
    assert problem is None and labels == ["correct", "hallucination", "cannot judge"]
