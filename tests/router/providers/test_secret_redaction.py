"""Providers that echo the key they were sent: the key never leaves the router, through
any of the four ways a provider's words go on (an error relayed to the client, the
attempts of a fallback that succeeded, a stream's last error event, the admin API's
``last_error``), nor reaches its log. Some replies also quote the client's and the admin
key, as a provider echoing a whole request might: no secret the router holds gets out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest
from fake_upstream import RECEIVED_KEY, FakeUpstream, Reply
from provider_payloads import (
    anthropic_error,
    anthropic_frame,
    anthropic_message,
    anthropic_stream,
    gemini_error,
    gemini_frame,
    gemini_response,
    openai_completion,
    openai_error,
    openai_frame,
    openai_stream,
)

from switchyard.router.redaction import MARKER

HELLO = [{"role": "user", "content": "Say hello."}]
ECHO = f"Incorrect API key provided: {RECEIVED_KEY}"
# A provider reply, given the words it says.
Said = Callable[[str], object]


@pytest.fixture
def echo(router_secrets: list[str]) -> str:
    """The key the provider received, then every other secret the router holds."""
    return f"{ECHO}; also {', '.join(router_secrets)}"


@pytest.fixture
def assert_redacted(
    caplog: pytest.LogCaptureFixture, router_secrets: list[str]
) -> Iterator[Callable[[str], None]]:
    """Checks that a text shows the marker where the secrets were, and that neither it
    nor anything the test logged holds one."""

    def check(text: str) -> None:
        assert MARKER in text
        for secret in router_secrets:
            assert secret not in text
            assert secret not in caplog.text

    with caplog.at_level(logging.DEBUG):
        yield check


@pytest.mark.parametrize(
    ("model", "status", "said", "exception"),
    [
        (
            "openai/gpt-5.5",
            400,
            lambda text: openai_error(text, "invalid_request_error"),
            "BadRequestError",
        ),
        (
            "openai/gpt-5.5",
            404,
            lambda text: openai_error(text, "invalid_request_error"),
            "NotFoundError",
        ),
        ("openai/gpt-5.5", 422, lambda text: {"detail": text}, "BadRequestError"),
        ("openai/gpt-5.5", 429, lambda text: openai_error(text, "requests"), "RateLimitError"),
        (
            "openai/gpt-5.5",
            500,
            lambda text: openai_error(text, "server_error"),
            "InternalServerError",
        ),
        (
            "anthropic/claude-opus-4-7",
            400,
            lambda text: anthropic_error("invalid_request_error", text),
            "BadRequestError",
        ),
        (
            "google-ai-studio/gemini-3.5-flash",
            400,
            lambda text: gemini_error(400, "INVALID_ARGUMENT", text),
            "BadRequestError",
        ),
    ],
    ids=[
        "openai-400",
        "openai-404",
        "openai-422",
        "openai-429",
        "openai-500",
        "anthropic-400",
        "google-400",
    ],
)
async def test_relayed_error_messages_carry_no_secret(
    client: openai.AsyncOpenAI,
    upstream: FakeUpstream,
    echo: str,
    assert_redacted: Callable[[str], None],
    model: str,
    status: int,
    said: Said,
    exception: str,
) -> None:
    upstream.queue(Reply(status=status, body=said(echo)))
    with pytest.raises(getattr(openai, exception)) as error:
        await client.chat.completions.create(model=model, messages=HELLO)
    assert f"Incorrect API key provided: {MARKER}" in error.value.message
    assert_redacted(error.value.response.text)


async def test_a_relayed_param_and_code_carry_no_secret(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, assert_redacted: Callable[[str], None]
) -> None:
    body = openai_error("Invalid key", "invalid_request_error", code=f"bad_{RECEIVED_KEY}")
    body["error"]["param"] = f"headers.{RECEIVED_KEY}"
    upstream.queue(Reply(status=400, body=body))
    with pytest.raises(openai.BadRequestError) as error:
        await client.chat.completions.create(model="openai/gpt-5.5", messages=HELLO)
    assert (error.value.param, error.value.code) == (f"headers.{MARKER}", f"bad_{MARKER}")
    assert_redacted(error.value.response.text)


@pytest.mark.parametrize("stream", [False, True])
async def test_the_attempts_of_a_fallback_that_succeeded_carry_no_secret(
    client: openai.AsyncOpenAI,
    upstream: FakeUpstream,
    echo: str,
    assert_redacted: Callable[[str], None],
    stream: bool,
) -> None:
    served = anthropic_stream([{"text": "hi"}]) if stream else None
    upstream.queue(
        Reply(status=503, body=openai_error(echo, "server_error")),
        Reply(body=anthropic_message([{"type": "text", "text": "hi"}]), frames=served),
    )
    request = {
        "model": "openai/gpt-5.5",
        "messages": HELLO,
        "extra_body": {"models": ["anthropic/claude-opus-4-7"]},
    }
    if stream:
        chunks = [c async for c in await client.chat.completions.create(**request, stream=True)]
        metadata = chunks[-1].model_extra["metadata"]
    else:
        metadata = (await client.chat.completions.create(**request)).metadata
    failed, succeeded = metadata["attempts"]
    assert (failed["status"], succeeded["status"]) == (503, 200)
    assert failed["error"].startswith(f"openai: Incorrect API key provided: {MARKER}")
    assert_redacted(json.dumps(metadata))


@pytest.mark.parametrize(
    ("model", "opening", "said"),
    [
        (
            "openai/gpt-5.5",
            openai_stream(["Hi"], usage=False, done=False)[:3],
            lambda text: openai_frame(openai_error(text, "server_error")),
        ),
        (
            "anthropic/claude-opus-4-7",
            anthropic_stream([{"text": "Hi"}], end=False),
            lambda text: anthropic_frame(anthropic_error("api_error", text)),
        ),
        (
            "google-ai-studio/gemini-3.5-flash",
            [gemini_frame(gemini_response([{"text": "Hi"}], None, usage=False))],
            lambda text: gemini_frame(gemini_error(500, "INTERNAL", text)),
        ),
    ],
    ids=["openai", "anthropic", "google"],
)
async def test_a_stream_error_event_carries_no_secret(
    router_url: str,
    client: openai.AsyncOpenAI,
    upstream: FakeUpstream,
    echo: str,
    assert_redacted: Callable[[str], None],
    model: str,
    opening: list[str],
    said: Said,
) -> None:
    upstream.queue(Reply(frames=[*opening, said(echo)]))
    body = {"model": model, "messages": HELLO, "stream": True}
    headers = {"Authorization": f"Bearer {client.api_key}"}
    async with (
        httpx.AsyncClient(base_url=router_url, headers=headers) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    *chunks, last = [json.loads(line.removeprefix("data: ")) for line in lines]
    # The error came after the stream began.
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hi"
    assert f"Incorrect API key provided: {MARKER}" in last["error"]["message"]
    assert_redacted(lines[-1])


async def test_the_admin_api_last_error_carries_no_secret(
    client: openai.AsyncOpenAI,
    upstream: FakeUpstream,
    router_url: str,
    admin_key: str,
    echo: str,
    assert_redacted: Callable[[str], None],
) -> None:
    upstream.queue(
        Reply(status=500, body=gemini_error(500, "INTERNAL", echo)),
        Reply(body=openai_completion("ok")),
    )
    await client.chat.completions.create(
        model="google-ai-studio/gemini-3.5-flash",
        messages=HELLO,
        extra_body={"models": ["openai/gpt-5.5"]},
    )
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(base_url=router_url, headers=headers) as admin:
        report = (await admin.get("/admin/v1/providers")).json()["targets"]
    row = next(row for row in report if row["target"] == "google-ai-studio")
    assert row["last_error"].startswith(f"google-ai-studio: Incorrect API key provided: {MARKER}")
    assert_redacted(json.dumps(row))
