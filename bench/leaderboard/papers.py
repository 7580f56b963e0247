"""The seed papers' reported numbers as data, and reported-vs-reproduced paper tables.

Data: ``leaderboards/papers/<paper>.csv``, one reported number per line, columns
``model, method, benchmark, protocol, split, metric, value, source, caveat``. ``value`` is the text as
printed in the source (percent, or the benchmark's own unit for benchmarks bench does not run);
``protocol`` is the bench protocol that matches the paper's evaluation, or a descriptive name that is
not registered when none does (e.g. ``objhal``, ``pope-opadpo``); ``caveat`` carries the confidence
notes of the source (secondary transcription, assumed model size …). Sources: the seed READMEs
(``shared/seeds``) and ``shared/research/methods.md`` §1.6, §2.6, §3.6, §4.6; nothing else.

Table (:func:`paper_table`): each reported number beside the number reproduced from run records under
OUT. Paper rows map to run rows by (model, method) through :data:`MODEL_MAP` and :data:`METHOD_MAP`
(``LLaVA-1.5-7B``/``HA-DPO`` → ``llava-7b``/``ha-dpo``); a model or method with no entry is never
reproduced. The reproduced score is read from ``OUT/<model>/<method>/scores/<protocol>.json``; if the
record has no score under the paper's protocol, the nearest registered protocol (:data:`NEAREST`), then
any protocol of the same benchmark family, is used and the cell is marked ``†`` with a footnote naming
both protocols. ``—`` = not reproduced. Reproduced values are rounded as the paper prints them:
HA-DPO's POPE numbers are truncated to 2 decimals (``shared/research/benchmarks.md`` §1.6: only
truncation reproduces its LLaVA-1.5 random row from whole counts); everything else is rounded half-up
to the printed number of decimals. Δ = reproduced − reported, in the paper's precision. Records keep
full precision.

The question the table answers is "did we reproduce it?": the ``reproduced?`` column says ``✓ in CI`` when
the reported number lies inside the reproduced value's 95% CI (both at the paper's precision), ``✗ outside
CI`` when it does not, ``not run`` when bench could run the row but no record has it, ``no CI`` when the
score has no interval; a summary line counts them. By default only the rows bench can run are listed
(model and method mapped, benchmark family scored by bench); ``show_all=True`` (CLI ``--all``) lists
every reported row, the others marked ``‡`` (no bench model/method) or ``*`` (benchmark not run).

Citations shown are the primary ones only — upstream ``repo@commit:path`` files, arXiv ids, paper
tables and sections. The CSV's pointers into the project's research notes (``shared/…``,
``methods.md §…``; kept in the data so the tests can check each number against them) are outside the
repository and are removed from the printed sources and caveats (:func:`public_citation`).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

from bench.errors import BenchError, DataError
from bench.io import read_json

PAPERS_DIR = Path(__file__).resolve().parents[2] / "leaderboards" / "papers"
FIELDS = ("model", "method", "benchmark", "protocol", "split", "metric", "value", "source", "caveat")


@dataclass(frozen=True)
class Paper:
    name: str
    title: str
    truncate: tuple[str, ...] = ()  # benchmark families whose reported numbers are truncated, not rounded


PAPERS: dict[str, Paper] = {
    "ha-dpo": Paper("ha-dpo", "HA-DPO (Zhao et al., arXiv 2311.16839; README of opendatalab/HA-DPO@42f72c5)",
                    truncate=("pope",)),
    "povid": Paper("povid", "POVID (Zhou et al., arXiv 2402.11411)"),
    "hsa-dpo": Paper("hsa-dpo", "HSA-DPO (Xiao et al., arXiv 2404.14233, AAAI 2025)"),
    "opa-dpo": Paper("opa-dpo", "OPA-DPO (Yang et al., arXiv 2501.09695, CVPR 2025)"),
}
# paper model name -> bench model entry; paper method name -> bench method (base = untrained model)
MODEL_MAP = {"LLaVA-1.5-7B": "llava-7b", "LLaVA-1.5-13B": "llava-13b", "InstructBLIP-13B": "instructblip-13b",
             "MiniGPT-4-Llama2-7B": "minigpt4-llama2-7b"}
METHOD_MAP = {"base": "base", "DPO": "dpo", "HA-DPO": "ha-dpo", "POVID": "povid", "HSA-DPO": "hsa-dpo",
              "OPA-DPO": "opa-dpo"}
# benchmark families bench scores (their metrics are fractions, shown ×100 like the papers' percentages)
BENCH_FAMILIES = ("pope", "chair", "shr", "mhalubench", "amber", "objhal", "mmhal", "llava-bench")
# (benchmark, paper metric) -> (score-file metric, scale to the paper's unit) where they differ from
# (<metric>, ×100): MMHal's score is 0–6 and its hallucination rate is printed as a fraction; LLaVA-Bench's
# "score" is the relative score, stored in percent already.
PAPER_UNITS = {("mmhal", "score"): ("score", 1), ("mmhal", "hallucination_rate"): ("hallucination_rate", 1),
               ("llava-bench", "score"): ("relative", 1)}
# a paper protocol that is not a bench protocol -> the registered protocol closest to it
NEAREST = {"pope-opadpo": "pope-llava15", "chair-lure": "chair-singularize"}


def load_paper(paper: str, folder: Path = PAPERS_DIR) -> list[dict]:
    """The rows of ``<folder>/<paper>.csv``, validated (columns, a decimal number in ``value``)."""
    if paper not in PAPERS:
        raise BenchError(f"unknown paper {paper!r}; choose from {', '.join(PAPERS)}")
    path = Path(folder) / f"{paper}.csv"
    if not path.exists():
        raise BenchError(f"{path}: paper data file missing")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise DataError(path, f"columns must be {', '.join(FIELDS)}; got {reader.fieldnames}", line=1)
        rows = []
        for i, row in enumerate(reader, start=2):
            try:
                Decimal(row["value"])
            except (InvalidOperation, TypeError):
                raise DataError(path, f"value {row['value']!r} is not a number", line=i, field="value") from None
            for key in ("model", "method", "benchmark", "protocol", "metric", "source"):
                if not row[key]:
                    raise DataError(path, "empty", line=i, field=key)
            rows.append(row)
    return rows


def metric_key(row: dict) -> str:
    """The score-file metric key of a paper row: ``<split>/<metric>`` or ``<metric>`` (:data:`PAPER_UNITS`)."""
    metric = PAPER_UNITS.get((row["benchmark"], row["metric"]), (row["metric"], 100))[0]
    return f"{row['split']}/{metric}" if row["split"] else metric


def metric_scale(row: dict) -> int:
    """Factor from the score file's value to the paper's printed unit (100 for fractions shown in %)."""
    return PAPER_UNITS.get((row["benchmark"], row["metric"]), (row["metric"], 100))[1]


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def shown(fraction: float, decimals: int, truncate: bool, scale: int = 100) -> Decimal:
    """``scale`` × ``fraction`` as the paper would print it (exact decimal arithmetic on the stored float)."""
    q = Decimal(1).scaleb(-decimals)
    return (Decimal(repr(float(fraction))) * scale).quantize(q, rounding=ROUND_DOWN if truncate else ROUND_HALF_UP)


def _score_files(run_dir: Path) -> dict[str, dict]:
    """protocol name -> score dict, for a run directory that has a run record."""
    if not (run_dir / "run.json").exists():
        return {}
    out = {}
    for path in sorted((run_dir / "scores").glob("*.json")):
        score = read_json(path)
        if isinstance(score, dict) and isinstance(score.get("metrics"), dict):
            out[str(score.get("protocol") or path.stem)] = score
    return out


def _pick(scores: dict[str, dict], row: dict) -> tuple[str, dict] | None:
    """(protocol, score) for a paper row: its own protocol, else the nearest, else the same family."""
    want = row["protocol"]
    if want in scores:
        return want, scores[want]
    near = NEAREST.get(want)
    if near in scores:
        return near, scores[near]
    # a protocol scored by the offline annotation judge measures something else than the paper's GPT-4 judge:
    # never a stand-in for it
    family = sorted((name for name, s in scores.items() if s.get("benchmark", name.split("-")[0]) == row["benchmark"]
                     and "annotation" not in name),
                    key=lambda n: (n != row["benchmark"], n))
    return (family[0], scores[family[0]]) if family else None


_NOTES_REF = re.compile(r"(?:,|;)?\s*(?:per\s+)?(?:\.\./)?(?:shared/[\w./-]*?)?(?:methods|benchmarks|anchors)\.md"
                        r"(?:\s*§\s*[\d.]*\d)?")
_SHARED_PATH = re.compile(r"(?:,|;)?\s*(?:\.\./)?shared/[^\s;,)]+")


def public_citation(text: str) -> str:
    """``text`` without references to paths outside the repository (the project's research notes under
    ``shared/``, ``methods.md §x``): what remains cites upstream repositories, papers and their sections."""
    text = _NOTES_REF.sub("", text)
    text = _SHARED_PATH.sub("", text)
    text = re.sub(r"\(\s*[,;]?\s*\)", "", text)  # a parenthesis left empty
    text = re.sub(r"\(\s*[,;]\s*", "(", text)
    text = re.sub(r"\s+([,;:)])", r"\1", text)
    return re.sub(r"\s{2,}", " ", text).strip(" ;,")


def runnable(row: dict, models: dict | None = None, methods: dict | None = None) -> bool:
    """Whether bench can run a paper row: model and method mapped, benchmark family scored by bench."""
    models = MODEL_MAP if models is None else models
    methods = METHOD_MAP if methods is None else methods
    return row["model"] in models and row["method"] in methods and row["benchmark"] in BENCH_FAMILIES


def paper_table(paper: str, out: str | Path, folder: Path = PAPERS_DIR, models: dict | None = None,
                methods: dict | None = None, show_all: bool = False) -> str:
    """Markdown: the paper's reported numbers, the reproduced ones from run records under ``out`` with their CI,
    Δ and whether the reported number is inside the CI; only the rows bench can run unless ``show_all``."""
    meta = PAPERS.get(paper)
    rows = load_paper(paper, folder)
    models = MODEL_MAP if models is None else models
    methods = METHOD_MAP if methods is None else methods
    out = Path(out)
    caveats: list[str] = []
    proto_notes: list[str] = []
    unmapped: set[str] = set()
    not_run: set[str] = set()
    found: dict[tuple[str, str], bool] = {}
    cache: dict[Path, dict] = {}
    hidden = 0 if show_all else sum(1 for r in rows if not runnable(r, models, methods))
    if not show_all:
        rows = [r for r in rows if runnable(r, models, methods)]
    verdicts: dict[str, int] = {}
    lines = [f"## {meta.title}: reported vs reproduced", "",
             f"Reported: `leaderboards/papers/{paper}.csv`. Reproduced: run records under `{out}`. Values in %"
             " (other units where the benchmark has them); reproduced values rounded as the paper prints them"
             + (f" (truncated to 2 decimals for {', '.join(meta.truncate)})" if meta.truncate else "")
             + "; Δ = reproduced − reported; 95% CI of the reproduced value in brackets; reproduced? = whether"
               " the reported number lies inside that CI.", "",
             "| model | method | benchmark | split | metric | protocol | reported | reproduced | 95% CI | Δ"
             " | reproduced? | notes |",
             "|---|---|---|---|---|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        notes = []
        if r["caveat"]:
            if r["caveat"] not in caveats:
                caveats.append(r["caveat"])
            notes.append(f"[{caveats.index(r['caveat']) + 1}]")
        reproduced, ci_text, delta, verdict = "—", "", "", ""
        model, method = models.get(r["model"]), methods.get(r["method"])
        if model is None or method is None:
            unmapped.add(f"{r['model']}/{r['method']}")
            notes.insert(0, "‡")
        elif r["benchmark"] not in BENCH_FAMILIES:
            not_run.add(r["benchmark"])
            notes.insert(0, "*")
        else:
            run_dir = out / model / method
            scores = cache.setdefault(run_dir, _score_files(run_dir))
            found[(f"{r['model']}/{r['method']}", f"{model}/{method}")] = bool(scores)
            picked = _pick(scores, r)
            value = picked[1]["metrics"].get(metric_key(r)) if picked else None
            verdict = "not run"
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                proto, score = picked
                decimals, trunc = _decimals(r["value"]), r["benchmark"] in meta.truncate
                got = shown(value, decimals, trunc, metric_scale(r))
                reproduced = str(got)
                delta = f"{got - Decimal(r['value']):+.{decimals}f}"
                ci = (score.get("ci") or {}).get(metric_key(r))
                verdict = "no CI"
                if isinstance(ci, (list, tuple)) and len(ci) == 2:
                    lo, hi = shown(ci[0], decimals, trunc, metric_scale(r)), shown(ci[1], decimals, trunc, metric_scale(r))
                    ci_text = f"[{lo}, {hi}]"
                    verdict = "✓ in CI" if lo <= Decimal(r["value"]) <= hi else "✗ outside CI"
                if proto != r["protocol"]:
                    reproduced += "†"
                    note = f"† {model}/{method} was scored under `{proto}`; the paper's protocol is `{r['protocol']}`"
                    if note not in proto_notes:
                        proto_notes.append(note)
        if verdict:
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
        cells = [r["model"], r["method"], r["benchmark"], r["split"] or "", r["metric"], r["protocol"], r["value"],
                 reproduced, ci_text, delta, verdict, " ".join(notes)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    runnable_n = sum(verdicts.values())
    lines.append(f"Reproduced: {verdicts.get('✓ in CI', 0)} of {runnable_n} reported numbers bench can run lie inside"
                 f" the reproduced 95% CI; {verdicts.get('✗ outside CI', 0)} outside; {verdicts.get('not run', 0)} not"
                 f" run yet" + (f"; {verdicts['no CI']} without a CI" if verdicts.get("no CI") else "") + "."
                 + (f" {hidden} reported rows for models or benchmarks bench does not run are hidden (`--all` shows"
                    " them)." if hidden else ""))
    mapped = sorted(found.items())
    if mapped:
        lines.append("Rows → run records: " + "; ".join(
            f"{p} → `{b}`" + ("" if ok else " (no record)") for (p, b), ok in mapped) + ".")
    if unmapped:
        lines.append(f"‡ no bench model/method for: {', '.join(sorted(unmapped))} (never reproduced).")
    if not_run:
        lines.append(f"* benchmark not run by bench: {', '.join(sorted(not_run))} (never reproduced).")
    lines += proto_notes
    lines += [f"[{i}] {public_citation(c)}" for i, c in enumerate(caveats, start=1)]
    sources = sorted({public_citation(r["source"]) for r in rows})
    lines.append("Sources: " + "; ".join(sources) + ".")
    return "\n\n".join(_blocks(lines)) + "\n"


def _blocks(lines: list[str]) -> list[str]:
    """Join table lines with single newlines and footnotes as separate paragraphs (Markdown)."""
    out, table = [], []
    for line in lines:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            out.append("\n".join(table))
            table = []
        if line:
            out.append(line)
    if table:
        out.append("\n".join(table))
    return out
