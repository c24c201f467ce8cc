"""What the router checks before any provider is asked, and what it leaves to the
provider: strict types, nesting depth, ``n`` by host, completions prompts, readiness of
a router with providers only."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from fake_upstream import FakeUpstream, Reply
from provider_payloads import openai_completion

from switchyard.router.body import MAX_JSON_DEPTH

HELLO = [{"role": "user", "content": "Say hello."}]


def _nested(depth: int) -> str:
    """A JSON array ``depth`` levels deep: ``[[[...]]]``."""
    return "[" * depth + "]" * depth


def _text_completion(choices: int) -> dict:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1764000000,
        "model": "gpt-5.5",
        "choices": [
            {"index": i, "text": f" answer {i}", "logprobs": None, "finish_reason": "stop"}
            for i in range(choices)
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2 * choices, "total_tokens": 3},
    }


@pytest.fixture
async def http(router_url: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": "Bearer sk-client-test"}
    async with httpx.AsyncClient(base_url=router_url, headers=headers) as http:
        yield http


@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", "hot"), ("max_tokens", "5"), ("max_tokens", 5.0), ("stream", "true")],
)
async def test_wrong_types_are_400_naming_the_field_and_never_forwarded(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, field: str, value: object
) -> None:
    sent = len(upstream.received)
    with pytest.raises(openai.BadRequestError) as error:
        await client.chat.completions.create(
            model="openai/gpt-5.5", messages=HELLO, extra_body={field: value}
        )
    assert error.value.param == field
    assert error.value.body["message"].startswith(f"{field}: ")
    assert len(upstream.received) == sent


@pytest.mark.parametrize(
    "model",
    [
        "openai/gpt-5.5",
        "anthropic/claude-opus-4-7",
        "google-ai-studio/gemini-3.5-flash",
        # Checked before the model is looked up, so a first-party model is answered alike
        # (test_api checks one that an engine serves).
        "switchyard/smollm2-135m-instruct",
    ],
)
@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "json_schema", "json_schema": "str"}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": [1]}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": 5}, "response_format.json_schema"),
        (
            {"type": "json_schema", "json_schema": {"name": "s", "schema": "object"}},
            "response_format.json_schema.schema",
        ),
        ({"type": 5}, "response_format.type"),
        ("json", "response_format"),
    ],
)
async def test_response_format_of_a_wrong_shape_is_400_naming_the_field(
    client: openai.AsyncOpenAI,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    model: str,
    response_format: object,
    param: str,
) -> None:
    sent = len(upstream.received)
    with caplog.at_level(logging.WARNING), pytest.raises(openai.BadRequestError) as error:
        await client.chat.completions.create(
            model=model, messages=HELLO, extra_body={"response_format": response_format}
        )
    assert error.value.param == param
    assert error.value.body["message"].startswith(f"{param}: ")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(upstream.received) == sent


async def test_integers_for_numbers_are_what_the_sdk_sends_and_pass(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.queue(Reply(body=openai_completion("ok")))
    await client.chat.completions.create(
        model="openai/gpt-5.5", messages=HELLO, temperature=1, top_p=1, frequency_penalty=0
    )
    assert upstream.last.body["temperature"] == 1


@pytest.mark.parametrize("depth", [100_000, MAX_JSON_DEPTH + 1])
async def test_deeply_nested_json_is_400(
    http: httpx.AsyncClient, upstream: FakeUpstream, depth: int
) -> None:
    sent = len(upstream.received)
    body = '{"model": "openai/gpt-5.5", "messages": [], "vendor_extra": ' + _nested(depth) + "}"
    response = await http.post(
        "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert f"deeper than {MAX_JSON_DEPTH} levels" in error["message"]
    assert error["type"] == "invalid_request_error"
    assert len(upstream.received) == sent


async def test_nesting_within_the_limit_is_forwarded(
    http: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    upstream.queue(Reply(body=openai_completion("ok")))
    # The body object is level 1, so the array can take every level but that one.
    nested = _nested(MAX_JSON_DEPTH - 1)
    body = '{"model": "openai/gpt-5.5", "messages": [{"role": "user", "content": "hi"}], '
    body += '"vendor_extra": ' + nested + "}"
    response = await http.post(
        "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    depth, value = 0, upstream.last.body["vendor_extra"]
    while isinstance(value, list):
        depth, value = depth + 1, value[0] if value else None
    assert depth == MAX_JSON_DEPTH - 1


async def test_n_is_passed_to_a_host_that_offers_it(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    reply = openai_completion("first")
    reply["choices"].append({**reply["choices"][0], "index": 1})
    reply["choices"][1]["message"] = {**reply["choices"][0]["message"], "content": "second"}
    upstream.queue(Reply(body=reply))
    completion = await client.chat.completions.create(model="openai/gpt-5.5", messages=HELLO, n=2)
    assert [c.message.content for c in completion.choices] == ["first", "second"]
    assert upstream.last.body["n"] == 2


async def test_n_is_refused_by_name_for_a_host_that_serves_one_choice(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    sent = len(upstream.received)
    with pytest.raises(openai.BadRequestError) as error:
        await client.chat.completions.create(
            model="groq/meta-llama/llama-4-scout", messages=HELLO, n=3
        )
    assert error.value.param == "n"
    assert "n > 1 is not supported by groq models" in error.value.message
    assert len(upstream.received) == sent
    # n = 1 is what every host serves.
    upstream.queue(Reply(body=openai_completion("ok")))
    await client.chat.completions.create(model="groq/meta-llama/llama-4-scout", messages=HELLO, n=1)
    assert upstream.last.body["n"] == 1


@pytest.mark.parametrize(
    "prompt",
    [
        pytest.param([1734, 318, 257], id="token-ids"),
        pytest.param([[1734, 318], [257]], id="batch-of-token-ids"),
        pytest.param(["Say", "this is"], id="batch-of-texts"),
    ],
)
async def test_completions_prompts_of_every_form_are_passed_through(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, prompt: list
) -> None:
    choices = 1 if isinstance(prompt[0], int) else len(prompt)
    upstream.queue(Reply(body=_text_completion(choices)))
    completion = await client.completions.create(model="openai/gpt-5.5", prompt=prompt)
    assert [c.text for c in completion.choices] == [f" answer {i}" for i in range(choices)]
    assert upstream.last.path == "/v1/completions"
    assert upstream.last.body["prompt"] == prompt


async def test_a_router_with_providers_only_is_ready(http: httpx.AsyncClient) -> None:
    ready = await http.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "engines": {}}
