"""The stand-in upstream speaks OpenAI's chat completions exactly enough for the SDK, and
counts what it answered."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import openai
import pytest
from router_bench_harness import ServedUpstream

from switchyard.bench.router.upstream import MODEL, PIECES, USAGE

MESSAGES = [{"role": "user", "content": "hi"}]


def _client(upstream: ServedUpstream) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=upstream.url + "/v1", api_key="unused", max_retries=0)


async def test_completion_parses_with_the_sdk(upstream: ServedUpstream) -> None:
    async with _client(upstream) as client:
        reply = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == "".join(PIECES)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.total_tokens == USAGE["total_tokens"]
    assert (upstream.counts.completions, upstream.counts.streams) == (1, 0)


async def test_stream_parses_with_the_sdk_and_ends_with_usage(upstream: ServedUpstream) -> None:
    async with _client(upstream) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(PIECES)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(PIECES)
    assert (upstream.counts.completions, upstream.counts.streams) == (1, 1)


async def test_stream_without_include_usage_has_no_usage_chunk(upstream: ServedUpstream) -> None:
    async with _client(upstream) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)


async def test_stats_count_completions(upstream: ServedUpstream) -> None:
    async with _client(upstream) as client:
        for _ in range(3):
            await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    async with aiohttp.ClientSession() as session, session.get(upstream.url + "/stats") as r:
        assert await r.json() == {"completions": 3, "streams": 0, "faults": 0}


async def test_unknown_path_and_bad_body_are_refused(upstream: ServedUpstream) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(upstream.url + "/v1/nope", json={}) as response:
            assert response.status == 404
        async with session.post(upstream.url + "/v1/chat/completions", data=b"[1]") as response:
            assert response.status == 400
            assert "error" in await response.json()
    assert upstream.counts.completions == 0


async def test_chunked_request_body_is_refused(upstream: ServedUpstream) -> None:
    host, port = upstream.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    )
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert status_line.startswith(b"HTTP/1.1 411")


async def test_pipelined_requests_are_answered_in_order(upstream: ServedUpstream) -> None:
    host, port = upstream.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b'{"stream": false}'
    request = b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    writer.write(request * 2 + b"GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert answer.endswith(b'{"completions": 2, "streams": 0, "faults": 0}')


async def _raw_answer(upstream: ServedUpstream, body: bytes, wait_s: float = 5) -> bytes:
    """Everything the upstream writes for one request before it closes the connection,
    or within ``wait_s``."""
    host, port = upstream.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body))
    writer.write(body)
    parts: list[bytes] = []
    try:
        async with asyncio.timeout(wait_s):
            while part := await reader.read(65536):
                parts.append(part)
    except TimeoutError:
        pass
    except ConnectionResetError:
        parts.append(b"<reset>")
    writer.close()
    return b"".join(parts)


@pytest.mark.parametrize("stream", [False, True])
async def test_fault_models_fail_as_named(upstream: ServedUpstream, stream: bool) -> None:
    def body(model: str) -> bytes:
        return json.dumps({"model": model, "messages": MESSAGES, "stream": stream}).encode()

    # Failures that keep the connection open are read for a moment only.
    limited = await _raw_answer(upstream, body("fail-429"), wait_s=0.3)
    assert limited.startswith(b"HTTP/1.1 429") and b"\r\nRetry-After: 1\r\n" in limited
    assert (await _raw_answer(upstream, body("fail-503"), wait_s=0.3)).startswith(b"HTTP/1.1 503")
    assert await _raw_answer(upstream, body("reset")) in (b"", b"<reset>")
    cut = await _raw_answer(upstream, body("cut"))
    assert cut.startswith(b"HTTP/1.1 200")
    if stream:  # the first content chunk arrived, the end of the stream never did
        assert PIECES[0].encode() in cut and b"[DONE]" not in cut
        assert not cut.endswith(b"0\r\n\r\n")
    else:
        head, _, partial = cut.partition(b"\r\n\r\n")
        declared = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        assert 0 < len(partial) < declared
    wrong = await _raw_answer(upstream, body("wrong-shape"), wait_s=0.3)
    assert wrong.startswith(b"HTTP/1.1 200")
    assert (b'{"choices": 7}' in wrong) if stream else (b"choices" not in wrong)
    assert await _raw_answer(upstream, body("hang"), wait_s=0.3) == b""
    assert upstream.counts.faults == 6
