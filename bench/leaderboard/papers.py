"""The seed papers' reported numbers as data, and reported-vs-reproduced tables.

Data: ``leaderboards/papers/<paper>.csv`` with columns model, method, benchmark, protocol, split,
metric, value, source, caveat. Values are as printed in the source (percent). HA-DPO's README
tables are parsed from the seed README itself (:func:`parse_hadpo_readme`) so the transcription can
be checked against it. Rounding follows each paper: HA-DPO's POPE numbers are reproduced by
*truncating* to 2 decimals (``shared/research/benchmarks.md`` §1.6); others round to the printed
precision.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from bench.errors import BenchError

PAPERS_DIR = Path(__file__).resolve().parents[2] / "leaderboards" / "papers"
PAPERS = ("ha-dpo", "povid", "hsa-dpo", "opa-dpo")
# paper model name -> bench model entry; paper method -> bench method
MODEL_MAP = {"LLaVA-1.5-7B": "llava-7b", "LLaVA-1.5": "llava-7b", "LLaVA-1.5-13B": "llava-13b"}
METHOD_MAP = {"base": "base", "HA-DPO": "ha-dpo", "POVID": "povid", "HSA-DPO": "hsa-dpo", "OPA-DPO": "opa-dpo",
              "DPO": "dpo"}
POPE_COLUMNS = {"Accuracy": "accuracy", "Precision": "precision", "Recall": "recall", "F1 Score": "f1",
                "Yes Ratio (%)": "yes_ratio"}


def parse_hadpo_readme(text: str) -> list[dict]:
    """Rows (model, method, benchmark, split, metric, value) from HA-DPO's README tables."""
    rows, split = [], None
    header: list[str] = []
    for line in text.splitlines():
        m = re.match(r"\*\*POPE (Random|Popular|Adversarial)\*\*", line.strip())
        if m:
            split = m.group(1).lower()
            continue
        if not line.startswith("|") or line.startswith("|:"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "Model":
            header = cells
            continue
        if len(cells) != len(header) or "HA-DPO" not in header or cells[1] not in (":heavy_multiplication_x:", ":heavy_check_mark:"):
            continue
        method = "HA-DPO" if cells[1] == ":heavy_check_mark:" else "base"
        if header[2] == "SHR":
            rows.append({"model": cells[0], "method": method, "benchmark": "shr", "split": "", "metric": "shr",
                         "value": cells[2]})
        else:
            for name, value in zip(header[2:], cells[2:]):
                rows.append({"model": cells[0], "method": method, "benchmark": "pope", "split": split or "",
                             "metric": POPE_COLUMNS[name], "value": value})
    return rows


def load_paper(paper: str, folder: Path = PAPERS_DIR) -> list[dict]:
    if paper not in PAPERS:
        raise BenchError(f"unknown paper {paper!r}; choose from {', '.join(PAPERS)}")
    path = folder / f"{paper}.csv"
    if not path.exists():
        raise BenchError(f"{path}: paper data file missing")
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _round(value: float, decimals: int, mode: str) -> float:
    scale = 10 ** decimals
    if mode == "truncate":
        return math.floor(value * scale + 1e-9) / scale
    return round(value, decimals)


def _metric_key(row: dict) -> str:
    return f"{row['split']}/{row['metric']}" if row["split"] else row["metric"]


def paper_table(paper: str, out: Path, folder: Path = PAPERS_DIR) -> str:
    """Markdown: reported | reproduced | delta per cell; '—' = not reproduced; '†' = protocol differs."""
    from bench.io import read_json

    rows = load_paper(paper, folder)
    lines = [f"## {paper}: reported vs reproduced", "",
             "| model | method | benchmark | metric | reported | reproduced | Δ |", "|---|---|---|---|---|---|---|"]
    notes = set()
    for r in rows:
        model = MODEL_MAP.get(r["model"])
        method = METHOD_MAP.get(r["method"], r["method"].lower())
        reproduced, delta, mark = "—", "—", ""
        if model is None:
            notes.add(f"{r['model']}: model not available in bench")
        else:
            score_path = Path(out) / model / method / "scores" / f"{r['protocol']}.json"
            alt = sorted((Path(out) / model / method / "scores").glob(f"{r['benchmark']}*.json"))
            path = score_path if score_path.exists() else (alt[0] if alt else None)
            if path is not None:
                score = read_json(path)
                val = score.get("metrics", {}).get(_metric_key(r))
                if val is not None:
                    decimals = len(r["value"].split(".")[1]) if "." in r["value"] else 0
                    mode = "truncate" if paper == "ha-dpo" and r["benchmark"] == "pope" else "round"
                    shown = _round(100 * float(val), decimals, mode)
                    reproduced = f"{shown:.{decimals}f}"
                    delta = f"{shown - float(r['value']):+.{decimals}f}"
                    if score.get("protocol") != r["protocol"]:
                        mark = "†"
                        notes.add(f"† scored with protocol {score.get('protocol')}, the paper used {r['protocol']}")
        split = f" ({r['split']})" if r["split"] else ""
        lines.append(f"| {r['model']} | {r['method']} | {r['benchmark']}{split} | {r['metric']} | {r['value']} |"
                     f" {reproduced}{mark} | {delta} |")
    caveats = sorted({r["caveat"] for r in rows if r.get("caveat")})
    lines += [""] + [f"- {n}" for n in sorted(notes)] + [f"- caveat: {c}" for c in caveats]
    return "\n".join(lines) + "\n"
