"""Entry point of the ``switchyard`` console script.

Each command group lives in its own module. A router-only install (``switchyard[router]``)
lacks the packages of the engine and benchmark groups; those groups are still listed, and
say what to install instead of failing the whole command line with an ImportError.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from switchyard.cli import extras

# Command group -> (its module, the install it needs).
GROUPS: dict[str, tuple[str, str]] = {
    "models": ("switchyard.cli.models", extras.ENGINE),
    "engine": ("switchyard.cli.engine", extras.ENGINE),
    "router": ("switchyard.cli.router", extras.ROUTER),
    "serve": ("switchyard.cli.serve", extras.ENGINE),
    "bench": ("switchyard.cli.bench", extras.BENCH),
    "eval": ("switchyard.cli.eval", extras.ENGINE),
    "quantize": ("switchyard.cli.quantize", extras.QUANTIZE),
}


def _add_group(groups: argparse._SubParsersAction, name: str) -> None:
    module_name, install = GROUPS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if not extras.is_missing_package(error):
            raise
        missing = extras.MissingExtra(f"switchyard {name}", install, error)
        unavailable = groups.add_parser(name, help=f"(unavailable: {missing.code})", add_help=False)
        unavailable.add_argument("arguments", nargs=argparse.REMAINDER)
        unavailable.set_defaults(run=lambda _args: sys.exit(missing.code))
        return
    module.add_parser(groups)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchyard",
        description="Switchyard: a vLLM engine over gRPC and an OpenAI-compatible router.",
    )
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default INFO)")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    for name in GROUPS:
        _add_group(groups, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
