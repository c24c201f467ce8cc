"""Drive a workload against a backend: arrival schedule, concurrency cap, warm-up, sweeps.

Requests are launched on their scheduled send times whether or not earlier ones have
finished (an open-loop load, as real users arrive); ``max_concurrency`` then holds
launched requests back until a slot frees, as ``vllm bench serve`` does. A multi-turn
conversation starts on its scheduled time and sends each later turn as soon as the
previous reply is in, each turn taking a slot of its own.

If the first request of a run fails in a way every other one would too (refused
connection, a connection nobody answers, rejected API key, unknown model), the run stops
with a TargetError instead of measuring a wall of failures.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from switchyard.bench.serving.arrivals import arrival_offsets
from switchyard.bench.serving.conversations import Conversation
from switchyard.bench.serving.metrics import Metrics, compute_metrics
from switchyard.bench.serving.record import Backend, RequestRecord
from switchyard.bench.serving.server_metrics import Scraper, ServerFigures, server_figures
from switchyard.bench.serving.workloads import BenchRequest

SWEEP_KEYS = {"concurrency": "max_concurrency", "request-rate": "request_rate"}
# Failures of a run's first request that every later request would repeat, with a hint.
FATAL_FIRST_FAILURES = {
    "connection": "is a server listening at --target?",
    "connect_timeout": "nothing answered within --connect-timeout: is --target's host up "
    "and its port reachable (not dropped by a firewall)?",
    "grpc_UNAVAILABLE": "is an engine serving at --target?",
    "http_401": "check --api-key (default $OPENAI_API_KEY)",
    "http_403": "check --api-key (default $OPENAI_API_KEY)",
    "http_404": "check --model and --endpoint",
}

# What the arrival schedule starts: one request, or a conversation of several.
WorkItem = BenchRequest | Conversation


class TargetError(RuntimeError):
    """The target failed a run's first request in a way that dooms the rest."""


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
    started_utc: str = ""  # wall-clock start of the measured run, ISO 8601 in UTC
    server: ServerFigures | None = None  # the target's counters over the run, if it has them


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
    if not parsed or not all(v > 0 for v in parsed):  # NaN fails v > 0 too
        raise ValueError(f"--sweep needs positive values, got {values!r}")
    if field == "max_concurrency" and any(math.isinf(v) or not v.is_integer() for v in parsed):
        raise ValueError(f"concurrency values must be whole numbers, got {values!r}")
    return field, parsed


def sweep_loads(base: Load, spec: str | None) -> list[Load]:
    """One Load per swept value, or just ``base`` without a sweep."""
    if not spec:
        return [base]
    field, values = parse_sweep(spec)
    if field == "max_concurrency":
        return [replace(base, max_concurrency=int(v)) for v in values]
    return [replace(base, request_rate=v) for v in values]


def request_count(items: Sequence[WorkItem]) -> int:
    """How many requests the items send when every one succeeds."""
    return sum(len(i.user_turns) if isinstance(i, Conversation) else 1 for i in items)


def target_error(what: str, kind: str, message: str) -> TargetError:
    """``what`` failed with ``kind``, explained, with the hint for that kind if it has one."""
    hint = FATAL_FIRST_FAILURES.get(kind)
    return TargetError(f"{what} ({kind}: {message[:200]})" + (f"; {hint}" if hint else ""))


def fatal_error(record: RequestRecord) -> TargetError | None:
    """The TargetError to stop a run with if its first finished request failed for good."""
    if record.success or record.error_kind not in FATAL_FIRST_FAILURES:
        return None
    return target_error("the first request failed", record.error_kind, record.error)


async def _send_all(
    backend: Backend,
    items: Sequence[WorkItem],
    offsets: Iterable[float],
    max_concurrency: int | None,
    on_done: Callable[[], None] | None = None,
) -> tuple[list[RequestRecord], float, float]:
    """Start the items on schedule; returns the records in workload order (a conversation's
    turns in order), start and end times. ``on_done`` is called as each request finishes.
    """
    slots: AbstractAsyncContextManager = (
        asyncio.Semaphore(max_concurrency) if max_concurrency else nullcontext()
    )
    checked = False
    stop: TargetError | None = None

    async def send(request: BenchRequest) -> RequestRecord:
        nonlocal checked, stop
        async with slots:
            # Checked inside the slot: a request the freed slot lets in must not go out.
            if stop is not None:
                raise stop
            record = await backend.send(request)
            if not checked:
                checked = True
                if (stop := fatal_error(record)) is not None:
                    raise stop
        if on_done is not None:
            on_done()
        return record

    async def start(item: WorkItem) -> list[RequestRecord]:
        if isinstance(item, Conversation):
            return await item.play(send)
        return [await send(item)]

    tasks = []
    started = time.perf_counter()
    try:
        # A TargetError in one task cancels the others and the schedule below.
        async with asyncio.TaskGroup() as group:
            for item, offset in zip(items, offsets, strict=True):
                delay = started + offset - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(group.create_task(start(item)))
    except* TargetError as errors:
        raise errors.exceptions[0] from None
    records = [record for task in tasks for record in task.result()]
    return records, started, time.perf_counter()


async def run_benchmark(
    backend: Backend,
    items: Sequence[WorkItem],
    load: Load,
    *,
    warmup: int = 0,
    slos: dict[str, float] | None = None,
    seed: int = 0,
    scrape: Scraper | None = None,
    on_done: Callable[[], None] | None = None,
) -> RunResult:
    """Warm up with ``warmup`` uncounted requests, then measure ``items`` under ``load``.

    Warm-up requests are the workload's first ones (cycled; a conversation's first turn),
    sent at once under the same concurrency cap, so compilation, cache warming and
    connection set-up stay out of the measured run. ``scrape`` reads the target's
    counters right before and after the measured run.
    """
    if not items:
        raise ValueError("the workload is empty")
    if warmup:
        firsts = [i.first_request() if isinstance(i, Conversation) else i for i in items[:warmup]]
        warm = [firsts[i % len(firsts)] for i in range(warmup)]
        await _send_all(backend, warm, [0.0] * warmup, load.max_concurrency)
    before = await scrape() if scrape else None
    offsets = arrival_offsets(len(items), load.request_rate, load.burstiness, seed=seed)
    started_utc = datetime.now(UTC).isoformat(timespec="milliseconds")
    records, started, ended = await _send_all(
        backend, items, offsets, load.max_concurrency, on_done
    )
    after = await scrape() if scrape else None
    metrics = compute_metrics(records, ended - started, slos)
    return RunResult(
        load=load,
        metrics=metrics,
        records=records,
        started_at=started,
        started_utc=started_utc,
        server=server_figures(before, after),
    )
