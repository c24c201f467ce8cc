"""The streamed response and the disconnect watch, driven as an ASGI server drives them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from starlette.types import Receive, Send

from switchyard.router.errors import APIError
from switchyard.router.responses import DONE_FRAME, DisconnectWatch, EventStream


class FakeClient:
    """An ASGI server's side of one request whose body has been read: ``receive`` blocks
    until the client disconnects or the response completes, as uvicorn's does."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self._gone.set()  # uvicorn answers receive() with a disconnect from here on

    def disconnect(self) -> None:
        self._gone.set()

    @property
    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.messages if m["type"] == "http.response.body"]


async def respond(
    first: list[dict], batches: AsyncGenerator[list[dict]], receive: Receive, send: Send
) -> None:
    """Send the stream as the router does: in the task that read the request, which
    started the watch the stream takes over."""
    stream = EventStream(first, batches, DisconnectWatch(receive))
    await stream({"type": "http"}, receive, send)


async def test_each_batch_is_one_write_and_done_closes_the_body() -> None:
    async def batches() -> AsyncGenerator[list[dict]]:
        yield [{"n": 2}, {"n": "¿3"}]

    client = FakeClient()
    await respond([{"n": 1}], batches(), client.receive, client.send)

    start = client.messages[0]
    assert (start["type"], start["status"]) == ("http.response.start", 200)
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    assert client.bodies == [
        b'data: {"n":1}\n\n',
        'data: {"n":2}\n\ndata: {"n":"¿3"}\n\n'.encode(),
        DONE_FRAME,
    ]
    assert client.messages[-1]["more_body"] is False
    assert all(m["more_body"] for m in client.messages[1:-1])


async def test_a_failure_after_the_start_is_the_last_event() -> None:
    async def batches() -> AsyncGenerator[list[dict]]:
        yield [{"n": 2}]
        raise APIError(503, "the engine is unavailable", type="server_error")

    client = FakeClient()
    await respond([{"n": 1}], batches(), client.receive, client.send)

    assert client.bodies[:2] == [b'data: {"n":1}\n\n', b'data: {"n":2}\n\n']
    assert client.bodies[2].startswith(b'data: {"error":{"message":"the engine is unavailable"')
    assert DONE_FRAME not in client.bodies
    assert client.messages[-1]["more_body"] is False


async def test_an_unexpected_failure_is_a_generic_error_event() -> None:
    async def batches() -> AsyncGenerator[list[dict]]:
        raise KeyError("secret internals")
        yield []

    client = FakeClient()
    await respond([], batches(), client.receive, client.send)

    assert b'"code":"internal_error"' in client.bodies[-1]
    assert b"secret" not in b"".join(client.bodies)


async def test_a_disconnect_closes_the_batches_and_the_response_returns() -> None:
    closed = asyncio.Event()
    waiting = asyncio.Event()

    async def batches() -> AsyncGenerator[list[dict]]:
        try:
            waiting.set()
            await asyncio.sleep(60)  # a provider that has not sent its next event yet
            yield [{"never": True}]
        finally:
            closed.set()

    client = FakeClient()
    response = asyncio.create_task(respond([{"n": 1}], batches(), client.receive, client.send))
    await waiting.wait()
    client.disconnect()
    await asyncio.wait_for(response, 5)

    assert closed.is_set()
    assert not response.cancelled()
    assert client.bodies == [b'data: {"n":1}\n\n']


async def test_the_watch_cancels_its_owner_only_on_a_disconnect() -> None:
    client = FakeClient()
    outcome: list[str] = []

    async def handler() -> None:
        watch = DisconnectWatch(client.receive)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError as error:
            watch.absorb(error)
            outcome.append("absorbed")
        finally:
            watch.stop()

    task = asyncio.create_task(handler())
    await asyncio.sleep(0)
    client.disconnect()
    await asyncio.wait_for(task, 5)
    assert outcome == ["absorbed"]
    assert task.cancelling() == 0

    # Cancelled by anything else (a server shutting down), the cancellation stands.
    other = FakeClient()

    async def other_handler() -> None:
        watch = DisconnectWatch(other.receive)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError as error:
            watch.absorb(error)
        finally:
            watch.stop()

    task = asyncio.create_task(other_handler())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
