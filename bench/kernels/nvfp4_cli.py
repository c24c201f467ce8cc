"""``switchyard bench kernels nvfp4``: the parser and the command.

Imports nothing heavy at module level (see cli.py): torch and the kernels load only when
the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys

from switchyard.bench.kernels.nvfp4_shapes import BACKEND_NAMES, DEFAULT_MS, LAYERS, MODELS
from switchyard.bench.kernels.options import add_common_options, csv_list
from switchyard.bench.output import check_writable

NEEDS_INTERPRETER = (
    "no CUDA GPU: the NVFP4 benchmark runs on CPU only under Triton's interpreter "
    "(TRITON_INTERPRET=1), as a check of the command; use a small --models entry and --m"
)
INTERPRETED_ON_GPU = (
    "TRITON_INTERPRET is set: Triton kernels would run in its CPU interpreter; unset it to "
    "benchmark"
)


def _epilog() -> str:
    lines = ["models (MLP sizes; gate_up is N = 2 x intermediate, K = hidden; down the reverse):"]
    for name, shape in MODELS.items():
        lines.append(f"  {name:<14} hidden {shape.hidden}, intermediate {shape.intermediate}")
    lines += [
        "",
        "backends: ours = nvfp4_linear on the packed weight (W4A16); torch = torch.matmul on",
        "the dequantized weight in the activation dtype (the dense layer NVFP4 replaces).",
        "reported: median time from a cold L2, TFLOP/s, TB/s of the bytes each must move",
        "(4-bit codes + E4M3 scales, or the dense weight; plus x and the output), and that",
        "rate as a share of the copy bandwidth measured in the same run.",
    ]
    return "\n".join(lines)


def add_parser(which: argparse._SubParsersAction) -> None:
    """Add ``nvfp4`` under ``switchyard bench kernels``."""
    nvfp4 = which.add_parser(
        "nvfp4",
        help="W4A16 NVFP4 GEMM (ours) against torch.matmul on the dense weight",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grid = nvfp4.add_argument_group("grid")
    grid.add_argument(
        "--models",
        type=csv_list(str, tuple(MODELS)),
        default=("gemma4-31b",),
        metavar="NAME,...",
        help="comma-separated (default: gemma4-31b)",
    )
    grid.add_argument(
        "--layers",
        type=csv_list(str, LAYERS),
        default=LAYERS,
        metavar="NAME,...",
        help=f"comma-separated (default: {','.join(LAYERS)})",
    )
    grid.add_argument(
        "--m",
        type=csv_list(int),
        default=DEFAULT_MS,
        metavar="M,...",
        help=f"rows of x (tokens) (default: {','.join(map(str, DEFAULT_MS))})",
    )
    add_common_options(nvfp4, grid, BACKEND_NAMES, reference="x @ dequantized(W).T in float64")
    nvfp4.set_defaults(run=_nvfp4)


def _nvfp4(args: argparse.Namespace) -> int:
    import torch

    interpreted = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    if torch.cuda.is_available() and interpreted:
        print(INTERPRETED_ON_GPU, file=sys.stderr)
        return 2
    if not torch.cuda.is_available() and not interpreted:
        print(NEEDS_INTERPRETER, file=sys.stderr)
        return 2
    try:
        if args.json:
            check_writable("--json", args.json, make_folder=True)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from switchyard.bench.kernels import report
    from switchyard.bench.kernels.nvfp4 import Settings, document, render, run

    settings = Settings(
        models=args.models,
        layers=args.layers,
        ms=args.m,
        dtype=args.dtype,
        backends=args.backends,
        refcheck=args.refcheck,
        warmup_ms=args.warmup_ms,
        rep_ms=args.rep_ms,
        seed=args.seed,
    )
    result = run(settings)
    copy = "" if result.copy_bw_tbps is None else f", copy bandwidth {result.copy_bw_tbps:.2f} TB/s"
    print(f"\n{result.device}, {settings.dtype}{copy}\n")
    print(render(result.records))
    for note in result.notes:
        print(f"note: {note}")
    if args.json:
        report.write_json(args.json, document(settings, result), result.records)
    if result.failed:
        print("error: our kernel failed on a case or a backend failed --refcheck", file=sys.stderr)
        return 1
    return 0
