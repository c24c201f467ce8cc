"""Anthropic Messages behind the router: every translation row, both directions."""

from __future__ import annotations

import json

import anthropic
import openai
import pydantic
import pytest
from fake_upstream import FakeUpstream, Reply
from provider_payloads import anthropic_error, anthropic_frame, anthropic_message, anthropic_stream
from router_harness import metric_total

from switchyard.router.errors import APIError
from switchyard.router.openai_types import ChatCompletionRequest
from switchyard.router.providers.anthropic import DEFAULT_MAX_TOKENS, Anthropic

MODEL = "anthropic/claude-opus-4-7"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TOOL_TURNS = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": "Use tools."},
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "toolu_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
    {"role": "tool", "tool_call_id": "toolu_2", "content": "24C"},
]


def translate(**body: object) -> dict:
    body = {"model": MODEL, **body}
    return Anthropic().request(body, ChatCompletionRequest.model_validate(body), "claude-opus-4-7")


def test_payloads_here_are_what_the_anthropic_sdk_accepts() -> None:
    """The stand-in's payloads parse with Anthropic's own SDK types, so translating them
    is translating what the real API sends."""
    anthropic.types.Message.model_validate(
        anthropic_message([{"type": "text", "text": "hi"}], cache_read_input_tokens=3)
    )
    events = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)
    tool = {"id": "toolu_9", "name": "f", "json": ['{"a"', ": 1}"]}
    for frame in anthropic_stream([{"text": "hello"}, tool], "tool_use"):
        data = json.loads(frame.split("data: ", 1)[1])
        if data["type"] != "ping":
            events.validate_python(data)


def test_system_tools_and_tool_results() -> None:
    payload = translate(messages=TOOL_TURNS, tools=[WEATHER_TOOL], tool_choice="required")
    assert payload["system"] == "Be brief.\n\nUse tools."
    assert payload["max_tokens"] == DEFAULT_MAX_TOKENS
    assert payload["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert payload["tool_choice"] == {"type": "any"}
    user, assistant, results = payload["messages"]
    assert user == {
        "role": "user",
        "content": [{"type": "text", "text": "Weather in Paris and Rome?"}],
    }
    assert assistant["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    # Both results in one user turn: Anthropic requires the roles to alternate.
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24C"},
        ],
    }


def test_sampling_fields_and_images() -> None:
    payload = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ],
        max_completion_tokens=77,
        temperature=0.3,
        top_p=0.8,
        stop="END",
        user="user-42",
        seed=5,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
    )
    assert payload["max_tokens"] == 77
    assert (payload["temperature"], payload["top_p"]) == (0.3, 0.8)
    assert payload["stop_sequences"] == ["END"]
    assert payload["metadata"] == {"user_id": "user-42"}
    assert payload["tool_choice"] == {
        "type": "tool",
        "name": "get_weather",
        "disable_parallel_tool_use": True,
    }
    assert "seed" not in payload and "system" not in payload
    text, inline, remote = payload["messages"][0]["content"]
    assert text == {"type": "text", "text": "What is this?"}
    assert inline["source"] == {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    assert remote["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"n": 2}, "n"),
        ({"logit_bias": {"1": -100}}, "logit_bias"),
        ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "t",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{oops"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_untranslatable_requests_are_400_naming_the_field(fields: dict, param: str) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], **fields}
    with pytest.raises(APIError) as error:
        translate(**body)
    assert error.value.status == 400
    assert error.value.param == param


async def test_response_with_text_tool_use_and_cache_usage(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, provider_keys: dict[str, str]
) -> None:
    content = [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_7", "name": "get_weather", "input": {"city": "Oslo"}},
    ]
    upstream.queue(
        Reply(
            body=anthropic_message(
                content,
                "tool_use",
                input_tokens=10,
                cache_read_input_tokens=100,
                cache_creation_input_tokens=20,
                output_tokens=9,
            )
        )
    )
    completion = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Oslo?"}], tools=[WEATHER_TOOL]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name) == ("toolu_7", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (130, 9, 139)
    assert usage.prompt_tokens_details.cached_tokens == 100
    assert usage.prompt_tokens_details.model_extra["cache_creation_tokens"] == 20
    sent = upstream.last
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == provider_keys["ANTHROPIC_API_KEY"]
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
async def test_stop_reasons(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, stop_reason: str, finish: str
) -> None:
    upstream.queue(Reply(body=anthropic_message([{"type": "text", "text": "x"}], stop_reason)))
    completion = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}]
    )
    assert completion.choices[0].finish_reason == finish


async def test_stream_of_text_and_tool_use(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    tool = {"id": "toolu_3", "name": "get_weather", "json": ['{"ci', 'ty": "Lima"}']}
    upstream.queue(Reply(frames=anthropic_stream([{"text": "Let me check."}, tool], "tool_use")))
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Lima?"}],
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == "Let me check."
    calls = [call for d in deltas for call in d.tool_calls or ()]
    assert calls[0].id == "toolu_3" and calls[0].function.name == "get_weather"
    assert {call.index for call in calls} == {0}
    assert json.loads("".join(c.function.arguments or "" for c in calls)) == {"city": "Lima"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (29, 15)
    assert usage.prompt_tokens_details.cached_tokens == 4
    assert upstream.last.body["stream"] is True


async def test_error_event_ends_the_stream_with_an_error(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    frames = anthropic_stream([{"text": "Partial answer"}], end=False)
    frames.append(anthropic_frame(anthropic_error("overloaded_error", "Overloaded")))
    upstream.queue(Reply(frames=frames))
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    text = ""
    with pytest.raises(openai.APIError) as error:
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
    assert text == "Partial answer"
    assert "Overloaded" in error.value.message


@pytest.mark.parametrize(
    ("status", "error_type", "router_status"),
    [
        (400, "invalid_request_error", 400),
        (413, "request_too_large", 400),
        (429, "rate_limit_error", 429),
        (500, "api_error", 502),
        (529, "overloaded_error", 503),
    ],
)
async def test_error_bodies(
    client: openai.AsyncOpenAI,
    upstream: FakeUpstream,
    status: int,
    error_type: str,
    router_status: int,
) -> None:
    upstream.queue(Reply(status=status, body=anthropic_error(error_type, f"the {error_type}")))
    with pytest.raises(openai.APIStatusError) as error:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert error.value.status_code == router_status
    assert f"anthropic: the {error_type}" in error.value.message


async def test_completions_endpoint_is_refused(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        await client.completions.create(model=MODEL, prompt="hi")
    assert "/v1/chat/completions" in error.value.message


async def test_429_passes_anthropics_retry_after_header_on(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    # Anthropic spells its headers in lower case; the router answers with Retry-After.
    upstream.queue(
        Reply(
            status=429,
            body=anthropic_error("rate_limit_error", "Number of requests exceeds the limit"),
            headers={"retry-after": "12", "anthropic-ratelimit-requests-remaining": "0"},
        )
    )
    with pytest.raises(openai.RateLimitError) as error:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert error.value.response.headers["retry-after"] == "12"


async def test_n_above_one_is_refused_before_anthropic_is_asked(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    sent = len(upstream.received)
    with pytest.raises(openai.BadRequestError) as error:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], n=2
        )
    assert error.value.param == "n"
    assert "n is not supported by anthropic models" in error.value.message
    assert len(upstream.received) == sent


async def test_stream_usage_counts_sent_as_null_keep_their_earlier_values(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, router_url: str
) -> None:
    """Anthropic's schema lets ``message_delta.usage`` send a count as null (some proxies
    do); like Anthropic's SDK, the router keeps the count ``message_start`` gave."""
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": None,
            "cache_creation_input_tokens": None,
            "cache_read_input_tokens": None,
            "output_tokens": 15,
        },
    }
    anthropic.types.RawMessageDeltaEvent.model_validate(delta)
    frames = anthropic_stream([{"text": "Hello"}], end=False)
    frames += [anthropic_frame(delta), anthropic_frame({"type": "message_stop"})]
    upstream.queue(Reply(frames=frames))
    before = await metric_total(
        router_url, "switchyard_router_tokens_total", direction="prompt", model=MODEL
    )
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [chunk async for chunk in stream][-1].usage
    # message_start (see anthropic_stream): 25 input tokens and 4 read from the cache.
    assert (usage.prompt_tokens, usage.completion_tokens) == (29, 15)
    assert usage.prompt_tokens_details.cached_tokens == 4
    assert (
        await metric_total(
            router_url, "switchyard_router_tokens_total", direction="prompt", model=MODEL
        )
        - before
        == 29
    )


@pytest.mark.parametrize("partials", [[""], []], ids=["one-empty-delta", "no-delta"])
async def test_a_tool_call_without_input_has_parseable_arguments_streamed_or_not(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, partials: list[str]
) -> None:
    block = {"type": "tool_use", "id": "toolu_5", "name": "get_weather", "input": {}}
    upstream.queue(
        Reply(body=anthropic_message([block], "tool_use")),
        Reply(frames=anthropic_stream([{**block, "json": partials}], "tool_use")),
    )
    request = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Weather here?"}],
        "tools": [WEATHER_TOOL],
    }
    whole = await client.chat.completions.create(**request)
    stream = await client.chat.completions.create(**request, stream=True)
    deltas = [chunk.choices[0].delta async for chunk in stream if chunk.choices]
    calls = [call for delta in deltas for call in delta.tool_calls or ()]
    assert {call.index for call in calls} == {0}
    streamed = "".join(call.function.arguments or "" for call in calls)
    assert streamed == whole.choices[0].message.tool_calls[0].function.arguments
    assert json.loads(streamed) == {}
