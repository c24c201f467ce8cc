"""The router's HTTP API, driven by the official OpenAI SDK, in front of real engines;
and in front of stand-ins that stall, for a client that leaves before the first token."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import openai
import pytest
from inprocess_grpc import serve_in_process
from prometheus_client.parser import text_string_to_metric_families
from router_harness import KEYS, MAX_BODY_BYTES, free_port, metric_total, serve_router
from stalling_upstream import STREAM_HEADERS_AND_ROLE, StallingUpstream

from switchyard.api.client import EngineClient
from switchyard.api.v1 import engine_pb2, engine_pb2_grpc
from switchyard.router.config import parse_config

pytestmark = pytest.mark.timeout(900)

SMOLLM = "switchyard/smollm2-135m-instruct"
GEMMA = "switchyard/gemma-3-270m"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
async def client(router_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=router_url + "/v1", api_key=KEYS[1], max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def http(router_url: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {KEYS[0]}"}
    async with httpx.AsyncClient(base_url=router_url, headers=headers) as http:
        yield http


async def test_chat_knows_the_capital_of_france(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model=SMOLLM, messages=FRANCE, temperature=0, max_tokens=32
    )
    assert completion.object == "chat.completion"
    assert completion.model == SMOLLM
    choice = completion.choices[0]
    assert "Paris" in choice.message.content
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


async def test_stream_matches_the_non_streaming_answer(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(
        model="smollm2-135m-instruct", messages=FRANCE, temperature=0, max_tokens=32
    )
    stream = await client.chat.completions.create(
        model=SMOLLM,
        messages=FRANCE,
        temperature=0,
        max_tokens=32,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.id for c in chunks} == {chunks[0].id}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and not any(finishes[:-1])
    assert not chunks[-1].choices
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


async def test_stream_ends_with_done(http: httpx.AsyncClient) -> None:
    body = {"model": SMOLLM, "messages": FRANCE, "max_tokens": 4, "stream": True}
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


async def test_models_lists_both_engines(client: openai.AsyncOpenAI) -> None:
    models = [model.id async for model in client.models.list()]
    assert sorted(models) == [GEMMA, SMOLLM]


async def test_completions_on_the_base_model(client: openai.AsyncOpenAI) -> None:
    completion = await client.completions.create(
        model=GEMMA, prompt="def fibonacci(n):", max_tokens=48, temperature=0
    )
    assert completion.object == "text_completion"
    assert "return" in completion.choices[0].text
    listed = await client.completions.create(
        model="gemma-3-270m", prompt=["def fibonacci(n):"], max_tokens=48, temperature=0
    )
    assert listed.choices[0].text == completion.choices[0].text


async def test_streamed_completion_with_logprobs(client: openai.AsyncOpenAI) -> None:
    stream = await client.completions.create(
        model=GEMMA,
        prompt="The capital of France is",
        max_tokens=5,
        temperature=0,
        logprobs=2,
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    tokens = [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.tokens]
    assert len(tokens) == 5
    assert "".join(tokens) == "".join(c.choices[0].text for c in chunks)


async def test_chat_logprobs(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model=SMOLLM, messages=FRANCE, temperature=0, max_tokens=6, logprobs=True, top_logprobs=2
    )
    entries = completion.choices[0].logprobs.content
    assert len(entries) == completion.usage.completion_tokens
    for entry in entries:
        assert len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].token == entry.token
        assert entry.logprob <= 0


async def test_max_completion_tokens_is_respected(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model=SMOLLM,
        messages=[{"role": "user", "content": "Tell me a long story about a dragon."}],
        temperature=0,
        max_completion_tokens=5,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5


async def test_ignore_eos_runs_to_max_tokens(client: openai.AsyncOpenAI) -> None:
    """The capital question ends after a few tokens on its own; with vLLM's ignore_eos
    extension it runs to exactly max_tokens."""
    request = dict(
        model=SMOLLM,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=40,
    )
    natural = await client.chat.completions.create(**request)
    assert natural.choices[0].finish_reason == "stop"
    assert natural.usage.completion_tokens < 40
    forced = await client.chat.completions.create(**request, extra_body={"ignore_eos": True})
    assert forced.choices[0].finish_reason == "length"
    assert forced.usage.completion_tokens == 40


async def test_repeated_prefix_reports_cached_tokens(client: openai.AsyncOpenAI) -> None:
    rules = " ".join(f"Rule {i}: answer briefly and politely." for i in range(60))
    usages = []
    for question in ("What is 2+2?", "What is 3+3?"):
        completion = await client.chat.completions.create(
            model=SMOLLM,
            messages=[{"role": "system", "content": rules}, {"role": "user", "content": question}],
            temperature=0,
            max_tokens=4,
        )
        usages.append(completion.usage)
    assert usages[0].prompt_tokens > 300
    assert usages[1].prompt_tokens_details.cached_tokens > 0


async def test_missing_or_wrong_key_is_401(router_url: str) -> None:
    async with openai.AsyncOpenAI(
        base_url=router_url + "/v1", api_key="wrong", max_retries=0
    ) as wrong:
        with pytest.raises(openai.AuthenticationError):
            await wrong.chat.completions.create(model=SMOLLM, messages=FRANCE)
    async with httpx.AsyncClient(base_url=router_url) as anonymous:
        response = await anonymous.post("/v1/chat/completions", json={})
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert (await anonymous.get("/v1/models")).status_code == 401


async def test_unknown_model_is_404(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as error:
        await client.chat.completions.create(model="switchyard/nope", messages=FRANCE)
    assert error.value.param == "model"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"temperature": -1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"stream": "true"}, "stream"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "s"}}},
            "response_format",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": "s"}},
            "response_format.json_schema",
        ),
    ],
)
async def test_invalid_requests_are_400_naming_the_field(
    client: openai.AsyncOpenAI, extra: dict, param: str
) -> None:
    request = {"model": SMOLLM, "messages": FRANCE, "max_tokens": 4}
    with pytest.raises(openai.BadRequestError) as error:
        await client.chat.completions.create(**request, extra_body=extra)
    assert error.value.param == param


@pytest.mark.parametrize("stream", [False, True])
async def test_fields_first_party_models_cannot_honour_are_refused_by_name(
    client: openai.AsyncOpenAI, stream: bool
) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as error:
        await client.chat.completions.create(
            model=SMOLLM, messages=FRANCE, max_tokens=4, tools=[tool], stream=stream
        )
    assert error.value.param == "tools"
    assert "tools is not supported by first-party models" in error.value.message
    with pytest.raises(openai.BadRequestError) as error:
        await client.completions.create(model=GEMMA, prompt=["a", "b"], max_tokens=4)
    assert error.value.param == "prompt"


async def test_completion_from_token_ids(client: openai.AsyncOpenAI, gemma_tokenizer) -> None:
    """A prompt of token ids reaches the engine as ids: the same answer as its text,
    which the engine tokenizes the same way (special tokens included)."""
    prompt = "def fibonacci(n):"
    ids = gemma_tokenizer(prompt).input_ids
    from_text = await client.completions.create(
        model=GEMMA, prompt=prompt, max_tokens=12, temperature=0
    )
    from_ids = await client.completions.create(
        model=GEMMA, prompt=ids, max_tokens=12, temperature=0
    )
    assert from_ids.choices[0].text == from_text.choices[0].text
    assert from_ids.usage.prompt_tokens == len(ids) == from_text.usage.prompt_tokens
    with pytest.raises(openai.BadRequestError) as error:
        await client.completions.create(model=GEMMA, prompt=[10**9], max_tokens=4)
    assert error.value.param == "prompt"
    assert "outside the vocabulary" in error.value.message


async def test_engine_refusal_of_a_stream_is_400_before_it_starts(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        await client.chat.completions.create(
            model=SMOLLM, messages=FRANCE, temperature=-1, stream=True
        )
    assert error.value.param == "temperature"


async def test_replicas_are_counted_under_the_engine_provider(engine_processes: dict) -> None:
    """Two replicas of one model (here one engine listed twice) go through the replica
    policy; the request's series are labelled with the provider that served it."""
    target = engine_processes["smollm2-135m-instruct"].target
    config = parse_config(
        {"engines": [{"name": "a", "target": target}, {"name": "b", "target": target}]}
    )
    async with serve_router(config, insecure_no_auth=True) as url, httpx.AsyncClient() as http:
        deadline = time.monotonic() + 30
        while (await http.get(url + "/ready")).status_code != 200:
            assert time.monotonic() < deadline, "the router never became ready"
            await asyncio.sleep(0.1)
        body = {"model": SMOLLM, "messages": FRANCE, "max_tokens": 2}
        response = await http.post(url + "/v1/chat/completions", json=body, timeout=120)
        assert response.status_code == 200
        assert len(response.json()["metadata"]["attempts"]) == 1  # went the replica way
        text = (await http.get(url + "/metrics")).text
    providers = {
        sample.labels["provider"]
        for family in text_string_to_metric_families(text)
        if family.name == "switchyard_router_request_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_count") and sample.labels["model"] == SMOLLM
    }
    assert providers == {"switchyard"}


async def test_malformed_json_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/chat/completions", content=b'{"model": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_oversized_body_is_413(http: httpx.AsyncClient) -> None:
    content = "x" * (MAX_BODY_BYTES + 1)
    response = await http.post(
        "/v1/chat/completions",
        json={"model": SMOLLM, "messages": [{"role": "user", "content": content}]},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def _engine_holds(engine: EngineClient, request_id: str) -> bool:
    """Whether the engine still runs ``request_id``, asked without disturbing it: the
    engine refuses a second request under a running id (ALREADY_EXISTS), and a free id
    costs one token. Unlike a count of running requests, no other test's traffic can
    change the answer."""
    try:
        await engine.complete(text="probe", max_tokens=1, request_id=request_id)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.ALREADY_EXISTS:
            return True
        raise
    return False


async def test_client_disconnect_aborts_the_engine_request(
    http: httpx.AsyncClient, gemma: EngineClient
) -> None:
    # ignore_eos: the request surely runs until max_tokens, minutes on this machine.
    body = {
        "model": GEMMA,
        "prompt": "1, 2, 3, 4, 5,",
        "max_tokens": 1500,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
    }
    async with http.stream("POST", "/v1/completions", json=body) as response:
        # Held, not broken out of: a dropped line iterator is closed when collected,
        # which would close the connection before the checks below.
        lines = response.aiter_lines()
        events = []
        while len(events) < 4:
            line = await anext(lines)
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
        # The completion id is the engine's request id behind a "cmpl-" prefix.
        request_id = events[0]["id"].removeprefix("cmpl-")
        assert await _engine_holds(gemma, request_id)
    deadline = time.monotonic() + 10.0
    while await _engine_holds(gemma, request_id):
        assert time.monotonic() < deadline, "the engine still runs the abandoned request"
        await asyncio.sleep(0.05)


# A client that leaves before the first token: only the router letting go closes the
# stand-ins' connections within LET_GO_WITHIN_S, as their timeout is STAND_IN_TIMEOUT_S
# (long beside it, short enough that a router that holds on fails the test, not hangs it).
LET_GO_WITHIN_S = 2.0
STAND_IN_TIMEOUT_S = 30


async def send_and_leave(router_url: str, body: dict, reached: asyncio.Event) -> None:
    """Send ``body`` on a connection of its own and close it, unread, once ``reached``
    says the request got to the engine or provider."""
    host, port = router_url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    payload = json.dumps(body).encode()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\n"
        b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (KEYS[0].encode(), len(payload), payload)
    )
    await writer.drain()
    await asyncio.wait_for(reached.wait(), 30)
    writer.close()
    await writer.wait_closed()


def stalling_provider_config(upstream_url: str) -> dict:
    """One provider at ``upstream_url``, asked directly or through the named router
    ``router/stall``."""
    only = {"id": "only", "model": "openai/gpt-5.5", "weight": 100}
    return {
        "auth": {"keys": [KEYS[0]]},
        "providers": {
            "openai": {
                "base_url": upstream_url + "/v1",
                "models": ["gpt-5.5"],
                "timeout_s": STAND_IN_TIMEOUT_S,
            }
        },
        "routers": {"stall": {"default_route": {"variants": [only]}}},
    }


@pytest.mark.parametrize(
    ("model", "stream", "preamble"),
    [
        ("openai/gpt-5.5", True, b""),
        ("openai/gpt-5.5", True, STREAM_HEADERS_AND_ROLE),
        ("openai/gpt-5.5", False, b""),
        ("router/stall", True, b""),
        ("router/stall", True, STREAM_HEADERS_AND_ROLE),
        ("router/stall", False, b""),
    ],
    ids=[
        "direct-stream-no-headers",
        "direct-stream-no-token",
        "direct-whole",
        "routed-stream-no-headers",
        "routed-stream-no-token",
        "routed-whole",
    ],
)
async def test_a_client_that_leaves_before_the_first_token_closes_the_provider_connection(
    model: str, stream: bool, preamble: bytes
) -> None:
    async with StallingUpstream(preamble).serving() as upstream:
        config = parse_config(stalling_provider_config(upstream.url))
        async with serve_router(config, environ={"OPENAI_API_KEY": "sk-stall"}) as url:
            body = {"model": model, "messages": FRANCE, "stream": stream}
            await send_and_leave(url, body, upstream.request_read)
            await asyncio.wait_for(upstream.closed.wait(), LET_GO_WITHIN_S)
            assert upstream.requests == 1
            assert await metric_total(url, "switchyard_router_requests_total", status="499") == 1


class StallingEngine(engine_pb2_grpc.EngineServicer):
    """An engine that serves a model and takes every request without ever answering."""

    def __init__(self) -> None:
        self.generating = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def GetModelInfo(self, request, context) -> engine_pb2.ModelInfo:
        return engine_pb2.ModelInfo(served_model_name="stalling")

    async def Generate(self, request, context) -> None:
        # A coroutine that never writes: a stream that has not sent its first chunk.
        self.generating.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_a_client_that_leaves_before_the_first_token_cancels_the_engine_call(
    stream: bool,
) -> None:
    engine = StallingEngine()
    async with serve_in_process(engine) as (target, _):
        config = parse_config(
            {
                "auth": {"keys": [KEYS[0]]},
                "engines": [{"target": target}],
                "request_timeout_s": STAND_IN_TIMEOUT_S,
            }
        )
        async with serve_router(config) as url, httpx.AsyncClient(base_url=url) as http:
            headers = {"Authorization": f"Bearer {KEYS[0]}"}
            deadline = time.monotonic() + 30
            while "switchyard/stalling" not in (await http.get("/v1/models", headers=headers)).text:
                assert time.monotonic() < deadline, "the router never learnt the engine's model"
                await asyncio.sleep(0.05)
            body = {"model": "switchyard/stalling", "messages": FRANCE, "stream": stream}
            await send_and_leave(url, body, engine.generating)
            await asyncio.wait_for(engine.cancelled.wait(), LET_GO_WITHIN_S)
            assert await metric_total(url, "switchyard_router_requests_total", status="499") == 1


async def test_health_and_ready(http: httpx.AsyncClient) -> None:
    assert (await http.get("/health")).json() == {"status": "ok"}
    ready = await http.get("/ready")
    assert ready.status_code == 200
    assert set(ready.json()["engines"].values()) == {"serving"}


async def test_ready_is_503_naming_a_dead_engine(engine_processes: dict, smollm: EngineClient):
    dead = f"127.0.0.1:{free_port()}"
    config = parse_config(
        {
            "engines": [
                {"name": "live", "target": engine_processes["smollm2-135m-instruct"].target},
                {"name": "dead", "target": dead},
            ]
        }
    )
    async with serve_router(config, insecure_no_auth=True) as url, httpx.AsyncClient() as http:
        assert (await http.get(url + "/health")).status_code == 200
        ready = await http.get(url + "/ready")
        assert ready.status_code == 503
        assert ready.json()["engines"]["dead"] == "not serving"


async def test_dropped_non_streaming_request_is_aborted(
    http: httpx.AsyncClient, gemma: EngineClient
) -> None:
    body = {"model": GEMMA, "prompt": "1, 2, 3, 4, 5,", "max_tokens": 1500, "ignore_eos": True}
    request = asyncio.create_task(http.post("/v1/completions", json=body))
    deadline = time.monotonic() + 10.0
    while (loads := await gemma.loads()).running_requests < 1:
        assert time.monotonic() < deadline, f"the request never reached the engine: {loads}"
        await asyncio.sleep(0.05)
    request.cancel()  # closes the connection mid-request
    with pytest.raises(asyncio.CancelledError):
        await request
    deadline = time.monotonic() + 10.0
    loads = await gemma.loads()
    while loads.running_requests and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        loads = await gemma.loads()
    assert loads.running_requests == 0


async def test_metrics_show_first_party_requests_and_engine_loads(
    client: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    await client.chat.completions.create(model=SMOLLM, messages=FRANCE, max_tokens=4)
    text = (await http.get("/metrics")).text
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    smollm = (("model", SMOLLM), ("provider", "switchyard"))
    ok = tuple(sorted((*smollm, ("endpoint", "chat"), ("status", "200"))))
    assert values[("switchyard_router_requests_total", ok)] >= 1
    completion = tuple(sorted((*smollm, ("direction", "completion"))))
    assert values[("switchyard_router_tokens_total", completion)] >= 4
    queries = {
        dict(labels)["model_name"]: value
        for (name, labels), value in values.items()
        if name == "vllm:prefix_cache_queries_total"
    }
    assert queries["smollm2-135m-instruct"] > 0
    assert queries["gemma-3-270m"] > 0
