"""The router's soak run: many fuzzed requests (``fuzz``), the router's RSS sampled as
they go, and every answer checked against the statuses documented for its request.

The router runs as a user runs it (``switchyard router serve``) in front of the
benchmark's instant upstream and of a provider that is down (nothing listens on its
port), so fallbacks, cooldowns and half-open probes happen throughout. RSS is bounded
when the peak of the run's second half is no higher than the first half's (the first
absorbs the allocator's and caches' one-off growth; large requests move RSS both ways,
so a last sample alone says little): ``MemoryTrace.bounded``. An answer outside its
request's documented statuses, a non-JSON error body or a stream without ``[DONE]`` is
a finding, reported with the request's kind and the answer's start.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

from switchyard.bench.router import processes
from switchyard.bench.router.fuzz import SAMPLES, FuzzedRequest, Settings, fuzzed_request
from switchyard.bench.router.load import REQUEST_TIMEOUT_S, STREAM_END
from switchyard.bench.router.stats import MIB, MemoryTrace
from switchyard.bench.router.upstream import FAULTS, MODEL
from switchyard.common.engine_process import free_port

# Findings kept whole for the report; the rest are only counted.
KEPT_FINDINGS = 20


@dataclass
class Results:
    settings: Settings
    memory: MemoryTrace
    # Answers by request kind and status.
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    finding_count: int = 0


def router_config(upstream_url: str) -> dict:
    """The upstream as provider ``bench`` and, with its fault models, ``flaky``; a provider
    that is down; and three named routers over them: a sticky A/B test with a metadata
    route, a fallback from the one down, and a fallback from each fault (a hang cut short
    by ``attempt_timeout_ms``)."""
    down = f"http://127.0.0.1:{free_port()}/v1"
    echo, dead = f"bench/{MODEL}", "down/echo"
    # A cut stream has begun when it breaks: no fallback can take it, so none is routed.
    routed_faults = [fault for fault in FAULTS if fault != "cut"]
    flaky_variants = [
        {
            "id": fault,
            "model": f"flaky/{fault}",
            "weight": 100 // len(routed_faults) + (i < 100 % len(routed_faults)),
            "fallbacks": [echo],
            "attempt_timeout_ms": 500,
        }
        for i, fault in enumerate(routed_faults)
    ]
    return {
        "auth": {"keys_env": processes.KEY_ENV},
        "providers": {
            "bench": {"protocol": "openai", "base_url": f"{upstream_url}/v1", "models": [MODEL]},
            "flaky": {
                "protocol": "openai",
                "base_url": f"{upstream_url}/v1",
                "models": list(FAULTS),
            },
            "down": {"protocol": "openai", "base_url": down, "models": ["echo"]},
        },
        "routers": {
            "ab": {
                "routes": [
                    {
                        "name": "enterprise",
                        "condition": 'has(metadata.tier) && metadata.tier == "enterprise"',
                        "variants": [{"id": "big", "model": echo, "weight": 100}],
                    }
                ],
                "default_route": {
                    "variants": [
                        {"id": "a", "model": echo, "weight": 60},
                        {"id": "b", "model": echo, "weight": 40, "overrides": {"top_p": 0.5}},
                    ]
                },
            },
            "fallback": {
                "default_route": {
                    "variants": [{"id": "f", "model": dead, "weight": 100, "fallbacks": [echo]}]
                }
            },
            "flaky": {"default_route": {"variants": flaky_variants}},
        },
    }


async def measure(settings: Settings, log: Callable[[str], None]) -> Results:
    """Start the upstream and the router, send the fuzzed requests, stop both."""
    key = secrets.token_urlsafe(24)
    rng = random.Random(settings.seed)
    with tempfile.TemporaryDirectory(prefix="switchyard-bench-soak-") as workdir:
        async with (
            processes.upstream(Path(workdir)) as upstream,
            processes.configured_router(Path(workdir), router_config(upstream.url), key) as router,
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            ) as session,
        ):
            process = psutil.Process(router.pid)
            samples = [process.memory_info().rss]
            results = Results(settings, MemoryTrace(0, ()))
            url = f"{router.url}/v1/chat/completions"
            total = settings.requests
            for index in range(SAMPLES):
                size = total * (index + 1) // SAMPLES - total * index // SAMPLES
                batch = [fuzzed_request(rng, key) for _ in range(size)]
                await _send_all(session, url, batch, settings.concurrency, results)
                samples.append(process.memory_info().rss)
                log(
                    f"{total * (index + 1) // SAMPLES:,} requests: "
                    f"RSS {samples[-1] / MIB:.1f} MiB, {results.finding_count} findings"
                )
    results.memory = MemoryTrace(total, tuple(samples))
    return results


async def _send_all(
    session: aiohttp.ClientSession,
    url: str,
    batch: list[FuzzedRequest],
    concurrency: int,
    results: Results,
) -> None:
    queue = iter(batch)

    async def worker() -> None:
        for request in queue:
            await _send(session, url, request, results)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())


async def _send(
    session: aiohttp.ClientSession, url: str, request: FuzzedRequest, results: Results
) -> None:
    try:
        async with session.post(url, data=request.body, headers=request.headers) as response:
            status = response.status
            if request.leaves:
                await response.content.readany()
                response.close()  # the connection, not only this response
                body = b""
            else:
                body = await response.read()
    except (aiohttp.ClientError, TimeoutError) as error:
        _finding(results, request, f"no answer: {type(error).__name__}: {error}")
        return
    results.statuses.setdefault(request.kind, Counter())[status] += 1
    problem = _problem(request, status, body)
    if problem:
        _finding(results, request, f"{problem}: HTTP {status} {body[:200]!r}")


def _problem(request: FuzzedRequest, status: int, body: bytes) -> str | None:
    """What is wrong with an answer, None when it is what the request should get."""
    if status not in request.expected:
        return f"expected {sorted(request.expected)}"
    if status == 200:
        if request.leaves or not request.stream:
            return None
        if request.broken_stream:
            return _error_problem(body.rstrip().rpartition(b"\n")[2].removeprefix(b"data: "))
        return None if body.endswith(STREAM_END) else "a stream without [DONE]"
    return _error_problem(body)


def _error_problem(body: bytes) -> str | None:
    """What is wrong with an error body or event, None when it is OpenAI's."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return "an error body that is not {error: {message}}"
    return None if isinstance(message, str) and message else "an empty error message"


def _finding(results: Results, request: FuzzedRequest, text: str) -> None:
    results.finding_count += 1
    if len(results.findings) < KEPT_FINDINGS:
        results.findings.append(f"{request.kind} {request.body[:120]!r}: {text}")


def markdown(results: Results) -> str:
    memory = results.memory
    lines = [
        f"Router soak: {memory.requests:,} fuzzed requests, concurrency "
        f"{results.settings.concurrency}, seed {results.settings.seed}",
        "",
        "| kind | answers by status |",
        "|---|---|",
    ]
    for kind, counts in sorted(results.statuses.items()):
        by_status = ", ".join(f"{status}: {n:,}" for status, n in sorted(counts.items()))
        lines.append(f"| {kind} | {by_status} |")
    rss = " -> ".join(f"{value / MIB:.1f}" for value in memory.rss_bytes[:: SAMPLES // 5])
    lines += [
        "",
        f"RSS (MiB, every {memory.requests // 5:,} requests): {rss}",
        f"growth {memory.growth_bytes / MIB:.1f} MiB; the second half's peak passes the "
        f"first half's by {memory.peak_growth_bytes / MIB:.1f} MiB: "
        + ("bounded" if memory.bounded else "NOT bounded (growing)"),
        f"findings: {results.finding_count}",
        *(f"- {finding}" for finding in results.findings),
    ]
    return "\n".join(lines)


def to_json(results: Results) -> dict:
    return {
        "settings": vars(results.settings),
        "memory": results.memory.to_dict(),
        "statuses": {
            kind: {str(status): n for status, n in counts.items()}
            for kind, counts in results.statuses.items()
        },
        "finding_count": results.finding_count,
        "findings": results.findings,
    }
