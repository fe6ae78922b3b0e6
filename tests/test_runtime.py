"""The malloc settings of ulic.runtime: applied once on glibc Linux, off with ULIC_MALLOC_TUNE=0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = "from ulic.runtime import tune_allocator as t; print(t(), t())"


def _run(env: dict[str, str]) -> str:
    e = {k: v for k, v in os.environ.items() if k != "ULIC_MALLOC_TUNE"} | env
    return subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, env=e, check=True
    ).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings are Linux-only")
def test_tuned_by_default_and_idempotent():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert _run({}) == "True True"


def test_opt_out():
    assert _run({"ULIC_MALLOC_TUNE": "0"}) == "False False"
