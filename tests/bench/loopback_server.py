"""A loopback OpenAI-compatible streaming server with injected timings.

Every response waits TTFT_S before its first content chunk and GAP_S between the next
ones, streams exactly ``max_tokens`` one-token chunks and reports that count in usage,
so the benchmark's measurements can be checked against known truth. Prompts containing
FAIL get HTTP 500.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

TTFT_S = 0.050
GAP_S = 0.010
PROMPT_TOKENS = 7


@dataclass
class FakeServer:
    url: str
    bodies: list[dict]


def _event(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


async def _stream(chat: bool, tokens: int) -> AsyncIterator[bytes]:
    start = time.perf_counter()
    if chat:  # a role-only chunk first, as vLLM sends: no content, so not the first token
        yield _event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    for i in range(tokens):
        await asyncio.sleep(max(0.0, start + TTFT_S + i * GAP_S - time.perf_counter()))
        choice = {"index": 0, "delta": {"content": f"t{i} "}} if chat else {"text": f"t{i} "}
        yield _event({"choices": [choice]})
    finish = {"index": 0, "delta": {}, "finish_reason": "length"}
    yield _event({"choices": [finish if chat else {"index": 0, "finish_reason": "length"}]})
    usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": tokens}
    yield _event({"choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


def create_app(bodies: list[dict]) -> Starlette:
    async def handle(request: Request) -> Response:
        body = await request.json()
        bodies.append(body)
        chat = request.url.path.endswith("/chat/completions")
        prompt = json.dumps(body["messages"]) if chat else body["prompt"]
        if "FAIL" in prompt:
            return JSONResponse({"error": {"message": "injected failure"}}, status_code=500)
        return StreamingResponse(
            _stream(chat, body.get("max_tokens", 16)), media_type="text/event-stream"
        )

    return Starlette(
        routes=[
            Route("/v1/chat/completions", handle, methods=["POST"]),
            Route("/v1/completions", handle, methods=["POST"]),
        ]
    )
