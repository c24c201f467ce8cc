"""Request and response mapping, auth and error translation, without an engine."""

from __future__ import annotations

import grpc
import httpx
import pytest
from pydantic import ValidationError

from switchyard.api.v1 import engine_pb2
from switchyard.common.validation import field_path as validation_param
from switchyard.router.app import create_app
from switchyard.router.auth import InsecureConfigError, KeyChecker
from switchyard.router.config import parse_config
from switchyard.router.errors import APIError, from_rpc_error
from switchyard.router.openai_types import ChatCompletionRequest, CompletionRequest
from switchyard.router.providers.first_party import (
    chat_logprobs,
    chat_to_engine,
    completion_logprobs,
    completion_to_engine,
    finish_reason,
    usage,
)

HELLO = [{"role": "user", "content": "hi"}]


def chat(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": HELLO, **fields})


def test_chat_request_maps_every_sampling_field() -> None:
    request = chat(
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": t} for t in "ab"]},
            {"role": "assistant", "content": None},
        ],
        max_tokens=10,
        max_completion_tokens=7,
        temperature=0.5,
        top_p=0.9,
        seed=3,
        stop="END",
        presence_penalty=0.1,
        frequency_penalty=0.2,
        logprobs=True,
        top_logprobs=4,
        user="u",
        metadata={"k": "v"},
        tools=[],
    )
    message = chat_to_engine(request, "rid")
    assert message.request_id == "rid"
    assert [(m.role, m.content) for m in message.chat.messages] == [
        ("developer", "be brief"),
        ("user", "ab"),
        ("assistant", ""),
    ]
    sampling = message.sampling
    assert sampling.max_tokens == 7
    assert sampling.temperature == pytest.approx(0.5)
    assert sampling.top_p == pytest.approx(0.9)
    assert sampling.seed == 3
    assert list(sampling.stop) == ["END"]
    assert sampling.presence_penalty == pytest.approx(0.1)
    assert sampling.frequency_penalty == pytest.approx(0.2)
    assert sampling.logprobs == 4


def test_unset_fields_stay_unset_for_engine_defaults() -> None:
    sampling = chat_to_engine(chat(), "rid").sampling
    for field in ("temperature", "top_p", "max_tokens", "seed", "logprobs"):
        assert not sampling.HasField(field), field
    assert chat_to_engine(chat(logprobs=True), "rid").sampling.logprobs == 0


def test_completion_request_maps_prompt_and_logprobs() -> None:
    request = CompletionRequest.model_validate(
        {"model": "m", "prompt": ["def f():"], "logprobs": 2, "stop": ["a", "b"]}
    )
    message = completion_to_engine(request, "rid")
    assert message.text == "def f():"
    assert message.sampling.logprobs == 2
    assert list(message.sampling.stop) == ["a", "b"]


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        ({"n": 0}, "n", None),
        ({"messages": []}, "messages", None),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, None, None),
        ({"stop": ["a"] * 5}, "stop", "at most 4"),
        ({"top_logprobs": 21}, "top_logprobs", None),
    ],
)
def test_refused_chat_fields(fields: dict, param: str | None, message: str | None) -> None:
    with pytest.raises(ValidationError) as error:
        chat(**fields)
    first = error.value.errors()[0]
    if param is not None:
        assert validation_param(first["loc"]) == param
    if message is not None:
        assert message in first["msg"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": "5"}, "max_tokens"),
        ({"max_tokens": 5.0}, "max_tokens"),
        ({"stream": "true"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"temperature": "hot"}, "temperature"),
        ({"seed": "7"}, "seed"),
        ({"stop": 5}, "stop"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"logprobs": "true"}, "logprobs"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"logit_bias": {"50256": "-100"}}, "logit_bias.50256"),
        # Out of the engine's integer ranges: refused here, not when its request is built.
        ({"max_tokens": 1 << 31}, "max_tokens"),
        ({"max_completion_tokens": 1 << 40}, "max_completion_tokens"),
        ({"seed": 1 << 63}, "seed"),
    ],
)
def test_wrong_types_are_refused_not_coerced(fields: dict, param: str) -> None:
    with pytest.raises(ValidationError) as error:
        chat(**fields)
    assert validation_param(error.value.errors()[0]["loc"]) == param


def test_what_the_official_sdk_sends_is_accepted() -> None:
    """Integers where numbers are expected (``temperature=1``) are numbers, as in JSON."""
    request = chat(temperature=1, top_p=1, presence_penalty=0, logit_bias={"1": -100})
    assert request.temperature == 1.0 and isinstance(request.temperature, float)


@pytest.mark.parametrize("prompt", [[], "", [""], [[]], [-1], [1 << 32], [True], [1, "a"]])
def test_completion_prompt_must_be_text_or_token_ids(prompt: object) -> None:
    with pytest.raises(ValidationError) as error:
        CompletionRequest.model_validate({"model": "m", "prompt": prompt})
    assert validation_param(error.value.errors()[0]["loc"]).startswith("prompt")


def test_completion_prompt_forms() -> None:
    def prompts(prompt: object) -> list:
        return CompletionRequest.model_validate({"model": "m", "prompt": prompt}).prompts()

    assert prompts("a") == ["a"]
    assert prompts(["a", "b"]) == ["a", "b"]
    assert prompts([1, 2]) == [[1, 2]]
    assert prompts([[1, 2], [3]]) == [[1, 2], [3]]


def test_first_party_takes_a_token_id_prompt_but_one_prompt_only() -> None:
    def request(prompt: object) -> CompletionRequest:
        return CompletionRequest.model_validate({"model": "m", "prompt": prompt})

    assert list(completion_to_engine(request([5, 6, 7]), "rid").token_ids.ids) == [5, 6, 7]
    assert list(completion_to_engine(request([[5, 6]]), "rid").token_ids.ids) == [5, 6]
    for batch in (["a", "b"], [[1], [2]]):
        with pytest.raises(APIError) as error:
            completion_to_engine(request(batch), "rid")
        assert (error.value.status, error.value.param) == (400, "prompt")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "response_format"),
        ({"logit_bias": {"1": -100}}, "logit_bias"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ],
)
def test_first_party_refuses_fields_it_cannot_honour(fields: dict, param: str) -> None:
    with pytest.raises(APIError) as error:
        chat_to_engine(chat(**fields), "rid")
    assert (error.value.status, error.value.param) == (400, param)
    assert f"{param} is not supported by first-party models" in error.value.message


def test_first_party_ignores_fields_that_ask_for_nothing_or_only_tune() -> None:
    request = chat(
        n=1,
        tools=[],
        tool_choice="auto",
        response_format={"type": "text"},
        modalities=["text"],
        logit_bias={},
        parallel_tool_calls=True,
        store=True,
        service_tier="auto",
        prediction={"type": "content", "content": "x"},
        reasoning_effort="low",
    )
    assert chat_to_engine(request, "rid").chat.messages[0].content == "hi"


@pytest.mark.parametrize(("field", "value"), [("echo", True), ("suffix", "s"), ("best_of", 2)])
def test_first_party_completions_refuse_fields_it_cannot_honour(field: str, value: object) -> None:
    request = CompletionRequest.model_validate({"model": "m", "prompt": "p", field: value})
    with pytest.raises(APIError) as error:
        completion_to_engine(request, "rid")
    assert (error.value.status, error.value.param) == (400, field)


def test_finish_reasons_and_usage() -> None:
    complete = engine_pb2.Complete(
        finish_reason=engine_pb2.LENGTH,
        usage=engine_pb2.Usage(prompt_tokens=10, completion_tokens=3, cached_prompt_tokens=8),
    )
    assert finish_reason(complete) == "length"
    assert finish_reason(engine_pb2.Complete(finish_reason=engine_pb2.STOP)) == "stop"
    with pytest.raises(APIError) as error:
        finish_reason(engine_pb2.Complete(finish_reason=engine_pb2.ABORT))
    assert error.value.status == 503
    assert usage(complete) == {
        "prompt_tokens": 10,
        "completion_tokens": 3,
        "total_tokens": 13,
        "prompt_tokens_details": {"cached_tokens": 8},
    }


ENTRIES = [
    engine_pb2.TokenLogprob(
        token_id=1,
        logprob=-0.5,
        token="Pa",
        top=[engine_pb2.TopLogprob(token_id=1, logprob=-0.5, token="Pa")],
    ),
    engine_pb2.TokenLogprob(token_id=2, logprob=-1.0, token="é", top=[]),
]


def test_logprobs_in_openai_shapes() -> None:
    content = chat_logprobs(ENTRIES)["content"]
    assert content[0] == {
        "token": "Pa",
        "logprob": -0.5,
        "bytes": [80, 97],
        "top_logprobs": [{"token": "Pa", "logprob": -0.5, "bytes": [80, 97]}],
    }
    assert content[1]["bytes"] == [195, 169]
    legacy = completion_logprobs(ENTRIES, 5)
    assert legacy == {
        "tokens": ["Pa", "é"],
        "token_logprobs": [-0.5, -1.0],
        "top_logprobs": [{"Pa": -0.5}, {}],
        "text_offset": [5, 7],
    }


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "details", "status", "param"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "sampling.top_p: must be in (0.0, 1.0]", 400, "top_p"),
        (grpc.StatusCode.INVALID_ARGUMENT, "sampling.stop[0]: must not be empty", 400, "stop"),
        (grpc.StatusCode.INVALID_ARGUMENT, "something odd", 400, None),
        (grpc.StatusCode.UNAVAILABLE, "connect failed", 503, None),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "deadline", 504, None),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "full", 429, None),
        (grpc.StatusCode.INTERNAL, "engine error: KeyError: secret path", 502, None),
    ],
)
def test_engine_errors_map_to_statuses(
    code: grpc.StatusCode, details: str, status: int, param: str | None
) -> None:
    error = from_rpc_error(rpc_error(code, details))
    assert (error.status, error.param) == (status, param)
    if status >= 500:
        assert details not in error.message


def test_key_checker_accepts_any_configured_key() -> None:
    keys = KeyChecker(["k1", "k2"])
    keys.check(["Bearer k1"])
    keys.check(["bearer k2"])
    for header in ("", "Bearer", "Bearer k3", "Basic k1", "k1", "Bearer k1k2"):
        with pytest.raises(APIError) as error:
            keys.check([header])
        assert error.value.status == 401
    with pytest.raises(APIError) as error:
        keys.check([])
    assert error.value.status == 401
    KeyChecker([], insecure_no_auth=True).check([])
    with pytest.raises(InsecureConfigError):
        KeyChecker([])


async def test_app_refuses_to_build_without_keys() -> None:
    config = parse_config({"engines": [{"target": "127.0.0.1:1"}]})
    with pytest.raises(InsecureConfigError):
        create_app(config, environ={})
    assert create_app(config, environ={"SWITCHYARD_API_KEYS": "k"}) is not None


async def test_requests_refused_before_any_engine_is_asked() -> None:
    """Auth, body and model checks run in the router, with no engine behind it."""
    config = parse_config({"engines": [{"target": "127.0.0.1:1"}], "max_body_bytes": 100})
    app = create_app(config, environ={"SWITCHYARD_API_KEYS": "k"})
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": "Bearer k"}
    async with httpx.AsyncClient(transport=transport, base_url="http://router") as http:
        post = "/v1/chat/completions"
        assert (await http.post(post, json={})).status_code == 401
        response = await http.post(post, headers=headers, content=b"[")
        assert response.status_code == 400
        response = await http.post(post, headers=headers, content=b"{" + b" " * 200 + b"}")
        assert response.status_code == 413
        response = await http.post(post, headers=headers, json={"model": "x", "messages": HELLO})
        assert response.status_code == 404
        response = await http.post(post, headers=headers, json={"model": "x"})
        assert (response.status_code, response.json()["error"]["param"]) == (400, "messages")
        response = await http.get("/v1/nowhere")
        assert response.status_code == 404
        assert response.json()["error"]["message"]
        assert (await http.get(post)).status_code == 405
