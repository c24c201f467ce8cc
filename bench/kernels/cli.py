"""``switchyard bench kernels attention``: the parser and the command.

Imports nothing heavy at module level: the ``switchyard`` console script builds every
command's parser at start, and torch would slow all of them down.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from switchyard.bench.kernels import nvfp4_cli, report
from switchyard.bench.kernels.options import add_common_options, csv_list
from switchyard.bench.kernels.shapes import BACKEND_NAMES, MODELS, MODES
from switchyard.bench.output import check_writable

NO_GPU = (
    "no CUDA GPU: the kernel benchmark needs one; correctness tests run on CPU with `make test`"
)
INTERPRETED = (
    "TRITON_INTERPRET is set: Triton kernels would run in its CPU interpreter; unset it to "
    "benchmark"
)

MODES_HELP = """\
modes:
  decode   one new token per sequence
  prefill  the last --chunk positions of every sequence are new (chunked prefill)
  mixed    one prefill chunk batched with batch - 1 decodes (vLLM's chunked-prefill step)

reported per backend: median time over cold-L2 runs; TFLOP/s over the causal, windowed
attention actually computed; TB/s of Q + visible K/V read + O written; that rate as a
percentage of the device-to-device copy bandwidth measured in the same run. sdpa runs
torch's scaled_dot_product_attention on KV gathered into contiguous tensors before timing.
"""


def _epilog() -> str:
    lines = ["models (the attention layer benchmarked):"]
    for name, shape in MODELS.items():
        window = f", window {shape.sliding_window}" if shape.sliding_window else ""
        lines.append(
            f"  {name:<20} {shape.num_q_heads} q / {shape.num_kv_heads} kv heads, "
            f"head_dim {shape.head_dim}{window}, scale {shape.softmax_scale:.4g}"
        )
    return "\n".join(lines) + "\n\n" + MODES_HELP


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``kernels attention`` under ``switchyard bench``."""
    kernels = commands.add_parser("kernels", help="kernel benchmarks (need a CUDA GPU)")
    which = kernels.add_subparsers(dest="kernel", required=True, metavar="KERNEL")
    attention = which.add_parser(
        "attention",
        help="paged attention: ours against torch SDPA, vLLM's Triton attention, FlashInfer",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grid = attention.add_argument_group("grid")
    grid.add_argument(
        "--models",
        type=csv_list(str, tuple(MODELS)),
        default=tuple(MODELS),
        metavar="NAME,...",
        help="comma-separated (default: all)",
    )
    grid.add_argument("--mode", choices=MODES, default="decode")
    grid.add_argument(
        "--batch",
        type=csv_list(int),
        default=(1, 8, 32, 64),
        metavar="N,...",
        help="default 1,8,32,64",
    )
    grid.add_argument(
        "--kv-len",
        type=csv_list(int),
        default=(1024, 8192, 32768),
        metavar="N,...",
        help="KV positions per sequence, new tokens included (default 1024,8192,32768)",
    )
    grid.add_argument(
        "--chunk", type=int, default=512, help="new tokens of a prefill sequence (default 512)"
    )
    grid.add_argument(
        "--page-size", type=int, default=16, help="KV positions per page (default 16)"
    )
    output = add_common_options(attention, grid, BACKEND_NAMES, reference="the torch reference")
    output.add_argument("--csv", metavar="PATH", help="write one row per record")
    output.add_argument(
        "--baseline",
        choices=tuple(name for name in BACKEND_NAMES if name != "ours"),
        help="backend of the before/after table's 'before' column (default: the first of "
        f"{', '.join(report.BASELINE_ORDER)} measured)",
    )
    output.add_argument(
        "--compare",
        metavar="BASELINE.json",
        help="also show ours against ours in a saved --json (e.g. from the upstream build)",
    )
    attention.set_defaults(run=_attention)
    nvfp4_cli.add_parser(which)


def _attention(args: argparse.Namespace) -> int:
    import torch

    if not torch.cuda.is_available():
        print(NO_GPU, file=sys.stderr)
        return 2
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print(INTERPRETED, file=sys.stderr)
        return 2
    # Paths are checked before the run: a bad one should not cost a whole run.
    try:
        for flag, path in (("--json", args.json), ("--csv", args.csv)):
            if path:
                check_writable(flag, path, make_folder=True)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    saved = None
    if args.compare:
        try:
            saved = report.read_records(args.compare)
        except (OSError, ValueError, KeyError, TypeError) as error:
            print(f"error: cannot read --compare {args.compare}: {error}", file=sys.stderr)
            return 2

    from switchyard.bench.kernels.attention import Settings, document, run

    settings = Settings(
        models=args.models,
        mode=args.mode,
        batches=args.batch,
        kv_lens=args.kv_len,
        chunk=args.chunk,
        page_size=args.page_size,
        dtype=args.dtype,
        backends=args.backends,
        refcheck=args.refcheck,
        warmup_ms=args.warmup_ms,
        rep_ms=args.rep_ms,
        seed=args.seed,
    )
    result = run(settings)
    print(
        f"\n{result.device}, {settings.dtype}, page size {settings.page_size}, "
        f"mode {settings.mode}, copy bandwidth {result.copy_bw_tbps:.2f} TB/s\n"
    )
    saved_name = Path(args.compare).name if args.compare else "saved"
    summary = report.render(
        result.records, baseline=args.baseline, saved=saved, saved_name=saved_name
    )
    print(summary)
    for note in result.notes:
        print(f"note: {note}")
    if args.json:
        report.write_json(args.json, document(settings, result), result.records)
    if args.csv:
        report.write_csv(args.csv, result.records)
    if result.failed:
        print("error: our kernel failed on a case or a backend failed --refcheck", file=sys.stderr)
        return 1
    return 0
