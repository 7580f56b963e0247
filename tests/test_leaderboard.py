"""Leaderboards from run records only: every format, protocol mixing refused, up-to-date check, paper tables."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from bench.errors import BenchError, DataError
from bench.io import atomic_write_json, read_json
from bench.leaderboard import check_up_to_date, collect, render_all, write_leaderboards
from bench.leaderboard.cli import main_leaderboard
from bench.leaderboard.papers import paper_table

FIXTURE = Path(__file__).resolve().parent / "data" / "runs"


@pytest.fixture()
def runs(tmp_path) -> Path:
    """A writable copy of the fixture records."""
    dest = tmp_path / "runs"
    shutil.copytree(FIXTURE, dest)
    return dest


def _edit_score(runs: Path, model: str, method: str, protocol: str, **changes) -> None:
    path = runs / model / method / "scores" / f"{protocol}.json"
    score = read_json(path)
    for key, value in changes.items():
        if key == "metrics":
            score["metrics"].update(value)
        else:
            score[key] = value
    atomic_write_json(path, score)
    run = path.parent.parent / "run.json"  # keep the record consistent, as `bench score` does
    rec = read_json(run)
    rec["benchmarks"][protocol].update({k: v for k, v in changes.items() if k in ("version", "fingerprint")})
    atomic_write_json(run, rec)


# ------------------------------------------------------------------------------------ collect
def test_rows_are_model_method_checkpoint_with_base_first():
    table = collect(FIXTURE)
    assert [(r.model, r.method, r.checkpoint) for r in table.rows] == [
        ("llava-7b", "base", "llava-7b"), ("llava-7b", "ha-dpo", "llava-7b/ha-dpo/checkpoint"),
        ("tiny-llava", "base", "tiny-llava"), ("tiny-llava", "dpo", "tiny-llava/dpo/checkpoint")]


def test_columns_are_the_registered_headline_metrics_pope_before_chair():
    table = collect(FIXTURE)
    assert [c.key for c in table.columns] == [
        "pope-hadpo:adversarial/accuracy", "pope-hadpo:adversarial/f1", "pope-hadpo:random/accuracy",
        "pope-hadpo:mean/f1", "chair:chair_i", "chair:chair_s", "chair:recall"]
    chair_i = table.columns[4]
    assert chair_i.label == "CHAIR_i" and chair_i.higher_is_better is False and chair_i.percent
    assert table.date == "2026-11-21" and table.revisions == ["5c489c6f0e0d1c2b3a4958675d4c3b2a19080706"]


def test_cells_keep_full_precision_and_ci():
    row = collect(FIXTURE).rows[0]
    assert "pope-hadpo:random/recall" not in row.cells  # not a headline metric → not a column
    acc = row.cells["pope-hadpo:adversarial/accuracy"]
    assert acc.value == pytest.approx(2393 / 3000, abs=0) and acc.ci == (0.7867, 0.8076)


def test_unregistered_protocol_falls_back_to_every_metric(runs):
    atomic_write_json(runs / "tiny-llava" / "base" / "scores" / "my-probe.json", {
        "protocol": "my-probe", "benchmark": "probe", "version": "1", "fingerprint": "abc",
        "metrics": {"zeta": 0.5, "alpha": 0.25, "tokens": 41.5}, "ci": {"alpha": [0.2, 0.3]}})
    table = collect(runs)
    probe = [c for c in table.columns if c.protocol == "my-probe"]
    assert [c.metric for c in probe] == ["alpha", "tokens", "zeta"]
    assert [c.percent for c in probe] == [True, False, True]  # a value outside [0, 1] is shown raw
    assert any("my-probe is not registered" in n for n in table.notes)
    md = render_all(table, ["md"])["md"]
    assert "| 25.0 [20.0, 30.0] | 41.5 | 50.0 |" in md and "| — | — | — |" in md


def test_absolute_checkpoint_paths_never_reach_a_table(runs):
    rec = read_json(runs / "llava-7b" / "ha-dpo" / "run.json")
    rec["checkpoint"] = str((runs / "llava-7b" / "ha-dpo" / "checkpoint").resolve())
    atomic_write_json(runs / "llava-7b" / "ha-dpo" / "run.json", rec)
    texts = render_all(collect(runs))
    assert collect(runs).rows[1].checkpoint == "llava-7b/ha-dpo/checkpoint"
    assert all(str(runs) not in text for text in texts.values())


def test_training_only_records_are_not_rows(runs):
    atomic_write_json(runs / "tiny-llava" / "povid" / "run.json", {"kind": "train", "model": "tiny-llava",
                                                                   "method": "povid", "checkpoint": "x"})
    assert "povid" not in {r.method for r in collect(runs).rows}


def test_no_records_is_a_clear_error(tmp_path):
    with pytest.raises(BenchError, match="no run records"):
        collect(tmp_path)


def test_score_without_protocol_identity_names_file_and_field(runs):
    path = runs / "llava-7b" / "base" / "scores" / "chair.json"
    score = read_json(path)
    del score["fingerprint"]
    atomic_write_json(path, score)
    with pytest.raises(DataError, match=r"chair\.json field 'fingerprint'"):
        collect(runs)


# ------------------------------------------------------------------------------------ mixing refused
def test_mixed_protocol_versions_in_one_column_are_refused_naming_rows_and_protocols(runs):
    _edit_score(runs, "tiny-llava", "dpo", "pope-hadpo", version="2", fingerprint="0000older0000000")
    with pytest.raises(BenchError) as err:
        collect(runs)
    msg = str(err.value)
    assert "refusing to mix protocol versions" in msg and "'pope-hadpo'" in msg
    assert "v2 fingerprint 0000older0000000 in tiny-llava/dpo" in msg
    assert "v3 fingerprint 50d3189ae6841657 in llava-7b/base, llava-7b/ha-dpo, tiny-llava/base" in msg
    assert "\n" not in msg  # one line for the CLI


def test_same_version_other_fingerprint_is_also_refused(runs):
    _edit_score(runs, "llava-7b", "base", "chair", fingerprint="ffffffffffffffff")
    with pytest.raises(BenchError, match="protocol 'chair' is v1 fingerprint 73dfb9e77d66e390 in .*"
                                         "v1 fingerprint ffffffffffffffff in llava-7b/base"):
        collect(runs)


def test_score_disagreeing_with_its_run_record_is_a_data_error(runs):
    rec = read_json(runs / "llava-7b" / "base" / "run.json")
    rec["benchmarks"]["chair"]["fingerprint"] = "1111111111111111"
    atomic_write_json(runs / "llava-7b" / "base" / "run.json", rec)
    with pytest.raises(DataError, match="disagrees with"):
        collect(runs)


def test_cli_reports_mixing_as_one_line_exit_2(runs, capsys):
    from bench.cli import main

    _edit_score(runs, "tiny-llava", "dpo", "chair", version="0")
    assert main(["leaderboard", "--out", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: refusing to mix protocol versions") and len(err.splitlines()) == 1


# ------------------------------------------------------------------------------------ formats
def test_markdown_has_rows_values_ci_and_provenance():
    md = render_all(collect(FIXTURE), ["md"])["md"]
    assert ("| llava-7b | base | `llava-7b` | 79.76 [78.67, 80.76] | 81.75 [80.66, 82.75] | 89.60 [88.50, 90.59] |"
            " 86.08 [84.99, 87.08] | 14.8 [12.8, 16.6] | 50.2 [48.2, 52.0] | 78.1 [76.1, 79.9] |") in md
    assert "| tiny-llava | dpo |" in md
    assert "CHAIR_i ↓" in md and "POPE-adv acc ↑" in md
    assert "- Protocols: pope-hadpo v3 (fingerprint 50d3189ae6841657), chair v1 (fingerprint 73dfb9e77d66e390)." in md
    assert "- Git revision: 5c489c6f0e0d." in md and "- Date: 2026-11-21" in md
    assert "truncated to 2 decimals" in md


def test_csv_is_long_format_with_full_precision_ci_and_provenance():
    rows = list(csv.DictReader(io.StringIO(render_all(collect(FIXTURE), ["csv"])["csv"])))
    assert len(rows) == 4 * 7
    first = rows[0]
    assert (first["model"], first["method"], first["protocol"], first["metric"]) == (
        "llava-7b", "base", "pope-hadpo", "adversarial/accuracy")
    assert float(first["value"]) == 2393 / 3000 and first["value"] == repr(2393 / 3000)
    assert (first["ci_low"], first["ci_high"], first["shown"]) == ("0.7867", "0.8076", "79.76 [78.67, 80.76]")
    assert first["version"] == "3" and first["fingerprint"] == "50d3189ae6841657"
    assert first["git_revision"].startswith("5c489c6") and first["started"] == "2026-11-20T08:00:00+00:00"
    chair = [r for r in rows if r["model"] == "tiny-llava" and r["method"] == "dpo" and r["metric"] == "chair_i"]
    assert chair[0]["higher_is_better"] == "false" and chair[0]["shown"] == "15.9 [13.9, 17.7]"


def test_latex_is_booktabs_with_pm_halfwidth_and_provenance_caption():
    tex = render_all(collect(FIXTURE), ["tex"])["tex"]
    for part in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{llrrrrrrr}"):
        assert part in tex
    assert r"llava-7b & base & 79.76{\scriptsize$\pm$1.05}" in tex
    assert r"CHAIR\_i $\downarrow$" in tex
    assert r"\caption{Hallucination benchmarks. Protocols: pope-hadpo v3 (fingerprint 50d3189ae6841657)" in tex
    assert "Git revision: 5c489c6f0e0d" in tex and "Date: 2026-11-21" in tex


def test_json_carries_full_precision_ci_and_provenance():
    data = json.loads(render_all(collect(FIXTURE), ["json"])["json"])
    assert data["provenance"]["protocols"]["pope-hadpo"] == {
        "benchmark": "pope", "version": "3", "fingerprint": "50d3189ae6841657", "registered": True,
        "registered_fingerprint": data["provenance"]["protocols"]["pope-hadpo"]["registered_fingerprint"]}
    assert data["provenance"]["date"] == "2026-11-21" and data["provenance"]["records"] == 4
    row = data["rows"][1]
    assert (row["model"], row["method"]) == ("llava-7b", "ha-dpo")
    cell = row["cells"]["pope-hadpo:random/accuracy"]
    assert cell["value"] == 2716 / 3000 and cell["shown"].startswith("90.53 [")
    assert len(cell["ci"]) == 2


def test_html_page_is_self_contained_with_sortable_table_and_plots():
    page = render_all(collect(FIXTURE), ["html"])["html"]
    assert page.startswith("<!DOCTYPE html>") and '<table class="lb" id="leaderboard">' in page
    assert page.count('<tr data-i="') == 4 and 'data-key="chair:chair_i"' in page and 'data-better="lower"' in page
    # one value plot per protocol (pope-hadpo, chair) + 1 CHAIR_i-vs-recall trade-off plot, all inline PNG; the
    # fixture records carry no per-item details, so there is no difference table and no forest plot
    assert page.count('src="data:image/png;base64,') == 3 and "Hallucination vs coverage (protocol chair)" in page
    assert 'id="delta"' not in page and 'href="plots/chair-tradeoff.svg"' in page
    assert "<script>" in page and "addEventListener('click'" in page
    assert "http://" not in page and "https://" not in page and "<link" not in page  # no external resource
    assert "Protocols: pope-hadpo v3" in page and "Date: 2026-11-21" in page


def test_rendering_is_deterministic_in_every_format():
    assert render_all(collect(FIXTURE)) == render_all(collect(FIXTURE))


def test_unknown_format_is_refused():
    with pytest.raises(BenchError, match="unknown leaderboard format"):
        render_all(collect(FIXTURE), ["docx"])


# ------------------------------------------------------------------------------------ files and check
def test_write_leaderboards_writes_every_format_into_out(runs):
    written = write_leaderboards(runs)
    assert sorted(written) == ["csv", "html", "json", "md", "tex"]
    assert all(p.parent == runs and p.name == f"leaderboard.{f}" for f, p in written.items())
    assert not list(runs.glob(".*.tmp"))


def test_up_to_date_check_passes_then_fails_when_a_record_changes(runs, tmp_path):
    tables = tmp_path / "tables"
    write_leaderboards(runs, dest=tables)
    assert check_up_to_date(runs, tables) == []
    # a change below the shown precision still makes the full-precision files stale
    _edit_score(runs, "llava-7b", "ha-dpo", "chair", metrics={"chair_i": 0.11212})
    assert {Path(p).name for p in check_up_to_date(runs, tables)} == {
        "leaderboard.csv", "leaderboard.json", "leaderboard.html"}
    _edit_score(runs, "llava-7b", "ha-dpo", "chair", metrics={"chair_i": 0.1321})
    stale = check_up_to_date(runs, tables)
    assert {Path(p).name for p in stale} == {f"leaderboard.{f}" for f in ("md", "csv", "tex", "json", "html")}


def test_up_to_date_check_reports_missing_files_and_cli_exit_status(runs, tmp_path, capsys):
    tables = tmp_path / "tables"
    write_leaderboards(runs, ("md", "csv"), dest=tables)
    assert main_leaderboard(runs, ["md", "csv"], check=tables) == 0
    assert main_leaderboard(runs, "md,json", check=tables) == 1
    out = capsys.readouterr().out
    assert "leaderboard.json: missing" in out and "1 stale leaderboard file(s)" in out
    rec = read_json(runs / "tiny-llava" / "dpo" / "run.json")
    rec["started"] = "2026-12-01T00:00:00+00:00"  # a newer run changes the date line
    atomic_write_json(runs / "tiny-llava" / "dpo" / "run.json", rec)
    assert main_leaderboard(runs, ["md"], check=tables) == 1
    assert "+- Date: 2026-12-01" in capsys.readouterr().out


def test_cli_writes_and_prints_markdown(runs, capsys):
    assert main_leaderboard(out=runs, formats=["md", "json"]) == 0
    out = capsys.readouterr().out
    assert "| llava-7b | ha-dpo |" in out and f"wrote {runs / 'leaderboard.json'}" in out
    assert sorted(p.name for p in runs.glob("leaderboard.*")) == ["leaderboard.json", "leaderboard.md"]


# ------------------------------------------------------------------------------------ paper tables
def test_paper_table_puts_reported_reproduced_and_delta_side_by_side():
    text = paper_table("ha-dpo", FIXTURE)
    assert ("| model | method | benchmark | split | metric | protocol | reported | reproduced | 95% CI | Δ | reproduced?"
            " | notes |") in text
    # HA-DPO truncates: recall 1360/1500 = 90.666… is printed 90.66 (rounding would give 90.67)
    assert ("| LLaVA-1.5-7B | base | pope | random | recall | pope-hadpo | 90.66 | 90.66 | [89.57, 91.66] | +0.00"
            " | ✓ in CI |") in text
    assert ("| LLaVA-1.5-7B | HA-DPO | pope | adversarial | accuracy | pope-hadpo | 81.46 | 83.83 | [82.73, 84.82]"
            " | +2.37 | ✗ outside CI |") in text
    assert "| LLaVA-1.5-7B | HA-DPO | pope | adversarial | yes_ratio | pope-hadpo | 56.20 | 53.83 |" in text
    assert "| -2.37 |" in text


def test_paper_table_marks_cells_not_yet_reproduced():
    text = paper_table("ha-dpo", FIXTURE, show_all=True)
    assert "| LLaVA-1.5-7B | HA-DPO | shr |  | shr | shr | 34.0 | — |  |  | not run |" in text  # no SHR score
    # HA-DPO's other base models are bench models (issue 18): their rows wait for a run instead of being ‡
    assert "| MiniGPT-4-Llama2-7B | base | pope | random | accuracy | pope-hadpo | 51.13 | — |  |  | not run |" in text
    assert "InstructBLIP-13B/HA-DPO → `instructblip-13b/ha-dpo` (no record)" in text
    assert "LLaVA-1.5-7B/HA-DPO → `llava-7b/ha-dpo`" in text


def test_paper_table_marks_a_different_protocol_with_a_footnote(runs):
    # re-label llava-7b/base's POPE scores as plain `pope`: still comparable, but not the paper's protocol
    src = runs / "llava-7b" / "base" / "scores" / "pope-hadpo.json"
    score = read_json(src)
    score["protocol"] = "pope"
    atomic_write_json(src.with_name("pope.json"), score)
    src.unlink()
    text = paper_table("ha-dpo", runs)
    assert "| LLaVA-1.5-7B | base | pope | random | accuracy | pope-hadpo | 89.60 | 89.60† |" in text
    assert "† llava-7b/base was scored under `pope`; the paper's protocol is `pope-hadpo`" in text
    assert "| LLaVA-1.5-7B | HA-DPO | pope | random | accuracy | pope-hadpo | 90.53 | 90.53 |" in text  # unmarked


def test_paper_table_rounds_other_papers_half_up_and_uses_the_nearest_protocol():
    text = paper_table("povid", FIXTURE, show_all=True)
    # POVID's CHAIR (LURE code) is not a bench protocol: compared against `chair`, marked †
    assert ("| LLaVA-1.5-7B | base | chair |  | chair_s | chair-lure | 66.8 | 50.2† | [48.2, 52.0] | -16.6"
            " | ✗ outside CI |") in text
    assert "| LLaVA-1.5-7B | POVID | chair |  | chair_s | chair-lure | 31.8 | — |" in text
    # LLaVA-Bench is a bench benchmark now: its row waits for a run instead of being marked "not run by bench"
    assert "| LLaVA-1.5-7B | base | llava-bench |  | score | llava-bench | 63.4 | — |  |  | not run |" in text
    assert "* benchmark not run by bench: llava-bench" not in text
    assert "`llava-7b/povid` (no record)" in text


def test_cli_prints_the_paper_table(capsys):
    assert main_leaderboard(FIXTURE, None, paper="hsa-dpo") == 0
    out = capsys.readouterr().out
    assert out.startswith("## HSA-DPO") and "| LLaVA-1.5-13B | HSA-DPO | pope | adversarial | f1 | pope-llava15 | 84.9 | — |" in out


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| model")]


def test_paper_view_lists_only_rows_bench_can_run_unless_all():
    # HSA-DPO reports models and benchmarks bench does not run: hidden unless --all
    hidden_text = paper_table("hsa-dpo", FIXTURE)
    shown_rows = _table_rows(hidden_text)
    hidden = len(_table_rows(paper_table("hsa-dpo", FIXTURE, show_all=True))) - len(shown_rows)
    assert shown_rows and all(line.startswith("| LLaVA-1.5-13B |") for line in shown_rows)
    assert hidden > 0 and f"{hidden} reported rows for models or benchmarks bench does not run are hidden" in hidden_text
    # HA-DPO: all three base models (LLaVA-1.5-7B, InstructBLIP-13B, MiniGPT-4-Llama2-7B) are bench models
    text = paper_table("ha-dpo", FIXTURE)
    rows = _table_rows(text)
    assert {line.split("|")[1].strip() for line in rows} == {"LLaVA-1.5-7B", "InstructBLIP-13B", "MiniGPT-4-Llama2-7B"}
    assert len(rows) == len(_table_rows(paper_table("ha-dpo", FIXTURE, show_all=True))) and "hidden" not in text
    in_ci = sum("| ✓ in CI |" in line for line in rows)
    outside = sum("| ✗ outside CI |" in line for line in rows)
    not_run = sum("| not run |" in line for line in rows)
    assert in_ci + outside + not_run == len(rows) and in_ci > 0 and outside > 0
    assert (f"Reproduced: {in_ci} of {len(rows)} reported numbers bench can run lie inside the reproduced 95% CI;"
            f" {outside} outside; {not_run} not run yet.") in text


@pytest.mark.parametrize("paper", ["ha-dpo", "povid", "hsa-dpo", "opa-dpo"])
def test_paper_view_cites_nothing_outside_the_repository(paper):
    for text in (paper_table(paper, FIXTURE), paper_table(paper, FIXTURE, show_all=True)):
        assert "shared/" not in text and ".md §" not in text and "../" not in text
        assert "Sources: " in text and "()" not in text


def test_cli_all_flag_shows_every_reported_row(capsys):
    from bench.cli import main

    assert main(["leaderboard", "--out", str(FIXTURE), "--paper", "ha-dpo", "--all"]) == 0
    assert "| MiniGPT-4-Llama2-7B | base | pope |" in capsys.readouterr().out


def test_unknown_paper_is_refused():
    with pytest.raises(BenchError, match="unknown paper 'llava'"):
        paper_table("llava", FIXTURE)
