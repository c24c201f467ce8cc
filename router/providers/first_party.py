"""OpenAI chat completions and completions served by a first-party engine over gRPC.

The engine's stream is re-framed chunk by chunk as it arrives, never buffered, so time
to first token is the engine's. The engine call is iterated inside the generator that
produces the response: when the HTTP client goes away, the server cancels that
generator, which cancels the gRPC call, which aborts the request in the engine and frees
its KV cache.

A response's ``model`` is the id the client asked for (``router/<name>``, or a bare
served name), not the engine's ``switchyard/<name>``, as with every provider.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import grpc

from switchyard.api.client import build_request
from switchyard.api.v1 import engine_pb2
from switchyard.router.errors import from_rpc_error, server_error, unsupported
from switchyard.router.openai_types import (
    OUTPUT_SHAPING,
    ChatCompletionRequest,
    CompletionRequest,
)
from switchyard.router.providers.engine import Engine

log = logging.getLogger(__name__)

Json = dict[str, Any]
FINISH_REASONS = {engine_pb2.STOP: "stop", engine_pb2.LENGTH: "length"}


def _sampling(request: ChatCompletionRequest | CompletionRequest) -> Json:
    return {
        "max_tokens": request.output_limit(),
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "stop": request.stop_list(),
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "ignore_eos": request.ignore_eos,
    }


def _refuse_what_the_engine_cannot_do(request: ChatCompletionRequest | CompletionRequest) -> None:
    # The engine has one output per request, plain text, and no tool calling: a request
    # asking for more gets a 400 rather than an answer that silently lacks it.
    field = request.first_field_in_use(OUTPUT_SHAPING)
    if field is not None:
        raise unsupported(f"{field} is not supported by first-party models", field)


def chat_to_engine(request: ChatCompletionRequest, request_id: str) -> engine_pb2.GenerateRequest:
    _refuse_what_the_engine_cannot_do(request)
    for index, message in enumerate(request.messages):
        if message.has_images():
            raise unsupported(
                f"messages[{index}].content: first-party models take text only, not images",
                f"messages[{index}].content",
            )
    return build_request(
        messages=[{"role": m.role, "content": m.text()} for m in request.messages],
        request_id=request_id,
        logprobs=request.engine_logprobs(),
        **_sampling(request),
    )


def completion_to_engine(request: CompletionRequest, request_id: str) -> engine_pb2.GenerateRequest:
    _refuse_what_the_engine_cannot_do(request)
    prompts = request.prompts()
    if len(prompts) != 1:
        raise unsupported(
            f"prompt: first-party models take one prompt per request, not {len(prompts)}",
            "prompt",
        )
    prompt = prompts[0]
    return build_request(
        **({"text": prompt} if isinstance(prompt, str) else {"token_ids": prompt}),
        request_id=request_id,
        logprobs=request.logprobs,
        **_sampling(request),
    )


def finish_reason(complete: engine_pb2.Complete) -> str:
    reason = FINISH_REASONS.get(complete.finish_reason)
    if reason is None:
        # ABORT reaches a live client only when the engine is shutting down.
        raise server_error(503, "the engine stopped before the request finished", "engine_aborted")
    return reason


def usage(complete: engine_pb2.Complete, speculative: bool = False) -> Json:
    """OpenAI's usage object; with ``speculative`` (the engine runs speculative decoding)
    also ``usage.speculative``, this request's drafted and accepted tokens, an extension
    OpenAI clients ignore."""
    counts = complete.usage
    figures = {
        "prompt_tokens": counts.prompt_tokens,
        "completion_tokens": counts.completion_tokens,
        "total_tokens": counts.prompt_tokens + counts.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": counts.cached_prompt_tokens},
    }
    if speculative:
        figures["speculative"] = {
            "draft_tokens": complete.spec_draft_tokens,
            "accepted_tokens": complete.spec_accepted_tokens,
        }
    return figures


def speculates(engine: Engine) -> bool:
    """Whether the engine said at start that it runs speculative decoding."""
    return bool(engine.info is not None and engine.info.speculative_config)


def chat_logprobs(entries: Sequence[engine_pb2.TokenLogprob]) -> Json:
    def token(text: str, logprob: float) -> Json:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    return {
        "content": [
            {
                **token(entry.token, entry.logprob),
                "top_logprobs": [token(top.token, top.logprob) for top in entry.top],
            }
            for entry in entries
        ]
    }


def completion_logprobs(entries: Sequence[engine_pb2.TokenLogprob], text_offset: int) -> Json:
    """The legacy completions shape; offsets count from ``text_offset`` onwards."""
    offsets = []
    for entry in entries:
        offsets.append(text_offset)
        text_offset += len(entry.token)
    return {
        "tokens": [entry.token for entry in entries],
        "token_logprobs": [entry.logprob for entry in entries],
        "top_logprobs": [{top.token: top.logprob for top in entry.top} for entry in entries],
        "text_offset": offsets,
    }


class _Shape(ABC):
    """How one endpoint spells its objects; the streaming logic is shared."""

    id_prefix: str
    chunk_object: str
    final_object: str

    def __init__(self, wants_logprobs: bool) -> None:
        self.wants_logprobs = wants_logprobs

    def opening(self) -> Json | None:
        return None

    @abstractmethod
    def delta(self, text: str, logprobs: Json | None, finish: str | None) -> Json: ...

    @abstractmethod
    def choice(self, text: str, logprobs: Json | None, finish: str) -> Json: ...

    @abstractmethod
    def logprobs(self, entries: Sequence[engine_pb2.TokenLogprob], offset: int) -> Json | None: ...


class ChatShape(_Shape):
    id_prefix = "chatcmpl-"
    chunk_object = "chat.completion.chunk"
    final_object = "chat.completion"

    def opening(self) -> Json:
        return {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}

    def delta(self, text: str, logprobs: Json | None, finish: str | None) -> Json:
        return {
            "index": 0,
            "delta": {"content": text} if text or finish is None else {},
            "logprobs": logprobs,
            "finish_reason": finish,
        }

    def choice(self, text: str, logprobs: Json | None, finish: str) -> Json:
        return {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": logprobs,
            "finish_reason": finish,
        }

    def logprobs(self, entries: Sequence[engine_pb2.TokenLogprob], offset: int) -> Json | None:
        return chat_logprobs(entries) if self.wants_logprobs else None


class CompletionShape(_Shape):
    id_prefix = "cmpl-"
    chunk_object = "text_completion"
    final_object = "text_completion"

    def delta(self, text: str, logprobs: Json | None, finish: str | None) -> Json:
        return self.choice(text, logprobs, finish)

    def choice(self, text: str, logprobs: Json | None, finish: str | None) -> Json:
        return {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}

    def logprobs(self, entries: Sequence[engine_pb2.TokenLogprob], offset: int) -> Json | None:
        return completion_logprobs(entries, offset) if self.wants_logprobs else None


def shape_for(request: ChatCompletionRequest | CompletionRequest) -> _Shape:
    if isinstance(request, ChatCompletionRequest):
        return ChatShape(request.logprobs)
    return CompletionShape(request.logprobs is not None)


def engine_request(
    request: ChatCompletionRequest | CompletionRequest, request_id: str
) -> engine_pb2.GenerateRequest:
    if isinstance(request, ChatCompletionRequest):
        return chat_to_engine(request, request_id)
    return completion_to_engine(request, request_id)


async def _engine_stream(
    engine: Engine, request: engine_pb2.GenerateRequest
) -> AsyncGenerator[engine_pb2.GenerateResponse]:
    try:
        async for response in engine.client.stream(request):
            yield response
    except grpc.aio.AioRpcError as error:
        log.warning(
            "engine %s request %s failed: %s %s",
            engine.label,
            request.request_id,
            error.code().name,
            error.details(),
        )
        raise from_rpc_error(error) from None


async def stream(
    engine: Engine, request: ChatCompletionRequest | CompletionRequest, request_id: str
) -> AsyncGenerator[list[Json]]:
    """Yield the OpenAI stream objects of one request, in batches sent together; raise
    APIError on failure.

    Nothing is yielded before the engine's first answer, so a caller that awaits the
    first batch learns of a refused request while it can still answer with a status.
    """
    shape = shape_for(request)
    include_usage = request.include_usage
    envelope = {
        "id": shape.id_prefix + request_id,
        "object": shape.chunk_object,
        "created": int(time.time()),
        "model": request.model,
    }

    def event(choices: list[Json]) -> Json:
        # OpenAI puts "usage": null on every chunk of a stream that asked for usage.
        return {**envelope, "choices": choices, **({"usage": None} if include_usage else {})}

    opening = shape.opening()
    batch = [event([opening])] if opening is not None else []
    offset = 0
    async for response in _engine_stream(engine, engine_request(request, request_id)):
        if response.HasField("chunk"):
            chunk = response.chunk
            if chunk.text or chunk.logprobs:
                logprobs = shape.logprobs(chunk.logprobs, offset)
                batch.append(event([shape.delta(chunk.text, logprobs, None)]))
                offset += len(chunk.text)
            if batch:
                yield batch
                batch = []
            continue
        complete = response.complete
        batch.append(event([shape.delta("", None, finish_reason(complete))]))
        # Always: the router's token counters read it; the client gets it only if asked.
        batch.append({**envelope, "choices": [], "usage": usage(complete, speculates(engine))})
        yield batch
        return
    raise server_error(502, "the engine ended the stream without a result", "engine_error")


async def complete(
    engine: Engine,
    request: ChatCompletionRequest | CompletionRequest,
    request_id: str,
    first_token_timeout_s: float | None = None,
) -> Json:
    """The whole response object of a non-streaming request; a 504 when the engine sends
    no text within ``first_token_timeout_s`` (its call cancelled), which a fallback chain
    takes as it takes a stream's."""
    shape = shape_for(request)
    text = ""
    entries: list[engine_pb2.TokenLogprob] = []
    responses = _engine_stream(engine, engine_request(request, request_id))
    try:
        async with asyncio.timeout(first_token_timeout_s) as first_token:
            async for response in responses:
                if response.HasField("chunk"):
                    if response.chunk.text and not text:
                        first_token.reschedule(None)
                    text += response.chunk.text
                    entries.extend(response.chunk.logprobs)
                    continue
                complete_ = response.complete
                logprobs = shape.logprobs(entries, 0)
                return {
                    "id": shape.id_prefix + request_id,
                    "object": shape.final_object,
                    "created": int(time.time()),
                    "model": request.model,
                    "choices": [shape.choice(text, logprobs, finish_reason(complete_))],
                    "usage": usage(complete_, speculates(engine)),
                }
    except TimeoutError:
        raise server_error(
            504, f"{engine.model_id} sent no token in time", "upstream_timeout"
        ) from None
    finally:
        await responses.aclose()
    raise server_error(502, "the engine ended the stream without a result", "engine_error")
