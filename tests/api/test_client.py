"""The engine client without an engine: request building, and waiting for readiness
against a closed port or an in-process server."""

from __future__ import annotations

import asyncio
import inspect
import socket
import time

import pytest
from grpc_health.v1 import health_pb2
from inprocess_grpc import serve_in_process

from switchyard.api.client import (
    SAMPLING_FIELDS,
    SERVICE_NAME,
    EngineClient,
    EngineNotReady,
    RequestKwargs,
    SamplingKwargs,
    build_request,
)


def test_build_request_text_and_sampling() -> None:
    request = build_request(text="hi", max_tokens=8, temperature=0.0, stop=["\n"], seed=3)
    assert request.WhichOneof("input") == "text"
    assert request.sampling.max_tokens == 8
    # An explicit 0.0 is set, not left at the default.
    assert request.sampling.HasField("temperature")
    assert request.sampling.temperature == 0.0
    assert list(request.sampling.stop) == ["\n"]
    assert not request.sampling.HasField("top_p")


def test_none_leaves_a_sampling_field_unset() -> None:
    """Callers pass their optional settings on as they are (the router does)."""
    request = build_request(text="hi", max_tokens=4, temperature=None, stop=None, seed=None)
    assert [field.name for field, _ in request.sampling.ListFields()] == ["max_tokens"]


def test_keyword_types_name_every_field_and_input() -> None:
    """The TypedDicts are written by hand: a field added to SamplingParams, or an input
    to build_request, must be added to them too."""
    assert SamplingKwargs.__optional_keys__ == SAMPLING_FIELDS
    parameters = inspect.signature(build_request).parameters.values()
    inputs = {p.name for p in parameters if p.kind is p.KEYWORD_ONLY}
    assert RequestKwargs.__optional_keys__ == SAMPLING_FIELDS | inputs


def test_build_request_chat_and_token_ids() -> None:
    chat = build_request(messages=[{"role": "user", "content": "hello"}])
    assert chat.chat.messages[0].role == "user"
    assert chat.chat.messages[0].content == "hello"
    ids = build_request(token_ids=[1, 2, 3])
    assert list(ids.token_ids.ids) == [1, 2, 3]


@pytest.mark.parametrize("inputs", [{}, {"text": "a", "token_ids": [1]}])
def test_build_request_needs_exactly_one_input(inputs) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        build_request(**inputs)


def test_build_request_rejects_unknown_sampling_names() -> None:
    with pytest.raises(TypeError, match="max_new_tokens"):
        build_request(text="a", max_new_tokens=3)


def _closed_port() -> int:
    """A port that nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_wait_ready_times_out_when_nothing_listens() -> None:
    async with EngineClient(f"127.0.0.1:{_closed_port()}") as client:
        started = time.monotonic()
        with pytest.raises(EngineNotReady, match=r"not serving after 1\.5 s"):
            await client.wait_ready(1.5)
        assert 1.5 <= time.monotonic() - started < 5


async def test_wait_ready_stops_waiting_when_the_engine_is_gone() -> None:
    async with EngineClient(f"127.0.0.1:{_closed_port()}") as client:
        started = time.monotonic()
        with pytest.raises(EngineNotReady, match="stopped before it was ready"):
            await client.wait_ready(60, alive=lambda: False)
        assert time.monotonic() - started < 5


async def test_connect_waits_for_serving() -> None:
    async with serve_in_process() as (target, health_servicer):

        async def load_model() -> None:
            await asyncio.sleep(1.0)
            await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)

        loading = asyncio.create_task(load_model())
        started = time.monotonic()
        client = await EngineClient.connect(target, ready_timeout_s=10)
        try:
            assert time.monotonic() - started >= 1.0
            assert await client.is_serving()
        finally:
            await client.close()
            await loading


async def test_connect_times_out_while_the_model_loads() -> None:
    async with serve_in_process() as (target, _):
        with pytest.raises(EngineNotReady, match="not serving after 1 s"):
            await EngineClient.connect(target, ready_timeout_s=1)
