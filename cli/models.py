"""``switchyard models list|prepare``."""

from __future__ import annotations

import argparse

from switchyard.engine.models.prepare import (
    ModelNotFound,
    ModelStatus,
    embedded_status,
    prepare,
)
from switchyard.engine.models.registry import DEFAULT_MODEL, EMBEDDED_MODELS


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("models", help="list and prepare the embedded models")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="show the embedded models and their state")
    listing.set_defaults(run=_list)

    preparing = commands.add_parser(
        "prepare", help="convert embedded models into Hugging Face checkpoints (once)"
    )
    preparing.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"models to prepare (default: all); one of {', '.join(EMBEDDED_MODELS)} or 'embedded'",
    )
    preparing.add_argument("--force", action="store_true", help="rebuild even if prepared")
    preparing.set_defaults(run=_prepare)


def _size(row: ModelStatus) -> str:
    """The checkpoint's size once prepared; before that, the GGUF's it is made from."""
    if row.prepared:
        return f"{row.size_bytes / 1e6:.0f} MB"
    if row.source_bytes is not None:
        return f"{row.source_bytes / 1e6:.0f} MB (GGUF)"
    return "unknown"


def _list(args: argparse.Namespace) -> int:
    print(f"{'NAME':<24} {'ARCHITECTURE':<20} {'SIZE':>14}  {'STATE':<10} PATH")
    for row in embedded_status():
        state = "prepared" if row.prepared else "missing"
        default = " (default)" if row.name == DEFAULT_MODEL else ""
        print(
            f"{row.name:<24} {row.architecture:<20} {_size(row):>14}  {state:<10} "
            f"{row.path}{default}"
        )
        for problem in (row.problem, row.source_problem):
            if problem and problem != "not prepared":
                print(f"{'':<24} problem: {problem}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    for name in args.names or list(EMBEDDED_MODELS):
        try:
            path = prepare(name, force=args.force)
        except ModelNotFound as error:
            print(f"error: {error}")
            return 2
        print(f"{name}: {path}")
    return 0
