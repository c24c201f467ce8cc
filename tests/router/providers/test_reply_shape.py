"""A provider that answers 200 with a body of the wrong shape: a 502 naming the provider
and the field on every protocol, whole or streamed, never a 500; a fallback takes it
like any upstream failure; a stream already under way ends with an error event."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from provider_payloads import openai_chunk, openai_completion
from raw_http import Reader, Writer, read_request, reply, serving
from router_harness import serve_router

from switchyard.router.config import parse_config
from switchyard.router.providers.openai_shape import WrongShape, check_chunk, check_response

KEY = "sk-client-shape"
HELLO = [{"role": "user", "content": "Hello"}]
BASE_PATHS = {"openai": "/v1", "anthropic": "/v1", "google": "/v1beta"}
SSE = b"Content-Type: text/event-stream\r\n"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "choices is not a list"),
        ({"choices": "x"}, "choices is not a list"),
        ({"choices": [1]}, "choices[0] is not an object"),
        ({"choices": [{"message": 5}]}, "choices[0].message is not an object"),
        ({"choices": [], "usage": "x"}, "usage is not an object"),
        ({"choices": [], "usage": {"prompt_tokens": "9"}}, "usage.prompt_tokens is not a count"),
        ({"choices": [], "usage": {"completion_tokens": -1}}, "completion_tokens is not a count"),
        ({"choices": [], "usage": {"total_tokens": True}}, "usage.total_tokens is not a count"),
    ],
)
def test_what_the_router_reads_is_checked(data: dict[str, Any], field: str) -> None:
    with pytest.raises(WrongShape, match=field.replace("[", r"\[").replace("]", r"\]")):
        check_response(data)


def test_well_formed_answers_pass() -> None:
    check_response(openai_completion("hi"))
    check_response({"choices": [{"index": 0, "text": "hi"}], "usage": None})
    check_chunk(openai_chunk({"content": "hi"}))
    check_chunk({"choices": [{"index": 0, "delta": None, "finish_reason": "stop"}]})
    check_chunk({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 0}})


class Upstream:
    """Answers every request with ``body``: whole, or as the SSE events of ``events``."""

    def __init__(self) -> None:
        self.body: Any = None
        self.events: list[Any] | None = None

    async def __call__(self, reader: Reader, writer: Writer) -> None:
        while True:
            await read_request(reader)
            if self.events is None:
                writer.write(reply(json.dumps(self.body).encode()))
            else:
                frames = "".join(f"data: {json.dumps(event)}\n\n" for event in self.events)
                writer.write(reply(frames.encode(), extra=SSE))
            await writer.drain()


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[tuple[Upstream, str]]:
    answers = Upstream()
    async with serving(answers) as (_, url):
        yield answers, url


@pytest.fixture(scope="module")
async def router(upstream: tuple[Upstream, str]) -> AsyncIterator[httpx.AsyncClient]:
    _, url = upstream
    providers = {
        protocol: {
            "protocol": protocol,
            "base_url": url + path,
            "models": ["m"],
            "api_key_env": "PROVIDER_KEY",
        }
        for protocol, path in BASE_PATHS.items()
    }
    data = {
        "auth": {"keys": [KEY]},
        "providers": providers,
        "routers": {
            "fallback": {
                "default_route": {
                    "variants": [
                        {
                            "id": "v",
                            "model": "anthropic/m",
                            "weight": 100,
                            "fallbacks": ["openai/m"],
                        }
                    ]
                }
            }
        },
    }
    environ = {"PROVIDER_KEY": "sk-provider"}
    async with serve_router(parse_config(data), environ=environ) as router_url:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=router_url, headers=headers, timeout=30) as http:
            yield http


async def _ask(http: httpx.AsyncClient, model: str, stream: bool) -> httpx.Response:
    body = {"model": model, "messages": HELLO, "stream": stream}
    return await http.post("/v1/chat/completions", json=body)


@pytest.mark.parametrize(
    ("protocol", "stream", "payload", "detail"),
    [
        ("openai", False, {"choices": "x"}, "choices is not a list"),
        ("openai", False, {"object": "chat.completion"}, "choices is not a list"),
        ("openai", False, {"choices": [], "usage": {"prompt_tokens": "a"}}, "usage.prompt_tokens"),
        ("anthropic", False, {"content": "x"}, "AttributeError"),
        ("anthropic", False, {"content": [5]}, "AttributeError"),
        ("google", False, {"candidates": "x"}, "AttributeError"),
        ("google", False, {"candidates": [{"content": 5}]}, "AttributeError"),
        ("google", False, {"usageMetadata": "x"}, "AttributeError"),
        ("openai", True, {"choices": "x"}, "choices is not a list"),
        ("openai", True, {"choices": [{"delta": 5}]}, "choices[0].delta is not an object"),
        ("openai", True, {"choices": [], "usage": "x"}, "usage is not an object"),
        ("anthropic", True, {"type": "message_start", "message": 5}, "AttributeError"),
        (
            "anthropic",
            True,
            {"type": "content_block_delta", "index": 0, "delta": 5},
            "AttributeError",
        ),
        ("google", True, {"candidates": "x"}, "AttributeError"),
    ],
)
async def test_an_answer_of_the_wrong_shape_is_a_502(
    upstream: tuple[Upstream, str],
    router: httpx.AsyncClient,
    protocol: str,
    stream: bool,
    payload: dict[str, Any],
    detail: str,
) -> None:
    """Whole, or a stream whose first event is already wrong: nothing reached the client,
    so it gets the status."""
    answers, _ = upstream
    answers.body, answers.events = (None, [payload]) if stream else (payload, None)
    response = await _ask(router, f"{protocol}/m", stream=stream)
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "bad_upstream_response"
    what = "stream event" if stream else "response"
    assert error["message"].startswith(f"{protocol} sent a {what} of the wrong shape")
    assert detail in error["message"]


async def test_a_stream_that_turns_malformed_ends_with_an_error_event(
    upstream: tuple[Upstream, str], router: httpx.AsyncClient
) -> None:
    answers, _ = upstream
    answers.events = [openai_chunk({"role": "assistant", "content": "Hi"}), {"choices": 7}]
    response = await _ask(router, "openai/m", stream=True)
    assert response.status_code == 200
    events = [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: {")
    ]
    assert events[0]["choices"][0]["delta"]["content"] == "Hi"
    assert events[-1]["error"]["code"] == "bad_upstream_response"
    assert "choices is not a list" in events[-1]["error"]["message"]


async def test_a_fallback_takes_a_wrong_shape_like_any_upstream_failure(
    upstream: tuple[Upstream, str], router: httpx.AsyncClient
) -> None:
    answers, _ = upstream
    # Anthropic's adapter cannot read an OpenAI completion; the OpenAI fallback can.
    answers.body, answers.events = {**openai_completion("from openai"), "content": "x"}, None
    response = await _ask(router, "router/fallback", stream=False)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["choices"][0]["message"]["content"] == "from openai"
    first, second = data["metadata"]["attempts"]
    assert (first["provider"], first["status"]) == ("anthropic", 502)
    assert "wrong shape" in first["error"]
    assert (second["provider"], second["status"]) == ("openai", 200)
