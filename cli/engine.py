"""``switchyard engine serve``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os

from switchyard.cli import extras
from switchyard.engine.config import ATTENTION_BACKENDS, RuntimeConfig
from switchyard.engine.cpu_cores import parse_cores, reserved_cores, usable_cores
from switchyard.engine.models.prepare import ModelNotFound, check_model
from switchyard.engine.speculative import (
    METHODS,
    WITH_PATH,
    SpeculativeChoice,
    SpeculativeConfigError,
    parse_choice,
    vllm_speculative_config,
)

DEFAULTS = RuntimeConfig()


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("engine", help="the first-party vLLM engine")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve one model over gRPC")
    serve.add_argument(
        "--model",
        default="embedded",
        help="embedded model name ('embedded' = the default) or a HF checkpoint path",
    )
    serve.add_argument("--served-name", default=None, help="name reported to clients")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default loopback; 0.0.0.0 exposes the engine)",
    )
    serve.add_argument("--port", type=int, default=50051)
    serve.add_argument(
        "--dtype",
        default=None,
        help="weights/activations dtype (default: the model's serving dtype)",
    )
    serve.add_argument("--max-model-len", type=int, default=DEFAULTS.max_model_len)
    serve.add_argument(
        "--default-max-tokens",
        type=int,
        default=DEFAULTS.default_max_tokens,
        help="max_tokens for requests that do not set it",
    )
    serve.add_argument(
        "--kv-cache-gib",
        type=float,
        default=DEFAULTS.kv_cache_gib,
        help="KV cache memory on CPU, GiB",
    )
    cores = serve.add_mutually_exclusive_group()
    cores.add_argument(
        "--cpu-reserved-cores",
        type=int,
        default=None,
        metavar="N",
        help="CPU only: cores kept from the model's threads for the engine's other "
        "processes (default: none on machines of up to 4 cores, else vLLM's choice)",
    )
    cores.add_argument(
        "--cpu-cores",
        type=_cpu_cores,
        default=None,
        metavar="LIST",
        help="CPU only: the cores the model's threads run on, e.g. 0-3,6 "
        "(switchyard serve gives each of several engines its own)",
    )
    serve.add_argument(
        "--gpu-memory-utilization", type=float, default=DEFAULTS.gpu_memory_utilization
    )
    serve.add_argument(
        "--enforce-eager",
        action="store_true",
        help="skip torch.compile: starts ~45 s sooner on CPU",
    )
    serve.add_argument("--no-prefix-caching", action="store_true")
    serve.add_argument(
        "--attention-backend",
        choices=ATTENTION_BACKENDS,
        default=DEFAULTS.attention_backend,
        help="vllm: vLLM's own kernels; switchyard: ours (Triton on GPU, torch reference on CPU)",
    )
    serve.add_argument(
        "--speculative",
        type=_speculative_choice,
        default=SpeculativeChoice(),
        metavar="|".join(m + ":PATH" if m in WITH_PATH else m for m in METHODS),
        help="speculative decoding method (default off); K and the method's settings "
        "come from the model family's recipe (engine/speculative.py)",
    )
    serve.add_argument(
        "--num-speculative-tokens",
        type=int,
        default=None,
        metavar="K",
        help="tokens proposed per step (default: the recipe's)",
    )
    serve.add_argument("--seed", type=int, default=DEFAULTS.seed)
    serve.add_argument(
        "--shutdown-grace",
        type=float,
        default=10.0,
        help="seconds in-flight requests get to finish on SIGTERM",
    )
    serve.set_defaults(run=_serve)


def _speculative_choice(value: str) -> SpeculativeChoice:
    try:
        return parse_choice(value)
    except ValueError as error:
        # argparse turns this into "argument --speculative: ..." and exit status 2.
        raise argparse.ArgumentTypeError(str(error)) from None


def _cpu_cores(value: str) -> tuple[int, ...]:
    try:
        return parse_cores(value, os.sched_getaffinity(0), "cores")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _check_speculative(model: str, choice: SpeculativeChoice) -> None:
    """Refuse a speculative setting that cannot work before anything starts (vLLM's
    import, the gRPC port), so the operator gets one line saying why and exit status 1.
    The runtime checks again; this is only the early answer."""
    if not choice.enabled and choice.num_tokens is None:
        return
    from switchyard.engine.models.prepare import resolve_model_path

    try:
        _, path = resolve_model_path(model)
        vllm_speculative_config(choice, path, resolve_path=lambda name: resolve_model_path(name)[1])
    except (SpeculativeConfigError, OSError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None


def _serve(args: argparse.Namespace) -> int:
    for name in ("max_model_len", "default_max_tokens", "num_speculative_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be >= 1, got {value}")
    try:
        reserved_cores(usable_cores(), args.cpu_reserved_cores, "--cpu-reserved-cores")
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    try:
        check_model(args.model)
    except ModelNotFound as error:
        raise SystemExit(f"error: {error}") from None
    speculative = dataclasses.replace(args.speculative, num_tokens=args.num_speculative_tokens)
    _check_speculative(args.model, speculative)
    # Imported here: vLLM takes seconds to import, and `--help` should not.
    serve = extras.require(
        "switchyard.engine.server", "switchyard engine serve", extras.ENGINE
    ).serve

    config = RuntimeConfig(
        model=args.model,
        served_name=args.served_name,
        dtype=args.dtype,
        max_model_len=args.max_model_len,
        kv_cache_gib=args.kv_cache_gib,
        cpu_reserved_cores=args.cpu_reserved_cores,
        cpu_cores=args.cpu_cores,
        gpu_memory_utilization=args.gpu_memory_utilization,
        default_max_tokens=args.default_max_tokens,
        enforce_eager=args.enforce_eager,
        enable_prefix_caching=not args.no_prefix_caching,
        seed=args.seed,
        attention_backend=args.attention_backend,
        speculative=speculative,
    )
    try:
        return asyncio.run(
            serve(config, host=args.host, port=args.port, shutdown_grace_s=args.shutdown_grace)
        )
    except SpeculativeConfigError as error:
        raise SystemExit(f"error: {error}") from None
