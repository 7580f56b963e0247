"""Plumbing shared by benchmarks whose judge answers one prompt per item (MMHal-Bench, LLaVA-Bench).

One prompt per benchmark item, one reply per prompt (neither reference re-asks on content; they retry
only on transport errors, which :class:`bench.judges.OpenAIJudge` does itself). Replies come from, in
order: the protocol's stored replies (``judge/<protocol>.jsonl`` beside the predictions, records
``{"id", "judge", "prompt_sha256", "attempt": 0, "reply", "model"}``), then the judge through its reply
cache (:class:`bench.openai_client.ReplyCache`, keyed by judge id + prompt sha256 + attempt). A stored reply is
used only for the same judge id and the same prompt, so changing the judge model, its settings or the
prompt never reuses an old verdict. ``model`` is the model the endpoint says served the reply (OpenAI's
``model`` field, from the judge cache); the score file counts them so a silently substituted judge
model is visible.

Recomputation (``judge_replies=`` records or a path): no judge is built and nothing is asked; items
without a stored reply are reported as missing.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from bench.io import append_jsonl, iter_jsonl, sha256_text, truncate_torn_tail
from bench.judges import make_judge


@dataclass
class JudgeRun:
    """Replies by item id, the served model per item (None when unknown), items without a reply, stats."""

    replies: dict[str, str] = field(default_factory=dict)
    models: dict[str, str | None] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def served_models(self) -> dict[str, int]:
        return dict(Counter(m or "unknown" for m in self.models.values()))


def read_replies(source: Iterable[dict] | str | Path | None) -> list[dict]:
    if source is None:
        return []
    if isinstance(source, (str, Path)):
        return [r for _, r in iter_jsonl(source, repair=True)] if Path(source).exists() else []
    return list(source)


def _table(records: Iterable[dict], judge_id: str) -> tuple[dict[tuple[str, str], dict], int]:
    table: dict[tuple[str, str], dict] = {}
    ignored = 0
    for rec in records:
        if rec.get("judge") != judge_id:
            ignored += 1
            continue
        if int(rec.get("attempt", 0)) != 0 or not isinstance(rec.get("reply"), str):
            continue
        table.setdefault((str(rec["id"]), str(rec["prompt_sha256"])), rec)
    return table, ignored


def build_judge(spec: str, settings: Mapping[str, Any], cache_dir: Path | None = None) -> Any:
    return make_judge(spec, cache_dir=cache_dir, **dict(settings))


def judge_items(prompts: Mapping[str, str], spec: str, settings: Mapping[str, Any], *, judge: Any = None,
                judge_replies: Iterable[dict] | str | Path | None = None, cache_dir: Path | None = None,
                out_name: str | None = None) -> JudgeRun:
    """A reply for every ``prompts[id]``: stored replies first, then the judge (unless recomputing)."""
    run = JudgeRun()
    if judge_replies is not None:
        built = judge if judge is not None else build_judge(spec, settings)
        judge_id = built.judge_id
        table, ignored = _table(read_replies(judge_replies), judge_id)
        for iid, prompt in prompts.items():
            rec = table.get((iid, sha256_text(prompt)))
            if rec is None:
                run.missing[iid] = "no stored judge reply for this prompt and judge"
            else:
                run.replies[iid], run.models[iid] = rec["reply"], rec.get("model")
        run.info = {"id": judge_id, "spec": spec, "version": getattr(built, "version", None), "requests": 0, "recomputed_from_stored_replies": True,
                    "ignored_replies_of_other_judges": ignored}
        return run
    judge = judge if judge is not None else build_judge(spec, settings, cache_dir)
    out = Path(cache_dir) / f"{out_name}.jsonl" if cache_dir is not None and out_name else None
    stored: list[dict] = []
    if out is not None and out.exists():
        truncate_torn_tail(out)
        stored = read_replies(out)
    table, ignored = _table(stored, judge.judge_id)
    for iid, prompt in prompts.items():
        sha = sha256_text(prompt)
        rec = table.get((iid, sha))
        if rec is not None:
            run.replies[iid], run.models[iid] = rec["reply"], rec.get("model")
            continue
        reply = judge(prompt)
        cached = getattr(getattr(judge, "cache", None), "records", {}).get((judge.judge_id, sha, 0)) or {}
        model = cached.get("model")
        run.replies[iid], run.models[iid] = reply, model
        if out is not None:
            append_jsonl(out, [{"id": iid, "judge": judge.judge_id, "prompt_sha256": sha, "attempt": 0,
                                "reply": reply, **({"model": model} if model else {})}])
    run.info = judge.stats() if hasattr(judge, "stats") else {"id": judge.judge_id}
    run.info.update({"spec": spec, "version": getattr(judge, "version", None),
                     "ignored_replies_of_other_judges": ignored})
    if out is not None:
        run.info["replies_file"] = out.name
    return run


def missing_judge(spec: str, settings: Mapping[str, Any], offline_alternative: str) -> list[str]:
    """What an API judge needs and lacks here (its key; a reachable endpoint), each with how to get it."""
    judge = build_judge(spec, settings)
    if not hasattr(judge, "base_url"):  # an offline judge needs nothing
        return []
    out: list[str] = []
    env = getattr(judge, "api_key_env", None)
    if env and not os.environ.get(env):
        out.append(f"judge {judge.judge_id}: API key — set ${env} (endpoint {getattr(judge, 'base_url', '?')};"
                   " $BENCH_JUDGE_BASE_URL selects another OpenAI-compatible server), or run the offline protocol"
                   f" `{offline_alternative}`")
    if os.environ.get("BENCH_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        out.append(f"judge {judge.judge_id}: BENCH_OFFLINE is set, so the judge endpoint cannot be reached — unset"
                   f" it on a connected machine, or run the offline protocol `{offline_alternative}`")
    return out
