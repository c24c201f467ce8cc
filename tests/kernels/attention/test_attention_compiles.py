"""The attention kernels compile for NVIDIA GPUs (sm_80, sm_90) and fit their registers,
checked without a GPU.

The interpreter that runs the other tests on CPU accepts code the compiler rejects (a
plain-float global inside a kernel once passed here and failed on every GPU), so
attention_compile_check.py compiles what the launchers launch through Triton's real
pipeline (in a subprocess, see the ``run_compile_check`` fixture). The default run
compiles one representative variant of each kernel for sm_90 and fails on any register
spill; the slow run compiles the full set for both architectures and fails on spills at
the register ceiling.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("attention_compile_check.py")
REPORT = re.compile(r"^ok +(\d+) regs +(\d+)/(\d+) +spill +sm_(\d+) (.+): (_\w+_kernel)$")
KERNELS = {"_paged_attention_kernel", "_merge_splits_kernel", "_write_kv_cache_kernel"}


def reports(output: str) -> list[re.Match]:
    """One match per compilation line (between the version line and the summary)."""
    lines = output.splitlines()
    assert lines[-1] == "0 failed", output
    matches = [REPORT.match(line) for line in lines[1:-1]]
    assert all(matches), output
    return matches


def test_each_kernel_compiles_for_sm90_without_spills(run_compile_check) -> None:
    found = reports(run_compile_check(SCRIPT, "--quick", timeout=300))
    assert {report[4] for report in found} == {"90"}
    assert {report[6] for report in found} == KERNELS
    for report in found:
        assert 0 < int(report[1]) < 255 and report[2] == report[3] == "0", report[0]


@pytest.mark.slow
def test_every_variant_compiles_for_sm80_and_sm90_within_registers(run_compile_check) -> None:
    found = reports(run_compile_check(SCRIPT, timeout=1800))
    assert {report[4] for report in found} == {"80", "90"}
    assert {report[6] for report in found} == KERNELS
