"""``switchyard bench router``: the parser and the command.

Imports nothing heavy at module level: the ``switchyard`` console script builds every
command's parser at start.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from switchyard.bench import output

T = TypeVar("T")

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

`switchyard bench router replicas` instead compares replica policies on real engines,
and `switchyard bench router soak` sends fuzzed requests and watches the router's
memory (see their --help).
"""

SOAK_DESCRIPTION = """\
Send the router many fuzzed requests and watch its memory. The benchmark starts the
instant upstream (which also serves fault models: 429, 503, a reset, a cut answer, a 200
of the wrong shape, a hang) and a router (`switchyard router serve`) configured with it,
a provider that is down, a sticky A/B router and two fallback routers, then sends
--requests requests (seeded by --seed, --concurrency at a time): valid ones of every
shape (streamed or not, large bodies, made-up users, metadata and extra fields), faults
directly and through a fallback, clients that leave mid-stream, and refused ones
(unknown models, wrong field types, broken JSON, bodies over the cap, missing or wrong
keys).

Every answer is checked against the statuses the router documents for its request, its
error body against {"error": {"message": ...}}, a stream against its closing [DONE] (or
error event, for a stream cut after it began); the router's RSS is sampled 20 times. It
prints the answers by kind and status, the RSS trace and whether it is bounded (the
second half's peak no higher than the first's, within 2 MiB), and exits 1 on any
finding or unbounded growth.
"""

REPLICAS_DESCRIPTION = """\
Compare the router's replica policies on real engines. The benchmark starts two engine
replicas of --model (`switchyard engine serve`, loopback, one after the other) and, per
configuration, a fresh router in front of them, then sends the shared-prefix workload
(--groups system prompts of --system-prompt-len tokens, each followed by
--prompts-per-group questions of --question-len tokens, shuffled) through the router:

  single        the router in front of replica a alone (the baseline)
  cache_aware   both replicas, replica_policy: cache_aware (likewise round_robin,
                least_loaded, consistent_hash; no request sends `user`, so
                consistent_hash behaves as least_loaded)

Per configuration it reports the prefix-cache hit rate (the engines' GetLoads
prefix_cache_hits / prefix_cache_queries over the measured run, summed over its
replicas), TTFT median and p90 through the router, and each replica's share of the
prompt tokens, as a markdown table (and --json). Each configuration uses system prompts
of its own (seed + its index), so none finds its prefixes cached by an earlier one, and
starts with --warmup uncounted requests on prompts of their own.
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


def _positive(what: str) -> Callable[[str], float]:
    """An argparse type for finite numbers above zero; ``what`` names them in errors."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return parse


_positive_seconds = _positive("a positive number of seconds")
_positive_number = _positive("a positive number")


def _configurations(text: str) -> tuple[str, ...]:
    from switchyard.bench.router.replicas import CONFIGURATIONS

    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in CONFIGURATIONS]
    if unknown or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"a comma-separated list of distinct names from {', '.join(CONFIGURATIONS)}; "
            f"got {text!r}"
        )
    return names


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
    benchmarks = parser.add_subparsers(dest="router_benchmark", metavar="BENCHMARK")
    _add_replicas_parser(benchmarks)
    _add_soak_parser(benchmarks)


def _add_soak_parser(benchmarks: argparse._SubParsersAction) -> None:
    from switchyard.bench.router.fuzz import SAMPLES, Settings

    d = Settings()
    parser = benchmarks.add_parser(
        "soak",
        help="fuzzed requests: every answer's status checked, the router's RSS bounded",
        description=SOAK_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--requests",
        type=_integer(SAMPLES),
        default=d.requests,
        help=f"fuzzed requests (default {d.requests}, at least {SAMPLES})",
    )
    parser.add_argument(
        "--concurrency",
        type=_integer(1),
        default=d.concurrency,
        help=f"requests in flight (default {d.concurrency})",
    )
    parser.add_argument("--seed", type=_integer(0), default=d.seed, help="fuzzing seed")
    parser.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    parser.set_defaults(run=_run_soak)


def _run_soak(args: argparse.Namespace) -> int:
    from switchyard.bench.router import soak
    from switchyard.bench.router.fuzz import Settings
    from switchyard.bench.router.processes import StartError

    settings = Settings(requests=args.requests, concurrency=args.concurrency, seed=args.seed)
    results = _measure(args, lambda: soak.measure(settings, log=_log), (ValueError, StartError))
    print(soak.markdown(results))
    _save(args, soak.to_json(results))
    return 0 if results.finding_count == 0 and results.memory.bounded else 1


def _add_replicas_parser(benchmarks: argparse._SubParsersAction) -> None:
    from switchyard.bench.router.replicas import DEFAULT_CONFIGURATIONS, Settings

    d = Settings()
    parser = benchmarks.add_parser(
        "replicas",
        help="prefix-cache hit rate and TTFT per replica policy, on two real engines",
        description=REPLICAS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--configurations",
        type=_configurations,
        default=DEFAULT_CONFIGURATIONS,
        help=f"comma-separated, run in this order (default {','.join(DEFAULT_CONFIGURATIONS)})",
    )
    parser.add_argument("--model", default=d.model, help=f"engine model (default {d.model})")
    integers = {
        "--groups": ("groups", 1, "system prompts"),
        "--prompts-per-group": ("prompts_per_group", 1, "questions per system prompt"),
        "--system-prompt-len": ("system_prompt_len", 1, "tokens per system prompt"),
        "--question-len": ("question_len", 1, "tokens per question"),
        "--output-len": ("output_len", 1, "tokens generated per request"),
        "--max-concurrency": ("max_concurrency", 1, "requests in flight"),
        "--warmup": ("warmup", 0, "uncounted requests per configuration"),
        "--seed": ("seed", 0, "seed of the first configuration's prompts"),
        "--max-model-len": ("max_model_len", 1, "engine --max-model-len"),
    }
    for flag, (field, minimum, what) in integers.items():
        default = getattr(d, field)
        parser.add_argument(
            flag, type=_integer(minimum), default=default, help=f"{what} (default {default})"
        )
    parser.add_argument(
        "--kv-cache-gib",
        type=_positive_number,
        default=d.kv_cache_gib,
        help=f"each engine's KV cache on CPU (default {d.kv_cache_gib})",
    )
    parser.add_argument(
        "--gpu-memory-utilization",
        type=_positive_number,
        default=d.gpu_memory_utilization,
        help=f"each engine's share of the one GPU both use (default {d.gpu_memory_utilization})",
    )
    parser.add_argument(
        "--enforce-eager", action="store_true", help="start the engines without compiling"
    )
    parser.add_argument(
        "--request-timeout",
        type=_positive_seconds,
        default=d.request_timeout_s,
        help=f"seconds per request (default {d.request_timeout_s:g})",
    )
    parser.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    parser.set_defaults(run=_run_replicas)


def _run_replicas(args: argparse.Namespace) -> int:
    from switchyard.bench.router import replicas
    from switchyard.bench.router.processes import StartError
    from switchyard.bench.serving.runner import TargetError

    settings = replicas.Settings(
        model=args.model,
        configurations=args.configurations,
        groups=args.groups,
        prompts_per_group=args.prompts_per_group,
        system_prompt_len=args.system_prompt_len,
        question_len=args.question_len,
        output_len=args.output_len,
        max_concurrency=args.max_concurrency,
        warmup=args.warmup,
        seed=args.seed,
        kv_cache_gib=args.kv_cache_gib,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=args.max_model_len,
        enforce_eager=args.enforce_eager,
        request_timeout_s=args.request_timeout,
    )

    def start() -> Coroutine[Any, Any, replicas.Results]:
        settings.check()  # after --json's check, before any engine starts
        return replicas.measure(settings, log=_log)

    results = _measure(args, start, (ValueError, StartError, TargetError))
    print(replicas.markdown(results))
    _save(args, replicas.to_json(results))
    return 0


def _run(args: argparse.Namespace) -> int:
    from switchyard.bench.router import report
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
    errors = (ValueError, StartError, RequestFailed, ProxyMismatch)
    results = _measure(args, lambda: measure(settings, log=_log), errors)
    print(report.markdown(results))
    print()
    for line in report.notes(results):
        print(line)
    _save(args, report.to_json(results))
    return 0


def _log(line: str) -> None:
    print(line, file=sys.stderr)


def _measure(
    args: argparse.Namespace,
    start: Callable[[], Coroutine[Any, Any, T]],
    errors: tuple[type[Exception], ...],
) -> T:
    """Run a benchmark once ``--json`` is known to be writable; ``errors`` end the command
    with their message."""
    from switchyard.bench.router import loop

    try:
        if args.json:
            output.check_writable("--json", args.json)
        return loop.run(start())
    except errors as error:
        raise SystemExit(f"error: {error}") from None


def _save(args: argparse.Namespace, document: dict) -> None:
    if args.json:
        try:
            output.write_json(args.json, document)
        except OSError as error:
            raise SystemExit(f"error: --json: cannot write {args.json}: {error.strerror}") from None
