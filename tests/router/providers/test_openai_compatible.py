"""OpenAI-compatible providers through the router, with the official SDK as the client,
and everything the providers share: error statuses, broken streams, disconnects, keys."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import openai
import pytest
from fake_upstream import FakeUpstream, Reply
from provider_payloads import openai_completion, openai_error, openai_frame, openai_stream
from router_harness import serve_router

from switchyard.router.config import parse_config
from switchyard.router.providers.upstream import SSEEvent, SSEParser

HELLO = [{"role": "user", "content": "Say hello."}]


async def test_chat_is_passed_through_with_unknown_fields(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, provider_keys: dict[str, str]
) -> None:
    upstream.queue(Reply(body=openai_completion("Hello there!")))
    completion = await client.chat.completions.create(
        model="openai/gpt-5.5",
        messages=HELLO,
        response_format={"type": "json_object"},
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        extra_body={"reasoning_effort": "low"},
    )
    assert completion.choices[0].message.content == "Hello there!"
    assert completion.model == "openai/gpt-5.5"
    assert completion.usage is not None and completion.usage.total_tokens == 29
    sent = upstream.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {provider_keys['OPENAI_API_KEY']}"
    assert sent.body["model"] == "gpt-5.5"
    assert sent.body["response_format"] == {"type": "json_object"}
    assert sent.body["reasoning_effort"] == "low"
    assert sent.body["tools"][0]["function"]["name"] == "f"


async def test_each_provider_gets_its_own_key_and_model_name(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, provider_keys: dict[str, str]
) -> None:
    upstream.queue(Reply(body=openai_completion("ok")))
    completion = await client.chat.completions.create(
        model="groq/meta-llama/llama-4-scout", messages=HELLO
    )
    assert completion.model == "groq/meta-llama/llama-4-scout"
    assert upstream.last.body["model"] == "meta-llama/llama-4-scout"
    assert upstream.last.headers["authorization"] == f"Bearer {provider_keys['GROQ_API_KEY']}"


async def test_stream_skips_keep_alives_and_keeps_usage(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    pieces = ["Hel", "lo", " there", "!"]
    upstream.queue(Reply(frames=openai_stream(pieces)))
    stream = await client.chat.completions.create(
        model="openai/gpt-5.5",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there!"
    assert {c.model for c in chunks} == {"openai/gpt-5.5"}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(pieces)
    assert upstream.last.body["stream"] is True


async def test_completions_endpoint(client: openai.AsyncOpenAI, upstream: FakeUpstream) -> None:
    body = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1764000000,
        "model": "gpt-5.5",
        "choices": [{"index": 0, "text": " world", "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    upstream.queue(Reply(body=body))
    completion = await client.completions.create(model="openai/gpt-5.5", prompt="hello")
    assert completion.choices[0].text == " world"
    assert upstream.last.path == "/v1/completions"
    assert upstream.last.body["prompt"] == "hello"


async def test_models_lists_every_configured_provider_model(client: openai.AsyncOpenAI) -> None:
    models = {model.id: model.owned_by async for model in client.models.list()}
    assert models == {
        "openai/gpt-5.5": "openai",
        "groq/meta-llama/llama-4-scout": "groq",
        "anthropic/claude-opus-4-7": "anthropic",
        "google-ai-studio/gemini-3.5-flash": "google-ai-studio",
        "unreachable/m": "unreachable",
    }


async def test_unconfigured_model_of_a_known_provider_is_404(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as error:
        await client.chat.completions.create(model="openai/gpt-0", messages=HELLO)
    assert error.value.param == "model"


@pytest.mark.parametrize(
    ("status", "body", "exception", "router_status"),
    [
        (
            400,
            openai_error("Invalid 'temperature'", "invalid_request_error"),
            "BadRequestError",
            400,
        ),
        (
            404,
            openai_error("The model does not exist", "invalid_request_error"),
            "NotFoundError",
            404,
        ),
        (422, {"detail": "unprocessable"}, "BadRequestError", 400),
        (500, openai_error("The server had an error", "server_error"), "InternalServerError", 502),
        (503, openai_error("Overloaded", "server_error"), "InternalServerError", 503),
        (529, {"error": "overloaded"}, "InternalServerError", 503),
    ],
)
async def test_upstream_error_statuses(
    client: openai.AsyncOpenAI,
    upstream: FakeUpstream,
    status: int,
    body: dict,
    exception: str,
    router_status: int,
) -> None:
    upstream.queue(Reply(status=status, body=body))
    with pytest.raises(getattr(openai, exception)) as error:
        await client.chat.completions.create(model="openai/gpt-5.5", messages=HELLO)
    assert error.value.status_code == router_status
    assert "openai: " in error.value.message


async def test_429_keeps_retry_after(client: openai.AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.queue(
        Reply(
            status=429,
            body=openai_error("Rate limit reached", "requests", "rate_limit_exceeded"),
            headers={"Retry-After": "7"},
        )
    )
    with pytest.raises(openai.RateLimitError) as error:
        await client.chat.completions.create(model="openai/gpt-5.5", messages=HELLO)
    assert error.value.response.headers["retry-after"] == "7"
    assert "Rate limit reached" in error.value.message


async def test_upstream_refusing_our_key_is_502_and_leaks_no_key(
    client: openai.AsyncOpenAI,
    upstream: FakeUpstream,
    provider_keys: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Providers echo part of a wrong key in their message; it must not travel on.
    echo = f"Incorrect API key provided: {provider_keys['OPENAI_API_KEY']}"
    upstream.queue(Reply(status=401, body=openai_error(echo, "invalid_request_error")))
    with caplog.at_level(logging.DEBUG), pytest.raises(openai.APIStatusError) as error:
        await client.chat.completions.create(model="openai/gpt-5.5", messages=HELLO)
    assert error.value.status_code == 502
    response_text = error.value.response.text
    for key in provider_keys.values():
        assert key not in response_text
        assert key not in caplog.text


async def test_unreachable_provider_is_502(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as error:
        await client.chat.completions.create(model="unreachable/m", messages=HELLO)
    assert error.value.status_code == 502
    assert "could not reach the unreachable provider" in error.value.message


async def test_a_provider_that_drops_the_connection_after_reading_the_request_gets_it_once() -> (
    None
):
    """The first request leaves a kept-alive connection in the pool; the provider reads
    the second on it, works a while and drops the connection. It was sent: the client
    gets a 502, and the provider never a second copy of it."""
    bodies: list[dict] = []

    async def provider(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                bodies.append(json.loads(await reader.readexactly(length)))
                if len(bodies) > 1:
                    await asyncio.sleep(0.2)
                    return
                answer = json.dumps(openai_completion("first")).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(answer))
                writer.write(answer)
        except asyncio.IncompleteReadError:
            pass  # the router closed a connection it had no more requests for
        finally:
            writer.close()

    listener = await asyncio.start_server(provider, "127.0.0.1", 0)
    base_url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/v1"
    config = parse_config({"providers": {"openai": {"base_url": base_url, "models": ["gpt-5.5"]}}})
    environ = {"OPENAI_API_KEY": "sk-drop"}
    try:
        async with (
            serve_router(config, environ=environ, insecure_no_auth=True) as url,
            openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0) as sdk,
        ):
            first = await sdk.chat.completions.create(model="openai/gpt-5.5", messages=HELLO)
            assert first.choices[0].message.content == "first"
            with pytest.raises(openai.InternalServerError) as error:
                await sdk.chat.completions.create(
                    model="openai/gpt-5.5", messages=[{"role": "user", "content": "again"}]
                )
    finally:
        listener.close()
    assert error.value.status_code == 502
    assert [body["messages"][0]["content"] for body in bodies] == ["Say hello.", "again"]


async def test_provider_that_does_not_answer_in_time_is_504(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.queue(Reply(body=openai_completion("late"), delay_s=5.0))
    with pytest.raises(openai.APIStatusError) as error:
        await client.chat.completions.create(model="openai/gpt-5.5", messages=HELLO)
    assert error.value.status_code == 504


async def test_stream_refused_before_it_starts_keeps_its_status(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.queue(Reply(status=400, body=openai_error("bad tools", "invalid_request_error")))
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="openai/gpt-5.5", messages=HELLO, stream=True)


@pytest.mark.parametrize(
    "frames_end",
    [
        pytest.param({"done": False}, id="connection-closed-without-done"),
        pytest.param({"break_off": True}, id="connection-broken"),
    ],
)
async def test_stream_that_dies_midway_ends_with_an_error_event(
    router_url: str, upstream: FakeUpstream, frames_end: dict
) -> None:
    frames = openai_stream(["Hel", "lo"], usage=False, done=False)
    upstream.queue(Reply(frames=frames, break_off=frames_end.get("break_off", False)))
    body = {"model": "openai/gpt-5.5", "messages": HELLO, "stream": True}
    events = await _sse_data(router_url, body)
    assert events[-1] != "[DONE]"
    assert '"error"' in events[-1] and "ended the stream" in events[-1]
    assert any('"Hel"' in event for event in events)


async def test_error_event_midstream_is_forwarded(router_url: str, upstream: FakeUpstream) -> None:
    frames = openai_stream(["Hi"], usage=False, done=False)[:3]
    frames.append(openai_frame(openai_error("The model overloaded", "server_error")))
    upstream.queue(Reply(frames=frames))
    events = await _sse_data(
        router_url, {"model": "openai/gpt-5.5", "messages": HELLO, "stream": True}
    )
    assert "The model overloaded" in events[-1]


async def test_client_disconnect_cancels_the_upstream_stream(
    router_url: str, upstream: FakeUpstream
) -> None:
    upstream.queue(Reply(frames=openai_stream(["tick"] * 200), gap_s=0.05))
    body = {"model": "openai/gpt-5.5", "messages": HELLO, "stream": True}
    headers = {"Authorization": "Bearer sk-client-test"}
    async with (
        httpx.AsyncClient(base_url=router_url, headers=headers) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        seen = 0
        async for line in response.aiter_lines():
            seen += line.startswith("data: ")
            if seen == 3:
                break
    await asyncio.wait_for(upstream.stream_cancelled.wait(), timeout=5.0)


async def _sse_data(router_url: str, body: dict) -> list[str]:
    headers = {"Authorization": "Bearer sk-client-test"}
    async with (
        httpx.AsyncClient(base_url=router_url, headers=headers) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        return [
            line.removeprefix("data: ")
            async for line in response.aiter_lines()
            if line.startswith("data: ")
        ]


async def test_usage_is_always_asked_upstream_but_sent_only_when_asked(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.queue(Reply(frames=openai_stream(["a", "b"])))
    stream = await client.chat.completions.create(
        model="openai/gpt-5.5", messages=HELLO, stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices for chunk in chunks)  # no usage-only chunk
    assert upstream.last.body["stream_options"] == {"include_usage": True}


def test_sse_parser_handles_split_lines_crlf_comments_and_an_unterminated_end() -> None:
    parser = SSEParser()
    stream = b'event: a\r\ndata: {"x":\r\ndata:  1}\r\n\r\n: keep-alive\n\ndata: [DONE]'
    events: list[SSEEvent] = []
    position = 0
    for cut in (3, 9, 17, 30, len(stream)):
        events += parser.feed(stream[position:cut])
        position = cut
    assert events == [SSEEvent("a", '{"x":\n 1}')]
    assert parser.finish() == [SSEEvent("message", "[DONE]")]


async def test_unreadable_success_body_is_502(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.queue(Reply(body=["not", "an", "object"]))
    with pytest.raises(openai.APIStatusError) as error:
        await client.chat.completions.create(model="openai/gpt-5.5", messages=HELLO)
    assert error.value.status_code == 502
    assert "unreadable response" in error.value.message


async def test_a_400_keeps_the_provider_param_and_code(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    body = openai_error(
        "Invalid 'messages[0].content': string too long.",
        "invalid_request_error",
        "string_above_max_length",
    )
    body["error"]["param"] = "messages[0].content"
    upstream.queue(Reply(status=400, body=body))
    with pytest.raises(openai.BadRequestError) as error:
        await client.chat.completions.create(model="openai/gpt-5.5", messages=HELLO)
    assert (error.value.param, error.value.code) == (
        "messages[0].content",
        "string_above_max_length",
    )
    assert error.value.body["type"] == "invalid_request_error"
    assert "string too long" in error.value.message
