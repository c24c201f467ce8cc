"""``switchyard bench kernels nvfp4`` without a GPU: its parser, its guards, and a real
run on CPU under Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET), on the
smallest embedded model's down projection so that it stays quick."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from switchyard.bench.kernels import nvfp4 as bench_nvfp4
from switchyard.bench.kernels.nvfp4_cli import INTERPRETED_ON_GPU, NEEDS_INTERPRETER
from switchyard.bench.kernels.nvfp4_shapes import (
    BACKEND_NAMES,
    DEFAULT_MS,
    LAYERS,
    MODELS,
    dense_bytes,
    nvfp4_bytes,
)
from switchyard.cli.main import build_parser, main

SMALL = ["bench", "kernels", "nvfp4", "--models", "smollm2-135m", "--layers", "down", "--m", "1"]


def test_defaults_are_gemma4_mlp_for_m_1_to_256() -> None:
    args = build_parser().parse_args(["bench", "kernels", "nvfp4"])
    assert args.models == ("gemma4-31b",)
    assert args.layers == LAYERS
    assert args.m == DEFAULT_MS and min(args.m) == 1 and max(args.m) == 256
    assert args.backends == BACKEND_NAMES
    assert (args.dtype, args.refcheck, args.json) == ("bf16", False, None)
    assert MODELS["gemma4-31b"].layers() == {"gate_up": (43008, 5376), "down": (5376, 21504)}


@pytest.mark.parametrize(
    "flags",
    [["--models", "gemma4-31b,nope"], ["--layers", "up"], ["--m", "x"], ["--backends", "y"]],
)
def test_bad_lists_are_usage_errors(flags: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["bench", "kernels", "nvfp4", *flags])
    assert exit_info.value.code == 2
    assert flags[0] in capsys.readouterr().err


def test_byte_accounting() -> None:
    # 4-bit codes + one byte per 16 weights + the fp32 global scale, x and out in bf16.
    assert nvfp4_bytes(1, 32, 64) == 32 * 32 + 32 * 4 + 4 + (64 + 32) * 2
    assert dense_bytes(1, 32, 64) == (32 * 64 + 64 + 32) * 2


def test_cpu_without_the_interpreter_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert main(SMALL) == 2
    assert capsys.readouterr().err.strip() == NEEDS_INTERPRETER


def test_gpu_with_the_interpreter_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert main(SMALL) == 2
    assert capsys.readouterr().err.strip() == INTERPRETED_ON_GPU


def test_runs_on_cpu_with_refcheck_and_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU path anywhere
    path = tmp_path / "results" / "nvfp4.json"
    assert main([*SMALL, "--refcheck", "--json", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "### ours against torch" in printed
    saved = json.loads(path.read_text())
    assert saved["benchmark"] == "nvfp4"
    assert saved["settings"]["models"] == ["smollm2-135m"]
    records = saved["records"]
    assert [r["backend"] for r in records] == ["ours", "torch"]
    for record in records:
        assert (record["m"], record["n"], record["k"]) == (1, 576, 1536)
        assert record["refcheck"] == "pass" and record["rel_err"] < 1e-2
        assert record["time_us"] > 0 and record["tbps"] > 0


def test_refcheck_failure_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setitem(bench_nvfp4.TOLERANCE, torch.bfloat16, 0.0)
    assert main([*SMALL, "--backends", "torch", "--refcheck"]) == 1
    assert "failed --refcheck" in capsys.readouterr().err
