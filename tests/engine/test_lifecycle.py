"""Stopping and breaking an engine: each test runs its own private engine process."""

from __future__ import annotations

import asyncio
import signal
import time

import grpc
import psutil
import pytest

from switchyard.api.v1 import engine_pb2

pytestmark = pytest.mark.timeout(900)

LONG = dict(text="Tell me a long story.", max_tokens=1500, ignore_eos=True)


async def _first_chunks(stream, count: int) -> list:
    seen = []
    async for response in stream:
        seen.append(response)
        if len(seen) == count:
            break
    return seen


async def test_sigterm_drains_in_flight_requests_and_exits_0(spawn_engine) -> None:
    # The grace period leaves a loaded 2-core machine ample time for the short request
    # (a few tokens) and none for the long one (1500 tokens take a minute here).
    engine = spawn_engine("smollm2-135m-instruct", "--shutdown-grace", "8")
    client = await engine.wait_serving()
    try:
        short = asyncio.create_task(client.complete(text="Hello", max_tokens=8, ignore_eos=True))
        long_stream = client.generate(**LONG)
        await _first_chunks(long_stream, 2)
        engine.process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()

        # The short request finishes normally inside the grace period.
        result = await short
        assert result.complete.finish_reason == engine_pb2.LENGTH
        assert result.complete.usage.completion_tokens == 8

        # The long one is aborted at the deadline, not left hanging, and its stream still
        # ends with its Complete message, as the API promises.
        rest = [response async for response in long_stream]
        assert rest, "the stream ended without a final message"
        final = rest[-1]
        assert final.HasField("complete")
        assert final.complete.finish_reason == engine_pb2.ABORT
        assert 0 < final.complete.usage.completion_tokens < LONG["max_tokens"]
        # ... after the grace period, not before.
        assert 7 < time.monotonic() - stopped_at < 25

        # New calls are refused while and after it drains.
        with pytest.raises(grpc.aio.AioRpcError):
            await client.complete(text="too late", max_tokens=2, timeout_s=5)
        assert await asyncio.to_thread(engine.process.wait, 60) == 0
    finally:
        await client.close()


async def test_engine_death_is_reported_and_exits_nonzero(spawn_engine) -> None:
    engine = spawn_engine("smollm2-135m-instruct")
    client = await engine.wait_serving()
    try:
        stream = client.generate(**LONG)
        await _first_chunks(stream, 2)
        # Kill vLLM's engine-core process (a child of the server) mid-generation.
        children = psutil.Process(engine.process.pid).children(recursive=True)
        assert children, "the vLLM engine core runs in a child process"
        for child in children:
            child.kill()

        with pytest.raises(grpc.aio.AioRpcError) as error:
            async for _ in stream:
                pass
        assert error.value.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.INTERNAL,
            grpc.StatusCode.CANCELLED,
        )
        assert await asyncio.to_thread(engine.process.wait, 60) == 1
        assert "engine died" in engine.log_tail(200)
    finally:
        await client.close()
