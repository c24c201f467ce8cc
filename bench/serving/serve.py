"""``switchyard bench serve`` as a library call: settings in, one result per load out."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from switchyard.bench.serving.conversations import chat_template_renderer, multi_turn_workload
from switchyard.bench.serving.grpc_backend import GrpcBackend
from switchyard.bench.serving.jsonl import jsonl_workload
from switchyard.bench.serving.metrics import parse_slos
from switchyard.bench.serving.openai_backend import ENDPOINTS, OpenAIBackend
from switchyard.bench.serving.progress import RunProgress
from switchyard.bench.serving.reachability import unreachable
from switchyard.bench.serving.record import Backend
from switchyard.bench.serving.report import json_safe
from switchyard.bench.serving.runner import (
    Load,
    RunResult,
    WorkItem,
    request_count,
    run_benchmark,
    sweep_loads,
    target_error,
)
from switchyard.bench.serving.server_metrics import Scraper, grpc_scraper, prometheus_scraper
from switchyard.bench.serving.workloads import (
    load_tokenizer,
    random_workload,
    shared_prefix_workload,
)

WORKLOADS = ("random", "shared-prefix", "multi-turn", "jsonl")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeSettings:
    """Everything that defines a benchmark invocation; saved with its results."""

    target: str
    model: str
    endpoint: str = "chat"
    workload: str = "random"
    tokenizer: str | None = None
    seed: int = 0
    num_prompts: int = 100
    random_input_len: int = 1024
    random_output_len: int = 128
    random_range_ratio: float = 0.0
    gsp_num_groups: int = 8
    gsp_prompts_per_group: int = 16
    gsp_system_prompt_len: int = 1024
    gsp_question_len: int = 128
    gsp_output_len: int = 128
    mt_num_conversations: int = 16
    mt_turns: int = 5
    mt_user_len: int = 256
    mt_output_len: int = 128
    dataset_path: str | None = None
    jsonl_output_len: int | None = None
    request_rate: float = math.inf
    burstiness: float = 1.0
    max_concurrency: int | None = None
    warmup: int = 0
    sweep: str | None = None
    goodput: str | None = None
    request_timeout_s: float | None = 600.0
    connect_timeout_s: float | None = 10.0

    def check(self) -> None:
        """Reject settings that would hang or measure nothing, before any request is sent."""
        check_target(self.target)
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {sorted(ENDPOINTS)}, got {self.endpoint!r}")
        if self.workload not in WORKLOADS:
            raise ValueError(f"unknown workload {self.workload!r}; choose one of {WORKLOADS}")
        positive = {  # by the flag that sets each
            "--num-prompts": self.num_prompts,
            "--random-input-len": self.random_input_len,
            "--random-output-len": self.random_output_len,
            "--gsp-num-groups": self.gsp_num_groups,
            "--gsp-prompts-per-group": self.gsp_prompts_per_group,
            "--gsp-system-prompt-len": self.gsp_system_prompt_len,
            "--gsp-question-len": self.gsp_question_len,
            "--gsp-output-len": self.gsp_output_len,
            "--mt-num-conversations": self.mt_num_conversations,
            "--mt-turns": self.mt_turns,
            "--mt-user-len": self.mt_user_len,
            "--mt-output-len": self.mt_output_len,
            "--jsonl-output-len": self.jsonl_output_len,
            "--max-concurrency": self.max_concurrency,
            "--request-rate": self.request_rate,
            "--burstiness": self.burstiness,
            "--request-timeout": self.request_timeout_s,
            "--connect-timeout": self.connect_timeout_s,
        }
        for flag, value in positive.items():
            if value is None:
                continue
            if not value > 0:  # NaN too
                raise ValueError(f"{flag} must be > 0, got {value}")
            if math.isinf(value) and flag != "--request-rate":  # only a rate means "no limit"
                raise ValueError(f"{flag} must be finite, got {value}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {self.warmup}")
        if not 0 <= self.random_range_ratio < 1:  # NaN too
            raise ValueError(
                f"--random-range-ratio must be in [0, 1), got {self.random_range_ratio}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings as saved (JSON-safe); the API key is never part of them."""
        return json_safe(dict(self.__dict__))


def check_target(target: str) -> str:
    """The target's scheme, ``http``, ``https`` or ``grpc``; raises ValueError otherwise."""
    parsed = urlparse(target)
    usage = f"--target must be http(s)://HOST[:PORT] or grpc://HOST:PORT, got {target!r}"
    if parsed.scheme not in ("http", "https", "grpc") or not parsed.hostname:
        raise ValueError(usage)
    try:
        port = parsed.port
    except ValueError:
        raise ValueError(usage) from None
    if parsed.scheme == "grpc" and port is None:
        raise ValueError(usage)
    return parsed.scheme


def make_backend(
    settings: ServeSettings, api_key: str | None = None, tokenizer: Any | None = None
) -> Backend:
    """The target's backend; ``tokenizer`` counts output tokens a server does not report."""
    if check_target(settings.target) == "grpc":
        return GrpcBackend(settings.target, timeout_s=settings.request_timeout_s)
    return OpenAIBackend(
        settings.target,
        settings.model,
        endpoint=settings.endpoint,
        api_key=api_key,
        timeout_s=settings.request_timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        tokenizer=tokenizer,
    )


def make_scraper(target: str, api_key: str | None = None) -> Scraper:
    """Reads the target's server-side counters: GetLoads over gRPC, /metrics over HTTP."""
    if check_target(target) == "grpc":
        return grpc_scraper(target.removeprefix("grpc://"))
    return prometheus_scraper(target, api_key)


def workload_tokenizer(settings: ServeSettings) -> Any | None:
    """The tokenizer of the workload: --tokenizer, else --model; a jsonl workload uses one
    only when --tokenizer names it (a model name alone may not resolve to a tokenizer)."""
    if settings.workload == "jsonl":
        return load_tokenizer(settings.tokenizer) if settings.tokenizer else None
    return load_tokenizer(settings.tokenizer or settings.model)


def build_workload(settings: ServeSettings, tokenizer: Any | None) -> Sequence[WorkItem]:
    """The workload's requests or conversations; synthetic ones need ``tokenizer``."""
    if settings.workload == "random":
        return random_workload(
            tokenizer,
            num_prompts=settings.num_prompts,
            input_len=settings.random_input_len,
            output_len=settings.random_output_len,
            range_ratio=settings.random_range_ratio,
            seed=settings.seed,
        )
    if settings.workload == "shared-prefix":
        return shared_prefix_workload(
            tokenizer,
            num_groups=settings.gsp_num_groups,
            prompts_per_group=settings.gsp_prompts_per_group,
            system_prompt_len=settings.gsp_system_prompt_len,
            question_len=settings.gsp_question_len,
            output_len=settings.gsp_output_len,
            seed=settings.seed,
        )
    if settings.workload == "multi-turn":
        # Chat endpoints and gRPC send the messages; completions needs them as one text.
        as_text = settings.endpoint == "completions" and check_target(settings.target) != "grpc"
        return multi_turn_workload(
            tokenizer,
            num_conversations=settings.mt_num_conversations,
            turns=settings.mt_turns,
            user_len=settings.mt_user_len,
            output_len=settings.mt_output_len,
            seed=settings.seed,
            render=chat_template_renderer(tokenizer) if as_text else None,
        )
    if settings.workload == "jsonl":
        if not settings.dataset_path:
            raise ValueError("the jsonl workload needs --dataset-path")
        # A tokenizer only refines counts here; the workload goes without one.
        return jsonl_workload(
            settings.dataset_path,
            num_prompts=settings.num_prompts,
            tokenizer=tokenizer,
            output_len=settings.jsonl_output_len,
            seed=settings.seed,
        )
    raise ValueError(f"unknown workload {settings.workload!r}; choose one of {WORKLOADS}")


async def run_serve(
    settings: ServeSettings,
    *,
    api_key: str | None = None,
    requests: Sequence[WorkItem] | None = None,
    progress: RunProgress | None = None,
) -> list[RunResult]:
    """Run one benchmark per load (one, or one per ``--sweep`` value) on one workload.

    ``requests`` replaces the workload the settings describe (for callers with their own;
    output tokens a server does not report are then counted with --tokenizer if given);
    ``progress`` defaults to a bar on stderr when that is a terminal.
    """
    settings.check()
    slos = parse_slos(settings.goodput) if settings.goodput else None
    base = Load(settings.request_rate, settings.burstiness, settings.max_concurrency)
    loads = sweep_loads(base, settings.sweep)
    # Before the tokenizer and the workload, which take seconds (minutes from a hub):
    # a target that is down says so at once.
    if (failure := await unreachable(settings.target, settings.connect_timeout_s)) is not None:
        raise target_error(f"could not connect to --target {settings.target}", *failure)
    if requests is None:
        tokenizer = workload_tokenizer(settings)
        requests = build_workload(settings, tokenizer)
    else:
        tokenizer = load_tokenizer(settings.tokenizer) if settings.tokenizer else None
    backend = make_backend(settings, api_key, tokenizer)
    scrape = make_scraper(settings.target, api_key)
    progress = progress or RunProgress()
    total = request_count(requests)
    results = []
    try:
        for load in loads:
            log.info("benchmarking %s: %d requests, %s", settings.target, total, load.label())
            with progress.run(load.label(), total) as advance:
                result = await run_benchmark(
                    backend,
                    requests,
                    load,
                    warmup=settings.warmup,
                    slos=slos,
                    seed=settings.seed,
                    scrape=scrape,
                    on_done=advance,
                )
            results.append(result)
        return results
    finally:
        await backend.close()
