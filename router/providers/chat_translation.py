"""What translating OpenAI chat to another protocol needs whatever the protocol: the
fields no translation carries refused, system prompts pulled out of the message list,
tool-call arguments decoded, image data URLs split, and OpenAI's response and chunk
objects built from the translated parts."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from switchyard.router.errors import invalid_request, unsupported
from switchyard.router.openai_types import ChatCompletionRequest, Message, ToolCall

Json = dict[str, Any]
SYSTEM_ROLES = frozenset({"system", "developer"})
# OpenAI fields that change the answer and that neither Messages nor Gemini has a form for.
UNCARRIED = (
    "n",
    "logit_bias",
    "functions",
    "function_call",
    "audio",
    "modalities",
    "web_search_options",
)


def refuse_uncarried(
    request: ChatCompletionRequest, provider: str, also: tuple[str, ...] = ()
) -> None:
    """A 400 naming the first field in use that the translation would silently drop:
    ``logprobs``, then ``also`` (the protocol's own), then :data:`UNCARRIED`."""
    refused = "logprobs" if request.logprobs else request.first_field_in_use((*also, *UNCARRIED))
    if refused is not None:
        raise unsupported(f"{refused} is not supported by {provider} models", refused)


def split_system(request: ChatCompletionRequest) -> tuple[str | None, list[tuple[int, Message]]]:
    """The system and developer messages joined (both protocols take one system prompt),
    and the rest of the conversation with each message's index (for error messages)."""
    system = [m.text() for m in request.messages if m.role in SYSTEM_ROLES]
    rest = [(i, m) for i, m in enumerate(request.messages) if m.role not in SYSTEM_ROLES]
    if not rest:
        raise invalid_request("messages: needs at least one message besides system", "messages")
    return ("\n\n".join(system) if system else None), rest


def tool_arguments(call: ToolCall, message_index: int, call_index: int) -> Json:
    """A tool call's arguments as the object other protocols want, not a JSON string."""
    param = f"messages[{message_index}].tool_calls[{call_index}].function.arguments"
    try:
        arguments = json.loads(call.function.arguments or "{}")
    except (json.JSONDecodeError, RecursionError):
        raise invalid_request(f"{param}: not valid JSON, or nested too deeply", param) from None
    if not isinstance(arguments, dict):
        raise invalid_request(f"{param}: must be a JSON object", param)
    return arguments


def data_url(url: str) -> tuple[str, str] | None:
    """``data:image/png;base64,AAA`` -> ``("image/png", "AAA")``; None for other URLs."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not media_type:
        raise invalid_request(
            "an image data URL must look like data:<media type>;base64,<data>", "messages"
        )
    return media_type, data


def usage(prompt: int, completion: int, cached: int, **details: int) -> Json:
    """OpenAI's usage object; ``prompt`` counts every input token, cached ones included."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, **details},
    }


@dataclass
class ChatReply:
    """One assistant turn in protocol-neutral form, built up by a translator."""

    text: str = ""
    tool_calls: list[Json] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Json | None = None

    def completion(self, model_id: str, request_id: str) -> Json:
        return {
            "id": "chatcmpl-" + request_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_id,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": self.text if self.text or not self.tool_calls else None,
                        "refusal": None,
                        **({"tool_calls": self.tool_calls} if self.tool_calls else {}),
                    },
                    "logprobs": None,
                    "finish_reason": self.finish_reason or "stop",
                }
            ],
            "usage": self.usage,
        }


def tool_call(call_id: str, name: str, arguments: Json | str) -> Json:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


class ChunkWriter:
    """OpenAI ``chat.completion.chunk`` objects of one stream, sharing id and model."""

    def __init__(self, model_id: str, request_id: str, include_usage: bool) -> None:
        self.include_usage = include_usage
        self._envelope = {
            "id": "chatcmpl-" + request_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model_id,
        }

    def delta(self, delta: Json, finish_reason: str | None = None) -> Json:
        # OpenAI puts "usage": null on every chunk of a stream that asked for usage.
        extra = {"usage": None} if self.include_usage else {}
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return {**self._envelope, "choices": [choice], **extra}

    def opening(self) -> Json:
        return self.delta({"role": "assistant", "content": ""})

    def usage(self, usage_: Json) -> Json:
        """The usage chunk; the router passes it on only if the client asked for it."""
        return {**self._envelope, "choices": [], "usage": usage_}
