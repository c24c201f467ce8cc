"""Google AI Studio (Gemini) behind the router: every translation row, both directions."""

from __future__ import annotations

import json

import openai
import pytest
from fake_upstream import FakeUpstream, Reply
from google.genai import types as genai
from provider_payloads import gemini_error, gemini_frame, gemini_response

from switchyard.router.errors import APIError
from switchyard.router.openai_types import ChatCompletionRequest
from switchyard.router.providers.google import SIGNATURE_SEPARATOR, Google

MODEL = "google-ai-studio/gemini-3.5-flash"
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a word up",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}},
    },
}


def translate(**body: object) -> dict:
    body = {"model": MODEL, **body}
    return Google().request(body, ChatCompletionRequest.model_validate(body), "gemini-3.5-flash")


def test_payloads_here_are_what_the_genai_sdk_accepts() -> None:
    """The stand-in's payloads parse with Google's own SDK types (which reject unknown
    fields), so translating them is translating what the real API sends."""
    parts = [{"text": "hi"}, {"functionCall": {"name": "lookup", "args": {"word": "x"}}}]
    parsed = genai.GenerateContentResponse.model_validate(gemini_response(parts))
    assert parsed.candidates[0].finish_reason == genai.FinishReason.STOP
    assert parsed.usage_metadata.cached_content_token_count == 3


def test_roles_system_tools_and_function_results() -> None:
    payload = translate(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Define 'cat'."},
            {
                "role": "assistant",
                "content": "Looking it up.",
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"word": "cat"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": '{"definition": "a feline"}'},
            {"role": "user", "content": "Thanks."},
        ],
        tools=[TOOL],
        tool_choice={"type": "function", "function": {"name": "lookup"}},
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        stop=["END"],
        seed=11,
        presence_penalty=0.5,
        frequency_penalty=0.25,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "s", "schema": {"type": "object"}},
        },
    )
    assert payload["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    user, model, results = payload["contents"]
    assert user == {"role": "user", "parts": [{"text": "Define 'cat'."}]}
    assert model == {
        "role": "model",
        "parts": [
            {"text": "Looking it up."},
            {"functionCall": {"name": "lookup", "args": {"word": "cat"}}},
        ],
    }
    # The result is named after the call it answers, and merged with the next user turn.
    assert results == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "lookup", "response": {"definition": "a feline"}}},
            {"text": "Thanks."},
        ],
    }
    assert payload["generationConfig"] == {
        "maxOutputTokens": 50,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END"],
        "seed": 11,
        "presencePenalty": 0.5,
        "frequencyPenalty": 0.25,
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
    }
    assert payload["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "lookup",
                    "description": "Look a word up",
                    "parameters": TOOL["function"]["parameters"],
                }
            ]
        }
    ]
    assert payload["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}
    }


def test_images_and_plain_tool_results() -> None:
    payload = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "plain text result"},
        ],
        tool_choice="none",
    )
    inline, remote = payload["contents"][0]["parts"]
    assert inline == {"inlineData": {"mimeType": "image/webp", "data": "UklGRg=="}}
    assert remote == {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a.png"}}
    assert payload["contents"][2]["parts"][0]["functionResponse"] == {
        "name": "lookup",
        "response": {"result": "plain text result"},
    }
    assert payload["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}
    assert "generationConfig" not in payload


@pytest.mark.parametrize(
    ("messages", "extra", "param"),
    [
        (
            [{"role": "tool", "tool_call_id": "nope", "content": "x"}],
            {},
            "messages[0].tool_call_id",
        ),
        ([{"role": "user", "content": "x"}], {"logprobs": True}, "logprobs"),
        ([{"role": "user", "content": "x"}], {"n": 2}, "n"),
        (
            [{"role": "user", "content": "x"}],
            {"response_format": {"type": "xml"}},
            "response_format",
        ),
    ],
)
def test_untranslatable_requests_are_400(messages: list, extra: dict, param: str) -> None:
    with pytest.raises(APIError) as error:
        translate(messages=messages, **extra)
    assert error.value.status == 400
    assert error.value.param == param


async def test_response_with_function_call_is_tool_calls(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, provider_keys: dict[str, str]
) -> None:
    parts = [
        {"text": "thinking...", "thought": True},
        {"functionCall": {"name": "lookup", "args": {"word": "dog"}}},
    ]
    upstream.queue(Reply(body=gemini_response(parts)))
    completion = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "dog?"}], tools=[TOOL]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"  # Gemini says STOP even for a call
    assert choice.message.content is None  # the thought summary is not the answer
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and len(call.id) > 10
    assert json.loads(call.function.arguments) == {"word": "dog"}
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (8, 12)  # thoughts count as output
    assert usage.prompt_tokens_details.cached_tokens == 3
    sent = upstream.last
    assert sent.path == "/v1beta/models/gemini-3.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == provider_keys["GEMINI_API_KEY"]


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
    ],
)
async def test_finish_reasons(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, reason: str, finish: str
) -> None:
    upstream.queue(Reply(body=gemini_response([{"text": "x"}], reason)))
    completion = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}]
    )
    assert completion.choices[0].finish_reason == finish
    assert completion.choices[0].message.content == "x"


async def test_blocked_prompt_is_an_empty_content_filter_reply(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.queue(
        Reply(
            body={
                "promptFeedback": {"blockReason": "SAFETY"},
                "usageMetadata": {"promptTokenCount": 4},
            }
        )
    )
    completion = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}]
    )
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.usage.prompt_tokens == 4


async def test_stream_with_crlf_frames_and_a_function_call(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    frames = [
        gemini_frame(gemini_response([{"text": "The answer"}], None, usage=False)),
        gemini_frame(gemini_response([{"text": " is:"}], None, usage=False)),
        gemini_frame(
            gemini_response([{"functionCall": {"name": "lookup", "args": {"word": "x"}}}])
        ),
    ]
    upstream.queue(Reply(frames=frames))
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == "The answer is:"
    calls = [call for d in deltas for call in d.tool_calls or ()]
    assert [(c.index, c.function.name) for c in calls] == [(0, "lookup")]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.total_tokens == 20
    assert upstream.last.path == "/v1beta/models/gemini-3.5-flash:streamGenerateContent"
    assert upstream.last.query == "alt=sse"


async def test_stream_without_a_finish_reason_ends_with_an_error(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.queue(
        Reply(frames=[gemini_frame(gemini_response([{"text": "cut"}], None, usage=False))])
    )
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError) as error:
        async for _ in stream:
            pass
    assert "ended the stream before it finished" in error.value.message


@pytest.mark.parametrize(
    ("status", "grpc_status", "router_status"),
    [(400, "INVALID_ARGUMENT", 400), (429, "RESOURCE_EXHAUSTED", 429), (503, "UNAVAILABLE", 503)],
)
async def test_error_bodies(
    client: openai.AsyncOpenAI,
    upstream: FakeUpstream,
    status: int,
    grpc_status: str,
    router_status: int,
) -> None:
    upstream.queue(
        Reply(status=status, body=gemini_error(status, grpc_status, f"it is {grpc_status}"))
    )
    with pytest.raises(openai.APIStatusError) as error:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert error.value.status_code == router_status
    assert f"google-ai-studio: it is {grpc_status}" in error.value.message


async def test_retry_delay_in_the_error_body_becomes_retry_after(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    body = gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for metric")
    body["error"]["details"] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaMetric": "generate_content_free_tier_requests"}],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "6.2s"},
    ]
    upstream.queue(Reply(status=429, body=body))
    with pytest.raises(openai.RateLimitError) as error:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    # Retry-After takes whole seconds: 6.2 s is 7, never sooner than Google asked.
    assert error.value.response.headers["retry-after"] == "7"


async def test_429_without_retry_info_has_no_retry_after(
    client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.queue(Reply(status=429, body=gemini_error(429, "RESOURCE_EXHAUSTED", "slow down")))
    with pytest.raises(openai.RateLimitError) as error:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert "retry-after" not in error.value.response.headers


@pytest.mark.parametrize("stream", [False, True])
async def test_thought_signatures_of_function_calls_come_back_next_turn(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, stream: bool
) -> None:
    """Gemini 3 refuses a history whose function calls lack the signatures it sent with
    them; the client only keeps the OpenAI tool calls, so the signature rides in the id."""
    signatures = ["CiQBcsjafE9tDb0XfOnl+8Q0cPMb/4Yk1n5w9w==", "EsYCAXLI2nyVy3rYIg=="]
    parts = [
        {"functionCall": {"name": "lookup", "args": {"word": w}}, "thoughtSignature": sig}
        for w, sig in zip(("cat", "dog"), signatures, strict=True)
    ]
    if stream:
        upstream.queue(Reply(frames=[gemini_frame(gemini_response(parts))]))
        chunks = [
            chunk
            async for chunk in await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "?"}], tools=[TOOL], stream=True
            )
        ]
        calls = [
            c for chunk in chunks if chunk.choices for c in chunk.choices[0].delta.tool_calls or ()
        ]
        tool_calls = [
            {"id": c.id, "type": "function", "function": c.function.model_dump()} for c in calls
        ]
    else:
        upstream.queue(Reply(body=gemini_response(parts)))
        first = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "?"}], tools=[TOOL]
        )
        tool_calls = [call.model_dump() for call in first.choices[0].message.tool_calls]
    assert [call["id"].startswith("call_") for call in tool_calls] == [True, True]
    assert all(SIGNATURE_SEPARATOR in call["id"] for call in tool_calls)

    # The second turn: the client sends the calls back as it got them, with results.
    upstream.queue(Reply(body=gemini_response([{"text": "A cat is a feline."}])))
    second = await client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "?"},
            {"role": "assistant", "content": None, "tool_calls": tool_calls},
            *(
                {"role": "tool", "tool_call_id": call["id"], "content": "an animal"}
                for call in tool_calls
            ),
        ],
        tools=[TOOL],
    )
    assert second.choices[0].message.content == "A cat is a feline."
    model_turn, results = upstream.last.body["contents"][1:]
    assert model_turn["role"] == "model"
    assert model_turn["parts"] == [
        {"functionCall": {"name": "lookup", "args": {"word": w}}, "thoughtSignature": sig}
        for w, sig in zip(("cat", "dog"), signatures, strict=True)
    ]
    assert [part["functionResponse"]["name"] for part in results["parts"]] == ["lookup"] * 2


def test_calls_without_a_signature_go_back_without_one() -> None:
    call = {"id": "call_abc", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    payload = translate(
        messages=[
            {"role": "user", "content": "?"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_abc", "content": "x"},
        ]
    )
    assert payload["contents"][1]["parts"] == [{"functionCall": {"name": "lookup", "args": {}}}]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_function_call_without_args_has_parseable_arguments(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, stream: bool
) -> None:
    parts = [{"functionCall": {"name": "lookup"}}]
    request = {"model": MODEL, "messages": [{"role": "user", "content": "?"}], "tools": [TOOL]}
    if stream:
        upstream.queue(Reply(frames=[gemini_frame(gemini_response(parts))]))
        chunks = await client.chat.completions.create(**request, stream=True)
        deltas = [chunk.choices[0].delta async for chunk in chunks if chunk.choices]
        calls = [call for delta in deltas for call in delta.tool_calls or ()]
        arguments = "".join(call.function.arguments or "" for call in calls)
    else:
        upstream.queue(Reply(body=gemini_response(parts)))
        completion = await client.chat.completions.create(**request)
        arguments = completion.choices[0].message.tool_calls[0].function.arguments
    assert arguments == "{}"


@pytest.mark.parametrize("stream", [False, True])
async def test_gemini_call_ids_come_back_on_the_call_and_on_its_response(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, stream: bool
) -> None:
    """Gemini requires a functionResponse to carry the id of the functionCall it answers
    when the call had one; the client only keeps the OpenAI tool call id."""
    parts = [
        {"functionCall": {"id": "fc-cat", "name": "lookup", "args": {"word": "cat"}}},
        {
            "functionCall": {"id": "fc-dog", "name": "lookup", "args": {"word": "dog"}},
            "thoughtSignature": "EsYCAXLI2nyVy3rYIg==",
        },
    ]
    genai.GenerateContentResponse.model_validate(gemini_response(parts))
    request = {"model": MODEL, "messages": [{"role": "user", "content": "?"}], "tools": [TOOL]}
    if stream:
        upstream.queue(Reply(frames=[gemini_frame(gemini_response(parts))]))
        chunks = await client.chat.completions.create(**request, stream=True)
        deltas = [chunk.choices[0].delta async for chunk in chunks if chunk.choices]
        tool_calls = [
            {"id": c.id, "type": "function", "function": c.function.model_dump()}
            for delta in deltas
            for c in delta.tool_calls or ()
        ]
    else:
        upstream.queue(Reply(body=gemini_response(parts)))
        first = await client.chat.completions.create(**request)
        tool_calls = [call.model_dump() for call in first.choices[0].message.tool_calls]
    assert len({call["id"] for call in tool_calls}) == 2

    upstream.queue(Reply(body=gemini_response([{"text": "Both are animals."}])))
    await client.chat.completions.create(
        **{
            **request,
            "messages": [
                *request["messages"],
                {"role": "assistant", "content": None, "tool_calls": tool_calls},
                # The results in the other order: each is matched by its id.
                *(
                    {"role": "tool", "tool_call_id": call["id"], "content": "an animal"}
                    for call in reversed(tool_calls)
                ),
            ],
        }
    )
    model_turn, results = upstream.last.body["contents"][1:]
    assert [part["functionCall"]["id"] for part in model_turn["parts"]] == ["fc-cat", "fc-dog"]
    assert model_turn["parts"][1]["thoughtSignature"] == "EsYCAXLI2nyVy3rYIg=="
    assert [part["functionResponse"]["id"] for part in results["parts"]] == ["fc-dog", "fc-cat"]
