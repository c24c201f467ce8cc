"""A completion request's body, read and checked before anything is done with it.

The size limit holds while the body arrives (a declared ``Content-Length`` over it is
refused before a byte is read), and the nesting limit before the body is validated, so a
hostile request costs neither memory nor a recursion that the later steps (validation,
re-encoding for a provider) could not survive.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from switchyard.common.validation import problems
from switchyard.router import wire_json
from switchyard.router.errors import APIError, invalid_request

M = TypeVar("M", bound=BaseModel)
# Deepest nesting of arrays and objects accepted in a request body. Real requests stay
# far below (OpenAI caps JSON schemas at 10 levels); the limit keeps every later step
# (validation, re-encoding for a provider) clear of Python's recursion limit.
MAX_JSON_DEPTH = 128


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; raises 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def parse_body(body: bytes, model: type[M]) -> tuple[dict[str, Any], M]:
    """The raw JSON object (forwarded to OpenAI-compatible providers as it came) and its
    validated model (what the router itself reads)."""
    try:
        data = wire_json.loads(body)
    except wire_json.DecodeError as error:
        raise invalid_request(f"the request body is not valid JSON: {error}") from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(data, dict):
        raise invalid_request("the request body must be a JSON object")
    if _nests_deeper_than(data, MAX_JSON_DEPTH):
        raise _too_deep()
    try:
        return data, model.model_validate(data)
    except ValidationError as error:
        first = problems(error)[0]
        raise invalid_request(str(first), first.path) from None


def _too_large(limit: int) -> APIError:
    return APIError(413, f"the request body exceeds {limit} bytes", code="request_too_large")


def _too_deep() -> APIError:
    return invalid_request(
        f"the request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"
    )


def _nests_deeper_than(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels; iterative, so any
    depth the decoder could build is measured without recursing."""
    pending: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while pending:
        container, depth = pending.pop()
        if depth > limit:
            return True
        for child in container.values() if isinstance(container, dict) else container:
            if isinstance(child, dict | list):
                pending.append((child, depth + 1))
    return False
