"""The parity runner: copied fixtures pass, corrupted ones fail with their first difference, discovery is by
file-name pattern, broken discoverer modules are reported, ROOT defaults to the parent of ``shared``."""

import json
import shutil
import sys
import types

import pytest

import bench.parity as parity
from bench.parity import CaseResult, default_root, first_difference, main_parity, run_parity
from tests.conftest import TEST_DATA, nltk_available

PARITY = TEST_DATA / "shared" / "parity"


def _copy_world(tmp_path, benches=("pope", "mhalubench")):
    """tests/data/shared/{parity/<bench>, reference/pope} copied under tmp_path/shared (a plain-clone layout)."""
    for b in benches:
        shutil.copytree(PARITY / b, tmp_path / "shared" / "parity" / b)
    shutil.copytree(TEST_DATA / "shared" / "reference" / "pope", tmp_path / "shared" / "reference" / "pope")
    return tmp_path / "shared" / "parity"


def test_every_copied_fixture_passes():
    results = run_parity(PARITY, TEST_DATA)
    names = {r.name for r in results}
    assert {"pope/expected_v3_random.json", "pope/expected_edge_all_no.json", "pope/expected_edge_mixed_small.json",
            "pope/phrasings.json", "mhalubench/expected.json"} <= names
    failed = [r for r in results if not r.ok and (nltk_available() or not r.name.startswith("chair/"))]
    assert not failed, failed


def test_runner_prints_one_line_per_case_then_the_summary(capsys):
    assert main_parity(PARITY / "pope", TEST_DATA) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["PASS pope/expected_edge_all_no.json", "PASS pope/expected_edge_mixed_small.json",
                   "PASS pope/expected_v3_random.json", "PASS pope/phrasings.json", "4 passed, 0 failed"]
    assert main_parity(PARITY / "mhalubench", TEST_DATA) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "1 passed, 0 failed"


def test_cli_entry_point_runs_parity(tmp_path):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "bench", "parity", str(PARITY / "pope"), "--root", str(TEST_DATA)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "4 passed, 0 failed"


@pytest.mark.parametrize("file,edit,message", [
    ("expected_edge_mixed_small.json", lambda e: e["parsers"]["opera"]["confusion"].update(TP=4),
     "parsers.opera.confusion.TP: 3 != expected 4"),
    ("expected_edge_mixed_small.json", lambda e: e["parsers"]["official"]["metrics"].update(f1=0.77),
     "parsers.official.metrics.f1: 0.7692307692307692 != expected 0.77"),
    ("expected_edge_mixed_small.json", lambda e: e["per_answer"][5].update(opera="yes"), "per_answer[5].opera"),
    ("expected_edge_mixed_small.json", lambda e: e["parsers"]["llava"].update(printed="x"), "parsers.llava.printed"),
    ("expected_edge_mixed_small.json", lambda e: e["parsers"]["lmms_eval"].update(n_pred_neither_yes_nor_no=8),
     "parsers.lmms_eval.n_pred_neither_yes_nor_no: 9 != expected 8"),
    ("expected_edge_all_no.json", lambda e: e["parsers"]["official"]["confusion"].update(TP=1, FN=5),
     "parsers.official.confusion.TP: 0 != expected 1"),
    ("expected_v3_random.json", lambda e: e["parsers"]["lmms_eval"]["metrics"].update(yes_ratio=0.6),
     "parsers.lmms_eval.metrics.yes_ratio: 0.5 != expected 0.6"),
])
def test_a_corrupted_expected_file_fails_with_its_first_differing_field(tmp_path, capsys, file, edit, message):
    folder = _copy_world(tmp_path, ("pope",))
    path = folder / "pope" / file
    exp = json.loads(path.read_text())
    edit(exp)
    path.write_text(json.dumps(exp))
    assert main_parity(folder, None) == 1  # default ROOT = tmp_path (parent of `shared`)
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if f"pope/{file}" in ln)
    assert line.startswith(f"FAIL pope/{file}: {message}"), line
    assert out.strip().splitlines()[-1] == "3 passed, 1 failed"


def test_a_corrupted_mhalubench_expectation_fails(tmp_path, capsys):
    folder = _copy_world(tmp_path, ("mhalubench",))
    path = folder / "mhalubench" / "expected.json"
    exp = json.loads(path.read_text())
    exp["metrics"]["unparseable_excluded"]["task_type=text-to-image"]["per_class"]["hallucination"]["support"] += 1
    path.write_text(json.dumps(exp))
    assert main_parity(folder, None) == 1
    out = capsys.readouterr().out
    assert "FAIL mhalubench/expected.json: metrics.unparseable_excluded.task_type=text-to-image.per_class" \
           ".hallucination.support" in out


def test_shuffled_or_missing_answers_are_reported_not_zipped(tmp_path):
    folder = _copy_world(tmp_path, ("pope",))
    answers = folder / "pope" / "edge_mixed_small.answers.jsonl"
    lines = answers.read_text().splitlines()
    answers.write_text("\n".join(lines[::-1]) + "\n")  # reversed order, same ids: joined by id, still passes
    assert {r.name: r.ok for r in run_parity(folder)}["pope/expected_edge_mixed_small.json"]
    answers.write_text("\n".join(lines[1:]) + "\n")
    res = {r.name: r for r in run_parity(folder)}["pope/expected_edge_mixed_small.json"]
    assert not res.ok and res.first_diff == "answers vs questions: 1 questions without an answer (first: 1)"


def test_answers_without_question_ids_fall_back_to_position(tmp_path):
    folder = _copy_world(tmp_path, ("pope",))
    answers = folder / "pope" / "edge_mixed_small.answers.jsonl"
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    answers.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows))
    assert {r.name: r.ok for r in run_parity(folder)}["pope/expected_edge_mixed_small.json"]


def test_cases_are_discovered_by_pattern_not_by_name(tmp_path):
    folder = _copy_world(tmp_path)
    pope = folder / "pope"
    shutil.copy(pope / "expected_edge_all_no.json", pope / "expected_v1_random.json")
    shutil.copy(pope / "phrasings.json", pope / "phrasings_heldout.json")
    (folder / "mhalubench" / "expected.json").rename(folder / "mhalubench" / "expected_heldout.json")
    (folder / "mhalubench" / "claims.jsonl").rename(folder / "mhalubench" / "claims_heldout.jsonl")
    (pope / "notes.json").write_text('{"benchmark": "POPE"}')  # not a case: wrong name pattern
    results = {r.name: r.ok for r in run_parity(folder)}
    assert results == {"pope/expected_edge_all_no.json": True, "pope/expected_edge_mixed_small.json": True,
                       "pope/expected_v1_random.json": True, "pope/expected_v3_random.json": True,
                       "pope/phrasings.json": True, "pope/phrasings_heldout.json": True,
                       "mhalubench/expected_heldout.json": True}


def test_default_root_is_the_parent_of_shared(tmp_path):
    (tmp_path / "shared" / "parity" / "pope").mkdir(parents=True)
    assert default_root(tmp_path / "shared" / "parity" / "pope") == tmp_path.resolve()
    (tmp_path / "data" / "parity").mkdir(parents=True)
    (tmp_path / "data" / "shared").mkdir()
    assert default_root(tmp_path / "data" / "parity") == (tmp_path / "data").resolve()


def test_missing_discoverer_is_skipped_and_broken_one_is_a_failed_case(tmp_path, monkeypatch):
    folder = _copy_world(tmp_path, ("mhalubench",))
    broken = types.ModuleType("bench.parity.zz_broken")

    def boom(folder, root):
        raise RuntimeError("cannot scan")

    broken.discover = boom
    monkeypatch.setitem(sys.modules, "bench.parity.zz_broken", broken)
    real_import = parity.importlib.import_module

    def fake_import(name, *a):
        if name == "bench.parity.zz_badimport":
            raise SyntaxError("invalid syntax (zz_badimport.py, line 1)")
        return real_import(name, *a)

    monkeypatch.setattr(parity.importlib, "import_module", fake_import)
    monkeypatch.setattr(parity, "DISCOVERERS", ("zz_not_there", "zz_badimport", "zz_broken", "mhalubench"))
    results = {r.name: r for r in run_parity(folder)}
    assert "zz_not_there/<import>" not in results
    assert not results["zz_badimport/<import>"].ok and "SyntaxError" in results["zz_badimport/<import>"].first_diff
    assert not results["zz_broken/<discover>"].ok and "cannot scan" in results["zz_broken/<discover>"].first_diff
    assert results["mhalubench/expected.json"].ok


def test_a_raising_case_is_a_failed_case_not_a_crash(tmp_path):
    folder = _copy_world(tmp_path, ("pope",))
    (folder / "pope" / "edge_all_no.answers.jsonl").unlink()
    res = {r.name: r for r in run_parity(folder)}["pope/expected_edge_all_no.json"]
    assert not res.ok and res.first_diff.startswith("raised DataError")


def test_first_difference_reports_paths_and_tolerances():
    assert first_difference({"a": [1, {"b": 0.5}]}, {"a": [1, {"b": 0.5 + 1e-13}]}, tol=1e-12) is None
    assert first_difference({"a": [1, {"b": 0.5}]}, {"a": [1, {"b": 0.6}]}).startswith("a[1].b: 0.6 != expected 0.5")
    assert first_difference({"x": 1}, {}) == "x: missing (expected 1)"
    assert first_difference([1, 2], [1]) == "value: length 1 != expected 2"
    assert first_difference({"n": 0}, {"n": 0.0}) is None and first_difference({"f": True}, {"f": 1}) is not None
    assert CaseResult("x", True).first_diff is None
