"""Cumulative engine counters, fed by vLLM's stat-logger hook.

vLLM reports scheduler figures per engine step as deltas (prefix-cache queries and
hits, speculative drafts) or as snapshots (running, waiting, KV usage). GetLoads and
the router want cumulative totals and the latest snapshot, so this logger keeps both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vllm.config import VllmConfig
from vllm.v1.metrics.loggers import StatLoggerBase
from vllm.v1.metrics.stats import IterationStats, SchedulerStats


@dataclass
class EngineCounters:
    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    spec_drafts: int = 0
    spec_draft_tokens: int = 0
    spec_accepted_tokens: int = 0
    spec_accepted_per_position: list[int] = field(default_factory=list)
    requests_completed: int = 0


class CountersLogger(StatLoggerBase):
    """A vLLM stat logger that writes into a shared :class:`EngineCounters`."""

    def __init__(
        self, vllm_config: VllmConfig, engine_index: int = 0, *, counters: EngineCounters
    ) -> None:
        self.counters = counters

    def record(
        self,
        scheduler_stats: SchedulerStats | None,
        iteration_stats: IterationStats | None,
        mm_cache_stats: object | None = None,
        engine_idx: int = 0,
    ) -> None:
        counters = self.counters
        if iteration_stats is not None:
            counters.requests_completed += len(iteration_stats.finished_requests)
        if scheduler_stats is None:
            return
        counters.running = scheduler_stats.num_running_reqs
        counters.waiting = scheduler_stats.num_waiting_reqs
        counters.kv_cache_usage = scheduler_stats.kv_cache_usage
        prefix = scheduler_stats.prefix_cache_stats
        if prefix is not None:
            counters.prefix_cache_queries += prefix.queries
            counters.prefix_cache_hits += prefix.hits
        spec = scheduler_stats.spec_decoding_stats
        if spec is not None:
            counters.spec_drafts += spec.num_drafts
            counters.spec_draft_tokens += spec.num_draft_tokens
            counters.spec_accepted_tokens += spec.num_accepted_tokens
            per_position = counters.spec_accepted_per_position
            if len(per_position) < len(spec.num_accepted_tokens_per_pos):
                per_position.extend(
                    [0] * (len(spec.num_accepted_tokens_per_pos) - len(per_position))
                )
            for position, accepted in enumerate(spec.num_accepted_tokens_per_pos):
                per_position[position] += accepted

    def log_engine_initialized(self) -> None:
        pass
