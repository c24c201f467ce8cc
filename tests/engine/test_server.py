"""The engine's gRPC API against real vLLM engines serving the embedded models."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from types import SimpleNamespace

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from inprocess_grpc import serve_in_process
from vllm.exceptions import VLLMValidationError
from vllm.v1.engine.exceptions import EngineGenerateError

from switchyard.api.client import EngineClient, build_request
from switchyard.api.v1 import engine_pb2
from switchyard.engine.requests import ModelLimits
from switchyard.engine.server import EngineServicer, python_example

pytestmark = pytest.mark.timeout(900)

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


async def test_gemma_greedy_code_continuation(gemma: EngineClient) -> None:
    result = await gemma.complete(text="def fibonacci(n):", max_tokens=48, temperature=0)
    assert "return" in result.text
    assert result.complete.finish_reason in (engine_pb2.LENGTH, engine_pb2.STOP)
    assert result.complete.usage.completion_tokens == len(result.token_ids) > 0


async def test_smollm_chat_knows_the_capital_of_france(smollm: EngineClient) -> None:
    result = await smollm.complete(messages=FRANCE, max_tokens=32, temperature=0)
    assert "Paris" in result.text
    assert result.complete.finish_reason == engine_pb2.STOP
    # It stopped on the end-of-turn token, which is reported and not shown as text.
    assert result.complete.stop_token_id == 2
    assert "<|im_end|>" not in result.text


async def test_gemma_text_input_gets_bos(gemma: EngineClient, gemma_tokenizer) -> None:
    prompt = "The capital of France is"
    result = await gemma.complete(text=prompt, max_tokens=4, temperature=0)
    expected = gemma_tokenizer(prompt).input_ids
    assert expected[0] == gemma_tokenizer.bos_token_id
    assert result.complete.usage.prompt_tokens == len(expected)


async def test_token_ids_and_text_agree_with_the_tokenizer(
    smollm: EngineClient, smollm_tokenizer
) -> None:
    prompt = "Write one sentence about the sea."
    ids = smollm_tokenizer(prompt).input_ids
    by_text = await smollm.complete(text=prompt, max_tokens=24, temperature=0)
    by_ids = await smollm.complete(token_ids=ids, max_tokens=24, temperature=0)
    assert by_text.complete.usage.prompt_tokens == len(ids)
    assert by_text.token_ids == by_ids.token_ids
    assert by_text.text == by_ids.text
    assert smollm_tokenizer.decode(by_text.token_ids, skip_special_tokens=True) == by_text.text


async def test_same_seed_same_sample(smollm: EngineClient) -> None:
    kwargs = dict(text="Once upon a time", max_tokens=24, temperature=1.0, top_p=0.95)
    first = await smollm.complete(seed=1234, **kwargs)
    second = await smollm.complete(seed=1234, **kwargs)
    assert first.token_ids == second.token_ids
    others = [await smollm.complete(seed=seed, **kwargs) for seed in (1, 2, 3)]
    # Sampling is on: across four seeds at least two continuations differ.
    assert len({tuple(r.token_ids) for r in [first, *others]}) > 1


async def test_eight_concurrent_streams_complete(smollm: EngineClient) -> None:
    prompts = [f"Count from {i} to {i + 20}:" for i in range(8)]
    results = await asyncio.gather(
        *(smollm.complete(text=p, max_tokens=16, temperature=0, ignore_eos=True) for p in prompts)
    )
    for result in results:
        assert result.complete.finish_reason == engine_pb2.LENGTH
        assert result.complete.usage.completion_tokens == 16 == len(result.token_ids)
    assert len({r.request_id for r in results}) == 8


async def test_cancelled_stream_is_aborted_in_the_engine(smollm: EngineClient) -> None:
    stream = smollm.generate(text="Tell me a long story.", max_tokens=1500, ignore_eos=True)
    chunks = 0
    async for response in stream:
        chunks += response.HasField("chunk")
        if chunks == 3:
            break
    await stream.aclose()
    deadline = time.monotonic() + 1.0
    loads = await smollm.loads()
    while loads.running_requests and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        loads = await smollm.loads()
    assert loads.running_requests == 0
    assert loads.waiting_requests == 0


async def test_abort_rpc_ends_the_stream_with_abort(smollm: EngineClient) -> None:
    request = build_request(
        text="Tell me a long story.", max_tokens=1500, ignore_eos=True, request_id="abort-me"
    )
    responses = []

    async def consume() -> None:
        async for response in smollm.stream(request):
            responses.append(response)

    task = asyncio.create_task(consume())
    while not responses:
        await asyncio.sleep(0.02)
    assert await smollm.abort("abort-me", "no-such-request") == ["abort-me"]
    await asyncio.wait_for(task, timeout=5)
    final = responses[-1]
    assert final.HasField("complete")
    assert final.complete.finish_reason == engine_pb2.ABORT
    assert final.complete.usage.completion_tokens < 1500


async def test_duplicate_running_request_id_is_refused(smollm: EngineClient) -> None:
    request = build_request(
        text="Tell me a long story.", max_tokens=1500, ignore_eos=True, request_id="twice"
    )
    first = smollm.stream(request)
    await anext(first)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await smollm.complete(text="hi", max_tokens=2, request_id="twice")
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS
    await first.aclose()


async def test_repeated_long_prefix_is_served_from_cache(smollm: EngineClient) -> None:
    prefix = " ".join(f"Rule {i}: answer briefly and politely." for i in range(60))
    first = await smollm.complete(
        text=prefix + " Question: what is 2+2?", max_tokens=4, temperature=0
    )
    second = await smollm.complete(
        text=prefix + " Question: what is 3+3?", max_tokens=4, temperature=0
    )
    assert first.complete.usage.prompt_tokens > 300
    assert second.complete.usage.cached_prompt_tokens > 0
    loads = await smollm.loads()
    assert loads.prefix_cache_hits >= second.complete.usage.cached_prompt_tokens
    assert loads.prefix_cache_queries >= loads.prefix_cache_hits


async def test_stop_string_is_reported_and_cut(smollm: EngineClient) -> None:
    result = await smollm.complete(text="1, 2, 3, 4, 5,", max_tokens=40, temperature=0, stop=["8"])
    assert result.complete.finish_reason == engine_pb2.STOP
    assert result.complete.stop_str == "8"
    assert "8" not in result.text
    assert "7" in result.text


async def test_logprobs_top_k(smollm: EngineClient) -> None:
    result = await smollm.complete(
        text="The capital of France is", max_tokens=5, temperature=0, logprobs=3
    )
    assert len(result.logprobs) == len(result.token_ids) == 5
    for entry, token_id in zip(result.logprobs, result.token_ids, strict=True):
        assert entry.token_id == token_id
        assert len(entry.top) == 3
        ranked = [t.logprob for t in entry.top]
        assert ranked == sorted(ranked, reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert entry.top[0].token_id == token_id
        assert entry.logprob == pytest.approx(entry.top[0].logprob)
        assert entry.logprob <= 0


async def test_model_info(gemma: EngineClient, gemma_tokenizer) -> None:
    info = await gemma.model_info()
    assert info.served_model_name == "gemma-3-270m"
    assert info.architecture == "Gemma3ForCausalLM"
    assert info.max_context_length == 2048
    assert info.vocab_size == 262144
    assert set(info.eos_token_ids) == {
        gemma_tokenizer.eos_token_id,
        gemma_tokenizer.convert_tokens_to_ids("<end_of_turn>"),
    }
    assert info.bos_token_id == gemma_tokenizer.bos_token_id
    assert info.dtype == "bfloat16"
    assert info.kv_cache_capacity_tokens > 2048
    assert info.has_chat_template


async def test_gemma_chat_uses_the_turn_format(gemma: EngineClient) -> None:
    result = await gemma.complete(messages=FRANCE, max_tokens=8, temperature=0)
    # <start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n, BOS first.
    assert result.complete.usage.prompt_tokens > 10
    assert result.complete.usage.completion_tokens > 0


BAD_REQUESTS = [
    (engine_pb2.GenerateRequest(), "input"),
    (build_request(text="", max_tokens=4), "input.text"),
    (build_request(token_ids=[], max_tokens=4), "input.token_ids"),
    (build_request(token_ids=[10**7], max_tokens=4), "input.token_ids"),
    (build_request(messages=[], max_tokens=4), "input.chat.messages"),
    (
        build_request(messages=[{"role": "wizard", "content": "hi"}], max_tokens=4),
        "input.chat.messages[0].role",
    ),
    (build_request(text="hi", max_tokens=0), "sampling.max_tokens"),
    (build_request(text="hi", max_tokens=-5), "sampling.max_tokens"),
    (build_request(text="hi", temperature=-0.5), "sampling.temperature"),
    (build_request(text="hi", temperature=math.inf), "sampling.temperature"),
    (build_request(text="hi", temperature=3.0), "sampling.temperature"),
    (build_request(text="hi", repetition_penalty=math.inf), "sampling.repetition_penalty"),
    (build_request(text="hi", presence_penalty=math.nan), "sampling.presence_penalty"),
    (build_request(text="hi", top_k=-2), "sampling.top_k"),
    (build_request(text="hi", min_p=math.inf), "sampling.min_p"),
    (build_request(text="hi", stop_token_ids=[10**7]), "sampling.stop_token_ids"),
    (build_request(text="hi", top_p=0.0), "sampling.top_p"),
    (build_request(text="hi", top_p=1.5), "sampling.top_p"),
    (build_request(text="hi", logprobs=100), "sampling.logprobs"),
    (build_request(text="hi", stop=[""]), "sampling.stop[0]"),
    (build_request(text="word " * 3000, max_tokens=4), "input.text"),
]


@pytest.mark.parametrize(
    ("request_message", "field"), BAD_REQUESTS, ids=[field for _, field in BAD_REQUESTS]
)
async def test_bad_input_is_invalid_argument(smollm: EngineClient, request_message, field) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        async for _ in smollm.stream(request_message):
            pass
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(field + ":")
    # ... and the server keeps serving.
    after = await smollm.complete(text="Hello", max_tokens=2, temperature=0)
    assert after.complete.usage.completion_tokens == 2


async def test_health_and_reflection(smollm: EngineClient) -> None:
    assert await smollm.is_serving()
    async with grpc.aio.insecure_channel(smollm.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for response in stub.ServerReflectionInfo(iter([request])):
            names = {s.name for s in response.list_services_response.service}
            break
    assert {"switchyard.engine.v1.Engine", "grpc.health.v1.Health"} <= names


async def test_engine_rpcs_are_unavailable_while_loading() -> None:
    """Before the model is loaded the port is open, health says NOT_SERVING and the
    engine RPCs answer UNAVAILABLE (no runtime is attached here)."""
    async with serve_in_process(EngineServicer()) as (target, _), EngineClient(target) as client:
        assert not await client.is_serving()
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await client.complete(text="hi", max_tokens=1)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await client.loads()
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE


class _FailingRuntime:
    """Enough of ModelRuntime for the servicer, whose vLLM raises ``error`` on every
    request: how each kind of failure reaches the client, without an engine."""

    tokenizer = None
    limits = ModelLimits(
        max_context_length=64, vocab_size=100, default_max_tokens=4, eos_token_ids=(2,)
    )
    llm = SimpleNamespace(errored=False)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def new_request_id(self, requested: str) -> str:
        return requested or "generated"

    async def generate(self, request_id, prepared):
        raise self.error
        yield  # an async generator, like the real one


def _wrapped(cause: Exception) -> EngineGenerateError:
    """What AsyncLLM.generate raises for an unexpected exception: the cause wrapped."""
    error = EngineGenerateError()
    error.__cause__ = cause
    return error


ENGINE_FAILURES = [
    (
        VLLMValidationError("top_k must be at least 1", parameter="top_k"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "sampling.top_k: top_k must be at least 1",
    ),
    (
        _wrapped(ValueError("Token id 5 is out of vocabulary")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input: Token id 5 is out of vocabulary",
    ),
    (
        _wrapped(RuntimeError("kernel exploded")),
        grpc.StatusCode.INTERNAL,
        "engine error: EngineGenerateError",
    ),
]


@pytest.mark.parametrize(
    ("error", "code", "details"), ENGINE_FAILURES, ids=["validation", "value-error", "internal"]
)
async def test_vllm_refusals_are_invalid_argument(error, code, details) -> None:
    servicer = EngineServicer()
    servicer.runtime = _FailingRuntime(error)
    async with serve_in_process(servicer) as (target, _), EngineClient(target) as client:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.complete(token_ids=[1, 2, 3], max_tokens=2)
    assert raised.value.code() == code
    assert raised.value.details().startswith(details)


async def test_the_ready_banners_python_example_runs(smollm: EngineClient) -> None:
    script = python_example(smollm.target)
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
