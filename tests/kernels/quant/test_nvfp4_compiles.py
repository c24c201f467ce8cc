"""The NVFP4 kernels compile for NVIDIA GPUs (sm_80, sm_90), checked without a GPU.

The interpreter that runs the other tests on CPU accepts code the compiler rejects, so
nvfp4_compile_check.py pushes each kernel through Triton's real pipeline (in a
subprocess, see the ``run_compile_check`` fixture). The default run compiles one variant
of each kernel; the slow run compiles all of them for both architectures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("nvfp4_compile_check.py")


def test_one_variant_of_each_kernel_compiles_for_sm90(run_compile_check) -> None:
    run_compile_check(SCRIPT, "--quick", timeout=300)


@pytest.mark.slow
def test_every_variant_compiles_for_sm80_and_sm90(run_compile_check) -> None:
    run_compile_check(SCRIPT, timeout=1200)
