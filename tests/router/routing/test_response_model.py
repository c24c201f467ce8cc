"""What ``model`` a response names: the id the client asked for, whole or streamed,
directly or through a named router, whatever the protocol of the provider that served
it; the serving model is in the attempts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fake_upstream import FakeUpstream, Reply
from provider_payloads import (
    anthropic_message,
    anthropic_stream,
    gemini_frame,
    gemini_response,
    openai_completion,
    openai_stream,
)
from router_harness import serve_router
from routing_harness import CLIENT_KEY, client_http

from switchyard.router.config import parse_config

HELLO = [{"role": "user", "content": "Hello"}]
# Each provider's model, and its answer whole and streamed, in the provider's own shapes.
SERVED: dict[str, tuple[str, Reply, Reply]] = {
    "openai": (
        "openai/gpt-5.5",
        Reply(body=openai_completion("hi")),
        Reply(frames=openai_stream(["h", "i"])),
    ),
    "anthropic": (
        "anthropic/claude-opus-4-7",
        Reply(body=anthropic_message([{"type": "text", "text": "hi"}])),
        Reply(frames=anthropic_stream([{"text": "hi"}])),
    ),
    "google-ai-studio": (
        "google-ai-studio/gemini-3.5-flash",
        Reply(body=gemini_response([{"text": "hi"}])),
        Reply(frames=[gemini_frame(gemini_response([{"text": "hi"}]))]),
    ),
}


def config(upstream_url: str) -> dict[str, Any]:
    base = upstream_url + "/v1"
    return {
        "auth": {"keys": [CLIENT_KEY]},
        "providers": {
            "openai": {"base_url": base, "models": ["gpt-5.5"]},
            "anthropic": {"base_url": base, "models": ["claude-opus-4-7"]},
            "google-ai-studio": {
                "base_url": upstream_url + "/v1beta",
                "models": ["gemini-3.5-flash"],
            },
        },
        "routers": {
            f"via-{name}": {"default_route": {"variants": [{"id": "v", "model": m, "weight": 100}]}}
            for name, (m, _, _) in SERVED.items()
        },
    }


@pytest.fixture(scope="module")
async def router_url(upstream: FakeUpstream) -> AsyncIterator[str]:
    environ = {"OPENAI_API_KEY": "k1", "ANTHROPIC_API_KEY": "k2", "GEMINI_API_KEY": "k3"}
    async with serve_router(parse_config(config(upstream.url)), environ=environ) as url:
        yield url


@pytest.fixture
async def http(router_url: str, upstream: FakeUpstream) -> AsyncIterator[httpx.AsyncClient]:
    upstream.replies.clear()
    async with client_http(router_url) as http:
        yield http


async def chunks(http: httpx.AsyncClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


@pytest.mark.parametrize("provider", list(SERVED))
async def test_a_routed_answer_names_the_router_whole_or_streamed(
    http: httpx.AsyncClient, upstream: FakeUpstream, provider: str
) -> None:
    served, whole, streamed = SERVED[provider]
    asked = f"router/via-{provider}"
    upstream.queue(whole, streamed)
    response = await http.post("/v1/chat/completions", json={"model": asked, "messages": HELLO})
    completion = response.json()
    assert completion["model"] == asked
    assert completion["metadata"]["attempts"][-1]["model"] == served
    events = await chunks(http, {"model": asked, "messages": HELLO, "stream": True})
    assert {event["model"] for event in events} == {asked}
    assert events[-1]["metadata"]["attempts"][-1]["model"] == served


@pytest.mark.parametrize("provider", list(SERVED))
async def test_a_direct_answer_names_the_model_asked_for(
    http: httpx.AsyncClient, upstream: FakeUpstream, provider: str
) -> None:
    served, whole, streamed = SERVED[provider]
    upstream.queue(whole, streamed)
    response = await http.post("/v1/chat/completions", json={"model": served, "messages": HELLO})
    assert response.json()["model"] == served
    events = await chunks(http, {"model": served, "messages": HELLO, "stream": True})
    assert {event["model"] for event in events} == {served}
