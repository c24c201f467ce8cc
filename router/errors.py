"""Errors in OpenAI's wire shape, so the official SDKs raise their typed exceptions.

``{"error": {"message", "type", "param", "code"}}``: the SDKs pick the exception class
from the HTTP status and show ``message``; ``param`` tells the caller which field to fix.
"""

from __future__ import annotations

from typing import Any

import grpc

from switchyard.router.openai_types import ENGINE_FIELD_TO_PARAM
from switchyard.router.wire_json import JSONBody


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        # Response headers the client needs to act on the error (Retry-After on a 429).
        self.headers = headers or {}
        # A routed request's decision and attempts, so a failure can be traced.
        self.metadata: dict[str, Any] | None = None
        # The target cannot serve the request as asked (a field or an endpoint it does not
        # offer), though another might: a fallback chain goes on to the next target.
        self.unsupported = False

    def body(self) -> dict[str, dict[str, Any]]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        if self.metadata is not None:
            error["metadata"] = self.metadata
        return {"error": error}

    def response(self) -> JSONBody:
        headers = dict(self.headers)
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONBody(self.body(), status_code=self.status, headers=headers)


def invalid_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param=param)


def unsupported(message: str, param: str | None = None) -> APIError:
    """A 400 for what this target lacks; see ``APIError.unsupported``."""
    error = invalid_request(message, param)
    error.unsupported = True
    return error


def server_error(status: int, message: str, code: str) -> APIError:
    return APIError(status, message, type="server_error", code=code)


def _engine_param(details: str) -> str | None:
    """The OpenAI field behind an engine message such as ``sampling.top_p: must be ...``."""
    field, sep, _ = details.partition(":")
    return ENGINE_FIELD_TO_PARAM.get(field.split("[")[0]) if sep else None


def from_rpc_error(error: grpc.aio.AioRpcError) -> APIError:
    """Translate an engine call failure; engine internals are logged, never returned."""
    code = error.code()
    details = error.details() or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return invalid_request(details, _engine_param(details))
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return APIError(429, "the engine is overloaded, retry later", type="rate_limit_error")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return server_error(504, "the engine did not answer in time", "timeout")
    if code == grpc.StatusCode.UNAVAILABLE:
        return server_error(503, "the engine is unavailable", "engine_unavailable")
    return server_error(502, "the engine failed to process the request", "engine_error")
