"""Server-side figures: the target's own counters, scraped before and after a run.

Client timings cannot show how much of the prompts the server's prefix cache served or
how many speculative draft tokens it accepted; the server counts both. The counters are
cumulative, so the difference between a scrape just before the measured run and one just
after it covers that run (the warm-up excluded). Sources:

- ``grpc://``: the engine's ``GetLoads``.
- ``http(s)://``: Prometheus text at ``/metrics`` with vLLM's counter names (the names
  our router exposes as well), summed over label sets (engines, models).

A target that exposes none of them, or cannot be scraped, simply has no figures: they
are extras, and a benchmark must not fail for want of them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields

import aiohttp
import grpc
from prometheus_client.parser import text_string_to_metric_families

from switchyard.api.client import EngineClient
from switchyard.api.v1 import engine_pb2

SCRAPE_TIMEOUT_S = 10.0
# Our field -> vLLM's Prometheus sample name (vllm/v1/metrics/loggers.py and
# vllm/v1/spec_decode/metrics.py; prometheus_client adds ``_total`` to counters).
PROMETHEUS_NAMES = {
    "prefix_cache_queries": "vllm:prefix_cache_queries_total",
    "prefix_cache_hits": "vllm:prefix_cache_hits_total",
    "spec_drafts": "vllm:spec_decode_num_drafts_total",
    "spec_draft_tokens": "vllm:spec_decode_num_draft_tokens_total",
    "spec_accepted_tokens": "vllm:spec_decode_num_accepted_tokens_total",
}

# What a scrape found: only the counters the target exposes.
Counters = dict[str, float]
Scraper = Callable[[], Awaitable[Counters | None]]

log = logging.getLogger(__name__)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class ServerFigures:
    """Counter deltas over one run; None where the target does not expose a counter."""

    prefix_cache_queries: float | None = None  # prompt tokens looked up in the cache
    prefix_cache_hits: float | None = None  # of those, tokens found there
    spec_drafts: float | None = None  # speculative proposals
    spec_draft_tokens: float | None = None
    spec_accepted_tokens: float | None = None

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        return _ratio(self.prefix_cache_hits, self.prefix_cache_queries)

    @property
    def spec_acceptance_rate(self) -> float | None:
        return _ratio(self.spec_accepted_tokens, self.spec_draft_tokens)

    @property
    def spec_mean_acceptance_length(self) -> float | None:
        """Tokens per verification step: the accepted drafts plus the one the target adds."""
        accepted_per_draft = _ratio(self.spec_accepted_tokens, self.spec_drafts)
        return None if accepted_per_draft is None else 1 + accepted_per_draft

    def as_row(self) -> dict[str, float | None]:
        """Every delta and derived figure, None where missing (fixed CSV columns)."""
        return {f.name: getattr(self, f.name) for f in fields(self)} | {
            "prefix_cache_hit_rate": self.prefix_cache_hit_rate,
            "spec_acceptance_rate": self.spec_acceptance_rate,
            "spec_mean_acceptance_length": self.spec_mean_acceptance_length,
        }

    def to_dict(self) -> dict[str, float]:
        """Deltas and derived figures, leaving out those the target could not give."""
        return {name: value for name, value in self.as_row().items() if value is not None}


def server_figures(before: Counters | None, after: Counters | None) -> ServerFigures | None:
    """The deltas of the counters both scrapes found; None if either scrape failed."""
    if before is None or after is None:
        return None
    deltas = {name: after[name] - before[name] for name in after.keys() & before.keys()}
    return ServerFigures(**deltas) if deltas else None


def parse_prometheus(text: str) -> Counters:
    """Our counters from Prometheus text, each summed over its label sets."""
    wanted = {sample: name for name, sample in PROMETHEUS_NAMES.items()}
    counters: Counters = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (name := wanted.get(sample.name)) is not None:
                counters[name] = counters.get(name, 0.0) + sample.value
    return counters


def loads_counters(loads: engine_pb2.Loads) -> Counters:
    """Our counters from the engine's ``Loads``, whose fields have the same names."""
    return {f.name: float(getattr(loads, f.name)) for f in fields(ServerFigures)}


def prometheus_scraper(base_url: str, api_key: str | None = None) -> Scraper:
    url = base_url.rstrip("/").removesuffix("/v1") + "/metrics"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def scrape() -> Counters | None:
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, headers=headers) as response,
            ):
                if response.status != 200:
                    log.info("no server-side figures: GET %s answered %d", url, response.status)
                    return None
                return parse_prometheus(await response.text())
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.info("no server-side figures from %s: %s", url, error or type(error).__name__)
            return None

    return scrape


def grpc_scraper(target: str) -> Scraper:
    async def scrape() -> Counters | None:
        try:
            async with EngineClient(target, timeout_s=SCRAPE_TIMEOUT_S) as client:
                return loads_counters(await client.loads())
        except grpc.aio.AioRpcError as error:
            log.info("no server-side figures from %s: %s", target, error.details())
            return None

    return scrape
