"""The NVFP4 kernels compile for NVIDIA GPUs (sm_80, sm_90), checked without a GPU.

The interpreter that runs the other tests on CPU accepts code the compiler rejects, so
nvfp4_compile_check.py pushes each kernel through Triton's real pipeline. It runs in a
subprocess: this process has TRITON_INTERPRET set (tests/conftest.py), under which
kernels are interpreted objects that cannot be compiled. The default run compiles one
variant of each kernel; the slow run compiles all of them for both architectures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("nvfp4_compile_check.py")


def _compile_check(*flags: str, timeout: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # today's default, without its warning
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_variant_of_each_kernel_compiles_for_sm90() -> None:
    _compile_check("--quick", timeout=300)


@pytest.mark.slow
def test_every_variant_compiles_for_sm80_and_sm90() -> None:
    _compile_check(timeout=1200)
