"""How the Object HalBench fixture in this folder was made (run outside the repo; never imported by bench).

Usage: python make_fixtures.py RLAIF_V_CHECKOUT NAME   (a checkout of RLHF-V/RLAIF-V@83d917b)

Writes seeded ``captions_<NAME>.jsonl`` (the reference's answer format) and ``gt_<NAME>.json`` (GT node words,
injected instead of being built from COCO, as in ``shared/parity/objhal``), then scores the captions with the
reference's ``CHAIR.compute_chair(cap_file, -1)`` (no GPT) and writes ``expected_<NAME>.json``: its
``overall_metrics`` and the four numbers ``summarize_gpt_obj_halbench_review.py`` prints. The module's
import-time dependencies that play no part without ``--use_gpt`` are stubbed: ``spacy`` (``load`` returns
None), ``gpt4_grpc.Chat`` and ``jsonlines.Reader`` (a line-by-line ``json.loads``). NLTK 3.10.4 with
``shared/reference/nltk_data`` (set ``NLTK_DATA``).
"""
import contextlib
import io
import json
import os
import random
import sys
import tempfile
from pathlib import Path

ref, name = Path(sys.argv[1]).resolve(), sys.argv[2]
here = Path(__file__).resolve().parent
rng = random.Random(20261202)
syn = [[s.strip() for s in line.strip().split(", ")] for line in open(ref / "eval" / "data" / "synonyms_refine.txt")]
heads = [r[0] for r in syn]
surf = {r[0]: r for r in syn}
extras = ["people", "children", "knives", "mice", "geese", "buses", "glasses", "toilet seat", "seat", "motor bike",
          "hot dogs", "teddy bears", "cell phones", "passenger jet", "adult horses", "baby elephants", "wine glasses",
          "bow tie", "home plate", "train track", "Dog", "TV", "laptops", "skis", "ski", "tables", "sofas", "oranges",
          "stop sign", "fire hydrants", "traffic lights", "doughnut", "donuts"]
non = ["sky", "grass", "wall", "light", "street", "window", "tree", "cloud", "building"]
caps, gt = [], {}
for k in range(70):
    imid = 500000 + (k // 2 if k < 20 else k)  # the first images get two answers each
    if imid not in gt:
        gt[imid] = sorted(rng.sample(heads, rng.randint(0 if k % 17 == 0 else 1, 6)))
    style = k % 7
    if style == 0:
        text = ""
    elif style == 1:
        text = "Assistant: " + "The scene shows a " + ", a ".join(rng.sample(non, 3)) + "."
    else:
        words = []
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            if r < 0.35 and gt[imid]:
                words.append(rng.choice(surf[rng.choice(gt[imid])]))
            elif r < 0.6:
                words.append(rng.choice(extras))
            elif r < 0.8:
                words.append(rng.choice(surf[rng.choice(heads)]))
            else:
                words.append(rng.choice(non))
        text = "In the picture  there are " + ", ".join(f"{rng.choice(['a', 'the', 'two', 'some'])} {w}" for w in words)
        text += rng.choice([".", ". The toilet is next to a seat.", ". It is a sunny day, nothing else.", ""])
    caps.append({"image_id": imid, "question": rng.choice(["Describe this image in detail.", "What is in the image?"]),
                 "text": text})
cap_file = here / f"captions_{name}.jsonl"
cap_file.write_text("".join(json.dumps(c) + "\n" for c in caps))
json.dump({str(k): v for k, v in gt.items()}, open(here / f"gt_{name}.json", "w"), indent=0)

with tempfile.TemporaryDirectory() as tmp:
    for mod, text in {"spacy/__init__.py": "def load(name):\n    return None\n",
                      "gpt4_grpc.py": "class Chat:\n    def __init__(self, *a, **k):\n        pass\n",
                      "jsonlines/__init__.py": "import json\n\n\nclass Reader:\n    def __init__(self, fh):\n"
                                               "        self.fh = fh\n\n    def __iter__(self):\n"
                                               "        return (json.loads(x) for x in self.fh if x.strip())\n"}.items():
        (Path(tmp) / mod).parent.mkdir(parents=True, exist_ok=True)
        (Path(tmp) / mod).write_text(text)
    sys.path[:0] = [tmp, str(ref / "eval")]
    os.chdir(ref)  # the reference reads ./eval/data/synonyms_refine.txt
    with contextlib.redirect_stdout(io.StringIO()):
        import eval_gpt_obj_halbench as reference

        evaluator = reference.CHAIR(set(gt), "unused", "")
        evaluator.imid_to_objects = {k: set(v) for k, v in gt.items()}
        m = evaluator.compute_chair(str(cap_file), -1)["overall_metrics"]
keys = ["CHAIRs", "CHAIRs_refine", "CHAIRi", "obj_rec", "sentence_num", "coco_sentence_num", "coco_word_count",
        "gt_word_count", "avg_word_len"]
printed = {"Response Hall": float(f"{m['CHAIRs_refine'] * 100:.2f}"), "Object Hall": float(f"{m['CHAIRi'] * 100:.2f}"),
           "Object Recall": float(f"{m['obj_rec'] * 100:.2f}"), "Average Length": float(f"{m['avg_word_len']:.2f}")}
json.dump({"metrics": {k: m[k] for k in keys}, "printed": printed}, open(here / f"expected_{name}.json", "w"), indent=1)
