"""The compile checks' runner, shared by the kernel families' tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def run_compile_check() -> Callable[..., str]:
    """Run a ``*_compile_check.py`` script (see triton_compile.py) and return its output.

    In a subprocess without TRITON_INTERPRET: tests/conftest.py sets it for this process,
    where kernels are interpreted objects that cannot be compiled. The test fails on a
    non-zero exit, with the script's output.
    """

    def run(script: Path, *flags: str, timeout: int) -> str:
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # today's default, without its warning
        result = subprocess.run(
            [sys.executable, str(script), *flags],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    return run
