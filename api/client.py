"""Async client for the engine's gRPC API, used by the router and the benchmark.

One channel per engine, reused by every call (HTTP/2 multiplexes the streams), so a
request costs no connection set-up. Breaking out of :meth:`EngineClient.generate` (or
cancelling the task that iterates it) cancels the call, which aborts the request in
the engine.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypedDict, Unpack

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchyard.api.v1 import engine_pb2, engine_pb2_grpc

SERVICE_NAME = engine_pb2.DESCRIPTOR.services_by_name["Engine"].full_name
# Fields of SamplingParams a caller may pass to generate() as keyword arguments.
SAMPLING_FIELDS = frozenset(engine_pb2.SamplingParams.DESCRIPTOR.fields_by_name)


class EngineNotReady(TimeoutError):
    """The engine did not report SERVING before the deadline, or stopped trying to."""


class SamplingKwargs(TypedDict, total=False):
    """SamplingParams' fields as keyword arguments (tests/api keeps the two in step).

    None leaves a field unset, as protobuf's constructors do, so that callers can pass
    their optional settings on as they are instead of leaving each out when unset.
    """

    temperature: float | None
    top_p: float | None
    top_k: int | None
    min_p: float | None
    max_tokens: int | None
    stop: Iterable[str] | None
    stop_token_ids: Iterable[int] | None
    seed: int | None
    presence_penalty: float | None
    frequency_penalty: float | None
    repetition_penalty: float | None
    ignore_eos: bool | None
    logprobs: int | None
    include_stop_str_in_output: bool | None


class RequestKwargs(SamplingKwargs, total=False):
    """:func:`build_request`'s keywords, which :meth:`EngineClient.generate` passes on."""

    text: str | None
    token_ids: Sequence[int] | None
    messages: Sequence[dict[str, str]] | None
    request_id: str


@dataclass
class Generation:
    """The whole result of a generate() call, for callers that do not stream."""

    request_id: str = ""
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[engine_pb2.TokenLogprob] = field(default_factory=list)
    complete: engine_pb2.Complete | None = None


def build_request(
    *,
    text: str | None = None,
    token_ids: Sequence[int] | None = None,
    messages: Sequence[dict[str, str]] | None = None,
    request_id: str = "",
    **sampling: Unpack[SamplingKwargs],
) -> engine_pb2.GenerateRequest:
    """Build a GenerateRequest from exactly one input and SamplingParams keywords."""
    inputs = [x is not None for x in (text, token_ids, messages)]
    if sum(inputs) != 1:
        raise ValueError("pass exactly one of text, token_ids or messages")
    # Names from callers that are not type-checked (a benchmark's settings, say).
    unknown = set(sampling) - SAMPLING_FIELDS
    if unknown:
        raise TypeError(f"unknown sampling parameter(s): {', '.join(sorted(unknown))}")
    request = engine_pb2.GenerateRequest(
        request_id=request_id,
        sampling=engine_pb2.SamplingParams(**sampling),
    )
    if text is not None:
        request.text = text
    elif token_ids is not None:
        request.token_ids.ids.extend(token_ids)
    elif messages is not None:
        request.chat.messages.extend(
            engine_pb2.ChatMessage(role=m["role"], content=m["content"]) for m in messages
        )
    return request


class EngineClient:
    """``async with EngineClient("127.0.0.1:50051") as engine: ...``"""

    def __init__(self, target: str, *, timeout_s: float | None = None) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", 64 << 20),
                ("grpc.keepalive_time_ms", 30_000),
                # gRPC's default backoff grows to 2 minutes between reconnection tries;
                # an engine that is starting (or restarted) should be seen within seconds.
                ("grpc.max_reconnect_backoff_ms", 2_000),
            ],
        )
        self._stub = engine_pb2_grpc.EngineStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    @classmethod
    async def connect(
        cls,
        target: str,
        *,
        ready_timeout_s: float,
        timeout_s: float | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> EngineClient:
        """A client for ``target`` once its engine serves; see :meth:`wait_ready`."""
        client = cls(target, timeout_s=timeout_s)
        try:
            await client.wait_ready(ready_timeout_s, alive=alive)
        except BaseException:
            await client.close()
            raise
        return client

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    def _deadline(self, timeout_s: float | None) -> float | None:
        return timeout_s if timeout_s is not None else self.timeout_s

    async def stream(
        self, request: engine_pb2.GenerateRequest, *, timeout_s: float | None = None
    ) -> AsyncIterator[engine_pb2.GenerateResponse]:
        """Yield the raw GenerateResponse messages of one request."""
        call = self._stub.Generate(request, timeout=self._deadline(timeout_s))
        try:
            async for response in call:
                yield response
        finally:
            call.cancel()  # a no-op once the call has finished

    async def generate(
        self, *, timeout_s: float | None = None, **kwargs: Unpack[RequestKwargs]
    ) -> AsyncIterator[engine_pb2.GenerateResponse]:
        """``async for r in engine.generate(text=..., max_tokens=16): ...``"""
        request = build_request(**kwargs)
        if not request.request_id:
            request.request_id = uuid.uuid4().hex
        async for response in self.stream(request, timeout_s=timeout_s):
            yield response

    async def complete(
        self, *, timeout_s: float | None = None, **kwargs: Unpack[RequestKwargs]
    ) -> Generation:
        """Run one request to the end and gather its text, tokens and final message."""
        result = Generation()
        async for response in self.generate(timeout_s=timeout_s, **kwargs):
            result.request_id = response.request_id
            if response.HasField("chunk"):
                result.text += response.chunk.text
                result.token_ids.extend(response.chunk.token_ids)
                result.logprobs.extend(response.chunk.logprobs)
            else:
                result.complete = response.complete
        return result

    async def abort(self, *request_ids: str, timeout_s: float | None = None) -> list[str]:
        response = await self._stub.Abort(
            engine_pb2.AbortRequest(request_ids=request_ids), timeout=self._deadline(timeout_s)
        )
        return list(response.aborted)

    async def model_info(self, *, timeout_s: float | None = None) -> engine_pb2.ModelInfo:
        return await self._stub.GetModelInfo(
            engine_pb2.GetModelInfoRequest(), timeout=self._deadline(timeout_s)
        )

    async def loads(self, *, timeout_s: float | None = None) -> engine_pb2.Loads:
        return await self._stub.GetLoads(
            engine_pb2.GetLoadsRequest(), timeout=self._deadline(timeout_s)
        )

    async def wait_ready(
        self,
        timeout_s: float,
        *,
        alive: Callable[[], bool] | None = None,
        poll_s: float = 0.5,
    ) -> None:
        """Wait until the engine is reachable and has loaded its model (health SERVING).

        An engine takes a minute or more to load, and its port may not be open yet;
        ``alive`` (e.g. "its process is still running") is asked between checks, so a
        caller that started the engine learns at once that it died instead of waiting
        out the deadline. Raises :class:`EngineNotReady` in either case.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if await self.is_serving(timeout_s=max(0.1, min(2.0, left))):
                return
            if alive is not None and not alive():
                raise EngineNotReady(f"the engine at {self.target} stopped before it was ready")
            if time.monotonic() >= deadline:
                raise EngineNotReady(
                    f"the engine at {self.target} was not serving after {timeout_s:g} s"
                )
            await asyncio.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))

    async def is_serving(self, *, timeout_s: float = 2.0) -> bool:
        """True once the engine has loaded its model and accepts requests."""
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=timeout_s
            )
        except grpc.aio.AioRpcError:
            return False
        return response.status == health_pb2.HealthCheckResponse.SERVING
