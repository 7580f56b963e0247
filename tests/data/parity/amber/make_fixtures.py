"""How the AMBER fixtures in this folder were made (run outside the repo; never imported by bench).

Usage: python make_fixtures.py AMBER_CHECKOUT   (a checkout of junyangwang0410/AMBER@534babf)

1. writes seeded responses_edge{G,D,A,DR,DA}.json for real AMBER ids: generative answers with repeated
   nouns, only global safe words, multi-word objects ("air-conditioning", "e-book"), association words,
   capitalised and plural nouns, empty and noun-less answers; yes/no answers with exact, lower-case and
   decorated phrasings ("No.", "Yes, there is.", "", "NO");
2. runs the reference ``inference.py`` on each with ``--evaluation_type g|d|a|dr|da``, spaCy replaced by a stub
   module whose ``load()`` returns docs with ``similarity() == 0.0`` (the similarity step never fires), with
   ``NLTK_DATA`` pointing at shared/reference/nltk_data (NLTK 3.10.4);
3. parses the printed sections into expected_edge*.json (``"<Section>/<Metric>": value``).
"""
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ref = Path(sys.argv[1]).resolve()
here = Path(__file__).resolve().parent
rng = random.Random(20261201)
ann = json.load(open(ref / "data" / "annotations.json"))
rel = json.load(open(ref / "data" / "relation.json"))
safe = [line.split("\n")[0] for line in open(ref / "data" / "safe_words.txt")]
gen = [a for a in ann if a["type"] == "generative"]
disc = [a for a in ann if a["type"] != "generative"]


def gen_resp(a, style):
    if style == "repeat":
        w = rng.choice(a["truth"])
        words = [w, w, w] + rng.sample(a["hallu"], 1) * 2
    elif style == "safe":
        words = rng.sample(safe, 3)
    elif style == "multi":
        words = ["air-conditioning", "e-book"] + a["truth"][:1]
    elif style == "assoc":
        words = [w for t in a["truth"] for w in rel[t][:1]] + [w for h in a["hallu"] for w in rel[h][:1]]
    elif style == "caps":
        words = [w.capitalize() for w in a["truth"][:2]] + a["hallu"][:1]
    elif style == "plural":
        words = [w + "s" for w in a["truth"][:2]] + [w + "s" for w in a["hallu"][:2]]
    elif style == "empty":
        return ""
    elif style == "nonoun":
        return rng.choice(["Yes", "It is very nice and bright.", "Beautiful!", "..."])
    else:
        pool = a["truth"] + a["hallu"] + rng.sample(list(rel), 3)
        words = rng.sample(pool, min(len(pool), rng.randint(1, 7)))
    if not words:
        return "There is nothing."
    return "In this image there is " + ", ".join(f"{rng.choice(['a', 'the'])} {w}" for w in words) + "."


styles = ["repeat", "safe", "multi", "assoc", "caps", "plural", "empty", "nonoun", "mix", "mix", "mix"]
g_rows = [{"id": a["id"], "response": gen_resp(a, styles[k % len(styles)])} for k, a in enumerate(rng.sample(gen, 260))]
answers = ["Yes", "No", "Yes", "No", "yes", "no", "No.", "Yes, there is.", "", "NO"]
d_rows = [{"id": a["id"], "response": (("Yes" if a["truth"] == "yes" else "No") if rng.random() < 0.55
                                       else rng.choice(answers))} for a in rng.sample(disc, 1200)]
rng.shuffle(d_rows)
mixed = g_rows[:80] + d_rows[:400]
rng.shuffle(mixed)
dr = [r for r in d_rows if ann[r["id"] - 1]["type"] in ("relation", "discriminative-relation")] + g_rows[:10]
da = [r for r in d_rows if "attribute" in ann[r["id"] - 1]["type"]][:300]
cases = {"G": ("g", g_rows), "D": ("d", d_rows), "A": ("a", mixed), "DR": ("dr", dr), "DA": ("da", da)}

with tempfile.TemporaryDirectory() as tmp:
    stub = Path(tmp) / "spacy"
    stub.mkdir()
    (stub / "__init__.py").write_text("class _Doc:\n    def __init__(self, text):\n        self.text = text\n\n"
                                      "    def similarity(self, other):\n        return 0.0\n\n\n"
                                      "def load(name):\n    return _Doc\n")
    env = {**os.environ, "PYTHONPATH": tmp}
    for name, (etype, rows) in cases.items():
        responses = here / f"responses_edge{name}.json"
        json.dump(rows, open(responses, "w"), indent=0)
        out = subprocess.run([sys.executable, "inference.py", "--inference_data", str(responses),
                              "--evaluation_type", etype], cwd=ref, env=env, capture_output=True, text=True,
                             check=True).stdout
        metrics, section = {}, None
        for line in out.splitlines():
            line = line.strip()
            if not line:
                continue
            if line.endswith(":") and "\t" not in line:
                section = line[:-1]
                continue
            key, value = line.split(":", 1)
            metrics[f"{section}/{key.strip()}"] = float(value.strip())
        json.dump({"evaluation_type": etype, "similarity": "none", "metrics": metrics},
                  open(here / f"expected_edge{name}.json", "w"), indent=1)
