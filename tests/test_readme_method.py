"""The README's add-a-method example works exactly as written: saved as ``methods/my_dpo.py`` in a checkout,
with no other file edited, ``bench list`` shows it and ``bench train --method my-dpo --model tiny-llava
--max-steps 2`` runs two optimizer steps.

The checkout is a stand-in built under ``tmp_path`` (``bench/`` and ``metrics/`` linked to this one, ``methods/``
a folder of links to the in-tree method files plus the snippet), so nothing is written into ``methods/`` here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def readme_method_snippet() -> str:
    """The Python block of README.md's "Add a method" section that starts with ``# methods/my_dpo.py``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Add a method\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(# methods/my_dpo\.py\n.*?)```", section, re.S)
    assert match, "README.md: no ```python block starting with '# methods/my_dpo.py' under '## Add a method'"
    return match.group(1)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checkout")
    for package in ("bench", "metrics"):
        (root / package).symlink_to(REPO / package, target_is_directory=True)
    methods = root / "methods"
    methods.mkdir()
    for src in (REPO / "methods").glob("*.py"):
        (methods / src.name).symlink_to(src)
    (methods / "my_dpo.py").write_text(readme_method_snippet(), encoding="utf-8")
    return root


def _bench(checkout: Path, *args: str, data_dir: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(checkout), "BENCH_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_readme_snippet_is_the_file_the_readme_names():
    snippet = readme_method_snippet()
    assert '"my-dpo"' in snippet and "class MyDpo(Method)" in snippet
    compile(snippet, "methods/my_dpo.py", "exec")  # valid Python as written


def test_readme_method_dropped_into_methods_appears_in_bench_list(checkout, tmp_path):
    out = _bench(checkout, "list", data_dir=tmp_path / "data", timeout=300)
    assert out.returncode == 0, out.stderr
    methods_block = out.stdout.split("benchmarks:", 1)[0]
    line = next((ln for ln in methods_block.splitlines() if ln.split()[:1] == ["my-dpo"]), None)
    assert line is not None, out.stdout
    assert "v1" in line and "One line shown by `bench list`." in line
    # the in-tree methods are still there: the scan adds to them
    assert {"dpo", "ha-dpo", "hsa-dpo", "opa-dpo", "povid"} <= {ln.split()[0] for ln in methods_block.splitlines()[1:]}


def test_readme_method_trains_two_steps_on_the_tiny_model(checkout, tmp_path):
    runs = tmp_path / "runs"  # an empty data dir, as in a fresh clone: tiny-llava builds its world on first use
    out = _bench(checkout, "train", "--method", "my-dpo", "--model", "tiny-llava", "--max-steps", "2",
                 "--out", str(runs), data_dir=tmp_path / "data", timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = runs / "tiny-llava" / "my-dpo" / "checkpoint"
    assert (ckpt / "dpo" / "DONE").exists()
    log = [json.loads(ln) for ln in (ckpt / "dpo" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2]
    assert all(isinstance(row["loss"], float) and row["loss"] == row["loss"] for row in log)  # finite, not NaN
    assert json.loads((ckpt / "stages.json").read_text())["method"] == "my-dpo"
