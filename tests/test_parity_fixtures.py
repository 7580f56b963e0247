"""The copied parity fixtures pass through the runner, and a corrupted one fails with its first difference."""

import json
import shutil

from bench.parity import main_parity, run_parity
from tests.conftest import TEST_DATA, nltk_available


def test_every_copied_fixture_passes():
    results = run_parity(TEST_DATA / "shared" / "parity", TEST_DATA)
    names = {r.name for r in results}
    assert {"pope/expected_v3_random.json", "pope/phrasings.json", "mhalubench/expected.json"} <= names
    failed = [r for r in results if not r.ok and (nltk_available() or not r.name.startswith("chair/"))]
    assert not failed, failed
    if nltk_available():
        assert sum(r.name.startswith("chair/") and r.ok for r in results) == 3


def test_runner_prints_summary_and_exit_code(capsys):
    folder = TEST_DATA / "shared" / "parity" / "pope"
    assert main_parity(folder, TEST_DATA) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].endswith("passed, 0 failed") and out[0].startswith("PASS pope/")


def test_corrupted_expectation_fails_with_first_differing_field(tmp_path, capsys):
    src = TEST_DATA / "shared" / "parity" / "pope"
    dst = tmp_path / "shared" / "parity" / "pope"
    shutil.copytree(src, dst)
    shutil.copytree(TEST_DATA / "shared" / "reference", tmp_path / "shared" / "reference")
    path = dst / "expected_edge_mixed_small.json"
    exp = json.loads(path.read_text())
    exp["parsers"]["opera"]["confusion"]["TP"] += 1
    path.write_text(json.dumps(exp))
    assert main_parity(dst, tmp_path) == 1
    out = capsys.readouterr().out
    assert "FAIL pope/expected_edge_mixed_small.json: parsers.opera.confusion.TP" in out


def test_cases_are_discovered_by_pattern_not_by_name(tmp_path):
    """A held-out-style case with a new name in the same format is picked up."""
    src = TEST_DATA / "shared" / "parity" / "pope"
    dst = tmp_path / "shared" / "parity" / "pope"
    shutil.copytree(src, dst)
    shutil.copytree(TEST_DATA / "shared" / "reference", tmp_path / "shared" / "reference")
    shutil.copy(dst / "expected_edge_all_no.json", dst / "expected_v9_heldout.json")
    names = {r.name for r in run_parity(dst)}  # default root: parent of the `shared` folder
    assert "pope/expected_v9_heldout.json" in names
