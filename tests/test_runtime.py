"""Process-level settings of bench.runtime: glibc's allocator keeping freed memory (keep_freed_memory)."""

import os
import platform
import subprocess
import sys

import pytest

from bench import cli, runtime

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt tuning applies to glibc only")


_FREE_AND_MEASURE = """
import torch
from bench import runtime
print(runtime.keep_freed_memory())
def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 >> 20
tensors = [torch.empty(6 << 20).fill_(1.0) for _ in range(8)]  # 8 x 24 MiB, touched
before = rss_mib()
del tensors
print(before - rss_mib())
"""


def _resident_mib_given_back(keep: str) -> tuple[bool, int]:
    env = {**os.environ, "BENCH_KEEP_FREED_MEMORY": keep, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _FREE_AND_MEASURE], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0] == "True", int(out[1])


@glibc_only
def test_memory_freed_after_keep_freed_memory_stays_with_the_process():
    # a fresh process each, so that no earlier allocation has moved glibc's dynamic thresholds
    applied, given_back = _resident_mib_given_back("1")
    assert applied and given_back < 16, f"{given_back} MiB handed back to the kernel"
    applied, given_back = _resident_mib_given_back("0")  # glibc's defaults: the same tensors go back at once
    assert not applied and given_back > 150


def test_keep_freed_memory_is_off_with_its_environment_switch(monkeypatch):
    monkeypatch.setenv("BENCH_KEEP_FREED_MEMORY", "0")
    assert runtime.keep_freed_memory() is False


def test_the_cli_keeps_freed_memory_for_commands_that_run_models_only(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(runtime, "keep_freed_memory", lambda: calls.append(1) or True)
    assert cli.main(["list"]) == 0
    assert calls == []
    assert cli.main(["eval", "--model", "no-such-model-anywhere", "--benchmarks", "pope"]) == 2
    assert calls == [1]
