"""Process settings for serving (`proxy/cli/tuning.py`, and the CPU check of
`proxy/dataplane/forward.py`),
each read back from a real subprocess: what glibc was told, and whether a large body is hashed
in a worker thread when the process has one CPU or several."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

import pytest

GLIBC = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"


def run(code: str, *, env: dict[str, str] | None = None, cpus: str | None = None) -> str:
    argv = [sys.executable, "-c", code]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt(3)")
def test_glibc_is_told_to_keep_its_heap() -> None:
    assert run("from proxy.cli.tuning import tune_malloc; print(tune_malloc())") == "True"


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt(3)")
def test_an_operators_malloc_tunables_are_left_alone() -> None:
    tunables = {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"}
    code = "from proxy.cli.tuning import tune_malloc; print(tune_malloc())"
    assert run(code, env=tunables) == "False"


@pytest.mark.skipif(
    not shutil.which("taskset") or len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs"
)
def test_large_bodies_are_hashed_in_a_thread_only_with_a_cpu_to_spare() -> None:
    code = "import proxy.dataplane.forward as f; print(f.HASH_IN_THREAD)"
    assert run(code) == "True"
    assert run(code, cpus="0") == "False"
