"""OpenAI and the hosts that speak its protocol (xAI, Mistral, DeepSeek, Groq, Fireworks,
DeepInfra, Together, any ``base_url``): nearly a pass-through.

The client's body goes upstream as it came, fields this router does not know included
(``response_format``, ``tools``, vendor extensions), with ``model`` replaced by the
provider's name for it and, on streams, usage always requested. Responses and chunks
come back as they are but for ``model``, which is set to the id the client asked for, so
a client sees one consistent name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from switchyard.router.errors import APIError
from switchyard.router.openai_types import Endpoint, OpenAIRequest
from switchyard.router.providers.upstream import (
    Adapter,
    Json,
    SSEEvent,
    StreamTranslator,
)

PATHS: dict[Endpoint, str] = {"chat": "/chat/completions", "completions": "/completions"}
DONE = "[DONE]"


def error_from_event(data: Json) -> APIError:
    """An ``error`` object sent after a stream began (OpenAI and OpenRouter do this)."""
    error = data.get("error")
    if not isinstance(error, dict):
        error = {}
    message = str(error.get("message") or "the provider failed mid-stream")
    return APIError(
        502, message, type=str(error.get("type") or "server_error"), code="upstream_error"
    )


class _Stream(StreamTranslator):
    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def feed(self, event: SSEEvent) -> Iterable[Json]:
        if event.data.strip() == DONE:
            self.done = True
            return ()
        chunk = event.json()
        if "error" in chunk:
            raise error_from_event(chunk)
        chunk["model"] = self.model_id
        return (chunk,)


class OpenAICompatible(Adapter):
    endpoints = frozenset(PATHS)

    def url(self, base_url: str, model: str, endpoint: Endpoint, stream: bool) -> str:
        return base_url + PATHS[endpoint]

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def request(self, body: Json, request: OpenAIRequest, model: str) -> Json:
        payload = {**body, "model": model}
        if request.stream:
            # Usage is always asked for: the router's token counters read it, and the
            # client gets the usage chunk only if it asked too.
            options = body.get("stream_options")
            payload["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        return payload

    def response(self, data: Json, model_id: str, request_id: str) -> Json:
        return {**data, "model": model_id}

    def stream(self, model_id: str, request: OpenAIRequest, request_id: str) -> StreamTranslator:
        return _Stream(model_id)

    def error_message(self, data: Any) -> str | None:
        # {"error": {"message": ...}}; some hosts send {"message": ...} or {"detail": ...}.
        if not isinstance(data, dict):
            return None
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        for key in ("message", "detail"):
            value = data.get(key)
            if isinstance(value, str):
                return value
        return None

    def error_param_and_code(self, data: Any) -> tuple[str | None, str | None]:
        # {"error": {"message": ..., "type": ..., "param": "messages[0]", "code": "..."}}
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            return None, None
        param, code = error.get("param"), error.get("code")
        return (
            param if isinstance(param, str) else None,
            code if isinstance(code, str) else None,
        )
