"""Entry point of the ``switchyard`` console script."""

from __future__ import annotations

import argparse
import logging
import sys

from switchyard.cli import bench, engine, models, quantize, router, serve
from switchyard.cli import eval as eval_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchyard",
        description="Switchyard: a vLLM engine over gRPC and an OpenAI-compatible router.",
    )
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default INFO)")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    models.add_parser(groups)
    engine.add_parser(groups)
    router.add_parser(groups)
    serve.add_parser(groups)
    bench.add_parser(groups)
    eval_cli.add_parser(groups)
    quantize.add_parser(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
