"""A loopback OpenAI-compatible streaming server with injected timings and counters.

Every response waits TTFT_S before its first content chunk and GAP_S between the next
ones, streams exactly ``max_tokens`` one-token chunks ("t0 ", "t1 ", ...) and reports that
count in usage, so the benchmark's measurements can be checked against known truth.
Prompts containing FAIL get HTTP 500; a bearer token other than API_KEY gets HTTP 401.

``GET /metrics`` serves vLLM's prefix-cache and speculative-decoding counters in
Prometheus text, split over two engine label sets, each completion request adding
PER_REQUEST to them; ``FakeServer.metrics`` switches the endpoint to 404 or to garbage.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

TTFT_S = 0.050
GAP_S = 0.010
PROMPT_TOKENS = 7
API_KEY = "sk-loopback"
# Counter increments per request: hit rate 1/4, acceptance rate 3/4, mean length 1 + 9/4.
PER_REQUEST = {
    "vllm:prefix_cache_queries": 100,
    "vllm:prefix_cache_hits": 25,
    "vllm:spec_decode_num_drafts": 4,
    "vllm:spec_decode_num_draft_tokens": 12,
    "vllm:spec_decode_num_accepted_tokens": 9,
}
ENGINES = ("0", "1")


@dataclass
class FakeServer:
    url: str
    bodies: list[dict] = field(default_factory=list)
    # Counter values per (name, engine); they start non-zero, as on a server that has
    # served before, so only deltas give the right figures.
    counters: dict[tuple[str, str], int] = field(
        default_factory=lambda: {(name, e): 1000 for name in PER_REQUEST for e in ENGINES}
    )
    metrics: str = "prometheus"  # or "missing" (404) or "garbage"

    def prometheus_text(self) -> str:
        lines = []
        for name in PER_REQUEST:
            lines += [f"# HELP {name} A counter.", f"# TYPE {name} counter"]
            for engine in ENGINES:
                labels = f'engine="{engine}",model_name="fake"'
                lines.append(f"{name}_total{{{labels}}} {float(self.counters[name, engine])}")
                lines.append(f"{name}_created{{{labels}}} 1.7e+09")
        lines += [
            "# HELP vllm:time_to_first_token_seconds A histogram.",
            "# TYPE vllm:time_to_first_token_seconds histogram",
            'vllm:time_to_first_token_seconds_bucket{le="+Inf"} 3.0',
            "vllm:time_to_first_token_seconds_count 3.0",
            "vllm:time_to_first_token_seconds_sum 0.5",
        ]
        return "\n".join(lines) + "\n"


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


def create_app(server: FakeServer) -> Starlette:
    async def handle(request: Request) -> Response:
        body = await request.json()
        server.bodies.append(body)
        authorization = request.headers.get("authorization")
        if authorization is not None and authorization != f"Bearer {API_KEY}":
            error = {"message": "Incorrect API key provided", "code": "invalid_api_key"}
            return JSONResponse({"error": error}, status_code=401)
        chat = request.url.path.endswith("/chat/completions")
        prompt = json.dumps(body["messages"]) if chat else body["prompt"]
        if "FAIL" in prompt:
            return JSONResponse({"error": {"message": "injected failure"}}, status_code=500)
        engine = ENGINES[len(server.bodies) % len(ENGINES)]
        for name, step in PER_REQUEST.items():
            server.counters[name, engine] += step
        return StreamingResponse(
            _stream(chat, body.get("max_tokens", 16)), media_type="text/event-stream"
        )

    async def metrics(request: Request) -> Response:
        if server.metrics == "missing":
            return PlainTextResponse("Not Found", status_code=404)
        if server.metrics == "garbage":
            return PlainTextResponse("<html>{ this is not prometheus\n")
        return PlainTextResponse(server.prometheus_text())

    return Starlette(
        routes=[
            Route("/v1/chat/completions", handle, methods=["POST"]),
            Route("/v1/completions", handle, methods=["POST"]),
            Route("/metrics", metrics),
        ]
    )
