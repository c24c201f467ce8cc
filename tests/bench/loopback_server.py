"""A loopback OpenAI-compatible streaming server with injected timings and counters.

Streams are shaped as vLLM's server shapes them (``vllm/entrypoints/openai``): a chat
reply starts with a role-only chunk (``delta: {"role": "assistant", "content": ""}``)
sent together with the first token's chunk, once the first token exists; each token
then gets a chunk ("t0 ", "t1 ", ...), the last one carrying ``finish_reason``; a final
usage-only event (``choices: []``) reports the token counts; ``[DONE]`` ends it. A
completion reply has no role chunk.

Every response waits its TTFT before the first chunk and its gap between token chunks,
and streams exactly ``max_tokens`` tokens. Defaults are TTFT_S and GAP_S; ``key=value``
words in the prompt change one request (see Script), so tests can inject spreads of
timings, stream shapes and faults. Prompts containing FAIL get HTTP 500; a bearer token
other than API_KEY gets HTTP 401.

``GET /metrics`` serves vLLM's prefix-cache and speculative-decoding counters in
Prometheus text, split over two engine label sets, each completion request adding
PER_REQUEST to them; ``FakeServer.metrics`` switches the endpoint to 404 or to garbage.
"""

from __future__ import annotations

import asyncio
import json
import re
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
STALL_S = 30.0  # longer than any test's request timeout
# Counter increments per request: hit rate 1/4, acceptance rate 3/4, mean length 1 + 9/4.
PER_REQUEST = {
    "vllm:prefix_cache_queries": 100,
    "vllm:prefix_cache_hits": 25,
    "vllm:spec_decode_num_drafts": 4,
    "vllm:spec_decode_num_draft_tokens": 12,
    "vllm:spec_decode_num_accepted_tokens": 9,
}
ENGINES = ("0", "1")
DIRECTIVE = re.compile(r"\b(ttft_ms|gap_ms|per_chunk|usage|finish|fault)=(\w+)")


@dataclass(frozen=True)
class Script:
    """How a fake server answers one request, from ``key=value`` words in its prompt.

    ``ttft_ms=120`` / ``gap_ms=30``: the request's TTFT and gap between token chunks.
    ``usage=none``: no usage-only event. ``finish=separate``: the last token chunk has no
    finish_reason; an empty ``delta: {}`` chunk carries it one gap later.
    ``per_chunk=4`` (gRPC only): tokens per Chunk message.
    ``fault=...``: stall (never answers), cut (drops the connection mid-stream), badjson,
    error (an error event), empty (no chunk); over gRPC: stall, no_complete, abort, empty.
    """

    ttft_s: float = TTFT_S
    gap_s: float = GAP_S
    per_chunk: int = 1
    usage: bool = True
    separate_finish: bool = False
    fault: str = ""

    @classmethod
    def of(cls, prompt: str) -> Script:
        words = dict(DIRECTIVE.findall(prompt))
        return cls(
            ttft_s=float(words.get("ttft_ms", TTFT_S * 1000)) / 1000,
            gap_s=float(words.get("gap_ms", GAP_S * 1000)) / 1000,
            per_chunk=int(words.get("per_chunk", 1)),
            usage=words.get("usage") != "none",
            separate_finish=words.get("finish") == "separate",
            fault=words.get("fault", ""),
        )


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


def _choice(chat: bool, text: str | None, finish: str | None = None) -> dict:
    """One choice as vLLM streams it; ``text`` None is the empty ``delta: {}``."""
    if chat:
        delta = {} if text is None else {"content": text}
        return {"index": 0, "delta": delta, "finish_reason": finish}
    return {"index": 0, "text": text or "", "finish_reason": finish}


async def _stream(chat: bool, tokens: int, script: Script) -> AsyncIterator[bytes]:
    start = time.perf_counter()

    async def until(offset_s: float) -> None:
        # Absolute deadlines, so one late wake-up does not delay every later chunk.
        await asyncio.sleep(max(0.0, start + offset_s - time.perf_counter()))

    if script.fault == "stall":
        await asyncio.sleep(STALL_S)
    await until(script.ttft_s)
    if script.fault == "badjson":
        yield b"data: {this is not json\n\n"
        return
    if script.fault == "error":
        yield _event({"error": {"message": "injected stream error", "code": 500}})
        yield b"data: [DONE]\n\n"
        return
    if script.fault != "empty":
        if chat:
            role = {"index": 0, "delta": {"role": "assistant", "content": ""}}
            yield _event({"choices": [role | {"finish_reason": None}]})
        for i in range(tokens):
            await until(script.ttft_s + i * script.gap_s)
            last = i == tokens - 1 and not script.separate_finish
            yield _event({"choices": [_choice(chat, f"t{i} ", "length" if last else None)]})
            if script.fault == "cut":
                raise ConnectionAbortedError("injected: connection dropped mid-stream")
        if script.separate_finish:
            await until(script.ttft_s + tokens * script.gap_s)
            yield _event({"choices": [_choice(chat, None, "length")]})
    if script.usage:
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
        # vllm bench serve asks chat for max_completion_tokens, we ask for max_tokens.
        tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 16
        return StreamingResponse(
            _stream(chat, tokens, Script.of(prompt)), media_type="text/event-stream"
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
