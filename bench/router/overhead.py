"""One run of the router overhead benchmark: the same requests sent to the upstream
directly and through the router, batch after batch in turn (direct, routed, direct, ...),
so that whatever else the machine does at a moment affects both paths alike.

Phases, each for non-streaming and streaming requests:

1. warm-up, at concurrency 1 and at the load concurrency, so both connection pools (the
   client's and the router's to the upstream) are full before anything is timed;
2. latency at concurrency 1, ``rounds`` batches of ``requests`` per path;
3. throughput at the load concurrency, ``rounds`` runs of ``duration_s`` per path;
4. memory: the router's RSS sampled around ``memory_requests`` further routed requests.

At the end the upstream's own count of completions must equal what was sent to it
directly plus what was sent through the router: proof that the router forwarded every
request rather than answering some itself.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from switchyard.bench.router import loop, processes
from switchyard.bench.router.load import LoadClient, Target, Timing, make_target
from switchyard.bench.router.stats import MemoryTrace
from switchyard.bench.router.upstream import MODEL, STATS_PATH
from switchyard.bench.serving.metrics import Distribution

MODES = {"non-streaming": False, "streaming": True}
PATHS = ("direct", "router")
# RSS samples taken during the memory phase, after its first request.
MEMORY_SAMPLES = 10


class ProxyMismatch(Exception):
    """The upstream saw a different number of requests than the benchmark sent."""


@dataclass(frozen=True)
class Settings:
    requests: int = 1000
    concurrency: int = 32
    duration_s: float = 5.0
    rounds: int = 3
    warmup: int = 200
    memory_requests: int = 10_000


@dataclass(frozen=True)
class Latency:
    """One mode's latency to the last byte and to the first, per path."""

    total: dict[str, Distribution]
    first_byte: dict[str, Distribution]


@dataclass(frozen=True)
class Results:
    settings: Settings
    latency: dict[str, Latency]
    # Requests/s of each round, by mode and path.
    throughput: dict[str, dict[str, list[float]]]
    memory: MemoryTrace
    sent: dict[str, int]
    upstream_completions: int
    servers: dict[str, str | int | None]


async def measure(settings: Settings, log: Callable[[str], None]) -> Results:
    """Start the upstream and the router, run every phase, stop both."""
    key = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="switchyard-bench-router-") as workdir:
        async with (
            processes.upstream(Path(workdir)) as upstream,
            processes.router(Path(workdir), upstream.url, key) as router,
            LoadClient() as client,
        ):
            targets = (
                make_target("direct", upstream.url, MODEL),
                make_target("router", router.url, f"{processes.PROVIDER}/{MODEL}", key),
            )
            log("warming up")
            await _warm_up(client, targets, settings)
            latency = await _latency(client, targets, settings, log)
            throughput = await _throughput(client, targets, settings, log)
            log(f"memory: {settings.memory_requests} routed requests")
            memory = await _memory(client, targets[1], router.pid, settings)
            seen = await _completions_seen(upstream.url)
    sent = {path: client.sent[path] for path in PATHS}
    if seen != sum(sent.values()):
        raise ProxyMismatch(
            f"the upstream answered {seen} completions, but {sent['direct']} were sent to it "
            f"directly and {sent['router']} through the router"
        )
    servers: dict[str, str | int | None] = {
        "event_loop": loop.loop_name(),
        "http": loop.http_parser_name(),
        "router_workers": 1,
        "cpu_count": os.cpu_count(),
    }
    return Results(settings, latency, throughput, memory, sent, seen, servers)


async def _warm_up(client: LoadClient, targets: tuple[Target, ...], settings: Settings) -> None:
    for stream in MODES.values():
        for target in targets:
            await client.sequential(target, stream, settings.warmup)
            await client.burst(target, stream, settings.concurrency, settings.warmup)


async def _latency(
    client: LoadClient, targets: tuple[Target, ...], settings: Settings, log: Callable[[str], None]
) -> dict[str, Latency]:
    timings: dict[str, dict[str, list[Timing]]] = defaultdict(lambda: defaultdict(list))
    for round_index in range(settings.rounds):
        log(f"latency at concurrency 1: round {round_index + 1}/{settings.rounds}")
        for mode, stream in MODES.items():
            for target in targets:
                batch = await client.sequential(target, stream, settings.requests)
                timings[mode][target.name] += batch
    return {
        mode: Latency(
            total={
                path: Distribution.of_seconds([t.total_s for t in timings[mode][path]])
                for path in PATHS
            },
            first_byte={
                path: Distribution.of_seconds([t.first_byte_s for t in timings[mode][path]])
                for path in PATHS
            },
        )
        for mode in MODES
    }


async def _throughput(
    client: LoadClient, targets: tuple[Target, ...], settings: Settings, log: Callable[[str], None]
) -> dict[str, dict[str, list[float]]]:
    rates: dict[str, dict[str, list[float]]] = {mode: {p: [] for p in PATHS} for mode in MODES}
    for round_index in range(settings.rounds):
        log(
            f"throughput at concurrency {settings.concurrency}: "
            f"round {round_index + 1}/{settings.rounds}"
        )
        for mode, stream in MODES.items():
            for target in targets:
                rate = await client.saturate(
                    target, stream, settings.concurrency, settings.duration_s
                )
                rates[mode][target.name].append(rate.per_second)
    return rates


async def _memory(client: LoadClient, routed: Target, pid: int, settings: Settings) -> MemoryTrace:
    """The router's RSS before and during ``memory_requests`` requests, half of them
    streamed, in ``MEMORY_SAMPLES`` slices."""
    process = psutil.Process(pid)
    samples = [process.memory_info().rss]
    total = settings.memory_requests
    for index in range(MEMORY_SAMPLES):
        size = total * (index + 1) // MEMORY_SAMPLES - total * index // MEMORY_SAMPLES
        await client.burst(routed, False, settings.concurrency, size - size // 2)
        await client.burst(routed, True, settings.concurrency, size // 2)
        samples.append(process.memory_info().rss)
    return MemoryTrace(total, tuple(samples))


async def _completions_seen(upstream_url: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(upstream_url + STATS_PATH) as response,
    ):
        return int((await response.json())["completions"])
