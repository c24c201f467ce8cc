"""Google AI Studio (Gemini ``generateContent`` / ``streamGenerateContent?alt=sse``) <->
OpenAI chat completions.

Request: system and developer messages become ``systemInstruction``; ``assistant`` is
the ``model`` role; tool calls become ``functionCall`` parts and tool results
``functionResponse`` parts named after the call they answer (Gemini matches results by
function name, and by id where it gave the call one); images become ``inlineData`` or
``fileData``; sampling fields go into ``generationConfig``; ``response_format`` maps to
a JSON MIME type and schema.
``logprobs``, ``n > 1`` and the other fields Gemini has no form for
(``chat_translation.UNCARRIED``) are refused with a 400 naming them.

Response: a ``functionCall`` part's id, when Gemini sends one, becomes the OpenAI tool
call id after :data:`GEMINI_ID_PREFIX`; a part without one gets a synthetic
``call_...`` id. A call's ``thoughtSignature`` (which Gemini 3 requires back with the
call in the next request's history) rides in that id after :data:`SIGNATURE_SEPARATOR`.
The id is the one field of a tool call every OpenAI client sends back unchanged, so both
are restored on the way in: Gemini's id on the ``functionCall`` and on the
``functionResponse`` that answers it (which Gemini requires when it uses ids).
``STOP`` with a function call is ``tool_calls``; safety and recitation stops are
``content_filter``; a prompt blocked before any candidate is an empty
``content_filter`` reply. Streams: every event is a whole response object holding the
next piece; the stream has no end marker, so it ends at the event with a finish reason.
"""

from __future__ import annotations

import json
import math
import mimetypes
import re
import uuid
from collections.abc import Iterable
from typing import Any

from switchyard.router.errors import APIError, invalid_request
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

# Between a call id and the call's thought signature: ``call_<hex>__thought__<sig>``.
SIGNATURE_SEPARATOR = "__thought__"
# Before Gemini's own id of a call, in the call's OpenAI id: ``gemini_<id>``.
GEMINI_ID_PREFIX = "gemini_"
# google.rpc.Duration in JSON: seconds with up to nine decimals, then "s".
DURATION = re.compile(r"(\d+(?:\.\d+)?)s")
FILTERED = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
)


def finish_reason(reason: str | None, called_tools: bool) -> str:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in FILTERED:
        return "content_filter"
    return "tool_calls" if called_tools else "stop"


def _parts(message: Message) -> list[Json]:
    if message.content is None:
        return []
    if isinstance(message.content, str):
        return [{"text": message.content}] if message.content else []
    parts: list[Json] = []
    for part in message.content:
        if isinstance(part, TextPart):
            parts.append({"text": part.text})
        elif isinstance(part, ImagePart):
            url = part.image_url.url
            inline = data_url(url)
            if inline:
                parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
            else:
                mime = mimetypes.guess_type(url)[0] or "image/jpeg"
                parts.append({"fileData": {"mimeType": mime, "fileUri": url}})
    return parts


def _call_id(call: Json, signature: str | None) -> str:
    """The OpenAI id of a ``functionCall`` part: Gemini's own id after
    :data:`GEMINI_ID_PREFIX`, or a synthetic one; then the signature, if any."""
    gemini_id = call.get("id")
    call_id = f"{GEMINI_ID_PREFIX}{gemini_id}" if gemini_id else "call_" + uuid.uuid4().hex[:24]
    return call_id + SIGNATURE_SEPARATOR + signature if signature else call_id


def _gemini_id(call_id: str) -> Json:
    """``{"id": ...}`` for a tool call id that carries Gemini's own id, else nothing: ids
    Gemini did not give (synthetic ones, another provider's) are not sent to it."""
    base = call_id.partition(SIGNATURE_SEPARATOR)[0]
    return {"id": base.removeprefix(GEMINI_ID_PREFIX)} if base.startswith(GEMINI_ID_PREFIX) else {}


def _function_response(message: Message, names: dict[str, str], index: int) -> Json:
    call_id = message.tool_call_id or ""
    name = names.get(call_id)
    if name is None:
        param = f"messages[{index}].tool_call_id"
        raise invalid_request(f"{param}: no earlier assistant tool call has this id", param)
    text = message.text()
    try:
        parsed = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        parsed = None
    result = parsed if isinstance(parsed, dict) else {"result": text}
    return {"functionResponse": {**_gemini_id(call_id), "name": name, "response": result}}


def _contents(request: ChatCompletionRequest) -> tuple[str | None, list[Json]]:
    system, conversation = split_system(request)
    names: dict[str, str] = {}  # tool call id -> function name, for the results
    contents: list[Json] = []
    for index, message in conversation:
        if message.role == "tool":
            role, parts = "user", [_function_response(message, names, index)]
        else:
            role = "model" if message.role == "assistant" else "user"
            parts = _parts(message)
            for call_index, call in enumerate(message.tool_calls or ()):
                names[call.id] = call.function.name
                arguments = tool_arguments(call, index, call_index)
                function_call = {"name": call.function.name, "args": arguments}
                part = {"functionCall": {**_gemini_id(call.id), **function_call}}
                _, sep, signature = call.id.partition(SIGNATURE_SEPARATOR)
                parts.append({**part, "thoughtSignature": signature} if sep else part)
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def _tool_config(request: ChatCompletionRequest) -> Json | None:
    choice = request.tool_choice
    if choice is None:
        return None
    if choice == "auto":
        config: Json = {"mode": "AUTO"}
    elif choice == "none":
        config = {"mode": "NONE"}
    elif choice == "required":
        config = {"mode": "ANY"}
    else:
        config = {"mode": "ANY", "allowedFunctionNames": [choice.function.name]}
    return {"functionCallingConfig": config}


def _response_format(request: ChatCompletionRequest) -> Json:
    spec = request.response_format
    if spec is None or spec.type in (None, "text"):
        return {}
    if spec.type == "json_object":
        return {"responseMimeType": "application/json"}
    if spec.type == "json_schema":
        schema = spec.json_schema.json_schema if spec.json_schema else None
        config: Json = {"responseMimeType": "application/json"}
        return {**config, "responseJsonSchema": schema} if schema else config
    raise invalid_request(f"response_format.type: unknown type {spec.type!r}", "response_format")


def _usage(metadata: Json) -> Json:
    completion = int(metadata.get("candidatesTokenCount") or 0)
    completion += int(metadata.get("thoughtsTokenCount") or 0)
    return usage(
        int(metadata.get("promptTokenCount") or 0),
        completion,
        int(metadata.get("cachedContentTokenCount") or 0),
    )


def _candidate(data: Json) -> Json:
    candidate: Json = (data.get("candidates") or [{}])[0]
    return candidate


def _reply_parts(candidate: Json) -> tuple[str, list[Json]]:
    """The visible text (thought summaries left out) and the function calls."""
    text, calls = "", []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if "functionCall" in part:
            call = part["functionCall"]
            call_id = _call_id(call, part.get("thoughtSignature"))
            calls.append(tool_call(call_id, call.get("name", ""), call.get("args") or {}))
        elif "text" in part and not part.get("thought"):
            text += part["text"]
    return text, calls


def _blocked(data: Json) -> bool:
    return not data.get("candidates") and bool(
        (data.get("promptFeedback") or {}).get("blockReason")
    )


class _Stream(StreamTranslator):
    def __init__(self, writer: ChunkWriter) -> None:
        self.writer = writer
        self.started = False
        self.tool_calls = 0

    def feed(self, event: SSEEvent) -> Iterable[Json]:
        data = event.json()
        if "error" in data:
            raise _error_from(data)
        chunks = [] if self.started else [self.writer.opening()]
        self.started = True
        candidate = _candidate(data)
        text, calls = _reply_parts(candidate)
        if text:
            chunks.append(self.writer.delta({"content": text}))
        if calls:
            indexed = [{**call, "index": self.tool_calls + i} for i, call in enumerate(calls)]
            self.tool_calls += len(calls)
            chunks.append(self.writer.delta({"tool_calls": indexed}))
        reason = candidate.get("finishReason")
        if reason or _blocked(data):
            reason = reason or "SAFETY"
            chunks.append(self.writer.delta({}, finish_reason(reason, self.tool_calls > 0)))
            chunks.append(self.writer.usage(_usage(data.get("usageMetadata") or {})))
            self.done = True
        return chunks


def _error_from(data: Json) -> APIError:
    error = data.get("error") or {}
    message = f"google-ai-studio: {error.get('message') or 'the stream failed'}"
    status = 503 if error.get("status") == "UNAVAILABLE" else 502
    return APIError(status, message, type="server_error", code="upstream_error")


class Google(Adapter):
    def url(self, base_url: str, model: str, endpoint: Endpoint, stream: bool) -> str:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{base_url}/models/{model}:{method}"

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"x-goog-api-key": api_key} if api_key else {}

    def request(self, body: Json, request: OpenAIRequest, model: str) -> Json:
        assert isinstance(request, ChatCompletionRequest)
        refuse_uncarried(request, "google-ai-studio")
        system, contents = _contents(request)
        generation = {
            "maxOutputTokens": request.output_limit(),
            "temperature": request.temperature,
            "topP": request.top_p,
            "stopSequences": request.stop_list() or None,
            "seed": request.seed,
            "presencePenalty": request.presence_penalty,
            "frequencyPenalty": request.frequency_penalty,
            **_response_format(request),
        }
        payload: Json = {"contents": contents}
        if system:
            payload["systemInstruction"] = {"parts": [{"text": system}]}
        config = {key: value for key, value in generation.items() if value is not None}
        if config:
            payload["generationConfig"] = config
        if request.tools:
            declarations = [
                {
                    "name": tool.function.name,
                    "description": tool.function.description or "",
                    **(
                        {"parameters": tool.function.parameters} if tool.function.parameters else {}
                    ),
                }
                for tool in request.tools
            ]
            payload["tools"] = [{"functionDeclarations": declarations}]
        tool_config = _tool_config(request)
        if tool_config:
            payload["toolConfig"] = tool_config
        return payload

    def response(self, data: Json, model_id: str, request_id: str) -> Json:
        candidate = _candidate(data)
        text, calls = _reply_parts(candidate)
        reason = candidate.get("finishReason") or ("SAFETY" if _blocked(data) else None)
        reply = ChatReply(text, calls, usage=_usage(data.get("usageMetadata") or {}))
        reply.finish_reason = finish_reason(reason, bool(calls))
        return reply.completion(model_id, request_id)

    def stream(self, model_id: str, request: OpenAIRequest, request_id: str) -> StreamTranslator:
        return _Stream(ChunkWriter(model_id, request_id, request.include_usage))

    def error_message(self, data: Any) -> str | None:
        # {"error": {"code": 400, "message": ..., "status": "INVALID_ARGUMENT"}}
        error = data.get("error") if isinstance(data, dict) else None
        return str(error["message"]) if isinstance(error, dict) and "message" in error else None

    def retry_after(self, data: Any) -> str | None:
        # A 429's wait is in the body, not a header: error.details holds a
        # {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}.
        error = data.get("error") if isinstance(data, dict) else None
        details = error.get("details") if isinstance(error, dict) else None
        for detail in details if isinstance(details, list) else ():
            if not isinstance(detail, dict):
                continue
            if not str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
                continue
            delay = DURATION.fullmatch(str(detail.get("retryDelay", "")))
            if delay:
                return str(math.ceil(float(delay.group(1))))
        return None
