"""A loopback stand-in for the hosted providers, answering with scripted replies.

One server answers OpenAI's (``/v1/chat/completions``, ``/v1/completions``),
Anthropic's (``/v1/messages``) and Gemini's (``/v1beta/models/M:generateContent`` and
``:streamGenerateContent?alt=sse``) paths. A test queues what the next request gets (a
JSON body with a status and headers, or raw SSE frames with pauses, or a stream that
breaks off) and afterwards reads what the router sent: path, headers and body. The
payloads themselves live in ``provider_payloads.py``, in each provider's documented shape.
:data:`RECEIVED_KEY` in a reply stands for the key the request carried, so a reply can
echo it as some providers' error messages do.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

# Replaced, in a reply's body and frames, by the key the request carried.
RECEIVED_KEY = "<received key>"
# Where each protocol sends its key: OpenAI's bearer token, Anthropic's, Gemini's.
KEY_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")


@dataclass
class Reply:
    """What the next request gets."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # A streamed reply: raw SSE frames, sent in order with ``gap_s`` between them.
    frames: list[str] | None = None
    gap_s: float = 0.0
    # Break the connection after the frames instead of ending the stream cleanly.
    break_off: bool = False
    # Wait this long before answering at all (timeouts, first-token deadlines).
    delay_s: float = 0.0


@dataclass
class Received:
    path: str
    query: str
    headers: dict[str, str]
    body: Any


class StreamBroken(Exception):
    """Raised inside a streamed body: the server drops the connection mid-response."""


class FakeUpstream:
    def __init__(self) -> None:
        self.url = ""  # set once served
        self.replies: deque[Reply] = deque()
        self.received: list[Received] = []
        # Set when a streamed reply was cut short because the router went away.
        self.stream_cancelled = asyncio.Event()

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    @property
    def last(self) -> Received:
        return self.received[-1]

    async def _answer(self, request: Request) -> Response:
        raw = await request.body()
        self.received.append(
            Received(
                path=request.url.path,
                query=request.url.query,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=json.loads(raw) if raw else None,
            )
        )
        reply = self.replies.popleft() if self.replies else Reply(500, {"error": "no reply"})
        reply = _with_key(reply, self.last.headers)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.frames is None:
            return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)
        return StreamingResponse(
            self._frames(reply),
            status_code=reply.status,
            media_type="text/event-stream",
            headers=reply.headers,
        )

    async def _frames(self, reply: Reply) -> AsyncIterator[bytes]:
        try:
            for index, frame in enumerate(reply.frames or ()):
                if index and reply.gap_s:
                    await asyncio.sleep(reply.gap_s)
                yield frame.encode()
        except asyncio.CancelledError:
            self.stream_cancelled.set()
            raise
        if reply.break_off:
            raise StreamBroken("the provider went away mid-stream")

    def app(self) -> Starlette:
        paths = [
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/messages",
            "/v1beta/models/{model_and_method:path}",
        ]
        return Starlette(routes=[Route(p, self._answer, methods=["POST"]) for p in paths])


def _with_key(reply: Reply, headers: dict[str, str]) -> Reply:
    """The reply with :data:`RECEIVED_KEY` replaced by the key in ``headers``."""
    key = next((headers[h].removeprefix("Bearer ") for h in KEY_HEADERS if h in headers), "")
    body = json.loads(json.dumps(reply.body).replace(RECEIVED_KEY, key))
    frames = None if reply.frames is None else [f.replace(RECEIVED_KEY, key) for f in reply.frames]
    return replace(reply, body=body, frames=frames)
