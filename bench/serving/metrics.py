"""Serving metrics from request records, with the definitions ``vllm bench serve`` uses.

Using the same definitions makes our numbers comparable with published vLLM and SGLang
results; other tools name things differently (AIPerf's "ITL" is our TPOT), so the
definitions are spelled out in METRIC_DEFINITIONS and printed with ``--help``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import accumulate

import numpy as np

from switchyard.bench.serving.record import RequestRecord

METRIC_DEFINITIONS = """\
metrics, computed as vllm bench serve computes them (latencies in ms, over successful
requests only; failed requests count in nothing but "failed"):
  chunk         http(s): every streamed data event whose "choices" list is not empty,
                whatever its delta holds (vLLM's role-only first chunk, content, an empty
                delta:{} finish chunk); not the usage-only event, not [DONE].
                grpc: every Chunk message (one engine step, possibly several tokens)
  TTFT          arrival of the first chunk minus the request's send time
  E2EL          arrival of the last chunk minus the request's send time
  ITL           gaps between consecutive chunks of a request, pooled over all requests
  TPOT          per request: (E2EL - TTFT) / (output tokens - 1), over requests with
                more than one output token
  statistics    mean, median, p90, p99 (numpy percentiles, linear interpolation) and std
                (population, numpy's default) of each of the four
  output tokens usage.completion_tokens of the usage-only event (grpc: Complete.usage);
                if that is missing or 0, the reply text re-tokenized without special
                tokens by the workload's tokenizer (random, shared-prefix, multi-turn;
                jsonl with --tokenizer); with no tokenizer, one per chunk with text
                (an estimate; vllm bench serve always has a tokenizer)
  input tokens  usage.prompt_tokens when reported (grpc: Complete.usage), else the
                workload's prompt length
  duration      from the first send to the last completion of the measured run
                (warm-up excluded)
  request throughput    successful requests / duration
  output throughput     output tokens / duration
  total throughput      (input + output tokens) / duration
  peak output tokens/s  most tokens whose chunks arrived within one whole second counted
                        from the earliest send of a successful request; http(s): one per
                        chunk, as vLLM counts; grpc: the tokens each Chunk carries (vLLM
                        would count 1 per chunk, too few when chunks carry several)
  goodput       successful requests whose TTFT, TPOT and E2EL are each <= the --goodput
                SLO given for it, divided by duration (TPOT is 0 for requests with one
                output token)
  failed        requests that got no successful reply, by kind: http_CODE, connection,
                connect_timeout, timeout (--request-timeout), payload (connection cut
                mid-stream), bad_stream (not JSON), stream_error (an "error" event in
                the stream; vllm bench serve ignores those), no_content (no chunk),
                exception; grpc: grpc_CODE (grpc_DEADLINE_EXCEEDED for
                --request-timeout), no_complete (no Complete message), aborted, no_content

server-side figures (the target's own counters, scraped right before and after each
measured run; shown when it exposes them: grpc:// GetLoads, http(s):// /metrics with
vLLM's Prometheus names vllm:prefix_cache_*_total, vllm:spec_decode_num_*_total):
  prefix cache hit rate        prompt tokens found in the prefix cache / tokens looked up
  spec acceptance rate         accepted draft tokens / proposed draft tokens
  spec mean acceptance length  1 + accepted draft tokens / drafts (tokens per step)"""

SLO_METRICS = ("ttft", "tpot", "e2el")


@dataclass(frozen=True)
class Distribution:
    """Summary statistics in milliseconds; all zero for an empty sample."""

    mean: float
    median: float
    p90: float
    p99: float
    std: float

    @classmethod
    def of_seconds(cls, values: Sequence[float]) -> Distribution:
        if not values:
            return cls(0.0, 0.0, 0.0, 0.0, 0.0)
        ms = np.asarray(values, dtype=float) * 1000
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(float(ms.mean()), float(p50), float(p90), float(p99), float(ms.std()))


@dataclass(frozen=True)
class Metrics:
    completed: int
    failed: int
    errors: dict[str, int]
    duration_s: float
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    peak_output_throughput: float
    goodput: float | None
    ttft_ms: Distribution
    tpot_ms: Distribution
    itl_ms: Distribution
    e2el_ms: Distribution

    def to_dict(self) -> dict:
        return asdict(self)


def parse_slos(spec: str) -> dict[str, float]:
    """``"ttft:200,tpot:50"`` -> ``{"ttft": 200.0, "tpot": 50.0}`` (milliseconds)."""
    slos = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition(":")
        if not sep or name not in SLO_METRICS:
            raise ValueError(f"goodput SLOs are NAME:MS with NAME in {SLO_METRICS}, got {item!r}")
        try:
            slos[name] = float(value)
        except ValueError:
            raise ValueError(f"goodput SLO {name} needs a number of ms, got {value!r}") from None
        if not 0 < slos[name] < math.inf:  # NaN fails too
            raise ValueError(f"goodput SLO {name} must be a finite number > 0 ms, got {value}")
    return slos


def tpot_s(record: RequestRecord) -> float | None:
    """The request's time per output token after the first; None with one token or less."""
    if record.output_tokens <= 1:
        return None
    return (record.latency_s - record.ttft_s) / (record.output_tokens - 1)


def peak_output_throughput(records: Sequence[RequestRecord]) -> float:
    """Most output tokens that arrived within one 1-second bucket of the run."""
    if not records:
        return 0.0
    origin = min(r.start_s for r in records)
    buckets: Counter[int] = Counter()
    for record in records:
        arrivals = accumulate(record.itl_s, initial=record.start_s + record.ttft_s)
        for at, tokens in zip(arrivals, record.chunk_tokens, strict=True):
            buckets[int(at - origin)] += tokens
    return float(max(buckets.values(), default=0))


def is_good(record: RequestRecord, slos: dict[str, float]) -> bool:
    """Whether a successful request meets every SLO (ms); no SLOs means every request."""
    values_s = {"ttft": record.ttft_s, "tpot": tpot_s(record) or 0.0, "e2el": record.latency_s}
    return all(values_s[name] * 1000 <= limit for name, limit in slos.items())


def compute_metrics(
    records: Sequence[RequestRecord], duration_s: float, slos: dict[str, float] | None = None
) -> Metrics:
    """Summarize one run; ``slos`` (ms) adds goodput."""
    ok = [r for r in records if r.success]
    failed = [r for r in records if not r.success]
    input_tokens = sum(r.prompt_tokens for r in ok)
    output_tokens = sum(r.output_tokens for r in ok)
    per_s = 1.0 / duration_s if duration_s > 0 else 0.0
    tpots = [t for r in ok if (t := tpot_s(r)) is not None]
    goodput = None
    if slos:
        goodput = sum(is_good(r, slos) for r in ok) * per_s
    return Metrics(
        completed=len(ok),
        failed=len(failed),
        errors=dict(Counter(r.error_kind for r in failed).most_common()),
        duration_s=duration_s,
        total_input_tokens=input_tokens,
        total_output_tokens=output_tokens,
        request_throughput=len(ok) * per_s,
        output_throughput=output_tokens * per_s,
        total_token_throughput=(input_tokens + output_tokens) * per_s,
        peak_output_throughput=peak_output_throughput(ok),
        goodput=goodput,
        ttft_ms=Distribution.of_seconds([r.ttft_s for r in ok]),
        tpot_ms=Distribution.of_seconds(tpots),
        itl_ms=Distribution.of_seconds([gap for r in ok for gap in r.itl_s]),
        e2el_ms=Distribution.of_seconds([r.latency_s for r in ok]),
    )
