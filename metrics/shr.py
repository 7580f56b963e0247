"""SHR — sentence-level hallucination ratio (HA-DPO, Zhao et al., arXiv 2311.16839).

Procedure as ``opendatalab/HA-DPO@42f72c5: ha_dpo/shr_eval/{json_eval,shr_utils,gpt_utils}.py``
(``shared/research/benchmarks.md`` §3.2):

* regions ``[x/w, y/h, (x+w)/w, (y+h)/h]: phrase`` (each value ``float('%.2f' % v)``, list repr), empty
  phrases skipped; facts joined with ``"\\n"`` (trailing newline); the response split on ``"."``,
  stripped, empty / repeated / contained-in-earlier sentences dropped, numbered ``"1. s\\n2. …"``;
* the judge prompt is the template filled with (regions, facts, numbered sentences);
* the reply's lines after the first line containing ``"Judgement:"``, minus the leading number token,
  give one label each (text before the first ``":"``, lower-cased); a count mismatch labels every
  sentence ``None``;
* per run: ``hal_sents_ratio`` = hallucination sentences / sentences labelled hallucination, correct
  or cannot judge; word counts with ``len(sentence.split(" "))`` of the sentence + "."; every value
  rounded to 3 decimals; SHR = ``mean_hal_ratio``; ``gram-n-repetition`` = mean over images of
  unique n-grams / n-grams after deleting ``. : \\n ? ,``.

Deliberate fixes (each documented in the score file): the judge is retried at most ``max_attempts``
times (the reference loops forever without "Judgement"); a reply with "Judgement" but no
"Judgement:" is an unparsed image (the reference raises IndexError); when no sentence is judged the
ratios are ``None`` with ``zero_division`` set (the reference raises ZeroDivisionError); repetition of a
response shorter than n words is skipped for that n (the reference divides by zero). Parse failures
are counted and listed, never silently dropped.

Protocols: ``shr`` (GPT-4 judge ``openai:gpt-4``, temperature 0.7, 800 tokens; beam 5, 512 new tokens,
"Describe this image in detail.") and ``shr-annotation`` (same generation, the offline
annotation-grounded judge of :mod:`bench.judges` — a different metric, never to be mixed with ``shr``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from bench.benchmark import Benchmark, EvalItem, GenerationSettings
from bench.errors import BenchError, DataError
from bench.io import iter_jsonl
from bench.registry import BENCHMARKS
from bench.stats import bootstrap_ci

TEMPLATE_FILE = Path(__file__).resolve().parent / "data" / "shr_judge_prompt_template.txt"
LABELS = ("hallucination", "correct", "cannot judge")


def template() -> str:
    return TEMPLATE_FILE.read_text(encoding="utf-8")


def render_regions(regions: list[dict], width: float, height: float) -> str:
    out = ""
    for r in regions:
        if not r.get("phrase"):
            continue
        x, y, w, h = r["x"], r["y"], r["width"], r["height"]
        pos = [float("%.2f" % v) for v in (x / width, y / height, (x + w) / width, (y + h) / height)]
        out += f"{pos}: {r['phrase']}\n"
    return out


def render_facts(facts: list[str]) -> str:
    return "".join(f + "\n" for f in facts)


def split_sentences(response: str) -> tuple[list[str], bool]:
    """Kept sentences (no final period) and whether any repeated/contained sentence was dropped."""
    kept: list[str] = []
    repeated = False
    for s in response.split("."):
        s = s.strip()
        if not s:
            continue
        if any(s == k or s in k for k in kept):
            repeated = True
            continue
        kept.append(s)
    return kept, repeated


def numbered(sentences: list[str]) -> str:
    return "".join(f"{i}. {s}\n" for i, s in enumerate(sentences, start=1))


def build_prompt(regions_text: str, facts_text: str, sentences: list[str]) -> str:
    return template().format(regions_text, facts_text, numbered(sentences))


def parse_judgement(reply: str, n_sentences: int) -> tuple[list[str | None], list[str | None], str | None]:
    """(labels, judgement texts, problem). Labels are ``None`` for every sentence when unparsable."""
    lines = [ln for ln in reply.split("\n") if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if "Judgement:" in ln), None)
    if start is None:
        return [None] * n_sentences, [None] * n_sentences, "no 'Judgement:' line"
    texts = []
    for ln in lines[start + 1:]:
        rest = ln.split(" ", 1)[1] if " " in ln else ""
        rest = rest.strip()
        if rest:
            texts.append(rest)
    if len(texts) != n_sentences:
        return [None] * n_sentences, [None] * n_sentences, f"{len(texts)} judgement lines for {n_sentences} sentences"
    return [t.split(":")[0].lower() for t in texts], texts, None


def repetition(response: str, n: int) -> float | None:
    text = response
    for ch in (".", ":", "\n", "?", ","):
        text = text.replace(ch, "")
    words = text.split()
    grams = list(zip(*[words[i:] for i in range(n)]))
    return len(set(grams)) / len(grams) if grams else None


def run_metrics(images: list[dict]) -> dict[str, Any]:
    """``get_metric`` over judged images: each ``{"sentences": [s + "."], "labels": [...]}``."""
    n_img = len(images)
    sents = words = hal_s = hal_w = judged_s = judged_w = 0
    for im in images:
        for s, lab in zip(im["sentences"], im["labels"]):
            nw = len(s.split(" "))
            sents += 1
            words += nw
            if lab in LABELS:
                judged_s += 1
                judged_w += nw
            if lab == "hallucination":
                hal_s += 1
                hal_w += nw
    r = lambda a, b: round(a / b, 3) if b else None  # noqa: E731
    zero = [k for k, b in (("per_image", n_img), ("hal_sents_ratio", judged_s)) if not b]
    return {"num_images": n_img, "sents_per_image": r(sents, n_img), "words_per_image": r(words, n_img),
            "hal_sents_per_image": r(hal_s, n_img), "hal_words_per_image": r(hal_w, n_img),
            "hal_sents_ratio": r(hal_s, judged_s), "hal_words_ratio": r(hal_w, judged_w), "zero_division": zero}


def evaluate(records: list[dict], judge: Callable[[str], str], max_attempts: int = 3) -> dict[str, Any]:
    """Run the SHR procedure. ``records``: ``{"image_id", "response", "regions_text", "facts_text"}``.

    ``judge(prompt) -> reply`` (cached by the caller). Returns metrics, per-image details and counts.
    """
    judged, per_image, prompts = [], {}, {}
    calls, problems = 0, {}
    grams = {n: [] for n in range(1, 5)}
    for rec in records:
        iid = str(rec["image_id"])
        kept, repeated = split_sentences(rec["response"])
        rep = {n: repetition(rec["response"], n) for n in range(1, 5)}
        for n, v in rep.items():
            if v is not None:
                grams[n].append(v)
        prompt = build_prompt(rec["regions_text"], rec["facts_text"], kept)
        prompts[iid] = prompt
        reply = ""
        for _ in range(max_attempts):
            reply = judge(prompt)
            calls += 1
            if "Judgement" in reply:
                break
        sentences = [s + "." for s in kept]
        labels, texts, problem = parse_judgement(reply, len(sentences))
        if problem:
            problems[iid] = problem
        judged.append({"sentences": sentences, "labels": labels})
        per_image[iid] = {"raw_judgement": reply, "judgement": [
            {"model_response": s, "judgement": t, "classification": lab}
            for s, t, lab in zip(sentences, texts, labels)], "numbered_sentences": numbered(kept),
            "is_repeated": repeated, **{f"gram-{n}": rep[n] for n in rep}}
    run1 = run_metrics(judged)
    metrics = {"run1": {k: v for k, v in run1.items() if k != "zero_division"}}
    for n in range(1, 5):
        metrics[f"gram-{n}-repetition"] = round(sum(grams[n]) / len(grams[n]), 3) if grams[n] else None
    metrics["mean_hal_ratio"] = run1["hal_sents_ratio"]
    return {"metrics": metrics, "per_image": per_image, "prompts": prompts, "judge_calls": calls,
            "unparsed": problems, "zero_division": run1["zero_division"], "judged": judged}


class ShrProtocol(Benchmark):
    """SHR with the GPT-4 judge (HA-DPO): needs an OpenAI-compatible endpoint and key."""

    name = "shr"
    benchmark = "shr"
    version = "1"
    description = "SHR (HA-DPO): GPT-4 judge on VG regions + facts, beam 5, 512 tokens"
    generation = GenerationSettings(max_new_tokens=512, num_beams=5)
    params: dict[str, Any] = {"prompt": "Describe this image in detail.", "judge": "openai",
                              "judge_model": "gpt-4", "temperature": 0.7, "max_tokens": 800, "max_attempts": 3,
                              "max_prompt_chars": 15000}
    headline = {"shr": ("SHR", False)}

    def _rows(self, data_root: Path, name: str) -> dict[int, dict]:
        path = Path(data_root) / "shr" / name
        return {int(r["image_id"]): r for _, r in iter_jsonl(path)}

    def data_files(self, data_root: Path) -> list[Path]:
        return [Path(data_root) / "shr" / n for n in ("images.jsonl", "regions.jsonl", "facts.jsonl")]

    def items(self, data_root: Path) -> list[EvalItem]:
        return [EvalItem(str(i), str(Path(data_root) / r["image"]), self.params["prompt"], {"image_id": i})
                for i, r in self._rows(data_root, "images.jsonl").items()]

    def make_judge(self, cache_dir: Path | None):
        from bench.judges import make_judge

        return make_judge(self.params["judge"], model=self.params["judge_model"],
                          temperature=self.params["temperature"], max_tokens=self.params["max_tokens"],
                          cache_dir=cache_dir)

    def score(self, predictions: list[dict], data_root: Path, n_boot: int = 1000, limit: int | None = None,
              cache_dir: Path | None = None) -> dict:
        images = self._rows(data_root, "images.jsonl")
        regions = self._rows(data_root, "regions.jsonl")
        facts_path = Path(data_root) / "shr" / "facts.jsonl"
        facts = self._rows(data_root, "facts.jsonl") if facts_path.exists() else {}
        texts = {p["id"]: p["text"] for p in predictions}
        items = self.items(data_root)[:limit] if limit else self.items(data_root)
        records, skipped = [], {}
        for it in items:
            iid = it.meta["image_id"]
            if it.id not in texts:
                skipped[it.id] = "no prediction"
                continue
            img = images[iid]
            recs = regions.get(iid, {}).get("regions", [])
            rec = {"image_id": iid, "response": texts[it.id],
                   "regions_text": render_regions(recs, img["width"], img["height"]),
                   "facts_text": render_facts(facts.get(iid, {}).get("facts", []))}
            if len(build_prompt(rec["regions_text"], rec["facts_text"], split_sentences(rec["response"])[0])) > \
                    self.params["max_prompt_chars"]:
                skipped[it.id] = f"judge prompt over {self.params['max_prompt_chars']} characters (skipped as HA-DPO)"
                continue
            records.append(rec)
        judge = self.make_judge(cache_dir)
        res = evaluate(records, judge, self.params["max_attempts"])

        def stat(units: list[dict]) -> dict[str, float]:
            m = run_metrics(units)
            return {"shr": m["hal_sents_ratio"]} if m["hal_sents_ratio"] is not None else {}

        shr = res["metrics"]["mean_hal_ratio"]
        metrics = {"shr": shr, "hal_words_ratio": res["metrics"]["run1"]["hal_words_ratio"],
                   "sents_per_image": res["metrics"]["run1"]["sents_per_image"],
                   **{f"gram-{n}-repetition": res["metrics"][f"gram-{n}-repetition"] for n in range(1, 5)}}
        metrics = {k: v for k, v in metrics.items() if v is not None}
        ci = bootstrap_ci(res["judged"], stat, n_boot=n_boot, seed=0)
        return {"metrics": metrics, "ci": ci, "n": len(records), "judge": getattr(judge, "judge_id", "?"),
                "judge_calls": res["judge_calls"], "unparsed": {"count": len(res["unparsed"]), "images": res["unparsed"]},
                "zero_division": res["zero_division"], "reference_metrics": res["metrics"],
                "skipped": {"count": len(skipped), "reasons": skipped}, "details": {"per_image": res["per_image"]}}


class ShrAnnotationProtocol(ShrProtocol):
    """SHR procedure with the offline annotation-grounded judge (a different metric from GPT-4 SHR)."""

    name = "shr-annotation"
    description = "SHR procedure, offline annotation-grounded judge (not comparable with GPT-4 SHR)"
    params = {**ShrProtocol.params, "judge": "annotation", "judge_model": "coco-synonyms"}
    headline = {"shr": ("SHR (annotation judge)", False)}


BENCHMARKS.add("shr", ShrProtocol)
BENCHMARKS.add("shr-annotation", ShrAnnotationProtocol)
