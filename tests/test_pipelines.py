"""Data pipelines end to end on the synthetic world with the offline feedback model (outputs load with the
methods' loaders), the offline feedback model's rules, and the vision chat client against a stub server."""

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.data.pipelines import PIPELINES, BuildOptions, coco_source, format_summary, run_pipeline
from bench.data.pipelines.hsa_dpo import aggregate_severity, detection_answer
from bench.data.pipelines.opa_dpo import repeats_last_sentence, repeats_last_word, severity_to_score
from bench.data.synthetic import BIAS_PAIRS
from bench.errors import BenchError
from bench.feedback import (AnnotationFeedback, FeedbackError, ImageAnnotations, OpenAIFeedback, VisionChatClient,
                            make_feedback, parse_json_reply)
from bench.text import find_mentions, split_at_breaks


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def source(synthetic_root):
    return coco_source(synthetic_root, "train", limit=16, seed=0)


class FakeModel:
    """Deterministic stand-in for a checkpoint: lists the annotated objects and, like the biased tiny
    model, adds the absent partner of an anchor; answers "Yes" to every yes/no question."""

    def __init__(self, src, fail_after=None):
        self.objects = {a.image: list(a.objects) for a in src.images}
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, images, prompts):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        out = []
        for im, p in zip(images, prompts):
            if p.startswith("Is there"):
                out.append("Yes, there is.")
                continue
            objs = self.objects[im]
            text = "The image shows " + ", ".join(f"a {o}" for o in objs[:-1]) + \
                (" and " if len(objs) > 1 else "") + f"a {objs[-1]}."
            extra = [BIAS_PAIRS[o] for o in objs if o in BIAS_PAIRS and BIAS_PAIRS[o] not in objs]
            if extra:
                text += f" There is a {extra[0]} next to the {objs[0]}."
            out.append(text)
        return out


def _build(name, src, out, generate=None, **kw):
    fb = AnnotationFeedback(cooccurrence=src.cooccurrence, frequency=src.frequency)
    opts = BuildOptions(out, fb, generate or FakeModel(src), "fake-model", progress=False, batch_size=4, **kw)
    return run_pipeline(PIPELINES.get(name)(), src, opts)


def _hallucinating(src):
    return sum(1 for a in src.images if any(o in BIAS_PAIRS and BIAS_PAIRS[o] not in a.objects for o in a.objects))


# ------------------------------------------------------------------------------------------ pipelines
def test_ha_dpo_pipeline_writes_desc_and_pope_data_that_the_ha_dpo_loader_reads(source, tmp_path):
    from bench.data.formats import load_hadpo
    from bench.registry import METHODS
    import methods  # noqa: F401

    s = _build("ha-dpo", source, tmp_path)
    assert s["kept"] == _hallucinating(source) > 0
    assert s["dropped_reasons"] == {"description has no hallucination": s["items"] - s["kept"]}
    desc = json.loads((tmp_path / "desc_data.json").read_text())
    pope = json.loads((tmp_path / "pope_data.json").read_text())
    fb = AnnotationFeedback()
    anns = {a.image_id: a for a in source.images}
    for key, entry in desc.items():
        assert len(entry["chosen"]) == len(entry["rejected"]) >= 2  # the pair + style-consistent variants
        for c, r in zip(entry["chosen"], entry["rejected"]):
            assert not fb.review(anns[key], c).hallucinated and fb.review(anns[key], r).hallucinated
        assert (tmp_path / f"{key}.png").exists()
    wrong = [r for r in pope if r["correct"] is False]
    assert wrong and all(r["chosen"].startswith("No, there is no") for r in wrong)  # the fake always says yes
    assert all(set(r) == {"image_id", "question", "chosen", "reject", "answer", "correct"} for r in pope)
    recs = load_hadpo(tmp_path / "desc_data.json", tmp_path / "pope_data.json", tmp_path)
    assert len(recs) == len(wrong) + 2 * len(desc) and all(Path(r.image).exists() for r in recs)
    assert len(METHODS.get("ha-dpo")().load_records(tmp_path, METHODS.get("ha-dpo").config_cls())) == len(recs)


def test_povid_pipeline_writes_the_released_conversation_format(source, tmp_path):
    s = _build("povid", source, tmp_path, generate=lambda *a: pytest.fail("POVID data needs no model"))
    assert s["generator"] is None and s["kept"] > 0
    rows = json.loads((tmp_path / "povid_preference.json").read_text())
    assert len(rows) == s["kept"]
    fb = AnnotationFeedback()
    anns = {Path(a.image).stem: a for a in source.images}
    for r in rows:
        assert set(r) == {"id", "image", "conversations", "rejected_conversations"} and r["id"].startswith("COCO_train2014_")
        assert r["conversations"][0] == r["rejected_conversations"][0] == {
            "from": "human", "value": "<image>\nDescribe this image in detail."}
        chosen, rejected = r["conversations"][1]["value"], r["rejected_conversations"][1]["value"]
        assert r["conversations"][1]["from"] == "gpt" and chosen != rejected
        assert not fb.review(anns[r["id"]], chosen).hallucinated and fb.review(anns[r["id"]], rejected).hallucinated
        assert (tmp_path / r["image"]).exists()
    import bench.data.formats as formats

    loader = getattr(formats, "load_povid", None)
    if loader is None:
        pytest.skip("bench/data/formats.py has no POVID loader (load_povid) yet; the released format was checked"
                    " field by field above against methods.md §2.3")
    recs = loader(tmp_path / "povid_preference.json", tmp_path)
    assert len(recs) == len(rows)


def test_hsa_dpo_pipeline_writes_weighted_pairs_and_detection_records(source, tmp_path):
    from bench.data.loaders import load_preference_file
    from bench.registry import METHODS
    import methods  # noqa: F401

    s = _build("hsa-dpo", source, tmp_path)
    assert s["kept"] == _hallucinating(source) > 0
    prefs = [json.loads(x) for x in (tmp_path / "hsa_dpo_preference.jsonl").read_text().splitlines()]
    assert [p["id"] for p in prefs] == list(range(len(prefs)))
    assert all(set(p) == {"id", "question", "chosen", "rejected", "rejected_score"} for p in prefs)
    assert all(p["rejected_score"] == 2.0 for p in prefs)  # partner sentence names a present anchor: Moderate
    dets = [json.loads(x) for x in (tmp_path / "hsa_dpo_detection.jsonl").read_text().splitlines()]
    answers = [d["conversations"][1]["value"] for d in dets]
    assert answers.count("NO HALLUCINATION") == len(dets) - len(prefs)
    flagged = [a for a in answers if a != "NO HALLUCINATION"]
    assert all(a.startswith("Tags:\n<object>\n1 . ") and "\nScores:\n<object>\n1 . " in a and ": Moderate (2 points): " in a
               for a in flagged)
    assert all(d["conversations"][0]["value"].startswith("<image>\nDescription to Assess:\n") for d in dets)
    assert all((tmp_path / d["image"]).exists() for d in dets)
    recs = load_preference_file(tmp_path / "hsa_dpo_preference.jsonl")
    assert len(recs) == len(prefs) and all(Path(r.image).exists() and r.rejected_score == 2.0 for r in recs)
    assert len(METHODS.get("hsa-dpo")().load_records(tmp_path / "hsa_dpo_preference.jsonl", None)) == len(recs)


def test_opa_dpo_pipeline_writes_records_that_the_opa_loader_reads(source, tmp_path):
    from bench.data.formats import load_opa

    s = _build("opa-dpo", source, tmp_path)
    assert s["kept"] == s["items"] - sum(s["dropped_reasons"].values()) > 0
    rows = [json.loads(x) for x in (tmp_path / "opadpo_data.jsonl").read_text().splitlines()]
    assert all(isinstance(r["AI_json_report"], str) for r in rows)
    report = json.loads(rows[0]["AI_json_report"])
    assert {"image_description", "0", "Added"} <= set(report)
    assert set(report["0"]) == {"copied_content", "score", "error_type", "object", "rewritten_content", "reason"}
    recs = load_opa(tmp_path / "opadpo_data.jsonl")
    assert len(recs) == len(rows) and all(Path(r.image).exists() for r in recs)
    revised = [r for r in recs if any(x["score"] < 4 for x in r.extra["sentences"])]
    assert len(revised) == _hallucinating(source) == s["outputs"]["opadpo_data.jsonl (revised rollouts)"]
    for r, row in zip(recs, rows):
        assert r.extra["revision"] == row["AI_pseudo_response"]
        assert all(x["error_type"] == ("correct" if x["score"] == 4 else "image_recognition_error")
                   for x in r.extra["sentences"])
    sft = [json.loads(x) for x in (tmp_path / "opa_data.jsonl").read_text().splitlines()]
    assert [x["id"] for x in sft] == [r["id"] for r in rows]


def test_a_rerun_reuses_every_cached_item_and_a_killed_build_resumes(source, tmp_path):
    model = FakeModel(source, fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        _build("hsa-dpo", source, tmp_path, generate=model)
    cached = (tmp_path / "cache").glob("items-*.jsonl")
    assert sum(len(p.read_text().splitlines()) for p in cached) == 4  # the first batch survived the kill
    model = FakeModel(source)
    s = _build("hsa-dpo", source, tmp_path, generate=model)
    assert s["cache"] == {"file": s["cache"]["file"], "reused": 4, "new": s["items"] - 4}
    assert model.calls == (s["items"] - 4 + 3) // 4
    again = FakeModel(source)
    s2 = _build("hsa-dpo", source, tmp_path, generate=again)
    assert again.calls == 0 and s2["cache"]["reused"] == s2["items"] and s2["kept"] == s["kept"]
    other = FakeModel(source)  # another option = another cache file, nothing stale reused
    s3 = _build("hsa-dpo", source, tmp_path, generate=other, params={"score": "sum"})
    assert other.calls > 0 and s3["config_hash"] != s["config_hash"]


def test_summary_names_kept_and_dropped_items_and_why(source, tmp_path):
    (tmp_path / "missing.png").unlink(missing_ok=True)
    src = coco_source(Path(source.images[0].image).parents[2], "train", limit=6, seed=3)
    src.images[0].image = str(tmp_path / "missing.png")
    s = _build("hsa-dpo", src, tmp_path)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == s and s["dropped_reasons"]["image file missing"] == 1
    assert s["kept"] + s["dropped"] == s["items"] == 6
    text = format_summary(s)
    assert "image file missing" in text and "hsa_dpo_preference.jsonl" in text


def test_build_options_are_validated(source, tmp_path):
    with pytest.raises(BenchError, match="unknown rejected_score aggregation"):
        _build("hsa-dpo", source, tmp_path, params={"score": "median"})
    with pytest.raises(BenchError, match="needs a model"):
        fb = AnnotationFeedback()
        run_pipeline(PIPELINES.get("hsa-dpo")(), source, BuildOptions(tmp_path, fb, None, progress=False))


# ------------------------------------------------------------------------------------------ offline feedback model
def _ann(counts=True):
    return ImageAnnotations("1", "x.png", {"dog": 1, "cup": 1, "chair": 2}, counts_known=counts)


def test_object_words_use_chair_synonyms_longest_match_and_plurals():
    m = find_mentions("Two hot dogs, a teddy bear and buses near the dining tables; people wait.")
    assert [(x.text, x.head, x.plural) for x in m] == [("hot dogs", "hot dog", True), ("teddy bear", "teddy bear", False),
                                                      ("buses", "bus", True), ("dining tables", "dining table", True),
                                                      ("people", "person", True)]
    assert split_at_breaks("A dog. A cup!\nA chair?  ") == ["A dog.", "A cup!", "A chair?"]


def test_review_replaces_removes_or_drops_hallucinated_objects_with_severity():
    fb = AnnotationFeedback(add_missing=0)
    r = fb.review(_ann(), "The image shows a dog and a bottle.")  # spare present object: replaced
    assert r.corrected() == "The image shows a dog and a cup." and r.sentences[0].severity == 2
    assert r.findings[0].wrong == "bottle" and r.findings[0].right == "cup"
    r = fb.review(_ann(), "The image shows a dog, a cup, two chairs and a bottle. A couch stands there.")
    assert r.corrected() == "The image shows a dog, a cup and two chairs." and r.hallucinated_objects() == ["bottle", "couch"]
    assert [s.severity for s in r.sentences] == [2, 3] and r.sentences[1].rewritten == ""
    r = fb.review(_ann(), "Three chairs are next to a dog.")  # count error: attribute, Minor
    assert r.corrected() == "Two chairs are next to a dog." and (r.sentences[0].type, r.sentences[0].severity) == ("attribute", 1)
    r = fb.review(_ann(counts=False), "Three chairs are next to a dog.")  # no counts (VG): not judged
    assert not r.hallucinated
    r = fb.review(_ann(), "There is no bottle. There is no dog.")  # negations
    assert [s.hallucinated for s in r.sentences] == [False, True] and r.sentences[1].severity == 3
    r = AnnotationFeedback(add_missing=2).review(_ann(), "A dog.")
    assert r.added == "There is also a cup and a chair in the image." and r.corrected(with_added=True).endswith(r.added)


def test_injection_adds_a_co_occurring_absent_object_that_review_detects():
    fb = AnnotationFeedback(cooccurrence={"cup": Counter({"bottle": 9}), "dog": Counter({"cat": 2})})
    text = "The image shows a dog, a cup and two chairs."
    kinds = set()
    for seed in range(12):
        inj = fb.inject(_ann(), text, seed=seed)
        assert inj.text != text and fb.review(_ann(), inj.text).hallucinated
        kinds.add(inj.injected[0].kind)
    assert kinds == {"object", "attribute"}
    assert fb.inject(_ann(), text, seed=0).text == fb.inject(_ann(), text, seed=0).text  # deterministic
    assert "bottle" in fb.candidates(_ann())[0]


def test_style_rewrites_change_both_sides_alike_and_keep_their_status():
    fb = AnnotationFeedback()
    pairs = fb.restyle_pair(_ann(), "The image shows a dog. There is a cup.", "The image shows a dog. There is a bottle.", 3)
    assert len(pairs) == 3
    for c, r in pairs:
        assert c.replace("cup", "X") == r.replace("bottle", "X")
        assert not fb.review(_ann(), c).hallucinated and fb.review(_ann(), r).hallucinated


def test_severity_aggregation_detection_text_and_opa_scores():
    assert aggregate_severity([1, 3, 2], "max") == 3.0 and aggregate_severity([1, 3, 2], "mean") == 2.0
    assert aggregate_severity([1, 3, 2], "sum") == 6.0
    with pytest.raises(BenchError):
        aggregate_severity([1], "median")
    r = AnnotationFeedback(add_missing=0).review(_ann(), "A dog. A couch.")
    assert detection_answer(r, 0) == "NO HALLUCINATION"
    assert detection_answer(r, 1) == ("Tags:\n<object>\n1 . no couch is annotated in the image\nScores:\n<object>\n"
                                      "1 . couch: Major (3 points): no couch is annotated in the image")
    assert [severity_to_score(s) for s in (0, 1, 2, 3)] == [4, 3, 2, 1]
    assert repeats_last_sentence("A dog sits. A cat. A dog sits.") and not repeats_last_sentence("A dog. A cat.")
    assert repeats_last_word(" ".join(["cat"] * 33)) and not repeats_last_word("a cat")


def test_feedback_registry_names_both_models():
    from bench.feedback import FEEDBACK

    assert FEEDBACK.names() == ["annotation", "openai"]
    assert isinstance(make_feedback("annotation"), AnnotationFeedback)
    with pytest.raises(BenchError, match="unknown feedback model 'gpt'"):
        make_feedback("gpt")


# ------------------------------------------------------------------------------------------ vision chat client
class _Stub(BaseHTTPRequestHandler):
    script: list = []
    seen: list = []
    reply = "ok"

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Stub.seen.append((self.headers.get("Authorization"), body))
        kind = _Stub.script.pop(0) if _Stub.script else "ok"
        if kind == "429":
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind == "500":
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind == "timeout":
            time.sleep(1.6)
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind == "bad-json":
            self.send_response(200)
            self.send_header("Content-Length", "9")
            self.end_headers()
            self.wfile.write(b"{not json")
        elif kind == "400":
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            reply = _Stub.reply(body) if callable(_Stub.reply) else _Stub.reply
            data = json.dumps({"choices": [{"message": {"content": reply}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def stub():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Stub.seen, _Stub.script, _Stub.reply = [], [], "ok"
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def image(tmp_path):
    from PIL import Image

    p = tmp_path / "img.png"
    Image.new("RGB", (4, 3), (1, 2, 3)).save(p)
    return p


def _client(url, cache, **kw):
    kw = {"timeout": 1.0, "backoff": 0.0, **kw}
    return VisionChatClient(model="gpt-4o", base_url=url, api_key_env="BENCH_TEST_KEY", cache_dir=cache, **kw)


def test_client_retries_429_500_timeout_and_malformed_json_then_caches(stub, tmp_path, image, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_KEY", "sk-secret-456")
    _Stub.script = ["429", "500", "timeout", "bad-json", "ok"]
    c = _client(stub, tmp_path / "cache")
    assert c.chat("Describe.", [image], system="Be exact.") == "ok"
    assert c.requests == 5 and len(_Stub.seen) == 5
    auth, body = _Stub.seen[-1]
    assert auth == "Bearer sk-secret-456" and body["model"] == "gpt-4o"
    assert body["messages"][0] == {"role": "system", "content": "Be exact."}
    content = body["messages"][1]["content"]
    assert content[0] == {"type": "text", "text": "Describe."}
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,iVBOR")
    again = _client(stub, tmp_path / "cache")  # a rerun pays nothing twice
    assert again.chat("Describe.", [image], system="Be exact.") == "ok" and again.requests == 0
    assert len(_Stub.seen) == 5 and again.cache.hits == 1
    assert "sk-secret" not in (tmp_path / "cache" / "feedback_replies.jsonl").read_text()


def test_client_cache_key_covers_the_image_and_works_without_a_key(stub, tmp_path, image, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_KEY", "k")
    _client(stub, tmp_path).chat("Describe.", [image])
    monkeypatch.delenv("BENCH_TEST_KEY")
    assert _client(stub, tmp_path).chat("Describe.", [image]) == "ok"  # cached: no key needed
    from PIL import Image

    Image.new("RGB", (4, 3), (9, 9, 9)).save(image)
    with pytest.raises(BenchError, match=r"set the API key in \$BENCH_TEST_KEY"):
        _client(stub, tmp_path).chat("Describe.", [image])


def test_client_gives_up_after_bounded_retries_and_fails_fast_on_4xx(stub, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_KEY", "sk-secret-456")
    _Stub.script = ["500"] * 5
    with pytest.raises(BenchError, match=r"gave up after 3 attempts \(HTTP 500\)") as err:
        _client(stub, None, max_retries=3).chat("x")
    assert "sk-secret" not in str(err.value)
    _Stub.script = ["timeout"] * 2
    with pytest.raises(BenchError, match=r"gave up after 2 attempts \(timeout"):
        _client(stub, None, max_retries=2).chat("y")
    _Stub.script = ["400"]
    n = len(_Stub.seen)
    with pytest.raises(BenchError, match="HTTP 400"):
        _client(stub, None).chat("z")
    assert len(_Stub.seen) == n + 1


def test_client_honours_retry_after_and_the_minimum_interval(stub, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_KEY", "k")
    sleeps = []
    monkeypatch.setattr("bench.openai_client._sleep", lambda s: sleeps.append(s))
    _Stub.script = ["429", "ok"]
    _client(stub, None, backoff=5.0).chat("a")
    assert sleeps[0] == 0.0  # Retry-After: 0 wins over the 5 s backoff
    c = _client(stub, None, min_interval=10.0)
    c.chat("b")
    c.chat("c")
    assert any(s > 9 for s in sleeps)


def test_json_replies_are_parsed_from_fences_and_garbage_is_a_feedback_error():
    assert parse_json_reply('Sure!\n```json\n{"a": [1, 2]}\n```') == {"a": [1, 2]}
    assert parse_json_reply('prefix {"b": 1} suffix') == {"b": 1}
    for bad in ("no json here", '{"a": ', "[1, 2]"):
        with pytest.raises(FeedbackError):
            parse_json_reply(bad)


def _review_reply(body):
    text = body["messages"][-1]["content"][0]["text"]
    if "Return JSON: {\"variants\"" in text:
        return json.dumps({"variants": []})
    numbered = [ln for ln in text.split("one sentence per line:\n", 1)[1].split("\n\nReturn JSON")[0].splitlines()]
    rows = []
    for ln in numbered:
        n, sent = ln.split(". ", 1)
        bad = "next to" in sent
        rows.append({"index": int(n), "hallucinated": bad, "type": "object" if bad else None,
                     "severity": 3 if bad else 0, "objects": ["partner -> (none)"] if bad else [],
                     "reason": "absent" if bad else "", "rewritten": "" if bad else sent})
    return "```json\n" + json.dumps({"sentences": rows, "added": ""}) + "\n```"


def test_api_feedback_model_drives_a_pipeline_through_the_stub(stub, source, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_KEY", "k")
    _Stub.reply = _review_reply
    fb = OpenAIFeedback(base_url=stub, api_key_env="BENCH_TEST_KEY", cache_dir=tmp_path / "cache", timeout=5,
                        backoff=0.0)
    opts = BuildOptions(tmp_path, fb, FakeModel(source), "fake", progress=False, batch_size=8)
    s = run_pipeline(PIPELINES.get("hsa-dpo")(), source, opts)
    assert s["kept"] == _hallucinating(source) and s["feedback"].startswith("openai:vision:gpt-4o")
    prefs = [json.loads(x) for x in (tmp_path / "hsa_dpo_preference.jsonl").read_text().splitlines()]
    assert all(p["rejected_score"] == 3.0 and "next to" not in p["chosen"] for p in prefs)
    assert all(m[1]["messages"][1]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
               for m in _Stub.seen)
    n = len(_Stub.seen)
    (tmp_path / "cache" / f"{s['cache']['file'].split('/')[-1]}").unlink()  # drop the item cache: replies stay cached
    run_pipeline(PIPELINES.get("hsa-dpo")(), source, opts)
    assert len(_Stub.seen) == n
    _Stub.reply = "not json"
    bad = OpenAIFeedback(base_url=stub, api_key_env="BENCH_TEST_KEY", timeout=5, backoff=0.0)
    with pytest.raises(FeedbackError, match="no JSON object"):
        bad.review(source.images[0], "A dog.")


# ------------------------------------------------------------------------------------------ yes/no questions
def test_object_questions_ask_about_the_most_co_occurring_absent_objects(source):
    from bench.data.pipelines.questions import asked_object, object_questions

    for ann in source.images:
        qs = object_questions(ann, source, 2)
        asked = [asked_object(q) for q in qs]
        assert all(q.startswith("Is there ") and q.endswith(" in the image?") for q in qs)
        assert not set(asked) & ann.present()
        best = max((source.cooccurrence.get(p, {}).get(o, 0) for p in ann.present() for o in [asked[0]]), default=0)
        others = [source.cooccurrence.get(p, {}).get(o, 0) for p in ann.present()
                  for o in source.frequency if o not in ann.present()]
        assert best == max(others)
    assert object_questions(source.images[0], source, 0) == []


def test_yes_no_answers_become_claims_and_ground_truth_comes_from_the_annotations():
    from bench.data.pipelines.questions import answer_word, as_statement, ground_truth_answer, review_answer

    ann = ImageAnnotations("1", "x.png", {"dog": 1, "dining table": 1}, counts_known=True)
    assert answer_word("Yes, there is.") == "yes" and answer_word(" no.") == "no" and answer_word("maybe") is None
    assert as_statement("Is there a couch in the image?", "Yes") == "There is a couch in the image."
    assert as_statement("Is there an apple in the image?", "No.") == "There is no apple in the image."
    assert as_statement("What is this?", "Yes") is None
    assert ground_truth_answer(ann, "Is there a dining table in the image?") == "Yes"
    assert ground_truth_answer(ann, "Is there a couch in the image?") == "No"
    fb = AnnotationFeedback()
    assert review_answer(fb, ann, "Is there a couch in the image?", "Yes").hallucinated
    assert not review_answer(fb, ann, "Is there a couch in the image?", "No").hallucinated
    assert not review_answer(fb, ann, "Is there a dog in the image?", "Yes").hallucinated


@pytest.mark.parametrize("name", ["povid", "hsa-dpo", "opa-dpo"])
def test_question_items_make_no_over_yes_pairs_that_the_method_loaders_read(name, source, tmp_path):
    from bench.data.formats import load_any

    summary = _build(name, source, tmp_path, params={"questions": 1})
    assert summary["items"] == 2 * len(source.images)
    records = load_any(tmp_path / PIPELINES.get(name).output)
    qa = [r for r in records if r.question.startswith("Is there")]
    assert qa, "no yes/no records"
    for r in qa:
        assert r.chosen in ("No", "Yes") and r.rejected.startswith("Yes")
        assert r.chosen == "No" or name == "opa-dpo"  # opa keeps correct rollouts (chosen = the rollout)
        assert Path(r.image).exists()
    # the same build without questions has only descriptions, and its cache is not reused
    plain = _build(name, source, tmp_path / "plain")
    assert plain["items"] == len(source.images) and plain["config_hash"] != summary["config_hash"]
