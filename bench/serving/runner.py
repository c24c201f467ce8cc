"""Drive a workload against a backend: arrival schedule, concurrency cap, warm-up, sweeps.

Requests are launched on their scheduled send times whether or not earlier ones have
finished (an open-loop load, as real users arrive); ``max_concurrency`` then holds
launched requests back until a slot frees, as ``vllm bench serve`` does.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from switchyard.bench.serving.arrivals import arrival_offsets
from switchyard.bench.serving.metrics import Metrics, compute_metrics
from switchyard.bench.serving.record import Backend, RequestRecord
from switchyard.bench.serving.workloads import BenchRequest

SWEEP_KEYS = {"concurrency": "max_concurrency", "request-rate": "request_rate"}


@dataclass(frozen=True)
class Load:
    """How requests are offered: rate (inf = all at once), burstiness, concurrency cap."""

    request_rate: float = math.inf
    burstiness: float = 1.0
    max_concurrency: int | None = None

    def label(self) -> str:
        rate = "inf" if math.isinf(self.request_rate) else f"{self.request_rate:g}"
        return f"rate={rate} concurrency={self.max_concurrency or 'unlimited'}"


@dataclass(frozen=True)
class RunResult:
    load: Load
    metrics: Metrics
    records: list[RequestRecord]
    started_at: float  # perf-counter time of the first send, to express records relative to it


def parse_sweep(spec: str) -> tuple[str, list[float]]:
    """``"concurrency=1,2,4"`` -> ``("max_concurrency", [1, 2, 4])``."""
    key, sep, values = spec.partition("=")
    if not sep or key.strip() not in SWEEP_KEYS:
        raise ValueError(f"--sweep takes KEY=V1,V2,... with KEY in {sorted(SWEEP_KEYS)}")
    field = SWEEP_KEYS[key.strip()]
    try:
        parsed = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--sweep values must be numbers, got {values!r}") from None
    if not parsed or any(v <= 0 for v in parsed):
        raise ValueError(f"--sweep needs positive values, got {values!r}")
    if field == "max_concurrency" and any(not v.is_integer() or math.isinf(v) for v in parsed):
        raise ValueError(f"concurrency values must be whole numbers, got {values!r}")
    return field, parsed


def sweep_loads(base: Load, spec: str | None) -> list[Load]:
    """One Load per swept value, or just ``base`` without a sweep."""
    if not spec:
        return [base]
    field, values = parse_sweep(spec)
    cast = int if field == "max_concurrency" else float
    return [replace(base, **{field: cast(v)}) for v in values]


async def _send_all(
    backend: Backend,
    requests: Sequence[BenchRequest],
    offsets: Sequence[float],
    max_concurrency: int | None,
) -> tuple[list[RequestRecord], float, float]:
    """Send on schedule; returns the records in workload order, start and end times."""
    slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None

    async def one(request: BenchRequest) -> RequestRecord:
        if slots is None:
            return await backend.send(request)
        async with slots:
            return await backend.send(request)

    tasks = []
    started = time.perf_counter()
    for request, offset in zip(requests, offsets, strict=True):
        delay = started + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(request)))
    records = await asyncio.gather(*tasks)
    return list(records), started, time.perf_counter()


async def run_benchmark(
    backend: Backend,
    requests: Sequence[BenchRequest],
    load: Load,
    *,
    warmup: int = 0,
    slos: dict[str, float] | None = None,
    seed: int = 0,
) -> RunResult:
    """Warm up with ``warmup`` uncounted requests, then measure ``requests`` under ``load``.

    Warm-up requests are the workload's first ones (cycled), sent at once under the same
    concurrency cap, so compilation, cache warming and connection set-up stay out of
    the measured run.
    """
    if not requests:
        raise ValueError("the workload is empty")
    if warmup:
        warm = [requests[i % len(requests)] for i in range(warmup)]
        await _send_all(backend, warm, [0.0] * warmup, load.max_concurrency)
    offsets = arrival_offsets(len(requests), load.request_rate, load.burstiness, seed=seed)
    records, started, ended = await _send_all(backend, requests, offsets, load.max_concurrency)
    metrics = compute_metrics(records, ended - started, slos)
    return RunResult(load=load, metrics=metrics, records=records, started_at=started)
