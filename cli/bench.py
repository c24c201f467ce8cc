"""``switchyard bench serve``: load a serving target and report latency and throughput."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys

from switchyard.bench import output
from switchyard.bench.kernels import cli as kernels_cli
from switchyard.bench.router import cli as router_cli
from switchyard.bench.serving import spec as spec_cli
from switchyard.bench.serving.metrics import METRIC_DEFINITIONS

EPILOG = f"""\
targets:
  http(s)://HOST:PORT   OpenAI-compatible server, streamed /v1/chat/completions or
                        /v1/completions with stream_options.include_usage
  grpc://HOST:PORT      the Switchyard engine's Generate

workloads:
  random         prompts of --random-input-len tokens exactly (model tokenizer), asking
                 for --random-output-len tokens (max_tokens + ignore_eos)
  shared-prefix  --gsp-num-groups system prompts, each shared by --gsp-prompts-per-group
                 questions (SGLang's generated-shared-prefix)
  multi-turn     --mt-num-conversations conversations of --mt-turns user turns of
                 --mt-user-len tokens, each asking for --mt-output-len tokens; every turn
                 resends the history with the server's actual replies, so it is sent only
                 after the previous reply; conversations start on the arrival schedule.
                 --endpoint completions sends the history rendered with the tokenizer's
                 chat template
  jsonl          --dataset-path lines of {{"messages": [...]}} or ShareGPT
                 {{"conversations": [...]}}; a final assistant turn sets the output length
                 (with --tokenizer) and is not sent

{METRIC_DEFINITIONS}
"""


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("bench", help="serving and kernel benchmarks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="benchmark an OpenAI-compatible server or the engine's gRPC API",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = serve.add_argument_group("target")
    target.add_argument("--target", required=True, help="http(s)://HOST:PORT or grpc://HOST:PORT")
    target.add_argument("--model", required=True, help="model name sent in OpenAI requests")
    target.add_argument(
        "--api-key",
        default=os.environ.get("OPENAI_API_KEY"),
        help="bearer token for HTTP targets (default $OPENAI_API_KEY)",
    )
    target.add_argument("--endpoint", choices=("chat", "completions"), default="chat")
    target.add_argument(
        "--request-timeout",
        type=float,
        default=600.0,
        help="seconds per request, connection included (default 600)",
    )
    target.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for a connection to --target (default 10); a target that "
        "does not answer in time stops the benchmark",
    )

    workload = serve.add_argument_group("workload")
    workload.add_argument(
        "--workload", choices=("random", "shared-prefix", "multi-turn", "jsonl"), default="random"
    )
    workload.add_argument(
        "--tokenizer",
        help="tokenizer directory, embedded model name or hub id (default: --model)",
    )
    workload.add_argument("--seed", type=int, default=0)
    workload.add_argument("--num-prompts", type=int, default=100)
    workload.add_argument("--random-input-len", type=int, default=1024)
    workload.add_argument("--random-output-len", type=int, default=128)
    workload.add_argument(
        "--random-range-ratio",
        type=float,
        default=0.0,
        help="lengths uniform in [len*(1-r), len*(1+r)] (default 0: fixed)",
    )
    workload.add_argument("--gsp-num-groups", type=int, default=8)
    workload.add_argument("--gsp-prompts-per-group", type=int, default=16)
    workload.add_argument("--gsp-system-prompt-len", type=int, default=1024)
    workload.add_argument("--gsp-question-len", type=int, default=128)
    workload.add_argument("--gsp-output-len", type=int, default=128)
    workload.add_argument("--mt-num-conversations", type=int, default=16)
    workload.add_argument("--mt-turns", type=int, default=5, help="user turns per conversation")
    workload.add_argument("--mt-user-len", type=int, default=256, help="tokens per user turn")
    workload.add_argument("--mt-output-len", type=int, default=128, help="tokens per reply")
    workload.add_argument("--dataset-path", help="JSONL file for --workload jsonl")
    workload.add_argument(
        "--jsonl-output-len", type=int, help="fixed output length for every jsonl request"
    )

    load = serve.add_argument_group("load")
    load.add_argument(
        "--request-rate", type=float, default=math.inf, help="requests/s (default inf: all at once)"
    )
    load.add_argument(
        "--burstiness", type=float, default=1.0, help="gamma shape of arrivals (1 = Poisson)"
    )
    load.add_argument("--max-concurrency", type=int, help="most requests in flight at once")
    load.add_argument("--warmup", type=int, default=0, help="uncounted requests sent first")
    load.add_argument(
        "--sweep",
        help="one run per value: concurrency=1,2,4 or request-rate=1,2 (overrides that flag)",
    )

    output = serve.add_argument_group("output")
    output.add_argument("--goodput", help="SLOs in ms, e.g. ttft:200,tpot:50,e2el:2000")
    output.add_argument(
        "--save",
        metavar="PATH",
        help="write settings, every option, the environment (CPU, GPUs, date) and the "
        "metrics as JSON",
    )
    output.add_argument("--detailed", action="store_true", help="add per-request records to --save")
    output.add_argument("--csv", metavar="PATH", help="write one CSV row per run")
    output.add_argument(
        "--plot",
        metavar="PATH",
        help="draw TTFT/TPOT distributions (and, for a sweep, latency vs throughput) "
        "to a .png, .svg or .pdf",
    )
    output.add_argument(
        "--max-failures",
        type=int,
        default=0,
        help="exit 1 when a run has more failed requests than this (default 0, >= 0)",
    )
    serve.set_defaults(run=_serve)
    kernels_cli.add_parser(commands)
    router_cli.add_parser(commands)
    spec_cli.add_parser(commands)


def _serve(args: argparse.Namespace) -> int:
    from switchyard.bench.serving import plot, report
    from switchyard.bench.serving.runner import TargetError
    from switchyard.bench.serving.serve import ServeSettings, run_serve

    settings = ServeSettings(
        target=args.target,
        model=args.model,
        endpoint=args.endpoint,
        workload=args.workload,
        tokenizer=args.tokenizer,
        seed=args.seed,
        num_prompts=args.num_prompts,
        random_input_len=args.random_input_len,
        random_output_len=args.random_output_len,
        random_range_ratio=args.random_range_ratio,
        gsp_num_groups=args.gsp_num_groups,
        gsp_prompts_per_group=args.gsp_prompts_per_group,
        gsp_system_prompt_len=args.gsp_system_prompt_len,
        gsp_question_len=args.gsp_question_len,
        gsp_output_len=args.gsp_output_len,
        mt_num_conversations=args.mt_num_conversations,
        mt_turns=args.mt_turns,
        mt_user_len=args.mt_user_len,
        mt_output_len=args.mt_output_len,
        dataset_path=args.dataset_path,
        jsonl_output_len=args.jsonl_output_len,
        request_rate=args.request_rate,
        burstiness=args.burstiness,
        max_concurrency=args.max_concurrency,
        warmup=args.warmup,
        sweep=args.sweep,
        goodput=args.goodput,
        request_timeout_s=args.request_timeout,
        connect_timeout_s=args.connect_timeout,
    )
    try:
        if args.max_failures < 0:
            raise ValueError(f"--max-failures must be >= 0, got {args.max_failures}")
        for flag, path in (("--save", args.save), ("--csv", args.csv)):
            if path:
                output.check_writable(flag, path)
        if args.plot:
            plot.check_plot_path(args.plot)
        results = asyncio.run(run_serve(settings, api_key=args.api_key))
    except (ValueError, OSError, TargetError) as error:
        raise SystemExit(f"error: {error}") from None
    report.print_summary(results)
    if args.save:
        document = report.to_json(
            settings.to_dict(), results, detailed=args.detailed, arguments=_arguments(args)
        )
        output.write_json(args.save, document)
    if args.csv:
        report.write_csv(args.csv, results)
    if args.plot:
        plot.write_plot(args.plot, results)
    worst = max(result.metrics.failed for result in results)
    if worst > args.max_failures:
        limit = args.max_failures
        print(
            f"error: a run had {worst} failed request(s), more than --max-failures {limit}",
            file=sys.stderr,
        )
        return 1
    return 0


def _arguments(args: argparse.Namespace) -> dict[str, object]:
    """Every option of the invocation as parsed, for --save; the API key only as whether
    one was given."""
    values = {k: v for k, v in vars(args).items() if not callable(v)}
    values["api_key"] = "<set>" if args.api_key else None
    return values
