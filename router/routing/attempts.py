"""Running a request down its fallback chain.

Candidates are tried in order; a failure that another model might not have (429, 5xx,
a connection error, a timeout, no first token within ``ttft_timeout``) moves on to the
next one, as long as nothing has reached the client yet. The first-token limit holds
for streams and for whole answers that arrive token by token (an engine's); a
provider's whole answer has no first token before its end (see ``Backend.complete``).
A stream is committed to a candidate at its first token: what came before (a role
chunk) is held back, so a candidate that stalls before its first token can still be
abandoned. After the commit a failure can only end the stream with an error event.

A candidate whose target's cooldown has just ended is tried by one request only, the
probe (see ``health``); each candidate's availability is judged when its turn comes, so
a request whose earlier candidates failed meanwhile passes a target being probed by as
well. A probe ends with its answer: a whole response, a stream's first token, or the
failure.

Every attempt is recorded and the client gets the list: in ``metadata.attempts`` of the
response, of the stream's last chunk, or of the error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from switchyard.router.backend import Backend
from switchyard.router.errors import APIError, server_error
from switchyard.router.routing.health import HealthBoard
from switchyard.router.routing.live_stats import LiveStats

Json = dict[str, Any]


def has_content(chunk: Json) -> bool:
    """Whether a chunk carries output (text or a tool call), not just a role or a finish."""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or choice.get("text"):
            return True
    return False


def retryable(error: APIError) -> bool:
    """Failures and limits of the target, which another target may not have."""
    return error.status == 429 or error.status >= 500 or error.unsupported


@dataclass
class Attempt:
    provider: str
    model: str
    status: int
    latency_ms: float
    error: str | None = None


@dataclass(frozen=True)
class Limits:
    attempt_timeout_s: float | None = None
    ttft_timeout_s: float | None = None
    # The whole request, on the event loop's clock; None: no deadline.
    deadline_s: float | None = None


@dataclass
class FallbackRun:
    candidates: list[Backend]
    limits: Limits
    health: HealthBoard
    stats: LiveStats
    # Shown to the client beside the attempts (router, route, variant).
    labels: dict[str, str] = field(default_factory=dict)
    on_attempt: Callable[[Attempt], None] = lambda attempt: None
    attempts: list[Attempt] = field(default_factory=list)

    def metadata(self) -> Json:
        return {**self.labels, "attempts": [asdict(a) for a in self.attempts]}

    def _ordered(self) -> Iterator[Backend]:
        """The candidates, each judged available when its turn comes; those cooling down
        (or being probed) go last rather than away: tried only when all else failed."""
        available = self.health.available
        unavailable: list[Backend] = []
        for candidate in self.candidates:
            if available(candidate.health_key):
                yield candidate
            else:
                unavailable.append(candidate)
        yield from unavailable

    def _record(self, candidate: Backend, started: float, status: int, error: str | None) -> None:
        attempt = Attempt(
            candidate.provider,
            candidate.model,
            status,
            round((time.perf_counter() - started) * 1000, 3),
            error,
        )
        self.attempts.append(attempt)
        self.on_attempt(attempt)
        if status == 200:
            self.health.success(candidate.health_key)
        elif status == 429 or status >= 500:
            self.health.failure(candidate.health_key, error or str(status))

    def _deadline(self, limit_s: float | None) -> float | None:
        """The loop time by which the current wait must end."""
        now = asyncio.get_running_loop().time()
        ends = [d for d in (self.limits.deadline_s,) if d is not None]
        if limit_s is not None:
            ends.append(now + limit_s)
        return min(ends) if ends else None

    def _fail(self, error: APIError) -> APIError:
        error.metadata = self.metadata()
        return error

    def _out_of_time(self) -> bool:
        deadline = self.limits.deadline_s
        return deadline is not None and asyncio.get_running_loop().time() >= deadline

    async def complete(self) -> Json:
        last: APIError | None = None
        for candidate in self._ordered():
            if self._out_of_time():
                break
            probe = self.health.start_probe(candidate.health_key)
            started = time.perf_counter()
            try:
                async with asyncio.timeout_at(self._deadline(self.limits.attempt_timeout_s)):
                    result = await candidate.complete(self.limits.ttft_timeout_s)
            except TimeoutError:
                last = server_error(504, f"{candidate.model} timed out", "upstream_timeout")
                self._record(candidate, started, 504, last.message)
                continue
            except APIError as error:
                self._record(candidate, started, error.status, error.message)
                if not retryable(error):
                    raise self._fail(error) from None
                last = error
                continue
            finally:
                if probe:
                    self.health.end_probe(candidate.health_key)
            self._record(candidate, started, 200, None)
            usage = result.get("usage") or {}
            elapsed = time.perf_counter() - started
            self.stats.record(
                candidate.model, elapsed, int(usage.get("completion_tokens") or 0), elapsed
            )
            return {**result, "metadata": self.metadata()}
        raise self._fail(last or self._deadline_error())

    def _deadline_error(self) -> APIError:
        return server_error(504, "the request's deadline passed", "deadline_exceeded")

    async def stream(self) -> AsyncGenerator[list[Json]]:
        """The committed candidate's batches, then one last chunk with the metadata.
        Raises APIError before its first batch if every candidate failed."""
        last: APIError | None = None
        for candidate in self._ordered():
            if self._out_of_time():
                break
            probe = self.health.start_probe(candidate.health_key)
            answered = False
            started = time.perf_counter()
            batches = candidate.stream()
            try:
                held = await self._until_first_token(batches)
                answered = True
            except TimeoutError:
                await batches.aclose()
                last = server_error(
                    504, f"{candidate.model} sent no token in time", "upstream_timeout"
                )
                self._record(candidate, started, 504, last.message)
                continue
            except APIError as error:
                await batches.aclose()
                self._record(candidate, started, error.status, error.message)
                if not retryable(error):
                    raise self._fail(error) from None
                last = error
                continue
            except BaseException:
                await batches.aclose()
                raise
            finally:
                if probe:
                    # A stream's probe has its answer at the first token.
                    self.health.end_probe(candidate.health_key, answered)
            ttft = time.perf_counter() - started
            async for batch in self._committed(candidate, started, ttft, batches, held):
                yield batch
            return
        raise self._fail(last or self._deadline_error())

    async def _until_first_token(self, batches: AsyncGenerator[list[Json]]) -> list[list[Json]]:
        """The batches up to and including the first one with output (all of them if the
        stream ends without any)."""
        held: list[list[Json]] = []
        limits = self.limits
        first_token_limit = min(
            (s for s in (limits.ttft_timeout_s, limits.attempt_timeout_s) if s is not None),
            default=None,
        )
        async with asyncio.timeout_at(self._deadline(first_token_limit)):
            async for batch in batches:
                held.append(batch)
                if any(has_content(chunk) for chunk in batch):
                    break
        return held

    async def _committed(
        self,
        candidate: Backend,
        started: float,
        ttft: float,
        batches: AsyncGenerator[list[Json]],
        held: list[list[Json]],
    ) -> AsyncGenerator[list[Json]]:
        envelope: Json = {}
        output_tokens = 0
        attempt_end = None
        if self.limits.attempt_timeout_s is not None:
            attempt_end = started + self.limits.attempt_timeout_s
        try:
            for batch in held:
                envelope = envelope or _envelope(batch)
                yield batch
            while True:
                remaining = None if attempt_end is None else attempt_end - time.perf_counter()
                try:
                    async with asyncio.timeout_at(self._deadline(remaining)):
                        batch = await anext(batches)
                except StopAsyncIteration:
                    break
                envelope = envelope or _envelope(batch)
                for chunk in batch:
                    usage = chunk.get("usage")
                    if usage:
                        output_tokens = int(usage.get("completion_tokens") or 0)
                yield batch
        except TimeoutError:
            error = server_error(504, f"{candidate.model} stalled mid-stream", "upstream_timeout")
            self._record(candidate, started, 504, error.message)
            raise self._fail(error) from None
        except APIError as error:
            self._record(candidate, started, error.status, error.message)
            raise self._fail(error) from None
        finally:
            await batches.aclose()
        self._record(candidate, started, 200, None)
        self.stats.record(
            candidate.model, ttft, output_tokens, time.perf_counter() - started - ttft
        )
        yield [{**envelope, "choices": [], "metadata": self.metadata()}]


def _envelope(batch: list[Json]) -> Json:
    """The id, object, created and model every chunk of the stream repeats."""
    for chunk in batch:
        return {k: chunk[k] for k in ("id", "object", "created", "model") if k in chunk}
    return {}
