"""Reading and checking a completion request's body, before the router acts on it."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from starlette.requests import Request
from starlette.types import Message

from switchyard.router.body import MAX_JSON_DEPTH, parse_body, read_body
from switchyard.router.errors import APIError
from switchyard.router.openai_types import ChatCompletionRequest

CHAT = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "store": true}'


def _request(parts: Iterable[bytes], content_length: str | None = None) -> Request:
    pending = [*parts]
    headers = [] if content_length is None else [(b"content-length", content_length.encode())]

    async def receive() -> Message:
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


def _nested(depth: int) -> bytes:
    return b'{"model": "m", "messages": [], "x": ' + b"[" * depth + b"]" * depth + b"}"


def test_the_raw_object_keeps_fields_the_model_does_not_read() -> None:
    raw, body = parse_body(CHAT, ChatCompletionRequest)
    assert raw["store"] is True
    assert body.messages[0].text() == "hi"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (_nested(MAX_JSON_DEPTH), f"deeper than {MAX_JSON_DEPTH} levels"),
    ],
)
def test_unusable_bodies_are_400(body: bytes, message: str) -> None:
    with pytest.raises(APIError) as error:
        parse_body(body, ChatCompletionRequest)
    assert error.value.status == 400
    assert message in error.value.message


def test_a_validation_error_names_the_field() -> None:
    with pytest.raises(APIError) as error:
        parse_body(CHAT[:-1] + b', "temperature": "hot"}', ChatCompletionRequest)
    assert error.value.status == 400
    assert error.value.param == "temperature"


async def test_a_body_arriving_in_parts_is_read_whole() -> None:
    assert await read_body(_request([b"ab", b"cd"]), limit=4) == b"abcd"


@pytest.mark.parametrize(
    ("parts", "content_length"),
    [([b"abcde"], "5"), ([b"ab", b"cd", b"e"], None), ([b"abcde"], "bogus")],
)
async def test_a_body_over_the_limit_is_413(parts: list[bytes], content_length: str | None) -> None:
    with pytest.raises(APIError) as error:
        await read_body(_request(parts, content_length), limit=4)
    assert error.value.status == 413
