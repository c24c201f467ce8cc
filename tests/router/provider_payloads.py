"""Provider payloads in the shapes their APIs document, and SSE framing for each.

OpenAI frames ``data: {...}`` and ends with ``data: [DONE]``; hosts in front of it add
``: keep-alive`` comments. Anthropic names every event (``event: message_start``).
Gemini sends whole response objects with CRLF line ends and no end marker.
"""

from __future__ import annotations

import json
from typing import Any

Json = dict[str, Any]


def openai_frame(payload: Json | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n"


def anthropic_frame(payload: Json) -> str:
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n"


def gemini_frame(payload: Json) -> str:
    return f"data: {json.dumps(payload)}\r\n\r\n"


KEEP_ALIVE = ": keep-alive\n\n"


# --- OpenAI -----------------------------------------------------------------------------


def openai_completion(content: str, model: str = "gpt-5.5-2026-04-01") -> Json:
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1764000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 19,
            "completion_tokens": 10,
            "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_6ec83003ad",
    }


def openai_chunk(delta: Json, finish: str | None = None, usage: Json | None = None) -> Json:
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion.chunk",
        "created": 1764000000,
        "model": "gpt-5.5-2026-04-01",
        "system_fingerprint": "fp_6ec83003ad",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
        "usage": usage,
    }


def openai_stream(pieces: list[str], *, usage: bool = True, done: bool = True) -> list[str]:
    frames = [openai_frame(openai_chunk({"role": "assistant", "content": ""})), KEEP_ALIVE]
    frames += [openai_frame(openai_chunk({"content": piece})) for piece in pieces]
    frames.append(openai_frame(openai_chunk({}, "stop")))
    if usage:
        counts = {"prompt_tokens": 19, "completion_tokens": len(pieces), "total_tokens": 0}
        counts["total_tokens"] = counts["prompt_tokens"] + counts["completion_tokens"]
        frames.append(openai_frame(openai_chunk({}, usage=counts)))
    if done:
        frames.append(openai_frame("[DONE]"))
    return frames


def openai_error(message: str, type_: str, code: str | None = None) -> Json:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


# --- Anthropic --------------------------------------------------------------------------


def anthropic_message(
    content: list[Json], stop_reason: str | None = "end_turn", **usage: int
) -> Json:
    counts = {
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 6,
    }
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-4-7",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {**counts, **usage},
    }


def anthropic_stream(
    blocks: list[Json], stop_reason: str = "end_turn", *, end: bool = True
) -> list[str]:
    """A message stream: ``blocks`` are text (``{"text": ...}``, sent in two deltas) or
    tool uses (``{"id", "name", "json": [partial, ...]}``)."""
    message = anthropic_message([], stop_reason=None)
    message["usage"] = {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 4}
    events: list[Json] = [
        {"type": "message_start", "message": message},
        {"type": "ping"},
    ]
    for index, block in enumerate(blocks):
        if "text" in block:
            text = block["text"]
            half = len(text) // 2
            events.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                }
            )
            for piece in (text[:half], text[half:]):
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    }
                )
        else:
            events.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {
                        "type": "tool_use",
                        "id": block["id"],
                        "name": block["name"],
                        "input": {},
                    },
                }
            )
            for partial in block["json"]:
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": partial},
                    }
                )
        events.append({"type": "content_block_stop", "index": index})
    if end:
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": 15},
            }
        )
        events.append({"type": "message_stop"})
    return [anthropic_frame(event) for event in events]


def anthropic_error(type_: str, message: str) -> Json:
    return {"type": "error", "error": {"type": type_, "message": message}}


# --- Gemini -----------------------------------------------------------------------------


def gemini_response(parts: list[Json], finish: str | None = "STOP", *, usage: bool = True) -> Json:
    candidate: Json = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    response: Json = {
        "candidates": [candidate],
        "modelVersion": "gemini-3.5-flash",
        "responseId": "mAitaLmkHPPlz7IPvtfUqQ4",
    }
    if usage:
        response["usageMetadata"] = {
            "promptTokenCount": 8,
            "candidatesTokenCount": 5,
            "totalTokenCount": 20,
            "cachedContentTokenCount": 3,
            "thoughtsTokenCount": 7,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 8}],
        }
    return response


def gemini_error(code: int, status: str, message: str) -> Json:
    return {"error": {"code": code, "message": message, "status": status}}
