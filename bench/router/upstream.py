"""A stand-in OpenAI-compatible provider that answers at once, for the router benchmark.

A raw asyncio HTTP/1.1 server rather than an ASGI app: its cost is in both the direct
and the routed latency, so the less it spends, the more clearly the router's own share
shows. Every answer is bytes built once at start; per request it only splits the head,
reads ``stream`` and ``stream_options`` from the JSON body and writes.

``POST /v1/chat/completions`` gets a fixed chat completion, or with ``"stream": true`` a
short SSE stream (role, four content chunks, finish, the usage chunk when
``stream_options.include_usage`` asks for it, ``[DONE]``) in chunked transfer encoding,
as hosted providers send it. ``GET /stats`` counts the completions answered, so the
benchmark can check that the router really forwarded every request.

A request for one of the ``FAULTS`` models gets that failure instead, for the soak run:
``fail-429`` (with Retry-After) and ``fail-503`` their status, ``reset`` a connection
closed without an answer, ``cut`` an answer that breaks off (a stream after its first
content chunk), ``wrong-shape`` a 200 without ``choices``, ``hang`` nothing at all.

Request bodies must come with Content-Length (OpenAI clients and aiohttp's ``json=``
send it); a chunked request body is refused with 411.

``python -m switchyard.bench.router.upstream`` binds a free loopback port, prints it
on stdout (its only output there) and serves until it is terminated.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, cast

from switchyard.bench.router import loop

MODEL = "echo"
FAULTS = ("fail-429", "fail-503", "reset", "cut", "wrong-shape", "hang")
CHAT_PATH = "/v1/chat/completions"
STATS_PATH = "/stats"
# The reply, one piece per streamed content chunk.
PIECES = ("Hello", " from", " the", " upstream.")
USAGE = {"prompt_tokens": 9, "completion_tokens": len(PIECES), "total_tokens": 9 + len(PIECES)}
# Longest request head or body accepted; far above what the benchmark sends.
MAX_REQUEST_BYTES = 1 << 20

Json = dict[str, Any]


def completion(created: int) -> Json:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": created,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(PIECES), "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }


def chunks(created: int, include_usage: bool) -> list[Json]:
    """The stream's chunk objects, in OpenAI's order."""

    def chunk(delta: Json, finish_reason: str | None = None) -> Json:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**base, "choices": [choice]}

    base: Json = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL,
    }
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in PIECES]
    events.append(chunk({}, "stop"))
    if include_usage:
        events.append({**base, "choices": [], "usage": USAGE})
    return events


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _json_response(status: str, value: Json) -> bytes:
    return _response(status, "application/json", json.dumps(value).encode())


def _sse_response(events: list[Json]) -> bytes:
    """One HTTP chunk per SSE event, then ``[DONE]`` and the terminating empty chunk."""
    frames = [b"data: " + json.dumps(event).encode() + b"\n\n" for event in events]
    frames.append(b"data: [DONE]\n\n")
    body = b"".join(b"%x\r\n%s\r\n" % (len(frame), frame) for frame in frames) + b"0\r\n\r\n"
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    return head + body


def _error(status: str, message: str) -> bytes:
    return _json_response(status, {"error": {"message": message, "type": "invalid_request_error"}})


@dataclass
class Counts:
    """Chat completions answered since start."""

    completions: int = 0
    streams: int = 0
    # Requests for a fault model, answered with its failure (counted in completions too).
    faults: int = 0


class _Answers:
    """Every response this server can give, as bytes."""

    def __init__(self) -> None:
        created = int(time.time())
        self.completion = _json_response("200 OK", completion(created))
        self.stream = _sse_response(chunks(created, include_usage=True))
        self.stream_without_usage = _sse_response(chunks(created, include_usage=False))
        self.not_found = _error("404 Not Found", "no such path")
        self.bad_json = _error("400 Bad Request", "the request body is not a JSON object")
        self.bad_request = _error("400 Bad Request", "malformed request")
        self.length_required = _error("411 Length Required", "send the body with Content-Length")
        # By fault model: what a whole and a streamed request get (None: no answer at all).
        self.faults: dict[str, tuple[_Broken | None, _Broken | None]] = _faults(self)


@dataclass(frozen=True)
class _Broken:
    """A fault's bytes, and whether the connection closes after them (at once, with a
    reset, when there are none)."""

    data: bytes
    close: bool = False


def _faults(answers: _Answers) -> dict[str, tuple[_Broken | None, _Broken | None]]:
    whole, streamed = answers.completion, answers.stream_without_usage
    # A stream up to the end of the HTTP chunk that carries its first content.
    first_content = streamed.index(b"\r\n", streamed.index(PIECES[0].encode())) + 2
    rate_limited = _error("429 Too Many Requests", "slow down").replace(
        b"\r\n\r\n", b"\r\nRetry-After: 1\r\n\r\n", 1
    )
    unavailable = _error("503 Service Unavailable", "overloaded")
    return {
        "fail-429": (_Broken(rate_limited), _Broken(rate_limited)),
        "fail-503": (_Broken(unavailable), _Broken(unavailable)),
        "reset": (_Broken(b"", close=True), _Broken(b"", close=True)),
        "cut": (_Broken(whole[:-20], close=True), _Broken(streamed[:first_content], close=True)),
        "wrong-shape": (
            _Broken(_json_response("200 OK", {"object": "chat.completion"})),
            _Broken(_sse_response([{"choices": 7}])),
        ),
        "hang": (None, None),
    }


@dataclass(frozen=True)
class _Head:
    method: str
    path: str
    content_length: int
    chunked: bool
    close: bool


def _parse_head(raw: bytes) -> _Head:
    """The request line and the headers that frame the body; ValueError if malformed."""
    lines = raw.decode("latin-1").split("\r\n")
    method, path, version = lines[0].split(" ")
    content_length, chunked, close = 0, False, version == "HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            content_length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value
        elif name == "connection":
            close = value == "close"
    if not 0 <= content_length <= MAX_REQUEST_BYTES:
        raise ValueError("bad Content-Length")
    return _Head(method, path, content_length, chunked, close)


class _Connection(asyncio.Protocol):
    """One keep-alive client connection; requests on it are answered in order."""

    def __init__(self, answers: _Answers, counts: Counts) -> None:
        self.answers = answers
        self.counts = counts
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            try:
                head = _parse_head(bytes(self.buffer[:end]))
            except ValueError:
                self._finish(self.answers.bad_request)
                return
            if head.chunked:
                self._finish(self.answers.length_required)
                return
            start = end + 4
            if len(self.buffer) < start + head.content_length:
                return  # the rest of the body is still on its way
            body = bytes(self.buffer[start : start + head.content_length])
            del self.buffer[: start + head.content_length]
            answer = self._answer(head, body)
            if isinstance(answer, bytes):
                self.transport.write(answer)
            elif answer is None:
                return  # a hang: no answer, and nothing more read on this connection
            else:
                self.transport.write(answer.data)
                if answer.close:
                    self.transport.close() if answer.data else self.transport.abort()
                    return
            if head.close:
                self.transport.close()
                return
        if len(self.buffer) > MAX_REQUEST_BYTES:
            self._finish(self.answers.bad_request)

    def _finish(self, response: bytes) -> None:
        """Answer a request whose framing cannot be trusted, and close."""
        assert self.transport is not None
        self.transport.write(response)
        self.transport.close()

    def _answer(self, head: _Head, body: bytes) -> bytes | _Broken | None:
        if head.method == "GET" and head.path == STATS_PATH:
            return _json_response("200 OK", vars(self.counts))
        if head.method != "POST" or head.path != CHAT_PATH:
            return self.answers.not_found
        try:
            request = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            request = None
        if not isinstance(request, dict):
            return self.answers.bad_json
        self.counts.completions += 1
        fault = self.answers.faults.get(str(request.get("model")))
        if fault is not None:
            self.counts.faults += 1
            return fault[bool(request.get("stream"))]
        if not request.get("stream"):
            return self.answers.completion
        self.counts.streams += 1
        options = request.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            return self.answers.stream
        return self.answers.stream_without_usage


async def serve(host: str = "127.0.0.1", port: int = 0) -> tuple[asyncio.Server, Counts]:
    """Start serving on this event loop; port 0 picks a free one."""
    answers, counts = _Answers(), Counts()
    server = await asyncio.get_running_loop().create_server(
        lambda: _Connection(answers, counts), host, port
    )
    return server, counts


async def _main() -> None:
    server, _ = await serve()
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    loop.run(_main())
