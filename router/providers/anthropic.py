"""Anthropic Messages API <-> OpenAI chat completions.

Request: system and developer messages become the top-level ``system``; tool calls
become ``tool_use`` blocks and tool results ``tool_result`` blocks in a user turn
(consecutive turns of one role are merged, as Anthropic requires alternation); images
become base64 or URL image blocks; ``max_tokens``, required by Anthropic, defaults to
:data:`DEFAULT_MAX_TOKENS` when the client set none. ``seed`` and the presence and
frequency penalties have no Anthropic equivalent and are dropped (they only tune
sampling); ``logprobs``, ``response_format``, ``n > 1`` and the other fields of
:data:`REFUSED` and ``chat_translation.UNCARRIED`` would silently change what the
client gets back, so they are refused with a 400 naming them.

Response: text blocks join into ``content``, ``tool_use`` blocks become ``tool_calls``,
stop reasons map to OpenAI finish reasons, and usage counts cache reads as
``cached_tokens`` and cache writes as ``cache_creation_tokens``. Streams: the named
events ``message_start ... message_stop`` become OpenAI chunks; a usage count sent as
null keeps its earlier value; a tool call with no input streams the arguments ``{}``,
as a whole response has them; ``error`` events end the stream with an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from switchyard.router.errors import APIError, server_error
from switchyard.router.openai_types import (
    ChatCompletionRequest,
    Endpoint,
    ImagePart,
    Message,
    OpenAIRequest,
    TextPart,
)
from switchyard.router.providers.chat_translation import (
    ChatReply,
    ChunkWriter,
    data_url,
    refuse_uncarried,
    split_system,
    tool_arguments,
    tool_call,
    usage,
)
from switchyard.router.providers.upstream import (
    Adapter,
    Json,
    SSEEvent,
    StreamTranslator,
)

API_VERSION = "2023-06-01"
# What Anthropic requires and OpenAI leaves optional; documented in the README.
DEFAULT_MAX_TOKENS = 4096
# Keyed by whatever the provider sent: a missing or unknown reason is looked up too.
FINISH_REASONS: dict[object, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Refused besides chat_translation.UNCARRIED: Messages has no structured-output form.
REFUSED = ("response_format",)
# Anthropic's error types whose status says it all; the rest keep the HTTP status.
STREAM_ERROR_STATUS: dict[object, int] = {
    "overloaded_error": 503,
    "rate_limit_error": 429,
    "api_error": 502,
}


def _content_blocks(message: Message) -> list[Json]:
    if message.content is None:
        return []
    if isinstance(message.content, str):
        return [{"type": "text", "text": message.content}] if message.content else []
    blocks: list[Json] = []
    for part in message.content:
        if isinstance(part, TextPart):
            blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            inline = data_url(part.image_url.url)
            source = (
                {"type": "base64", "media_type": inline[0], "data": inline[1]}
                if inline
                else {"type": "url", "url": part.image_url.url}
            )
            blocks.append({"type": "image", "source": source})
    return blocks


def _turn(message: Message, index: int) -> tuple[str, list[Json]]:
    if message.role == "tool":
        result = {"type": "tool_result", "tool_use_id": message.tool_call_id}
        return "user", [{**result, "content": message.text()}]
    blocks = _content_blocks(message)
    for call_index, call in enumerate(message.tool_calls or ()):
        arguments = tool_arguments(call, index, call_index)
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.function.name, "input": arguments}
        )
    return message.role, blocks


def _messages(request: ChatCompletionRequest) -> tuple[str | None, list[Json]]:
    system, conversation = split_system(request)
    turns: list[Json] = []
    for index, message in conversation:
        role, blocks = _turn(message, index)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _tool_choice(request: ChatCompletionRequest) -> Json | None:
    choice = request.tool_choice
    if choice is None and request.parallel_tool_calls is None:
        return None
    if choice is None or choice == "auto":
        result: Json = {"type": "auto"}
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    else:
        result = {"type": "tool", "name": choice.function.name}
    if request.parallel_tool_calls is False:
        result["disable_parallel_tool_use"] = True
    return result


def _usage(counts: Json) -> Json:
    read = int(counts.get("cache_read_input_tokens") or 0)
    written = int(counts.get("cache_creation_input_tokens") or 0)
    prompt = int(counts.get("input_tokens") or 0) + read + written
    return usage(prompt, int(counts.get("output_tokens") or 0), read, cache_creation_tokens=written)


class _Stream(StreamTranslator):
    def __init__(self, writer: ChunkWriter) -> None:
        self.writer = writer
        self.usage: Json = {}
        # Anthropic numbers content blocks; OpenAI numbers tool calls.
        self.tool_index: dict[int, int] = {}
        # Tool calls (by block) whose arguments have not been streamed yet, with the input
        # their start gave: sent at the block's end unless deltas came, so that a call
        # without input still has the arguments "{}" a client can parse, as it would
        # have in a whole response.
        self.unstreamed: dict[int, Json] = {}

    def feed(self, event: SSEEvent) -> Iterable[Json]:
        data = event.json()
        kind = data.get("type", event.event)
        if kind == "message_start":
            self._count(data.get("message", {}).get("usage"))
            return (self.writer.opening(),)
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") != "tool_use":
                return ()
            block_index = data.get("index", 0)
            index = self.tool_index[block_index] = len(self.tool_index)
            self.unstreamed[block_index] = block.get("input") or {}
            call = {**tool_call(block.get("id", ""), block.get("name", ""), ""), "index": index}
            return (self.writer.delta({"tool_calls": [call]}),)
        if kind == "content_block_delta":
            return self._block_delta(data)
        if kind == "content_block_stop":
            return self._block_stop(data.get("index", 0))
        if kind == "message_delta":
            self._count(data.get("usage"))
            reason = (data.get("delta") or {}).get("stop_reason")
            return (self.writer.delta({}, FINISH_REASONS.get(reason, "stop")),)
        if kind == "message_stop":
            self.done = True
            return (self.writer.usage(_usage(self.usage)),)
        if kind == "error":
            raise _stream_error(data)
        return ()  # ping, and event types added later

    def _count(self, counts: Json | None) -> None:
        """Take the counts of a ``message_start`` or ``message_delta``; a count sent as
        null (Anthropic's schema allows it) keeps its last value, as Anthropic's SDK does."""
        self.usage.update({k: v for k, v in (counts or {}).items() if v is not None})

    def _arguments(self, index: int, text: str) -> Json:
        call = {"index": index, "function": {"arguments": text}}
        return self.writer.delta({"tool_calls": [call]})

    def _block_delta(self, data: Json) -> Iterable[Json]:
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta":
            return (self.writer.delta({"content": delta.get("text", "")}),)
        if delta.get("type") == "input_json_delta":
            block_index = data.get("index", 0)
            index = self.tool_index.get(block_index)
            if index is None:
                raise server_error(
                    502, "anthropic sent arguments for an unknown tool call", "upstream_error"
                )
            text = delta.get("partial_json", "")
            if text:
                self.unstreamed.pop(block_index, None)
            return (self._arguments(index, text),)
        return ()  # thinking and signature deltas have no OpenAI chat equivalent

    def _block_stop(self, block_index: int) -> Iterable[Json]:
        if block_index not in self.unstreamed:
            return ()  # a text block, or a tool call whose arguments were streamed
        arguments = json.dumps(self.unstreamed.pop(block_index))
        return (self._arguments(self.tool_index[block_index], arguments),)


def _stream_error(data: Json) -> APIError:
    error = data.get("error") or {}
    status = STREAM_ERROR_STATUS.get(error.get("type"), 502)
    message = f"anthropic: {error.get('message') or 'the stream failed'}"
    if status == 429:
        return APIError(429, message, type="rate_limit_error", code="rate_limited")
    return server_error(status, message, error.get("type") or "upstream_error")


class Anthropic(Adapter):
    def url(self, base_url: str, model: str, endpoint: Endpoint, stream: bool) -> str:
        return base_url + "/messages"

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def request(self, body: Json, request: OpenAIRequest, model: str) -> Json:
        assert isinstance(request, ChatCompletionRequest)
        refuse_uncarried(request, "anthropic", REFUSED)
        system, messages = _messages(request)
        payload: Json = {
            "model": model,
            "messages": messages,
            "max_tokens": request.output_limit() or DEFAULT_MAX_TOKENS,
            "stream": request.stream,
        }
        optional = {
            "system": system,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop_sequences": request.stop_list() or None,
            "tool_choice": _tool_choice(request),
            "metadata": {"user_id": request.user} if request.user else None,
        }
        if request.tools:
            payload["tools"] = [
                {
                    "name": tool.function.name,
                    "description": tool.function.description or "",
                    "input_schema": tool.function.parameters or {"type": "object"},
                }
                for tool in request.tools
            ]
        payload.update({key: value for key, value in optional.items() if value is not None})
        return payload

    def response(self, data: Json, model_id: str, request_id: str) -> Json:
        reply = ChatReply(usage=_usage(data.get("usage") or {}))
        for block in data.get("content") or ():
            if block.get("type") == "text":
                reply.text += block.get("text", "")
            elif block.get("type") == "tool_use":
                call = tool_call(block.get("id", ""), block.get("name", ""), block.get("input", {}))
                reply.tool_calls.append(call)
        reply.finish_reason = FINISH_REASONS.get(data.get("stop_reason"), "stop")
        return reply.completion(model_id, request_id)

    def stream(self, model_id: str, request: OpenAIRequest, request_id: str) -> StreamTranslator:
        return _Stream(ChunkWriter(model_id, request_id, request.include_usage))

    def error_message(self, data: Any) -> str | None:
        # {"type": "error", "error": {"type": "invalid_request_error", "message": ...}}
        error = data.get("error") if isinstance(data, dict) else None
        return str(error["message"]) if isinstance(error, dict) and "message" in error else None
