"""One model in one vLLM ``AsyncLLM``: start-up, request tracking and load figures.

The gRPC servicer stays a translator; everything that needs vLLM's objects (engine
arguments, tokenizer, limits, counters) lives here, so a second front end (or a test)
can drive the same engine without gRPC.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import AsyncIterator

from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.outputs import RequestOutput
from vllm.v1.engine.async_llm import AsyncLLM

from switchyard.engine.config import ATTENTION_BACKENDS, RuntimeConfig
from switchyard.engine.cpu_cores import configure_engine_processes
from switchyard.engine.cpu_features import describe_cpu
from switchyard.engine.models.prepare import resolve_model_path
from switchyard.engine.models.registry import EMBEDDED_MODELS, resolve_name
from switchyard.engine.plugin import ATTENTION_BACKEND_ENV
from switchyard.engine.requests import ModelLimits, PreparedRequest
from switchyard.engine.speculative import vllm_speculative_config
from switchyard.engine.stats import CountersLogger, EngineCounters

log = logging.getLogger(__name__)


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


class DuplicateRequestId(ValueError):
    """A caller reused the id of a request that is still running."""


class ModelRuntime:
    """A started engine; create with :meth:`start`, end with :meth:`shutdown`."""

    def __init__(
        self,
        llm: AsyncLLM,
        served_name: str,
        model_path: str,
        config: RuntimeConfig,
        counters: EngineCounters,
    ) -> None:
        self.llm = llm
        self.served_name = served_name
        self.model_path = model_path
        self.config = config
        self.counters = counters
        self.tokenizer = llm.get_tokenizer()
        model_config = llm.model_config
        generation = model_config.try_get_generation_config() or {}
        eos = generation.get("eos_token_id", self.tokenizer.eos_token_id)
        eos_ids = tuple(eos) if isinstance(eos, list) else (eos,)
        self.limits = ModelLimits(
            max_context_length=model_config.max_model_len,
            vocab_size=model_config.get_vocab_size(),
            default_max_tokens=config.default_max_tokens,
            eos_token_ids=tuple(i for i in eos_ids if i is not None),
            speculative=llm.vllm_config.speculative_config is not None,
        )
        self._running: set[str] = set()

    @classmethod
    def start(cls, config: RuntimeConfig) -> ModelRuntime:
        served_name, path = resolve_model_path(config.model)
        dtype = config.dtype
        if dtype is None:
            embedded = EMBEDDED_MODELS.get(resolve_name(config.model))
            dtype = embedded.serving_dtype(on_cpu=_on_cpu()) if embedded else "auto"
        if _on_cpu():
            log.info("%s", describe_cpu())
            # vLLM's CPU build reads its KV budget from the environment only.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{config.kv_cache_gib:g}")
            configure_engine_processes(config.cpu_reserved_cores, config.cpu_cores)
        if config.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(
                f"attention_backend must be one of {ATTENTION_BACKENDS}, "
                f"got {config.attention_backend!r}"
            )
        # Checked before vLLM loads anything: a bad choice fails here, with its reason.
        speculative = vllm_speculative_config(
            config.speculative, path, resolve_path=lambda name: resolve_model_path(name)[1]
        )
        use_ours = config.attention_backend == "switchyard"
        if use_ours:
            # Read by our vLLM plugin in every process vLLM starts (see engine/plugin.py).
            os.environ[ATTENTION_BACKEND_ENV] = "switchyard"
        args = AsyncEngineArgs(
            model=str(path),
            served_model_name=[config.served_name or served_name],
            dtype=dtype,
            max_model_len=config.max_model_len,
            enforce_eager=config.enforce_eager,
            enable_prefix_caching=config.enable_prefix_caching,
            gpu_memory_utilization=config.gpu_memory_utilization,
            seed=config.seed,
            # Stats still flow to our logger; this only turns off vLLM's periodic prints.
            disable_log_stats=True,
            # On CPU the plugin stands in for CPU_ATTN instead; naming CUSTOM there is
            # ignored by the platform anyway.
            attention_backend="CUSTOM" if use_ours and not _on_cpu() else None,
            speculative_config=speculative,
            # Per-request draft/accepted counts on the final output (Complete message).
            per_request_spec_decode_metrics="summary" if speculative else "none",
        )
        counters = EngineCounters()

        def counters_logger(vllm_config, engine_index=0):
            return CountersLogger(vllm_config, engine_index, counters=counters)

        llm = AsyncLLM.from_engine_args(args, stat_loggers=[counters_logger])
        return cls(llm, config.served_name or served_name, str(path), config, counters)

    def new_request_id(self, requested: str) -> str:
        if not requested:
            return uuid.uuid4().hex
        if requested in self._running:
            raise DuplicateRequestId(f"request_id {requested!r} is already running")
        return requested

    async def generate(
        self, request_id: str, prepared: PreparedRequest
    ) -> AsyncIterator[RequestOutput]:
        """Stream vLLM outputs (deltas). Cancelling the consumer aborts the request."""
        self._running.add(request_id)
        try:
            async for output in self.llm.generate(
                {"prompt_token_ids": prepared.prompt_token_ids},
                prepared.sampling_params,
                request_id,
            ):
                yield output
        finally:
            self._running.discard(request_id)

    def running_request_ids(self) -> list[str]:
        """The requests being generated now (a snapshot), e.g. to drain at shutdown."""
        return list(self._running)

    async def abort(self, request_ids: list[str]) -> list[str]:
        running = [i for i in request_ids if i in self._running]
        if running:
            await self.llm.abort(running)
        return running

    def loads(self) -> EngineCounters:
        """The counters, with request counts taken from the front end.

        The scheduler reports running/waiting only after an engine step, and no step
        follows the abort of the last request; the front end's count of unfinished
        requests is exact at every moment, so it bounds the scheduler's figures.
        """
        c = self.counters
        unfinished = self.llm.get_num_unfinished_requests()
        waiting = min(c.waiting, unfinished)
        return EngineCounters(
            running=unfinished - waiting,
            waiting=waiting,
            kv_cache_usage=c.kv_cache_usage if unfinished else 0.0,
            prefix_cache_queries=c.prefix_cache_queries,
            prefix_cache_hits=c.prefix_cache_hits,
            spec_drafts=c.spec_drafts,
            spec_draft_tokens=c.spec_draft_tokens,
            spec_accepted_tokens=c.spec_accepted_tokens,
            spec_accepted_per_position=list(c.spec_accepted_per_position),
            requests_completed=c.requests_completed,
        )

    def kv_cache_capacity_tokens(self) -> int:
        """vLLM's group-aware figure (sliding-window layers hold fewer tokens)."""
        cache = self.llm.vllm_config.cache_config
        if cache.kv_cache_size_tokens is not None:
            return cache.kv_cache_size_tokens
        return (cache.num_gpu_blocks or 0) * cache.block_size

    def speculative_config_json(self) -> str:
        spec = self.llm.vllm_config.speculative_config
        if spec is None:
            return ""
        figures = {"method": spec.method, "num_speculative_tokens": spec.num_speculative_tokens}
        if spec.method == "ngram":
            figures |= {
                "prompt_lookup_min": spec.prompt_lookup_min,
                "prompt_lookup_max": spec.prompt_lookup_max,
            }
        if spec.method in ("draft_model", "eagle3") and spec.draft_model_config is not None:
            figures["model"] = spec.draft_model_config.model
        return json.dumps(figures)

    def shutdown(self) -> None:
        self.llm.shutdown()
