"""Fallback chains against fault-injecting upstreams: which attempts were made, what the
client got, and the attempts list that tells it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from fake_upstream import FakeUpstream, Reply
from provider_payloads import openai_completion, openai_error, openai_stream
from routing_harness import CLIENT_KEY, client_http, providers_called, routing_router

from switchyard.api.v1 import engine_pb2
from switchyard.router.openai_types import CompletionRequest
from switchyard.router.providers.engine import Engine
from switchyard.router.providers.first_party_model import EngineBackend
from switchyard.router.routing.attempts import FallbackRun, Limits
from switchyard.router.routing.health import HealthBoard
from switchyard.router.routing.live_stats import LiveStats

pytestmark = pytest.mark.timeout(120)

HELLO = [{"role": "user", "content": "Hello"}]
FALLBACK = {"scenario": "fallback"}


@pytest.fixture(scope="module")
async def router_url(upstream: FakeUpstream) -> AsyncIterator[str]:
    async with routing_router(upstream) as url:
        yield url


@pytest.fixture
async def client(router_url: str, upstream: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    upstream.replies.clear()
    upstream.received.clear()
    async with openai.AsyncOpenAI(
        base_url=router_url + "/v1", api_key=CLIENT_KEY, max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def http(router_url: str, client: openai.AsyncOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_http(router_url) as http:
        yield http


# The SDK's ChatCompletion has a `metadata` field; the router's decision and attempts
# arrive in it (a stream's last chunk and an error body carry the same object).
def attempts(metadata: dict) -> list[tuple[str, str, int]]:
    return [(a["provider"], a["model"], a["status"]) for a in metadata["attempts"]]


async def stream_events(http: httpx.AsyncClient, body: dict) -> list[dict]:
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" or "error" in lines[-1]
    return [json.loads(line[6:]) for line in lines if line != "data: [DONE]"]


def text_of(events: list[dict]) -> str:
    return "".join(c["delta"].get("content") or "" for e in events for c in e.get("choices") or [])


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (
            Reply(
                429,
                openai_error("Rate limit reached", "requests", "rate_limit_exceeded"),
                {"Retry-After": "1"},
            ),
            429,
        ),
        (Reply(503, openai_error("The engine is overloaded", "server_error")), 503),
        # An attempt's status is the router's reading of the failure: any other 5xx is 502.
        (Reply(500, openai_error("boom", "server_error")), 502),
    ],
    ids=["429", "503", "500"],
)
async def test_a_failed_attempt_falls_back(
    client, upstream: FakeUpstream, failure: Reply, status: int
) -> None:
    upstream.queue(failure, Reply(body=openai_completion("Hola")))
    completion = await client.chat.completions.create(
        model="router/chat", messages=HELLO, metadata=FALLBACK
    )
    assert completion.choices[0].message.content == "Hola"
    metadata = completion.metadata
    assert (metadata["router"], metadata["route"], metadata["variant"]) == (
        "chat",
        "fallbacks",
        "main",
    )
    assert attempts(metadata) == [
        ("openai", "openai/gpt-5.5", status),
        ("together", "together/llama-4-scout", 200),
    ]
    assert metadata["attempts"][0]["error"]
    assert providers_called(upstream) == ["openai", "together"]


async def test_a_reset_stream_falls_back(http, upstream: FakeUpstream) -> None:
    upstream.queue(
        Reply(frames=[], break_off=True),
        Reply(frames=openai_stream(["Hi", " there"])),
    )
    body = {"model": "router/chat", "messages": HELLO, "metadata": FALLBACK, "stream": True}
    events = await stream_events(http, body)
    assert text_of(events) == "Hi there"
    assert attempts(events[-1]["metadata"]) == [
        ("openai", "openai/gpt-5.5", 502),
        ("together", "together/llama-4-scout", 200),
    ]
    assert events[-1]["choices"] == []


async def test_a_stall_past_the_first_token_timeout_falls_back(http, upstream) -> None:
    upstream.queue(
        Reply(frames=openai_stream(["late"]), delay_s=1.0),
        Reply(frames=openai_stream(["on", " time"])),
    )
    body = {"model": "router/chat", "messages": HELLO, "metadata": FALLBACK, "stream": True}
    events = await stream_events(http, body)
    assert text_of(events) == "on time"
    metadata = events[-1]["metadata"]
    assert attempts(metadata) == [
        ("openai", "openai/gpt-5.5", 504),
        ("together", "together/llama-4-scout", 200),
    ]
    assert 350 <= metadata["attempts"][0]["latency_ms"] < 1000


async def test_a_stall_after_the_first_token_is_not_retried(http, upstream) -> None:
    frames = openai_stream(["partial", "never"])
    # The role chunk, a keep-alive and the first token at once; then a long stall.
    upstream.queue(
        Reply(frames=["".join(frames[:3]), *frames[3:]], gap_s=5.0),
        Reply(frames=openai_stream(["unused"])),
    )
    body = {"model": "router/chat", "messages": HELLO, "metadata": FALLBACK, "stream": True}
    events = await stream_events(http, body)
    # The first token reached the client; the rest is an error event with the attempts.
    assert text_of(events) == "partial"
    error = events[-1]["error"]
    assert error["code"] == "upstream_timeout"
    assert attempts(error["metadata"]) == [("openai", "openai/gpt-5.5", 504)]
    assert providers_called(upstream) == ["openai"]


async def test_a_client_error_is_not_retried(client, upstream) -> None:
    upstream.queue(Reply(400, openai_error("Invalid 'messages'", "invalid_request_error")))
    with pytest.raises(openai.BadRequestError) as error:
        await client.chat.completions.create(model="router/chat", messages=HELLO, metadata=FALLBACK)
    body = error.value.body
    assert attempts(body["metadata"]) == [("openai", "openai/gpt-5.5", 400)]
    assert providers_called(upstream) == ["openai"]


async def test_when_every_attempt_fails_the_last_error_carries_them_all(client, upstream) -> None:
    upstream.queue(
        Reply(503, openai_error("down", "server_error")),
        Reply(429, openai_error("slow down", "requests")),
        Reply(502, openai_error("bad gateway", "server_error")),
    )
    with pytest.raises(openai.APIStatusError) as error:
        await client.chat.completions.create(model="router/chat", messages=HELLO, metadata=FALLBACK)
    assert error.value.status_code == 502
    assert [a[2] for a in attempts(error.value.body["metadata"])] == [503, 429, 502]


async def test_non_streaming_attempt_timeout_falls_back(client, upstream) -> None:
    upstream.queue(
        Reply(body=openai_completion("slow"), delay_s=3.0), Reply(body=openai_completion("quick"))
    )
    completion = await client.chat.completions.create(
        model="router/chat", messages=HELLO, metadata=FALLBACK
    )
    assert completion.choices[0].message.content == "quick"
    assert [a[2] for a in attempts(completion.metadata)] == [504, 200]


async def test_default_route_applies_the_variant_overrides(client, upstream) -> None:
    upstream.queue(Reply(body=openai_completion("ok")))
    completion = await client.chat.completions.create(
        model="router/chat", messages=HELLO, temperature=1.9, user="u1"
    )
    sent = upstream.last.body
    assert sent["model"] == "gpt-5.5-mini"
    assert sent["temperature"] == 0.1
    assert completion.metadata["variant"] == "mini"


async def test_openrouter_models_list_falls_back_over_a_connect_error(client, upstream) -> None:
    upstream.queue(Reply(body=openai_completion("reached")))
    completion = await client.chat.completions.create(
        model="unreachable/m", messages=HELLO, extra_body={"models": ["openai/gpt-5.5"]}
    )
    assert completion.choices[0].message.content == "reached"
    [failed, ok] = attempts(completion.metadata)
    assert failed[:2] == ("unreachable", "unreachable/m") and failed[2] >= 500
    assert ok == ("openai", "openai/gpt-5.5", 200)
    # Router-only fields never reach a provider.
    assert "models" not in upstream.last.body


async def test_provider_preferences_pick_the_host(client, upstream) -> None:
    upstream.queue(Reply(body=openai_completion("a")), Reply(body=openai_completion("b")))
    await client.chat.completions.create(
        model="llama-4-scout", messages=HELLO, extra_body={"provider": {"order": ["together"]}}
    )
    await client.chat.completions.create(
        model="llama-4-scout", messages=HELLO, extra_body={"provider": {"sort": "price"}}
    )
    assert providers_called(upstream) == ["together", "groq"]
    assert "provider" not in upstream.last.body


async def test_auto_takes_the_cheapest_model(client, upstream) -> None:
    upstream.queue(Reply(body=openai_completion("cheap")))
    completion = await client.chat.completions.create(model="auto", messages=HELLO)
    assert completion.choices[0].message.content == "cheap"
    assert providers_called(upstream) == ["groq"]


async def test_router_models_are_listed(client) -> None:
    assert "router/chat" in [m.id async for m in client.models.list()]


async def test_a_host_that_cannot_honour_a_field_passes_the_request_on(client, upstream) -> None:
    # Groq serves one choice per request; Together serves n.
    upstream.queue(Reply(body=openai_completion("two choices")))
    completion = await client.chat.completions.create(
        model="llama-4-scout", messages=HELLO, n=2, extra_body={"provider": {"sort": "price"}}
    )
    assert completion.choices[0].message.content == "two choices"
    assert attempts(completion.metadata) == [
        ("groq", "groq/llama-4-scout", 400),
        ("together", "together/llama-4-scout", 200),
    ]
    assert providers_called(upstream) == ["together"]
    assert upstream.last.body["n"] == 2


async def test_when_no_host_can_honour_a_field_the_400_names_it(client, upstream) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        await client.chat.completions.create(model="groq/llama-4-scout", messages=HELLO, n=2)
    assert error.value.body["param"] == "n"
    assert providers_called(upstream) == []


class _TimedEngine:
    """An engine's gRPC stream that sends its first token after ``first_s`` and its end
    ``rest_s`` later; notes whether the router cancelled the call."""

    def __init__(self, first_s: float, rest_s: float = 0.0) -> None:
        self.first_s, self.rest_s = first_s, rest_s
        self.cancelled = False

    async def stream(self, request: engine_pb2.GenerateRequest) -> AsyncIterator[object]:
        try:
            await asyncio.sleep(self.first_s)
            yield engine_pb2.GenerateResponse(chunk=engine_pb2.Chunk(text="hi"))
            await asyncio.sleep(self.rest_s)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        yield engine_pb2.GenerateResponse(
            complete=engine_pb2.Complete(
                finish_reason=engine_pb2.STOP,
                usage=engine_pb2.Usage(prompt_tokens=3, completion_tokens=1),
            )
        )


def _engine_run(*clients: _TimedEngine, limits: Limits) -> FallbackRun:
    """A non-streaming routed request to one engine per client, in order."""
    body = CompletionRequest(model="router/r", prompt="Hello")
    backends = []
    for index, client in enumerate(clients):
        engine = Engine(f"e{index}", client)  # type: ignore[arg-type]  # a stand-in
        engine.info = engine_pb2.ModelInfo(served_model_name=f"m{index}")
        backends.append(EngineBackend(f"switchyard/m{index}", engine, body, "r1"))
    return FallbackRun(backends, limits, HealthBoard(1000, 60), LiveStats())


async def test_a_non_streaming_engine_with_no_token_in_time_falls_back() -> None:
    """An engine's answer arrives token by token even when the client wants it whole, so
    the first-token timeout holds for it: the stalled call is cancelled, the next serves."""
    stalled, quick = _TimedEngine(first_s=30), _TimedEngine(first_s=0)
    run = _engine_run(stalled, quick, limits=Limits(ttft_timeout_s=0.3))
    result = await run.complete()
    assert result["choices"][0]["text"] == "hi"
    assert attempts(result["metadata"]) == [
        ("switchyard", "switchyard/m0", 504),
        ("switchyard", "switchyard/m1", 200),
    ]
    assert result["metadata"]["attempts"][0]["error"] == "switchyard/m0 sent no token in time"
    assert stalled.cancelled and not quick.cancelled


async def test_a_non_streaming_engine_answer_may_outlast_the_first_token_timeout() -> None:
    """Only the first token is held to the timeout; the rest of the answer takes its time."""
    slow_to_finish = _TimedEngine(first_s=0, rest_s=0.6)
    run = _engine_run(slow_to_finish, _TimedEngine(first_s=0), limits=Limits(ttft_timeout_s=0.2))
    result = await run.complete()
    assert attempts(result["metadata"]) == [("switchyard", "switchyard/m0", 200)]
    assert not slow_to_finish.cancelled


async def test_a_non_streaming_provider_is_held_to_the_attempt_timeout_only(
    client, upstream
) -> None:
    """A provider's whole answer comes with its headers once it is all generated: the
    first-token timeout (400 ms here) does not cut it short; the attempt timeout does."""
    upstream.queue(Reply(body=openai_completion("whole"), delay_s=0.8))
    completion = await client.chat.completions.create(
        model="router/chat", messages=HELLO, metadata=FALLBACK
    )
    assert completion.choices[0].message.content == "whole"
    assert attempts(completion.metadata) == [("openai", "openai/gpt-5.5", 200)]
