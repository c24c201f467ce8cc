"""``switchyard bench kernels attention`` from the command line, without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from switchyard.bench.kernels.cli import NO_GPU
from switchyard.bench.kernels.shapes import BACKEND_NAMES, MODELS
from switchyard.cli.main import build_parser


def test_without_a_gpu_it_says_so_and_exits_2() -> None:
    # CUDA_VISIBLE_DEVICES hides any GPU, so the test means the same on every machine.
    result = subprocess.run(
        [sys.executable, "-m", "switchyard.cli.main", "bench", "kernels", "attention"],
        capture_output=True,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == NO_GPU
    assert result.stdout == ""


def test_defaults_are_the_full_grid() -> None:
    args = build_parser().parse_args(["bench", "kernels", "attention"])
    assert args.models == tuple(MODELS)
    assert args.backends == BACKEND_NAMES
    assert (args.batch, args.kv_len, args.mode) == ((1, 8, 32, 64), (1024, 8192, 32768), "decode")
    assert (args.page_size, args.dtype, args.refcheck) == (16, "bf16", False)


def test_lists_are_parsed() -> None:
    flags = ["--models", "llama3-8b,gemma4-31b-global", "--batch", "2,4", "--kv-len", "512"]
    args = build_parser().parse_args(
        ["bench", "kernels", "attention", *flags, "--backends", "ours,flashinfer"]
    )
    assert args.models == ("llama3-8b", "gemma4-31b-global")
    assert (args.batch, args.kv_len) == ((2, 4), (512,))
    assert args.backends == ("ours", "flashinfer")


@pytest.mark.parametrize(
    "flags", [["--models", "llama3-8b,nope"], ["--backends", "ours,triton"], ["--batch", "x"]]
)
def test_bad_lists_are_usage_errors(flags: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["bench", "kernels", "attention", *flags])
    assert exit_info.value.code == 2
    assert flags[0] in capsys.readouterr().err
