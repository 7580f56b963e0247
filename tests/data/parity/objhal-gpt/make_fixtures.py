"""How the Object HalBench GPT-extraction fixture in this folder was made (run outside the repo; never imported).

Usage: python make_fixtures.py RLAIF_V_CHECKOUT NAME OUT_DIR   (a checkout of RLHF-V/RLAIF-V@83d917b)

Seeded captions (``captions_<NAME>.jsonl``, the reference's answer format) and injected GT node words
(``gt_<NAME>.json``) are scored by the reference's ``CHAIR.compute_chair(cap_file, -1, gpt_process=True)``; its
hall file is then summarised by running ``eval/summarize_gpt_obj_halbench_review.py`` on it. What is replaced:

* ``openai`` — a stub whose ``ChatCompletion.create`` answers from a canned queue per prompt (keyed by the
  sha256 of the message text; the queue is drawn from a generator seeded by that sha256, so thread order does
  not matter) and records every request's settings and roles. Queues start with 0-3 malformed replies (prose,
  a fenced block, a truncated list, ``()``, a list followed by prose, an empty reply) and end with a parseable
  one (plain list, a list after a preface line, ``[]``, a dict, a JSON string, a list with a number and a
  nested list). The reference's own ``gpt4_grpc.Chat`` sends the requests.
* ``spacy`` — ``load`` returns an NLTK stand-in (``nltk.word_tokenize``, ``nltk.pos_tag``, WordNet lemmas with
  the tag's part of speech, lower-cased except NNP/NNPS): the ``en_core_web_trf`` pipeline cannot be installed
  here. bench's ``nltk`` analyser (protocol ``objhal-gpt-nltk``) is the same stand-in.
* ``jsonlines.Reader`` (a line-by-line ``json.loads``) and ``time.sleep`` (no waiting).

Writes ``replies_<NAME>.json`` (``{prompt sha256: [replies in the order they were served]}``) and
``expected_<NAME>.json``. NLTK 3.10.4 with ``shared/reference/nltk_data`` (set ``NLTK_DATA``).
"""
import contextlib
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ref, name, out = Path(sys.argv[1]).resolve(), sys.argv[2], Path(sys.argv[3]).resolve()
out.mkdir(parents=True, exist_ok=True)
SEED = 20261203
rng = random.Random(SEED)
syn = [[s.strip() for s in line.strip().split(", ")] for line in open(ref / "eval" / "data" / "synonyms_refine.txt")]
heads = [r[0] for r in syn]
surf = {r[0]: r for r in syn}
extras = ["hot dogs", "wooden dining table", "Dog", "man's hat", "toilet seat", "two red cars", "bowl of fruit",
          "wine glasses", "people", "cell phone", "teddy bears", "baby elephant", "TV", "Surfboards", "stop sign",
          "traffic lights", "passenger train", "bow tie", "home plate", "children", "knives", "mice", "motor bike",
          "toilet", "seat", "a pair of skis", "fire hydrant", "the sky", "green grass", "brick wall", "laptop computer",
          "coffee cup", "adult horses", "donuts", "sofa cushions", "tennis racket", "kite string"]
non = ["sky", "grass", "wall", "light", "street", "window", "tree", "cloud", "building", "shadow"]

# ------------------------------------------------------------------------------------------ inputs
caps, gt, phrases_of = [], {}, {}
questions = ["Describe this image in detail.", "What is in the image?", "Provide a thorough description of the image."]
for k in range(60):
    imid = 600000 + (k // 2 if k < 16 else k)  # the first images get two answers each
    if imid not in gt:
        gt[imid] = sorted(rng.sample(heads, rng.randint(0 if k % 13 == 0 else 1, 6)))
    style = k % 10
    if style == 0:
        text, used = "", []
    elif style == 1:
        used = [rng.choice(heads)]
        text = rng.choice(["A {}.", "Two {}s sleeping", "The {} here"]).format(used[0])  # <= 3 words: never sent
    else:
        used = []
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            if r < 0.5 and gt[imid]:
                used.append(rng.choice(surf[rng.choice(gt[imid])]))
            elif r < 0.6:
                used.append(rng.choice(extras))
            elif r < 0.85:
                used.append(rng.choice(surf[rng.choice(heads)]))
            else:
                used.append(rng.choice(non))
        text = f"Image {k}: there are " + ", ".join(f"{rng.choice(['a', 'the', 'two', 'some'])} {w}" for w in used) + "."
        if style == 2:
            text = "Assistant: " + text
    caps.append({"image_id": imid, "question": rng.choice(questions), "text": text})
    phrases_of[text.replace("Assistant:", "").strip()] = used

MALFORMED = [lambda objs: "The objects are " + " and ".join(objs or ["nothing"]) + ".",
             lambda objs: "```json\n" + json.dumps(objs) + "\n```",
             lambda objs: json.dumps(objs)[:-1],
             lambda objs: "()",
             lambda objs: json.dumps(objs) + "\nThese are all the objects.",
             lambda objs: ""]
VALID = [lambda objs: json.dumps(objs)] * 7 + [
         lambda objs: "Visible objects:\n" + json.dumps(objs),
         lambda objs: "[]",
         lambda objs: json.dumps({"objects": objs}),
         lambda objs: json.dumps(objs[0] if objs else "dog"),
         lambda objs: json.dumps(objs + [2, ["cat"]])]
lock = threading.Lock()
queues: dict[str, list[str]] = {}
served: dict[str, int] = {}
requests: list[dict] = []


def queue_for(content: str, sha: str) -> list[str]:
    g = random.Random(int(sha[:16], 16) ^ SEED)
    answer = content.split("[Start of Examiner's Answer]\n\n", 1)[1].split("\n\n[End of Examiner's Answer]", 1)[0]
    used = phrases_of[answer]
    objs = g.sample(used, g.randint(max(0, len(used) - 2), len(used)))
    if g.random() < 0.2:
        objs.append(g.choice(extras))
    bad = [g.choice(MALFORMED)(objs) for _ in range(g.choice([0, 0, 0, 1, 1, 2, 3]))]
    return bad + [g.choice(VALID)(objs)]


def create(**kw):
    messages = kw["messages"]
    content = messages[-1]["content"]
    sha = hashlib.sha256(content.encode("utf-8")).hexdigest()
    with lock:
        requests.append({k: v for k, v in kw.items() if k != "messages"} | {"roles": [m["role"] for m in messages]})
        if sha not in queues:
            queues[sha] = queue_for(content, sha)
        i = served.get(sha, 0)
        served[sha] = i + 1
        reply = queues[sha][i]
    return {"model": kw["model"], "usage": {"total_tokens": 3, "prompt_tokens": 2, "completion_tokens": 1},
            "choices": [{"message": {"content": reply}}]}


# ------------------------------------------------------------------------------------------ run the reference
scratch = Path(tempfile.mkdtemp())
stubs = {
    "openai/__init__.py": "api_key = None\n\n\nclass ChatCompletion:\n    create = None\n",
    "jsonlines/__init__.py": "import json\n\n\nclass Reader:\n    def __init__(self, fh):\n        self.fh = fh\n\n"
                             "    def __iter__(self):\n        return (json.loads(x) for x in self.fh if x.strip())\n",
    "spacy/__init__.py": '''import nltk
from nltk.stem import WordNetLemmatizer

_lem = WordNetLemmatizer()
_POS = {"J": "a", "V": "v", "N": "n", "R": "r"}


class Tok:
    def __init__(self, text, tag):
        self.text, self.tag_ = text, tag
        self.lemma_ = text if tag in ("NNP", "NNPS") else _lem.lemmatize(text.lower(), _POS.get(tag[:1], "n"))


def load(name):
    return lambda text: [Tok(w, t) for w, t in nltk.pos_tag(nltk.word_tokenize(text))]
'''}
for mod, text in stubs.items():
    (scratch / mod).parent.mkdir(parents=True, exist_ok=True)
    (scratch / mod).write_text(text)
sys.path[:0] = [str(scratch), str(ref / "eval")]
import openai  # noqa: E402  (the stub above)

openai.ChatCompletion.create = staticmethod(create)
time.sleep = lambda s: None
run_dir = scratch / "runs" / "model" / "run" / "ckpt-0"
run_dir.mkdir(parents=True)
cap_file = run_dir / "obj_halbench_answer.jsonl"
cap_file.write_text("".join(json.dumps(c) + "\n" for c in caps))
captured: list[dict] = []
os.chdir(ref)  # the reference reads ./eval/data/synonyms_refine.txt
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    import eval_gpt_obj_halbench as reference

    evaluator = reference.CHAIR(set(gt), "unused", "")
    evaluator.imid_to_objects = {k: set(v) for k, v in gt.items()}
    match = evaluator.get_pred_objs_match
    evaluator.get_pred_objs_match = lambda items: captured.extend(match(items)) or captured
    cap_dict = evaluator.compute_chair(str(cap_file), -1, gpt_process=True)
    reference.save_hallucinated_words(str(cap_file), cap_dict, str(run_dir), -1)
summary = subprocess.run([sys.executable, str(ref / "eval" / "summarize_gpt_obj_halbench_review.py"),
                          str(scratch / "runs") + "/"], capture_output=True, text=True, check=True).stdout
printed = {}
for line in summary.splitlines():
    if ":" in line and not line.startswith("="):
        key, value = line.split(":", 1)
        printed[key.strip()] = float(value)

# ------------------------------------------------------------------------------------------ write
(out / f"captions_{name}.jsonl").write_text("".join(json.dumps(c) + "\n" for c in caps))
json.dump({str(k): v for k, v in gt.items()}, open(out / f"gt_{name}.json", "w"), indent=0)
json.dump({sha: queues[sha][:n] for sha, n in sorted(served.items())}, open(out / f"replies_{name}.json", "w"), indent=1)
settings = {json.dumps(r, sort_keys=True) for r in requests}
assert len(settings) == 1, settings
m = cap_dict["overall_metrics"]
keys = ["CHAIRs", "CHAIRs_refine", "CHAIRi", "obj_rec", "sentence_num", "coco_sentence_num", "coco_word_count",
        "gt_word_count", "avg_word_len", "correct_rate", "object_correct_rate"]
by_index = sorted(captured, key=lambda c: c["index"])
assert [c["index"] for c in by_index] == list(range(len(caps)))
json.dump({"object_extraction": "gpt", "analyser": "nltk", "reference": "RLHF-V/RLAIF-V@83d917b",
           "request": json.loads(settings.pop()), "calls": dict(sorted(served.items())),
           "objects": [c["objs"] for c in by_index], "metrics": {k: m[k] for k in keys}, "printed": printed},
          open(out / f"expected_{name}.json", "w"), indent=1)
print(f"{len(caps)} captions, {len(served)} prompts, {sum(served.values())} requests; printed: {printed}")
