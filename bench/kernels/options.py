"""The command-line options the kernel benchmarks share, so that each command reads the
same: comma-separated lists, dtype, backends, the measurement settings, --json."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def csv_list(convert: Callable[[str], object], allowed: tuple[str, ...] = ()) -> Callable:
    """An argparse type for comma-separated values, each converted and, if given, checked."""

    def parse(text: str) -> tuple:
        values = tuple(convert(item.strip()) for item in text.split(",") if item.strip())
        unknown = [value for value in values if allowed and value not in allowed]
        if not values or unknown:
            choices = f" (choose from {', '.join(allowed)})" if allowed else ""
            raise argparse.ArgumentTypeError(f"invalid list {text!r}{choices}")
        return values

    return parse


def add_common_options(
    parser: argparse.ArgumentParser,
    grid: argparse._ArgumentGroup,
    backends: tuple[str, ...],
    *,
    reference: str,
) -> argparse._ArgumentGroup:
    """The options every kernel benchmark shares (dtype, backends, measurement, --json),
    so that each command reads the same; returns the output group for command-specific
    outputs."""
    grid.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    grid.add_argument(
        "--backends",
        type=csv_list(str, backends),
        default=backends,
        metavar="NAME,...",
        help=f"comma-separated (default: {','.join(backends)})",
    )
    measure = parser.add_argument_group("measurement")
    measure.add_argument(
        "--refcheck",
        action="store_true",
        help=f"check every backend against {reference} (relative error norm; "
        "bf16 1e-2, fp16 5e-3); any failure exits 1",
    )
    measure.add_argument("--warmup-ms", type=float, default=25.0, help="default 25")
    measure.add_argument(
        "--rep-ms", type=float, default=100.0, help="time budget of the timed runs (default 100)"
    )
    measure.add_argument("--seed", type=int, default=0)
    output = parser.add_argument_group("output")
    output.add_argument("--json", metavar="PATH", help="write settings, device and records")
    return output
