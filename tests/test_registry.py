import subprocess
import sys
import textwrap

import pytest

from bench.errors import BenchError
from bench.registry import Registry, UnknownNameError, describe


def test_registered_entry_is_found_by_name():
    reg = Registry("widget")

    @reg.register("alpha")
    class Alpha:
        """First widget."""

        version = "2"

    assert reg.get("alpha") is Alpha
    assert reg.names() == ["alpha"]
    assert describe(Alpha) == ("First widget.", "2")


def test_unknown_name_suggests_close_matches():
    reg = Registry("method")
    reg.add("hsa-dpo", object())
    reg.add("ha-dpo", object())
    with pytest.raises(UnknownNameError) as err:
        reg.get("hsa_dpo")
    msg = str(err.value)
    assert "unknown method 'hsa_dpo'" in msg and "did you mean 'hsa-dpo'" in msg


def test_registering_a_name_twice_is_an_error():
    reg = Registry("method")
    reg.add("x", 1)
    with pytest.raises(BenchError, match="registered twice"):
        reg.add("x", 2)


def _make_plugin_dist(root, group="bench.methods", name="my-dpo"):
    """A minimal installed distribution (dist-info with entry_points.txt) on a sys.path entry."""
    pkg = root / "my_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from methods.dpo import DpoMethod

        class MyDpo(DpoMethod):
            """A third-party DPO variant registered through an entry point."""
            name = "my-dpo"
            version = "0.3"
    '''))
    dist = root / "my_plugin-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\n{name} = my_plugin:MyDpo\n")
    return root


def test_entry_point_plugin_appears_in_bench_list(tmp_path):
    _make_plugin_dist(tmp_path)
    env_path = f"{tmp_path}"
    out = subprocess.run([sys.executable, "-m", "bench", "list"], capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": env_path}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "my-dpo" in out.stdout and "third-party DPO variant" in out.stdout and "v0.3" in out.stdout


def test_entry_point_plugin_can_be_looked_up_and_instantiated(tmp_path, monkeypatch):
    _make_plugin_dist(tmp_path, name="my-dpo-2")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    importlib.invalidate_caches()
    reg = Registry("method", "bench.methods")
    cls = reg.get("my-dpo-2")
    method = cls()
    stages = method.stages(method.default_config())
    assert [s.name for s in stages] == ["dpo"]
