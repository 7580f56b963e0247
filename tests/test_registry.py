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
    (pkg / "__init__.py").write_text(textwrap.dedent(f'''
        from methods.dpo import DpoMethod

        class MyDpo(DpoMethod):
            """A third-party DPO variant registered through an entry point."""
            name = "{name}"
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


def test_an_entry_registers_under_the_name_it_declares():
    reg = Registry("method")

    @reg.register
    class Named:
        name = "named-method"

    assert reg.get("named-method") is Named
    reg.add(type("Other", (), {"name": "other"}))
    assert reg.names() == ["named-method", "other"]


def test_registering_under_another_name_than_the_declared_one_is_an_error():
    reg = Registry("method")
    with pytest.raises(BenchError, match="declares name 'real' but is registered as 'alias'"):
        reg.add("alias", type("Real", (), {"name": "real"}))
    with pytest.raises(BenchError, match="declares no name"):
        reg.add(type("Nameless", (), {}))


def test_two_classes_declaring_one_name_fail_naming_both():
    reg = Registry("benchmark")
    first = type("First", (), {"name": "pope"})
    second = type("Second", (), {"name": "pope"})
    reg.add(first)
    with pytest.raises(BenchError, match=r"'pope' is registered twice: by .*First and by .*Second"):
        reg.add(second)


def test_discover_imports_every_module_of_a_package(tmp_path, monkeypatch):
    pkg = tmp_path / "scanpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for mod in ("alpha", "beta", "_private"):
        (pkg / f"{mod}.py").write_text(f"import scanpkg\nscanpkg.SEEN = getattr(scanpkg, 'SEEN', []) + [{mod!r}]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    from bench.registry import discover

    importlib.invalidate_caches()
    package = importlib.import_module("scanpkg")
    assert discover("scanpkg", package.__path__) == ["alpha", "beta"]
    assert package.SEEN == ["alpha", "beta"]


def test_a_duplicate_method_file_fails_the_scan_clearly(tmp_path, monkeypatch):
    """A module dropped into a scanned package that declares an existing method's name stops discovery with
    an error naming both classes."""
    import importlib

    from bench.registry import METHODS, discover

    import methods  # noqa: F401  (the in-tree methods are registered)

    pkg = tmp_path / "dupmethods"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "twin.py").write_text(textwrap.dedent('''
        from bench.registry import METHODS
        from methods.dpo import DpoMethod

        @METHODS.register
        class TwinDpo(DpoMethod):
            name = "dpo"
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    package = importlib.import_module("dupmethods")
    with pytest.raises(BenchError, match=r"method name 'dpo' is registered twice: by methods\.dpo\.DpoMethod and by"
                                         r" dupmethods\.twin\.TwinDpo"):
        discover("dupmethods", package.__path__)
    assert METHODS.get("dpo").__module__ == "methods.dpo"


def test_an_entry_point_whose_name_differs_from_the_declared_name_is_refused(tmp_path, monkeypatch):
    (tmp_path / "plug_a.py").write_text("class PlugA:\n    name = 'plug-a'\n")
    dist = tmp_path / "plug_a-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plug-a\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[bench.methods]\nplug-b = plug_a:PlugA\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    importlib.invalidate_caches()
    reg = Registry("method", "bench.methods")
    with pytest.raises(BenchError, match="'plug-b'.*declares name 'plug-a'"):
        reg.names()
