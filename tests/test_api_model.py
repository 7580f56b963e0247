"""API-served models (``--model openai:<name> --base-url URL``, bench/models/api.py, bench/eval/api.py) against a
fake OpenAI-compatible server on 127.0.0.1 that answers POPE questions from the synthetic world's labels: scores,
request mapping, prediction cache, retries, clean one-line failures, key hygiene, training refused."""

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.cli import main

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-apitest-SECRET-0123456789"


def _pope_answers(root: Path) -> dict:
    """(sha256 of the image bytes, question) -> "yes"/"no" from the synthetic world's POPE files."""
    answers = {}
    for f in sorted((root / "pope" / "v3").glob("coco_pope_*.json")):
        for line in f.read_text().splitlines():
            q = json.loads(line)
            digest = hashlib.sha256((root / "coco" / "val2014" / q["image"]).read_bytes()).hexdigest()
            answers[(digest, q["text"])] = q["label"]
    return answers


class FakeServer:
    """``script``: one action per chat request (then ``truth``): ``truth`` (the label as "Yes, there is …" /
    "No, …"), ``429:<retry-after>``, ``500``, ``bad-json``, ``401-echo`` (echoes the bearer key)."""

    def __init__(self, answers: dict):
        self.answers, self.script, self.seen, self.gets = answers, [], [], 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the preflight
                server.gets += 1
                self._send(200, {"object": "list", "data": [{"id": "test"}]})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                action = server.script.pop(0) if server.script else "truth"
                kind, _, arg = action.partition(":")
                if kind == "truth":
                    parts = body["messages"][0]["content"]
                    data = base64.b64decode(parts[0]["image_url"]["url"].split(",", 1)[1])
                    label = server.answers[(hashlib.sha256(data).hexdigest(), parts[1]["text"])]
                    text = "Yes, there is." if label == "yes" else "No, there is not."
                    self._send(200, {"model": "served/test-7b", "choices": [{"message": {"content": text}}]})
                elif kind == "429":
                    self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": arg})
                elif kind == "500":
                    self._send(500, {"error": {"message": "boom"}})
                elif kind == "bad-json":
                    self._send(200, b"{not json")
                elif kind == "401-echo":
                    key = self.headers.get("Authorization", "")[7:]
                    self._send(401, {"error": {"message": f"Incorrect API key provided: {key}"}})

            def _send(self, status, payload, headers=None):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def answers(synthetic_root):
    return _pope_answers(synthetic_root)


@pytest.fixture()
def server(answers):
    s = FakeServer(answers)
    yield s
    s.close()


@pytest.fixture()
def sleeps(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr("bench.openai_client._sleep", waits.append)
    return waits


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def _n_items(root, images):
    """How many POPE items ``--limit images`` selects (every question about the first ``images`` images)."""
    from bench.benchmark import select_items
    from bench.plugins import load_plugins
    from bench.registry import BENCHMARKS

    load_plugins()
    return len(select_items(BENCHMARKS.get("pope")().items(root), images))


def _eval(server_url, root, out, *extra, limit=2, model="openai:test"):
    return main(["eval", "--model", model, "--base-url", server_url, "--benchmarks", "pope", "--data-root",
                 str(root), "--out", str(out), "--limit", str(limit), "--quiet", *extra])


def _files_mention(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_pope_through_a_served_model_scores_its_answers(server, synthetic_root, tmp_path, sleeps):
    assert _eval(server.url, synthetic_root, tmp_path, "eval.api.concurrency=3") == 0
    run = tmp_path / "openai-test" / "base"
    score = json.loads((run / "scores" / "pope.json").read_text())
    n = _n_items(synthetic_root, 2)
    assert score["n"] == n and score["metrics"]["random/accuracy"] == 1.0
    assert all(p["parsed"] == p["label"] for p in score["details"]["per_item"])
    assert score["metrics"]["random/yes_ratio"] == pytest.approx(
        sum(p["label"] == "yes" for p in score["details"]["per_item"] if p["id"].startswith("random/"))
        / sum(p["id"].startswith("random/") for p in score["details"]["per_item"]))
    # the request: image first as a data URL of the file's bytes, then the protocol's question; greedy, 512 tokens
    from bench.registry import BENCHMARKS

    from bench.benchmark import select_items

    items = select_items(BENCHMARKS.get("pope")().items(synthetic_root), 2)
    expected = sorted((hashlib.sha256(Path(it.image).read_bytes()).hexdigest(), it.question) for it in items)
    assert len(server.seen) == n and server.gets == 1
    sent = []
    for req in server.seen:
        body = req["body"]
        assert req["path"] == "/v1/chat/completions" and req["auth"] == f"Bearer {KEY}"
        assert body["model"] == "test" and body["temperature"] == 0.0 and body["max_tokens"] == 512
        image_part, text_part = body["messages"][0]["content"]
        head, data = image_part["image_url"]["url"].split(",", 1)
        assert head == "data:image/png;base64" and text_part["type"] == "text"
        sent.append((hashlib.sha256(base64.b64decode(data)).hexdigest(), text_part["text"]))
    assert sorted(sent) == expected  # each item once: its own image file's bytes and its question
    rec = json.loads((run / "run.json").read_text())
    assert rec["model"] == "openai-test" and rec["api"]["base_url"] == server.url
    assert rec["api"]["served_models"] == ["served/test-7b"] and rec["benchmarks"]["pope"]["generation"]["requests"] == n
    assert _files_mention(tmp_path, KEY) == [] and _files_mention(tmp_path, KEY[:16]) == []


def test_rerun_is_served_from_the_cache_and_the_key_names_the_endpoint(server, answers, synthetic_root, tmp_path,
                                                                       sleeps):
    n = _n_items(synthetic_root, 1)
    assert _eval(server.url, synthetic_root, tmp_path, limit=1) == 0
    pred = tmp_path / "openai-test" / "base" / "predictions" / "pope.jsonl"
    first = pred.read_text()
    assert _eval(server.url, synthetic_root, tmp_path, limit=1) == 0
    assert len(server.seen) == n and pred.read_text() == first  # nothing asked twice
    other = FakeServer(answers)  # same name, another endpoint: not the same model for the cache
    try:
        assert _eval(other.url, synthetic_root, tmp_path, limit=1) == 0
        assert len(other.seen) == n
    finally:
        other.close()
    from bench.models.api import ApiModel

    fps = {ApiModel("openai:a", "http://h:1/v1").fingerprint(), ApiModel("openai:a", "http://h:2/v1").fingerprint(),
           ApiModel("openai:b", "http://h:1/v1").fingerprint()}
    assert len(fps) == 3


def test_429_and_500_are_retried_honouring_retry_after_then_succeed(server, synthetic_root, tmp_path, sleeps):
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    server.script = ["429:7", "500", f"429:{when}", "truth"]
    assert _eval(server.url, synthetic_root, tmp_path, "eval.api.concurrency=1", "eval.api.backoff_s=1", limit=1) == 0
    assert sleeps[0] == 7.0 and sleeps[1] == 2.0 and 25.0 <= sleeps[2] <= 30.0  # Retry-After s, backoff, HTTP-date
    n = _n_items(synthetic_root, 1)
    assert len(server.seen) == 3 + n
    score = json.loads((tmp_path / "openai-test" / "base" / "scores" / "pope.json").read_text())
    assert score["n"] == n and score["metrics"]["random/accuracy"] == 1.0


@pytest.mark.parametrize("action,reason", [("500", r"gave up after 3 attempts \(HTTP 500\)"),
                                           ("bad-json", r"gave up after 3 attempts \(malformed reply body")])
def test_persistent_failure_is_one_line_naming_the_item(server, synthetic_root, tmp_path, sleeps, capsys, action,
                                                        reason):
    import re

    server.script = ["truth", "truth"] + [action] * 50
    rc = _eval(server.url, synthetic_root, tmp_path, "eval.api.concurrency=1", "eval.api.max_retries=3", limit=1)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("error: pope item random/") and re.search(reason, err[0]) and KEY not in err[0]
    pred = tmp_path / "openai-test" / "base" / "predictions" / "pope.jsonl"
    assert len(pred.read_text().splitlines()) == 2  # the answered items stay cached for the rerun


def test_the_real_cli_fails_in_one_error_line_and_never_prints_the_key(server, synthetic_root, tmp_path):
    server.script = ["401-echo"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENAI_API_KEY": KEY}
    proc = subprocess.run([sys.executable, "-m", "bench", "eval", "--model", "openai:test", "--base-url", server.url,
                           "--benchmarks", "pope", "--data-root", str(synthetic_root), "--out", str(tmp_path),
                           "--limit", "1", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "HTTP 401" in lines[0] and "Incorrect API key provided" in lines[0]
    assert KEY not in proc.stderr + proc.stdout and KEY[:16] not in proc.stderr
    assert _files_mention(tmp_path, KEY) == []


def test_unreachable_endpoint_fails_before_any_work(synthetic_root, tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = _eval(f"http://127.0.0.1:{port}/v1", synthetic_root, tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "cannot reach the model endpoint" in err[0]
    assert not any(tmp_path.rglob("*"))
    from bench.openai_client import check_reachable

    assert "cannot reach" in check_reachable(f"http://127.0.0.1:{port}/v1")
    assert "expected http(s)" in check_reachable("localhost:8000")


def test_reachable_check_accepts_any_http_answer(server):
    from bench.openai_client import check_reachable

    assert check_reachable(server.url) is None and server.gets == 1


def test_training_beam_protocols_and_adapters_are_refused(server, synthetic_root, tmp_path, capsys):
    def error(argv):
        assert main(argv) == 2
        return capsys.readouterr().err.strip()

    base = ["--model", "openai:test", "--data-root", str(synthetic_root), "--out", str(tmp_path), "--quiet"]
    assert "cannot train it" in error(["train", "--method", "dpo", *base])
    assert "pass --methods base" in error(["run", "--methods", "dpo", "--base-url", server.url, *base])
    assert "beam search" in error(["eval", "--benchmarks", "shr", "--base-url", server.url, *base])
    assert "--adapter does not apply" in error(["eval", "--benchmarks", "pope", "--adapter", str(tmp_path),
                                                "--base-url", server.url, *base])
    assert "--base-url applies to API-served models" in error(["eval", "--model", "tiny-llava", "--base-url",
                                                               server.url, "--benchmarks", "pope"])
    assert "credentials" in error(["eval", "--benchmarks", "pope", "--base-url",
                                   f"http://user:{KEY}@127.0.0.1:1/v1", *base])
    assert server.seen == [] and _files_mention(tmp_path, KEY) == []


def test_run_with_methods_base_evaluates_the_served_model(server, synthetic_root, tmp_path, sleeps):
    assert main(["run", "--model", "openai:test", "--base-url", server.url, "--methods", "base", "--benchmarks", "pope",
                 "--data-root", str(synthetic_root), "--out", str(tmp_path), "--quiet", "eval.limit=1"]) == 0
    score = json.loads((tmp_path / "openai-test" / "base" / "scores" / "pope.json").read_text())
    assert score["n"] == _n_items(synthetic_root, 1) and score["metrics"]["random/accuracy"] == 1.0
    assert (tmp_path / "leaderboard.md").exists() and "openai-test" in (tmp_path / "leaderboard.md").read_text()
    assert _files_mention(tmp_path, KEY) == []
