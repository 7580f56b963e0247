"""Object HalBench with GPT object extraction: the reference's prompt, request, reply parsing and re-asking,
object refinement, the judge cache and stored replies, bad replies reported with ids, the offline preflight,
separate protocols, and the parity fixture made by running the reference."""

import json
import shutil

import pytest

from bench.io import iter_jsonl, sha256_text
from bench.parity import run_parity
from bench.registry import BENCHMARKS
from metrics.objhal_gpt import (JUDGE_MODEL, NltkAnalyser, ObjHalGptNltkProtocol, ObjHalGptProtocol, SpacyAnalyser,
                                build_prompt, judge_objects, object_texts, parse_object_list, refine_objects,
                                template)
from tests.conftest import TEST_DATA, requires_nltk

FIXTURE = TEST_DATA / "parity" / "objhal-gpt"
START, END = "[Start of Examiner's Answer]\n\n", "\n\n[End of Examiner's Answer]"


def answer_of(prompt: str) -> str:
    return prompt.split(START, 1)[1].split(END, 1)[0]


class StubJudge:
    """Answers by the examiner's answer in the prompt: ``replies[answer][attempt]``; records every call."""

    def __init__(self, replies, judge_id="stub:extractor"):
        self.replies, self.judge_id, self.calls = replies, judge_id, []

    def __call__(self, prompt, attempt=0):
        self.calls.append((answer_of(prompt), attempt))
        queue = self.replies[answer_of(prompt)]
        return queue[min(attempt, len(queue) - 1)]


class NoCalls:
    judge_id = "stub:extractor"

    def __call__(self, prompt, attempt=0):
        raise AssertionError("the judge must not be asked when replies are stored")


def make_root(tmp_path, gt):
    """A data root with an Object HalBench question file and a fixed GT-object file (no COCO needed)."""
    rows = [{"image_id": i, "question": f"Describe image {i}.", "image": f"objhal/images/{i}.jpg"} for i in gt]
    (tmp_path / "objhal").mkdir(parents=True)
    (tmp_path / "objhal" / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "objhal" / "gt_objects.json").write_text(json.dumps({str(k): v for k, v in gt.items()}))
    return tmp_path


LONG = {1: "There is a dog and a cup on the table.", 2: "Assistant: A man holds a teddy bear near a toilet seat.",
        3: "Two cats sleep on a red sofa in the room."}


# ------------------------------------------------------------------------------------------ parity
@requires_nltk
def test_fixture_made_by_running_the_reference_passes():
    (res,) = run_parity(FIXTURE, TEST_DATA)
    assert res.name == "objhal-gpt/expected_gptA.json" and res.ok, res.first_diff


@requires_nltk
@pytest.mark.parametrize("edit", ["objects", "calls", "request"])
def test_parity_case_fails_on_a_changed_reference_output(tmp_path, edit):
    shutil.copytree(FIXTURE, tmp_path / "objhal-gpt")
    path = tmp_path / "objhal-gpt" / "expected_gptA.json"
    exp = json.loads(path.read_text())
    if edit == "objects":
        exp["objects"][2] = exp["objects"][2] + ["dog"]
    elif edit == "calls":
        sha = next(iter(exp["calls"]))
        exp["calls"][sha] += 1
    else:
        exp["request"]["temperature"] = 0.0
    path.write_text(json.dumps(exp))
    (res,) = run_parity(tmp_path, TEST_DATA)
    assert not res.ok and res.first_diff.startswith(edit), res.first_diff


def test_rule_based_parity_discoverer_leaves_gpt_cases_alone(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "objhal-gpt")
    from bench.parity import objhal

    assert objhal.discover(tmp_path, TEST_DATA) == []


# ------------------------------------------------------------------------------------------ prompt and replies
def test_prompt_is_the_reference_template_with_question_then_answer_substituted():
    assert sha256_text(template()).startswith("9d732f9b73a3cc96")
    prompt = build_prompt("What is {answer}?", "a dog")
    assert "<image> What is a dog?\n\n[End of Question]" in prompt and f"{START}a dog{END}" in prompt
    assert '["object_1", ..., "object_n"]' in prompt


@pytest.mark.parametrize("reply, expected", [
    ('["dog", "cat"]', (["dog", "cat"], True)),
    ('Here are the objects:\n["dog"]', (["dog"], True)),
    ("[]", ([], True)),
    ('{"objects": ["dog"]}', ({"objects": ["dog"]}, True)),
    ('```json\n["dog"]\n```', (None, False)),
    ('["dog"]\nThose are all.', (None, False)),
    ("()", (None, False)),
    ("The objects are a dog.", (None, False)),
    ("", (None, False)),
])
def test_reply_parsing_follows_the_reference(reply, expected):
    assert parse_object_list(reply) == expected


def test_parsed_value_is_iterated_as_python_does_and_scalars_are_unusable():
    assert object_texts(["dog", 2, ["cat"]]) == ["dog", "2", "['cat']"]
    assert object_texts({"objects": ["dog"]}) == ["objects"]
    assert object_texts("dog") == ["d", "o", "g"]
    assert object_texts(5) is None and object_texts(None) is None and object_texts(True) is None


@requires_nltk
def test_two_word_entries_win_over_noun_runs_and_objects_are_unique():
    nltk = NltkAnalyser()
    assert refine_objects(["man with a teddy bear", "dog", "two dogs", "wooden dining table", "bowl of fruit"],
                          nltk) == ["teddy bear", "dog", "dining table", "bowl", "fruit"]
    rec = judge_objects(["toilet", "seat", "cat", "sky"], "a b c d", ["toilet"])
    assert rec["mentions"] == ["toilet", "cat"] and rec["hallucinated"] == [["cat", "cat"]]
    assert rec["covered"] == ["toilet"] and rec["n_words"] == 4


def test_spacy_analyser_reads_each_tokens_lemma_and_tag():
    class Tok:
        def __init__(self, lemma, tag):
            self.lemma_, self.tag_ = lemma, tag

    spacy = SpacyAnalyser()
    spacy._nlp = lambda text: [Tok("a", "DT"), Tok("hot", "JJ"), Tok("dog", "NNS"), Tok("stand", "NN")]
    assert spacy("a hot dogs stand") == [("a", "DT"), ("hot", "JJ"), ("dog", "NNS"), ("stand", "NN")]
    assert refine_objects(["hot dogs stand"], spacy) == ["hot dog"]  # a two-word entry wins over the noun run


# ------------------------------------------------------------------------------------------ scoring
@requires_nltk
def test_short_answers_are_never_sent_and_long_ones_once(tmp_path):
    root = make_root(tmp_path / "d", {1: ["dog", "cup"], 2: ["person", "teddy bear"], 3: ["cat"], 4: ["dog"]})
    judge = StubJudge({LONG[1]: ['["dog", "cup", "table"]'], LONG[2].replace("Assistant:", "").strip():
                       ['["man", "teddy bear", "toilet seat"]'], LONG[3]: ['["cats", "red sofa", "room"]']})
    preds = [{"id": str(k), "text": t} for k, t in LONG.items()] + [{"id": "4", "text": "A dog here."}]
    s = ObjHalGptNltkProtocol().score(preds, root, judge=judge, n_boot=20)
    assert sorted(a for a, _ in judge.calls) == sorted(answer_of(build_prompt("q", a)) for a in
                                                       [LONG[1], LONG[2][len("Assistant: "):], LONG[3]])
    per = {d["id"]: d for d in s["details"]["per_item"]}
    assert per["4"]["objects"] == [] and per["4"]["short_answer"] and per["4"]["attempts"] == 0
    assert per["1"]["mentions"] == ["dog", "cup", "table"] and per["1"]["hallucinated"] == [["table", "dining table"]]
    assert per["2"]["objects"] == ["man", "teddy bear", "toilet"] and per["2"]["hallucinated"] == [["toilet", "toilet"]]
    assert per["3"]["mentions"] == ["cat", "sofa"]
    assert s["n"] == 4 and s["skipped"]["count"] == 0 and s["extraction"]["short"] == 1
    assert s["metrics"]["chair_s"] == pytest.approx(3 / 3) and s["metrics"]["chair_i"] == pytest.approx(3 / 8)
    assert s["reference"]["printed"]["Response Correct"] == 0.0 and set(s["ci"]) >= {"chair_s", "chair_i"}
    assert s["judge"]["model"] == JUDGE_MODEL and s["judge"]["settings"]["temperature"] == 0.2
    assert s["analyser"]["name"] == "nltk" and "nltk" in s["analyser"]


@requires_nltk
def test_malformed_replies_are_reasked_and_items_without_an_object_list_are_skipped_with_ids(tmp_path):
    from bench.judges import CachedJudge

    class Queue(CachedJudge):
        judge_id, version = "stub:queue", "3"

        def __init__(self, cache_dir, replies):
            super().__init__(cache_dir)
            self.replies, self.seen = replies, {}

        def reply_with_meta(self, prompt):
            answer = answer_of(prompt)
            i = self.seen[answer] = self.seen.get(answer, -1) + 1
            queue = self.replies[answer]
            return queue[min(i, len(queue) - 1)], {"model": "gpt-3.5-turbo-0613"}

        def reply(self, prompt):
            return self.reply_with_meta(prompt)[0]

    root = make_root(tmp_path / "d", {1: ["dog"], 2: ["cat"], 3: ["cat"]})
    judge = Queue(tmp_path / "cache", {LONG[1]: ["Sure: a dog and a cup.", '["dog"]'],
                                       LONG[2][len("Assistant: "):]: ["I see a man."],
                                       LONG[3]: ["5"]})
    preds = [{"id": str(k), "text": t} for k, t in LONG.items()] + [{"id": "99", "text": "x"}]
    s = ObjHalGptNltkProtocol().score(preds, root, judge=judge, cache_dir=tmp_path / "judge", n_boot=0)
    reasons = s["skipped"]["reasons"]
    assert "no parseable object list in 10 replies" in reasons["2"]
    assert "JSON int" in reasons["3"] and "id not in protocol" in reasons["99"]
    assert s["skipped"]["count"] == 3 and s["n"] == 1 and s["details"]["per_item"][0]["attempts"] == 2
    assert s["extraction"] == {"short": 0, "asked": 3, "replies": 13, "malformed": 11}
    cache = [r for _, r in iter_jsonl(tmp_path / "cache" / "judge_replies.jsonl")]
    first = sha256_text(build_prompt("Describe image 1.", LONG[1]))
    assert {(r["prompt_sha256"], r["attempt"]) for r in cache} >= {(first, 0), (first, 1)}
    assert s["judge"]["served_models"] == {"gpt-3.5-turbo-0613": 13} and s["judge"]["version"] == "3"


@requires_nltk
def test_score_is_recomputable_from_stored_replies_without_asking(tmp_path):
    root = make_root(tmp_path / "d", {1: ["dog", "cup"], 3: ["cat"]})
    preds = [{"id": "1", "text": LONG[1]}, {"id": "3", "text": LONG[3]}]
    judge = StubJudge({LONG[1]: ["no list", '["dog", "cup"]'], LONG[3]: ['["cat", "sofa"]']})
    first = ObjHalGptNltkProtocol().score(preds, root, judge=judge, cache_dir=tmp_path / "judge", n_boot=30)
    stored = tmp_path / "judge" / "objhal-gpt-nltk.jsonl"
    assert [(r["id"], r["attempt"]) for _, r in iter_jsonl(stored)] == [("1", 0), ("1", 1), ("3", 0)]
    again = ObjHalGptNltkProtocol().score(preds, root, judge=NoCalls(), judge_replies=stored, n_boot=30)
    assert again["metrics"] == first["metrics"] and again["ci"] == first["ci"]
    assert again["judge"]["recomputed_from_stored_replies"]
    rerun = ObjHalGptNltkProtocol().score(preds, root, judge=NoCalls(), cache_dir=tmp_path / "judge", n_boot=30)
    assert rerun["metrics"] == first["metrics"]  # replayed from judge/objhal-gpt-nltk.jsonl
    changed = [{"id": "1", "text": LONG[1] + " And a cup."}, preds[1]]
    s = ObjHalGptNltkProtocol().score(changed, root, judge=NoCalls(), judge_replies=stored, n_boot=0)
    assert s["skipped"]["reasons"]["1"].startswith("no stored extraction reply") and s["n"] == 1


# ------------------------------------------------------------------------------------------ protocols, preflight
def test_request_is_the_references_with_the_prompt_as_the_only_system_message():
    from bench.judges import JudgeError
    from metrics.judged import build_judge

    gpt = build_judge(ObjHalGptProtocol.params["judge"], ObjHalGptProtocol.judge_settings())
    body = gpt.body("p")
    assert body["messages"] == [{"role": "system", "content": "p"}] and body["model"] == "gpt-3.5-turbo-0613"
    assert (body["temperature"], body["max_tokens"], body["top_p"]) == (0.2, 512, 1)
    user = build_judge(ObjHalGptProtocol.params["judge"], {**ObjHalGptProtocol.judge_settings(), "prompt_role": "user"})
    assert user.judge_id != gpt.judge_id and gpt.judge_id.endswith(":as-system")
    with pytest.raises(JudgeError, match="prompt_role"):
        build_judge("openai:gpt-4", {"prompt_role": "assistant"})


def test_gpt_protocols_are_their_own_columns_with_the_judge_model_in_the_labels():
    rule, gpt, nltk = (BENCHMARKS.get(n) for n in ("objhal", "objhal-gpt", "objhal-gpt-nltk"))
    assert len({rule.fingerprint(), gpt.fingerprint(), nltk.fingerprint()}) == 3
    assert rule.params["object_extraction"] == "words" and "judge" not in rule.params
    assert gpt.params["analyser"] == "spacy:en_core_web_trf" and nltk.params["analyser"] == "nltk"
    for cls in (gpt, nltk):
        assert all(JUDGE_MODEL in label for label, _ in cls.headline.values())
        assert cls.generation == rule.generation
    assert rule.fingerprint() == "31cf10038185dbe1"  # the default protocol's declaration is unchanged


@requires_nltk
def test_offline_gpt_protocols_stop_before_generation_with_one_clear_message(tmp_path, monkeypatch):
    import importlib.util

    from bench.errors import BenchError
    from bench.preflight import benchmark_problems, check

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    root = make_root(tmp_path / "d", {1: ["dog"]})
    problems = benchmark_problems(["objhal", "objhal-gpt-nltk", "objhal-gpt"], root)
    assert not any(p.startswith("objhal:") for p in problems)
    nltk_lines = [p for p in problems if p.startswith("objhal-gpt-nltk:")]
    assert len(nltk_lines) == 1 and "$OPENAI_API_KEY" in nltk_lines[0] and "`objhal`" in nltk_lines[0]
    gpt_lines = [p for p in problems if p.startswith("objhal-gpt:")]
    assert any("$OPENAI_API_KEY" in p for p in gpt_lines)
    if importlib.util.find_spec("spacy") is None:
        assert any("spaCy is not installed" in p and "objhal-gpt-nltk" in p for p in gpt_lines)
    with pytest.raises(BenchError, match="nothing was started"):
        check(problems, "bench run")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    assert any("BENCH_OFFLINE" in p for p in benchmark_problems(["objhal-gpt-nltk"], root))


@requires_nltk
def test_extraction_goes_through_the_openai_judge_and_its_cache(tmp_path, monkeypatch):
    """The real OpenAI-compatible judge against a stub server on 127.0.0.1: the request the reference sends, the
    served model recorded, and a rerun answered from the reply cache with the server gone."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            answer = answer_of(body["messages"][0]["content"])
            reply = '["dog", "cup", "table"]' if "dog" in answer else '["cats", "sofa"]'
            data = json.dumps({"model": "gpt-3.5-turbo-0613", "choices": [{"message": {"content": reply}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real-0123456789")
    monkeypatch.setenv("BENCH_JUDGE_BASE_URL", f"http://127.0.0.1:{httpd.server_address[1]}/v1")
    monkeypatch.delenv("BENCH_JUDGE_CACHE", raising=False)
    root = make_root(tmp_path / "d", {1: ["dog", "cup"], 3: ["cat"]})
    preds = [{"id": "1", "text": LONG[1]}, {"id": "3", "text": LONG[3]}]
    try:
        s = ObjHalGptNltkProtocol().score(preds, root, cache_dir=tmp_path / "judge", n_boot=0)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(seen) == 2 and all(b["messages"][0]["role"] == "system" and len(b["messages"]) == 1 for b in seen)
    assert {(b["model"], b["temperature"], b["max_tokens"], b["top_p"]) for b in seen} == {
        ("gpt-3.5-turbo-0613", 0.2, 512, 1)}
    assert s["judge"]["served_models"] == {"gpt-3.5-turbo-0613": 2} and s["judge"]["requests"] == 2
    assert s["metrics"]["chair_i"] == pytest.approx(2 / 5)
    (tmp_path / "judge" / "objhal-gpt-nltk.jsonl").unlink()  # only the judge's own cache is left
    again = ObjHalGptNltkProtocol().score(preds, root, cache_dir=tmp_path / "judge", n_boot=0)
    assert again["metrics"] == s["metrics"] and again["judge"]["requests"] == 0 and again["judge"]["cache_hits"] == 2


# ------------------------------------------------------------------------------------------ offline counterpart
def test_annotation_extractor_lists_asserted_coco_objects_in_order_without_negated_ones():
    from bench.judges import make_judge
    from metrics.objhal_gpt import parse_prompt

    prompt = build_prompt("Describe it.", "A dog and no cat, with two cups on a dining table. A dog again.")
    assert parse_prompt(prompt) == ("Describe it.", "A dog and no cat, with two cups on a dining table. A dog again.")
    assert parse_prompt("not a prompt") is None
    reply = make_judge("objhal-annotation")(prompt)
    assert parse_object_list(reply) == (["dog", "cup", "dining table"], True)


@requires_nltk
def test_annotation_protocol_scores_the_synthetic_world_offline_in_its_own_column(synthetic_root, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    proto = BENCHMARKS.get("objhal-gpt-annotation")()
    assert proto.missing_resources(synthetic_root) == []
    items = proto.items(synthetic_root)
    preds = [{"id": it.id, "text": "The image shows a dog, a cup and no cat on a dining table."} for it in items]
    s = proto.score(preds, synthetic_root, cache_dir=tmp_path / "judge", n_boot=20)
    assert s["n"] == len(items) and s["skipped"]["count"] == 0 and set(s["ci"]) >= {"chair_s", "chair_i"}
    assert all(d["objects"] == ["dog", "cup", "dining table"] for d in s["details"]["per_item"])
    assert s["judge"]["id"].startswith("objhal-annotation")
    assert s["judge"]["requests"] + s["judge"]["cache_hits"] == len(items)  # same prompt, same cached reply
    assert proto.fingerprint() not in {BENCHMARKS.get(n).fingerprint() for n in ("objhal-gpt", "objhal-gpt-nltk")}
    assert all("annotation" in label for label, _ in proto.headline.values())
