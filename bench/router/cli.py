"""``switchyard bench router``: the parser and the command.

Imports nothing heavy at module level: the ``switchyard`` console script builds every
command's parser at start.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

DESCRIPTION = """\
Measure what the router adds to a request. The benchmark starts a local OpenAI-compatible
upstream that answers at once and a router (`switchyard router serve`, one worker) in
front of it, each in its own process, and sends the same requests to the upstream
directly and through the router, batch by batch in turn:

  latency     concurrency 1, non-streaming and streaming (to the last byte and to the
              first), --rounds batches of --requests per path; added = router - direct
              at p50, p90 and p99
  throughput  --concurrency requests in flight for --duration-s, --rounds runs per path
              and mode; the median run's requests/s
  memory      the router's RSS before and during --memory-requests more requests

It prints a markdown table and the verdict on the targets (added p50 <= 0.5 ms,
>= 3,000 requests/s on one worker, flat memory). When the direct path is barely faster
than the routed one, the load generator is the bottleneck and says so.
"""


def _integer(minimum: int) -> Callable[[str], int]:
    """An argparse type for integers of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``router`` under ``switchyard bench``."""
    parser = commands.add_parser(
        "router",
        help="the router's added latency, throughput and memory against an instant upstream",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--requests",
        type=_integer(1),
        default=1000,
        help="requests per measured latency batch (default 1000)",
    )
    parser.add_argument(
        "--rounds",
        type=_integer(1),
        default=3,
        help="measured batches and throughput runs per path and mode (default 3)",
    )
    parser.add_argument(
        "--concurrency",
        type=_integer(1),
        default=32,
        help="requests in flight in the throughput and memory phases (default 32)",
    )
    parser.add_argument(
        "--duration-s",
        type=_positive_seconds,
        default=5.0,
        help="seconds of one throughput run (default 5)",
    )
    parser.add_argument(
        "--warmup",
        type=_integer(0),
        default=200,
        help="uncounted requests per path and mode, at concurrency 1 and again at "
        "--concurrency (default 200)",
    )
    parser.add_argument(
        "--memory-requests",
        type=_integer(1),
        default=10_000,
        help="routed requests of the memory phase (default 10000; 100000 for the full check)",
    )
    parser.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from switchyard.bench.router import loop, report
    from switchyard.bench.router.load import RequestFailed
    from switchyard.bench.router.overhead import ProxyMismatch, Settings, measure
    from switchyard.bench.router.processes import StartError

    settings = Settings(
        requests=args.requests,
        concurrency=args.concurrency,
        duration_s=args.duration_s,
        rounds=args.rounds,
        warmup=args.warmup,
        memory_requests=args.memory_requests,
    )
    try:
        if args.json:
            report.check_writable("--json", args.json)
        results = loop.run(measure(settings, log=lambda line: print(line, file=sys.stderr)))
    except (ValueError, StartError, RequestFailed, ProxyMismatch) as error:
        raise SystemExit(f"error: {error}") from None
    print(report.markdown(results))
    print()
    for line in report.notes(results):
        print(line)
    if args.json:
        try:
            report.write_json(args.json, report.to_json(results))
        except OSError as error:
            raise SystemExit(f"error: --json: cannot write {args.json}: {error.strerror}") from None
    return 0
