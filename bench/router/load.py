"""The load generator: one aiohttp session with a keep-alive pool, the same for the direct
and the routed path, so whatever the client costs is in both measurements alike.

Request bodies are encoded once per target; a request is timed from just before it is
sent to its first body bytes (TTFB) and to its last. Any failure (a status other than
200, a stream that does not end with ``[DONE]``) stops the benchmark: numbers from a
router that answers errors quickly would be meaningless.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

STREAM_END = b"data: [DONE]\n\n"
REQUEST_TIMEOUT_S = 30.0


class RequestFailed(Exception):
    """A request of the benchmark did not succeed."""


@dataclass(frozen=True)
class Target:
    """One way to the upstream's chat completions: directly, or through the router."""

    name: str
    url: str
    headers: Mapping[str, str]
    # The request body for a non-streaming (False) and a streaming (True) request.
    bodies: Mapping[bool, bytes]


def make_target(name: str, base_url: str, model: str, api_key: str | None = None) -> Target:
    headers = {"Content-Type": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    request = {"model": model, "messages": [{"role": "user", "content": "Say hello."}]}
    # Both paths ask for the usage chunk, so they stream the same events.
    streamed = {**request, "stream": True, "stream_options": {"include_usage": True}}
    bodies = {False: json.dumps(request).encode(), True: json.dumps(streamed).encode()}
    return Target(name, f"{base_url}/v1/chat/completions", headers, bodies)


@dataclass(frozen=True)
class Timing:
    """Seconds from sending to the first body bytes and to the last."""

    first_byte_s: float
    total_s: float


@dataclass(frozen=True)
class Rate:
    completed: int
    elapsed_s: float

    @property
    def per_second(self) -> float:
        return self.completed / self.elapsed_s


class LoadClient:
    """Sends the benchmark's requests and counts them per target."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> LoadClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._session is not None
        await self._session.close()

    async def request(self, target: Target, stream: bool) -> Timing:
        assert self._session is not None, "use LoadClient as an async context manager"
        self.sent[target.name] += 1
        parts: list[bytes] = []
        start = time.perf_counter()
        try:
            async with self._session.post(
                target.url, data=target.bodies[stream], headers=target.headers
            ) as response:
                parts.append(await response.content.readany())
                first_byte = time.perf_counter()
                while part := await response.content.readany():
                    parts.append(part)
                end = time.perf_counter()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            raise RequestFailed(f"{target.name}: {type(error).__name__}: {error}") from None
        body = b"".join(parts)
        if status != 200 or (stream and not body.endswith(STREAM_END)):
            raise RequestFailed(f"{target.name}: HTTP {status}: {body[:300]!r}")
        return Timing(first_byte - start, end - start)

    async def sequential(self, target: Target, stream: bool, count: int) -> list[Timing]:
        """``count`` requests one after another (concurrency 1)."""
        return [await self.request(target, stream) for _ in range(count)]

    async def saturate(
        self, target: Target, stream: bool, concurrency: int, duration_s: float
    ) -> Rate:
        """``concurrency`` requests in flight at all times for ``duration_s``; each worker
        sends at least one, so a stalled machine still yields a rate, never zero."""
        deadline = time.perf_counter() + duration_s
        completed = 0

        async def worker() -> None:
            nonlocal completed
            while True:
                await self.request(target, stream)
                completed += 1
                if time.perf_counter() >= deadline:
                    return

        start = time.perf_counter()
        await _together(worker, concurrency)
        return Rate(completed, time.perf_counter() - start)

    async def burst(self, target: Target, stream: bool, concurrency: int, count: int) -> None:
        """Exactly ``count`` requests, ``concurrency`` at a time."""
        left = count

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await self.request(target, stream)

        await _together(worker, concurrency)


async def _together(worker: Callable[[], Coroutine[Any, Any, None]], copies: int) -> None:
    """Run copies of a worker; the first failure cancels the others and is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(copies):
                group.create_task(worker())
    except* RequestFailed as failures:
        raise failures.exceptions[0] from None
