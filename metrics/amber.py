"""AMBER (Wang et al., 2023, arXiv 2311.07397): generative and discriminative hallucination, LLM-free.

Reference: ``junyangwang0410/AMBER@534babf:inference.py`` with the data of that commit (``data/annotations.json``,
``relation.json``, ``safe_words.txt``, ``metrics.txt``, ``query/query_all.json``; shipped gzipped or verbatim
under ``metrics/data/amber/`` and sha256-checked on load, see ``metrics/data/SOURCES.md``).

Items: ids 1-1004 are generative ("Describe this image.", one per image ``AMBER_<id>.jpg``), ids 1005-15220
discriminative yes/no questions (types existence ``discriminative-hallucination``, attribute
``discriminative-attribute-{state,number,action}``, relation = every other type). An annotation row is
looked up as ``annotations[id - 1]``.

Generative item (:func:`judge_generative`): nouns = ``WordNetLemmatizer().lemmatize(w)`` of the tokens of
``nltk.word_tokenize(response)`` (case kept) whose ``nltk.pos_tag`` tag starts with ``NN``, kept only when in
the hallucination vocabulary (keys and values of ``relation.json``; duplicates kept). The truth words and the
association words of each truth word form the safe list, the annotated hallucination words and their
associations the hallucination list; an association word marks the truth (hallucination) word it belongs
to, and the *first* match in list order wins (association words come before the words themselves, so a
noun that is both some word's association and a truth word marks the former — reproduced). Per noun, in
order: a global safe word (``safe_words.txt``) is neither hallucinated nor marks anything (but counts in the
denominator); a literal safe-list word marks its truth word; otherwise a literal hallucination-list word
marks its hallucination word, then the similarity backend (:mod:`metrics.amber_similarity`) is asked
against the hallucination list (first similar word marked) and then the safe list (first similar word
marked, and the noun is *not* hallucinated); a noun with no similar safe word is hallucinated. Over items:

    CHAIR = Σ hallucinated nouns / Σ nouns          Cover = Σ covered truth words / Σ truth words
    Hal   = share of items with ≥ 1 hallucinated noun
    Cog   = Σ covered hallucination words / Σ hallucination words

Discriminative item: the answer counts as "yes" only when the response is exactly ``Yes`` and "no" only when
it is exactly ``No`` (the reference's answer matching; anything else is wrong and counted under
``answers_neither_yes_nor_no``). "No" is the positive class: Accuracy = correct / items,
Precision = (truth no ∧ answered No) / answered No, Recall = (truth no ∧ answered No) / truth no,
F1 = 2PR/(P+R); per dimension (existence, attribute = state+number+action, state, number, action, relation)
and overall.

Protocols: ``amber`` (both tasks, = ``--evaluation_type a``), ``amber-g`` (``g``), ``amber-d`` (``d``; the
``existence/``, ``attribute/``, ``relation/`` keys are the ``de``/``da``/``dr`` breakdowns), and the
similarity-disabled variants ``amber-nosim``, ``amber-g-nosim`` (backend ``none``). The discriminative task
never uses the similarity step, so ``amber-d`` has no variant. Decoding: greedy, 512 new tokens, the query
text verbatim as the user turn.

Deliberate deviations (documented, tested):

* ``metrics`` are exact fractions of the counts. The reference initialises every denominator at 0.001
  (``metrics.txt``), rounds P and R to one decimal before computing F1 and adds 0.0001 (existence: 0.001) to
  F1's denominator; :func:`reference_printout` reproduces its printed numbers exactly (floats accumulated in
  its order) and the score file keeps them under ``printed``;
* zero denominators give 0.0 and are listed under ``zero_division`` (the reference prints ~0 through its
  0.001 offsets);
* an id outside 1..15220 (the reference crashes, or wraps around for ids ≤ 0), an id of the other task, a
  missing prediction and a missing image are skipped, each reported with its id;
* a prediction file with an id twice keeps the last line (the reference would count both).

Data: images are ``<data root>/amber/images/AMBER_<n>.jpg`` (``python -m bench data fetch amber``). A data root
holding its own ``amber/annotations.json`` (with ``relation.json``, ``safe_words.txt``, ``query_all.json``)
uses those instead of the shipped files — the synthetic world's AMBER-style rows
(:mod:`bench.data.synthetic_amber`, derived on first use) are read that way.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from bench import nltk_data
from bench.benchmark import Benchmark, EvalItem, GenerationSettings
from bench.data.synthetic_amber import ensure_amber
from bench.errors import BenchError, DataError
from bench.io import read_json
from bench.registry import BENCHMARKS
from bench.stats import bootstrap_ci
from metrics.amber_similarity import make_backend
from metrics.chair_words import ensure_nltk, lemma, pos_tag, tokenize

DATA_DIR = Path(__file__).resolve().parent / "data" / "amber"
REFERENCE = "junyangwang0410/AMBER@534babf"
# sha256 of the files as released (of the decompressed bytes for the .gz copies)
SHA256 = {
    "annotations.json": "db22a436c4836fbb295e60b4e80d519573077579fb7032f01b193c1bd022b797",
    "query_all.json": "127680ae61f7d4a92d2f7f07a8deaec07f0689b194d2c7c0f41ead7bd2c5bcf5",
    "relation.json": "c4c1491e9bbc3209abc1888c12a1bf8413bdbab8a0d8be04b990a2e7680cf23e",
    "safe_words.txt": "f92cf1123f4578a2630832fac3e6ac4de36212ea55859d3bed4fd233723f4043",
    "metrics.txt": "2fbe2ee584d10e7ce0a568a4902d3d2296727d45f761bf091dd35c4e4b5bc6ac",
}
DATA_FILES = ("annotations.json", "relation.json", "safe_words.txt", "query_all.json")
DIMENSIONS = ("existence", "state", "number", "action", "relation")
TYPE_DIMENSION = {"discriminative-hallucination": "existence", "discriminative-attribute-state": "state",
                  "discriminative-attribute-number": "number", "discriminative-attribute-action": "action"}
GROUPS = {"existence": ("existence",), "attribute": ("state", "number", "action"), "state": ("state",),
          "number": ("number",), "action": ("action",), "relation": ("relation",)}
# per-item count vector: 8 generative counts, then 5 per discriminative dimension
GEN_FIELDS = ("n_hall", "n_nouns", "covered", "n_truth", "cog", "n_hallu", "hal_item", "gen_items")
DISC_FIELDS = ("n", "correct", "truth_no", "answered_no", "true_no")
WIDTH = len(GEN_FIELDS) + len(DIMENSIONS) * len(DISC_FIELDS)
NLTK_NEEDS = ("tokenizer", "tagger", "wordnet")


def dimension_of(kind: str) -> str:
    """Discriminative dimension of an annotation ``type`` (the reference's else-branch: relation)."""
    return TYPE_DIMENSION.get(kind, "relation")


# ------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class AmberData:
    annotations: tuple  # row k is id k + 1
    association: Mapping[str, list]
    safe_words: frozenset
    vocabulary: frozenset  # hallucination words: keys and values of relation.json
    queries: Mapping[int, Mapping[str, str]]  # id -> {"image", "query"}
    source: str  # "package" or the data-root folder
    files: Mapping[str, str]  # name -> sha256


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(path, "file not found")
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.suffix == ".gz" else raw


def _json(name: str, raw: bytes, path: Path) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"invalid JSON ({exc})") from None


def _check_annotations(rows: Any, path: Path) -> tuple:
    if not isinstance(rows, list):
        raise DataError(path, "expected a JSON list of annotation rows")
    for k, row in enumerate(rows):
        if not isinstance(row, dict) or row.get("id") != k + 1 or "type" not in row or "truth" not in row:
            raise DataError(path, f"row {k}: expected {{'id': {k + 1}, 'type', 'truth', ...}} (ids must be 1..N in"
                                  " order: the reference indexes annotations[id - 1])", field="id")
        if row["type"] == "generative":
            if not isinstance(row["truth"], list) or not isinstance(row.get("hallu"), list):
                raise DataError(path, f"id {k + 1}: a generative row needs 'truth' and 'hallu' word lists")
        elif row["truth"] not in ("yes", "no"):
            raise DataError(path, f"id {k + 1}: discriminative truth {row['truth']!r} is not 'yes'/'no'",
                            field="truth")
    return tuple(rows)


def load_data(folder: Path | None = None) -> AmberData:
    """The AMBER files of ``folder`` (a data root's ``amber/``), or the shipped copies (sha256-checked)."""
    shipped = folder is None
    base = DATA_DIR if shipped else Path(folder)
    return _load(str(base), shipped)


@lru_cache(maxsize=4)
def _load(base_s: str, shipped: bool) -> AmberData:
    base = Path(base_s)
    raws: dict[str, tuple[bytes, Path]] = {}
    for name in DATA_FILES:
        path = base / (name + ".gz" if shipped and name.endswith(".json") and name != "relation.json" else name)
        raw = _read_bytes(path)
        digest = hashlib.sha256(raw).hexdigest()
        if shipped and digest != SHA256[name]:
            raise DataError(path, f"sha256 {digest[:16]}… differs from the released file's {SHA256[name][:16]}…")
        raws[name] = (raw, path)
    ann = _check_annotations(_json("annotations", *raws["annotations.json"]), raws["annotations.json"][1])
    assoc = _json("relation", *raws["relation.json"])
    rel_path = raws["relation.json"][1]
    if not isinstance(assoc, dict) or not all(isinstance(v, list) for v in assoc.values()):
        raise DataError(rel_path, "expected {word: [associated words]}")
    for row in ann:
        if row["type"] == "generative":
            absent = [w for w in row["truth"] + row["hallu"] if w not in assoc]
            if absent:  # the reference would raise KeyError here
                raise DataError(rel_path, f"words of annotation id {row['id']} have no entry: {absent}")
    # the reference: for line in file: line.split('\n')[0]
    safe = frozenset(line.split("\n")[0] for line in io.StringIO(raws["safe_words.txt"][0].decode("utf-8")))
    vocab = frozenset(list(assoc) + [w for ws in assoc.values() for w in ws])
    queries_raw = _json("query", *raws["query_all.json"])
    q_path = raws["query_all.json"][1]
    queries: dict[int, dict] = {}
    for k, row in enumerate(queries_raw if isinstance(queries_raw, list) else []):
        if not isinstance(row, dict) or not {"id", "image", "query"} <= row.keys():
            raise DataError(q_path, f"row {k}: expected {{'id', 'image', 'query'}}")
        queries[int(row["id"])] = {"image": str(row["image"]), "query": str(row["query"])}
    if not queries:
        raise DataError(q_path, "no queries")
    files = {name: hashlib.sha256(raw).hexdigest() for name, (raw, _) in raws.items()}
    return AmberData(ann, assoc, safe, vocab, queries, "package" if shipped else str(base), files)


def metrics_init(path: Path = DATA_DIR / "metrics.txt") -> dict[str, float]:
    """``metrics.txt`` parsed like the reference's ``init()`` (``name = literal``; literals only)."""
    out: dict[str, float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.strip().split("=")
        if len(parts) == 2:
            out[parts[0].strip()] = ast.literal_eval(parts[1].strip())
    return out


# ------------------------------------------------------------------------------------------- scoring
def extract_nouns(text: str) -> list[str]:
    """Noun lemmas of ``text``: word_tokenize (no lower-casing), pos_tag, NN* tokens, WordNet noun lemma."""
    return [lemma(word) for word, tag in pos_tag(tokenize(text)) if tag.startswith("NN")]


def _mark(flags: list[int], j: int, tail: int) -> None:
    """Mark list position ``j``: an association entry marks the word it belongs to (stored index)."""
    head = len(flags) - tail
    if j < head:
        flags[flags[j] + head] = 1
    else:
        flags[j] = 1


def _word_list(words: Sequence[str], association: Mapping[str, list]) -> tuple[list[str], list[int]]:
    """Association words of each word (tagged with the word's index), then the words (tagged 0)."""
    out, tags = [], []
    for idx, word in enumerate(words):
        out += association[word]
        tags += [idx] * len(association[word])
    return out + list(words), tags + [0] * len(words)


def judge_generative(response: str, truth: Sequence[str], hallu: Sequence[str], data: AmberData,
                     similarity) -> dict[str, Any]:
    """One generative item as the reference scores it (see the module docstring)."""
    nouns = [n for n in extract_nouns(response) if n in data.vocabulary]
    safe_words, safe_flags = _word_list(truth, data.association)
    ha_words, ha_flags = _word_list(hallu, data.association)
    n_safe, n_ha = len(truth), len(hallu)
    safe_index = {}
    for j, w in enumerate(safe_words):
        safe_index.setdefault(w, j)
    ha_index = {}
    for j, w in enumerate(ha_words):
        ha_index.setdefault(w, j)
    hallucinated: list[str] = []
    for noun in nouns:
        if noun in data.safe_words:
            continue
        if noun in safe_index:
            _mark(safe_flags, safe_index[noun], n_safe)
            continue
        if noun in ha_index:
            _mark(ha_flags, ha_index[noun], n_ha)
        if not similarity.never:
            for j, word in enumerate(ha_words):
                if similarity.similar(noun, word):
                    _mark(ha_flags, j, n_ha)
                    break
            hit = next((j for j, word in enumerate(safe_words) if similarity.similar(noun, word)), None)
            if hit is not None:
                _mark(safe_flags, hit, n_safe)
                continue
        hallucinated.append(noun)
    safe_tail, ha_tail = safe_flags[-n_safe:], ha_flags[-n_ha:]  # the reference's slices (n == 0: whole list)
    return {"nouns": nouns, "hallucinated": hallucinated, "n_nouns": len(nouns), "n_hall": len(hallucinated),
            "covered": sum(safe_tail), "n_truth": len(safe_tail), "cog": sum(ha_tail), "n_hallu": len(ha_tail)}


def parse_answer(response: str) -> str | None:
    """The reference's matching: exactly ``Yes`` → yes, exactly ``No`` → no, anything else → None."""
    return "yes" if response == "Yes" else "no" if response == "No" else None


def counts_of(rec: Mapping[str, Any]) -> np.ndarray:
    """Per-item count vector (layout: GEN_FIELDS, then DISC_FIELDS per dimension)."""
    vec = np.zeros(WIDTH, dtype=np.int64)
    if rec["task"] == "g":
        vec[:8] = (rec["n_hall"], rec["n_nouns"], rec["covered"], rec["n_truth"], rec["cog"], rec["n_hallu"],
                   int(rec["n_hall"] > 0), 1)
    else:
        base = len(GEN_FIELDS) + DIMENSIONS.index(rec["dimension"]) * len(DISC_FIELDS)
        truth_no, said_no = rec["truth"] != "yes", rec["answer"] == "no"
        correct = (rec["answer"] == "yes") if rec["truth"] == "yes" else said_no
        vec[base:base + 5] = (1, int(correct), int(truth_no), int(said_no), int(truth_no and said_no))
    return vec


def _ratio(num: float, den: float, key: str, zero: list[str] | None) -> float | None:
    if den:
        return num / den
    if zero is not None:
        zero.append(key)
        return 0.0
    return None


def metrics_from_counts(vec: np.ndarray, tasks: Iterable[str], zero: list[str] | None = None
                        ) -> dict[str, float | None]:
    """Metrics (fractions) of a summed count vector; zero denominators → 0.0 listed in ``zero`` (or None
    when ``zero`` is None, as the bootstrap wants)."""
    v = [int(x) for x in vec]
    out: dict[str, float | None] = {}
    if "g" in tasks:
        n_hall, n_nouns, covered, n_truth, cog, n_hallu, hal, n = v[:8]
        out["chair"] = _ratio(n_hall, n_nouns, "chair", zero)
        out["cover"] = _ratio(covered, n_truth, "cover", zero)
        out["hal"] = _ratio(hal, n, "hal", zero)
        out["cog"] = _ratio(cog, n_hallu, "cog", zero)
    if "d" in tasks:
        per_dim = {d: v[8 + 5 * i: 13 + 5 * i] for i, d in enumerate(DIMENSIONS)}
        for group, dims in [("", DIMENSIONS), *GROUPS.items()]:
            n, correct, truth_no, said_no, true_no = (sum(per_dim[d][k] for d in dims) for k in range(5))
            pre = f"{group}/" if group else ""
            acc = _ratio(correct, n, pre + "accuracy", zero)
            p = _ratio(true_no, said_no, pre + "precision", zero)
            r = _ratio(true_no, truth_no, pre + "recall", zero)
            f1 = _ratio(2 * p * r, p + r, pre + "f1", zero) if p is not None and r is not None else None
            out.update({pre + "accuracy": acc, pre + "precision": p, pre + "recall": r, pre + "f1": f1})
    return out


# ------------------------------------------------------------------------------- the reference's printout
_PREFIX = {"existence": "ha", "state": "as", "number": "an", "action": "aa", "relation": "asso"}
_SECTIONS = {"a": ("g", "de", "da", "dr"), "g": ("g",), "d": ("de", "da", "dr"), "de": ("de",), "da": ("da",),
             "dr": ("dr",)}


def reference_printout(records: Sequence[Mapping[str, Any]], evaluation_type: str,
                       init: Mapping[str, float] | None = None) -> dict[str, float]:
    """What ``inference.py --evaluation_type T`` prints, as ``{"Section/Metric": value}`` (1 decimal).

    ``records`` are per-item results in the order of the inference file (duplicates processed again, as the
    reference does); the reference's float accumulation, offsets, rounding and F1 epsilons are reproduced.
    A section whose (offset) denominators are all that is left still prints ~0, as the reference does.
    """
    m = dict(init if init is not None else metrics_init())
    for rec in records:
        if rec["task"] == "g":
            m["chair_score"] += rec["n_hall"]
            m["chair_num"] += rec["n_nouns"]
            m["safe_cover_score"] += rec["covered"]
            m["safe_cover_num"] += rec["n_truth"]
            m["hallu_cover_score"] += rec["cog"]
            m["hallu_cover_num"] += rec["n_hallu"]
            if rec["n_hall"] == 0:
                m["non_hallu_score"] += 1
            m["non_hallu_num"] += 1
            continue
        p = _PREFIX[rec["dimension"]]
        truth, ans = rec["truth"], rec["answer"]
        m["qa_correct_num"] += 1
        m[f"{p}_qa_correct_num"] += 1
        if truth == "yes":
            if ans == "yes":
                m["qa_correct_score"] += 1
                m[f"{p}_qa_correct_score"] += 1
        else:
            m["qa_no_num"] += 1
            m[f"{p}_qa_no_num"] += 1
            if ans == "no":
                for key in ("qa_correct_score", "qa_no_score", f"{p}_qa_correct_score", f"{p}_qa_no_score"):
                    m[key] += 1
        if ans == "no":
            m["qa_ans_no_num"] += 1
            m[f"{p}_qa_ans_no_num"] += 1
            if truth == "no":
                m["qa_ans_no_score"] += 1
                m[f"{p}_qa_ans_no_score"] += 1

    def pct(a: float, b: float) -> float:
        return round(a / b * 100, 1)

    def f1(prec: float, rec: float, eps: float = 0.0001) -> float:
        return round(2 * (prec / 100) * (rec / 100) / ((prec / 100) + (rec / 100) + eps) * 100, 1)

    def block(p: str, eps: float = 0.0001) -> dict[str, float]:
        acc, prec = pct(m[f"{p}qa_correct_score"], m[f"{p}qa_correct_num"]), pct(m[f"{p}qa_ans_no_score"],
                                                                                  m[f"{p}qa_ans_no_num"])
        rec = pct(m[f"{p}qa_no_score"], m[f"{p}qa_no_num"])
        return {"Accuracy": acc, "Precision": prec, "Recall": rec, "F1": f1(prec, rec, eps)}

    out: dict[str, float] = {}
    sections = _SECTIONS[evaluation_type]
    if "g" in sections:
        out["Generative Task/CHAIR"] = pct(m["chair_score"], m["chair_num"])
        out["Generative Task/Cover"] = pct(m["safe_cover_score"], m["safe_cover_num"])
        out["Generative Task/Hal"] = round(100 - m["non_hallu_score"] / m["non_hallu_num"] * 100, 1)
        out["Generative Task/Cog"] = pct(m["hallu_cover_score"], m["hallu_cover_num"])
    if {"de", "da", "dr"} <= set(sections):
        out.update({f"Descriminative Task/{k}": v for k, v in block("").items()})
    if "de" in sections:
        out.update({f"Exsitence/{k}": v for k, v in block("ha_", 0.001).items()})
    if "da" in sections:
        def s(kind: str) -> float:
            return m[f"as_qa_{kind}"] + m[f"an_qa_{kind}"] + m[f"aa_qa_{kind}"]

        prec = pct(s("ans_no_score"), s("ans_no_num"))
        rec = pct(s("no_score"), s("no_num"))
        out.update({"Attribute/Accuracy": pct(s("correct_score"), s("correct_num")), "Attribute/Precision": prec,
                    "Attribute/Recall": rec, "Attribute/F1": f1(prec, rec)})
        for name, p in (("State", "as_"), ("Number", "an_"), ("Action", "aa_")):
            out.update({f"{name}/{k}": v for k, v in block(p).items()})
    if "dr" in sections:
        out.update({f"Relation/{k}": v for k, v in block("asso_").items()})
    return out


def judge_responses(rows: Sequence[tuple[Any, str]], data: AmberData, similarity
                    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Per-item records for ``(id, response)`` rows in order, and ``{id: reason}`` for rows not scored."""
    records, skipped = [], {}
    n = len(data.annotations)
    for raw_id, response in rows:
        try:
            amber_id = int(raw_id)
        except (TypeError, ValueError):
            skipped[str(raw_id)] = "not an AMBER id"
            continue
        if not 1 <= amber_id <= n or str(raw_id).strip() != str(amber_id):
            skipped[str(raw_id)] = f"AMBER id out of range (1..{n})"
            continue
        row = data.annotations[amber_id - 1]
        if not isinstance(response, str):
            skipped[str(raw_id)] = "response is not a string"
            continue
        if row["type"] == "generative":
            rec = {"id": amber_id, "task": "g", **judge_generative(response, row["truth"], row["hallu"], data,
                                                                   similarity)}
        else:
            rec = {"id": amber_id, "task": "d", "type": row["type"], "dimension": dimension_of(row["type"]),
                   "truth": row["truth"], "answer": parse_answer(response)}
        records.append(rec)
    return records, skipped


# ------------------------------------------------------------------------------------------- protocols
def _is_synthetic(data_root: Path) -> bool:
    manifest = Path(data_root) / "manifest.json"
    try:
        return manifest.exists() and read_json(manifest).get("generator") == "bench.data.synthetic"
    except (DataError, AttributeError):
        return False


class AmberProtocol(Benchmark):
    """AMBER, both tasks (``--evaluation_type a``), spaCy en_core_web_lg similarity at 0.8."""

    name = "amber"
    benchmark = "amber"
    version = "1"
    description = ("AMBER generative (CHAIR, Cover, Hal, Cog) + discriminative (accuracy, precision, recall, F1;"
                   " existence/attribute/relation), junyangwang0410/AMBER@534babf, spaCy similarity 0.8")
    generation = GenerationSettings(max_new_tokens=512)
    params: dict[str, Any] = {"tasks": ["g", "d"], "similarity": "spacy:en_core_web_lg", "similarity_threshold": 0.8,
                              "answer_matching": "exact Yes/No", "reference": REFERENCE}
    headline = {"chair": ("AMBER CHAIR", False), "cover": ("AMBER Cover", True), "hal": ("AMBER Hal", False),
                "cog": ("AMBER Cog", False), "accuracy": ("AMBER Acc", True), "f1": ("AMBER F1", True)}

    # ------------------------------------------------------------------ resources
    @classmethod
    def similarity(cls):
        return make_backend(cls.params["similarity"] or "none", cls.params.get("similarity_threshold") or 0.8)

    @classmethod
    def _needs_similarity(cls) -> bool:
        return "g" in cls.params["tasks"] and bool(cls.params["similarity"])

    @classmethod
    def missing_resources(cls, data_root: Path) -> list[str]:
        """Human-readable missing pieces with how to get them (empty: ready); callable on the class (preflight)."""
        out = []
        absent = nltk_data.missing(NLTK_NEEDS, [Path(data_root) / "nltk_data"]) if "g" in cls.params["tasks"] else []
        if absent:
            out.append(f"NLTK data {', '.join(absent)} (AMBER noun extraction): `{nltk_data.FETCH_HINT}` then"
                       f" export {nltk_data.ENV_VAR}=<data root>/nltk_data")
        if cls._needs_similarity():
            out += [f"{msg} — or run the protocol without the similarity step: {cls.name}-nosim"
                    if not cls.name.endswith("-nosim") else msg for msg in cls.similarity().missing()]
        if not _is_synthetic(data_root) and not (Path(data_root) / "amber" / "annotations.json").exists():
            images = Path(data_root) / "amber" / "images"
            if not images.is_dir() or not any(images.glob("AMBER_*")):
                out.append(f"AMBER images not found under {images}: python -m bench data fetch amber --root {data_root}")
        return out

    def require(self, data_root: Path) -> None:
        """Raise one BenchError when the scorer cannot run (NLTK data, similarity backend); images are
        per-item (a missing one is skipped)."""
        problems = [p for p in self.missing_resources(data_root) if "images not found" not in p]
        if problems:
            raise BenchError(f"{self.name}: cannot score AMBER: " + "; ".join(problems))

    def data(self, data_root: Path) -> AmberData:
        root = Path(data_root)
        if _is_synthetic(root):
            ensure_amber(root)
        folder = root / "amber"
        return load_data(folder if (folder / "annotations.json").exists() else None)

    def _ids(self, data: AmberData) -> list[int]:
        tasks = self.params["tasks"]
        return [row["id"] for row in data.annotations
                if ("g" if row["type"] == "generative" else "d") in tasks and row["id"] in data.queries]

    def items(self, data_root: Path) -> list[EvalItem]:
        self.require(data_root)
        data = self.data(data_root)
        images = Path(data_root) / "amber" / "images"
        return [EvalItem(str(i), str(images / data.queries[i]["image"]), data.queries[i]["query"],
                         {"image": data.queries[i]["image"]}) for i in self._ids(data)]

    def data_files(self, data_root: Path) -> list[Path]:
        folder = Path(data_root) / "amber"
        if (folder / "annotations.json").exists():
            return [folder / n for n in DATA_FILES]
        return [DATA_DIR / (n + ".gz" if n in ("annotations.json", "query_all.json") else n) for n in DATA_FILES]

    # ------------------------------------------------------------------ scoring
    def statistic(self, vec: np.ndarray) -> dict[str, float | None]:
        return metrics_from_counts(vec, self.params["tasks"])

    def paired_units(self, score: dict):
        """Per-image count vectors from ``details.per_item`` and the statistic of their sum."""
        rows = (score.get("details") or {}).get("per_item") or []
        if not rows or any("image" not in r for r in rows):
            return None
        units: dict[str, np.ndarray] = {}
        for r in rows:
            units.setdefault(str(r["image"]), np.zeros(WIDTH, dtype=np.int64))
            units[str(r["image"])] += counts_of(r)
        return units, lambda s: {k: (v if v is not None else 0.0) for k, v in self.statistic(s).items()}

    def score(self, predictions: list[dict], data_root: Path, *, n_boot: int = 1000,
              item_ids: set[str] | None = None, seed: int = 0, **_: Any) -> dict:
        """Stored generations (``{"id", "text"}``) → AMBER metrics, bootstrap CIs over images, per-item details."""
        self.require(data_root)
        nltk_data.configure([Path(data_root) / "nltk_data"])
        if "g" in self.params["tasks"]:
            ensure_nltk("wordnet")
        data = self.data(data_root)
        ids = self._ids(data)
        protocol_ids = {str(i) for i in ids}
        if item_ids is not None:  # the --limit selection; other predictions stay on disk, unscored
            ids = [i for i in ids if str(i) in item_ids]
        wanted = {str(i) for i in ids}
        texts: dict[str, str] = {}
        duplicates: list[str] = []
        for p in predictions:
            key = str(p["id"])
            if key in texts:
                duplicates.append(key)
            texts[key] = p["text"]
        skipped: dict[str, str] = {}
        rows = []
        n_ann = len(data.annotations)
        for key, text in texts.items():
            if key in wanted or (item_ids is not None and key in protocol_ids):
                continue
            try:
                in_range = 1 <= int(key) <= n_ann
            except ValueError:
                in_range = False
            skipped[key] = (f"id not in protocol {self.name}" if in_range
                            else f"not an AMBER id (expected 1..{n_ann})")
        for i in ids:
            if str(i) in texts:
                rows.append((i, texts[str(i)]))
            else:
                skipped[str(i)] = "no prediction"
        similarity = self.similarity() if "g" in self.params["tasks"] else make_backend("none")
        records, bad = judge_responses(rows, data, similarity)
        skipped.update(bad)
        per_item = []
        vectors = []
        for rec in records:
            image = data.queries[rec["id"]]["image"]
            row = {"image": image, **rec, "id": str(rec["id"])}
            per_item.append(row)
            vectors.append((image, counts_of(rec)))
        by_image: dict[str, np.ndarray] = {}
        for image, vec in vectors:
            by_image.setdefault(image, np.zeros(WIDTH, dtype=np.int64))
            by_image[image] += vec
        units = list(by_image.values())
        total = np.sum(units, axis=0) if units else np.zeros(WIDTH, dtype=np.int64)
        zero: list[str] = []
        metrics = metrics_from_counts(total, self.params["tasks"], zero)
        stack = np.stack(units) if units else np.zeros((0, WIDTH), dtype=np.int64)
        ci = bootstrap_ci(list(range(len(units))), lambda idx: self.statistic(stack[list(idx)].sum(axis=0)),
                          n_boot=n_boot, seed=seed)
        eval_type = "a" if set(self.params["tasks"]) == {"g", "d"} else self.params["tasks"][0]
        counts = {f: int(total[k]) for k, f in enumerate(GEN_FIELDS)} if "g" in self.params["tasks"] else {}
        if "d" in self.params["tasks"]:
            counts["answers_neither_yes_nor_no"] = sum(1 for r in records if r["task"] == "d" and r["answer"] is None)
        return {
            "metrics": metrics, "ci": ci, "n": len(records), "images": len(units),
            "skipped": {"count": len(skipped), "reasons": skipped},
            "duplicates": duplicates, "zero_division": zero, "counts": counts,
            "similarity": similarity.name if "g" in self.params["tasks"] else None,
            "printed": reference_printout(records, eval_type) if records else {},
            "data": {"source": data.source, "sha256": dict(data.files)},
            "details": {"per_item": per_item},
        }


DECLARATIONS: list[dict[str, Any]] = [
    {"name": "amber-g", "description": "AMBER generative task (CHAIR, Cover, Hal, Cog), spaCy en_core_web_lg"
                                      " similarity 0.8 (inference.py --evaluation_type g)",
     "params": {"tasks": ["g"]},
     "headline": {k: AmberProtocol.headline[k] for k in ("chair", "cover", "hal", "cog")}},
    {"name": "amber-d", "description": "AMBER discriminative task: accuracy/precision/recall/F1 ('No' positive,"
                                      " exact Yes/No), existence/attribute/relation breakdowns (--evaluation_type d)",
     "params": {"tasks": ["d"], "similarity": None, "similarity_threshold": None},
     "headline": {k: AmberProtocol.headline[k] for k in ("accuracy", "f1")}},
    {"name": "amber-nosim", "description": "AMBER both tasks WITHOUT the spaCy similarity step (backend none): a"
                                          " different metric from amber",
     "params": {"similarity": "none", "similarity_threshold": None},
     "headline": {k: (f"{label} (no sim)", hib) for k, (label, hib) in AmberProtocol.headline.items()}},
    {"name": "amber-g-nosim", "description": "AMBER generative task WITHOUT the spaCy similarity step (backend"
                                            " none): a different metric from amber-g",
     "params": {"tasks": ["g"], "similarity": "none", "similarity_threshold": None},
     "headline": {k: (f"{AmberProtocol.headline[k][0]} (no sim)", AmberProtocol.headline[k][1])
                  for k in ("chair", "cover", "hal", "cog")}},
]


def _register(decl: Mapping[str, Any]) -> type:
    attrs = {"name": decl["name"], "description": decl["description"], "__doc__": decl["description"],
             "params": {**AmberProtocol.params, **decl["params"]}, "headline": decl["headline"]}
    cls = type(f"Amber_{decl['name'].replace('-', '_')}", (AmberProtocol,), attrs)
    BENCHMARKS.add(cls)
    return cls


BENCHMARKS.add(AmberProtocol)
for _decl in DECLARATIONS:
    _register(_decl)
