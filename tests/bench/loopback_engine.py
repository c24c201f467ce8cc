"""A loopback Engine gRPC server with injected timings, multi-token chunks and counters.

It implements ``switchyard.engine.v1`` Generate and GetLoads from the generated stubs,
answering each request as the ``key=value`` words of its prompt script it (Script of
loopback_server.py: ``ttft_ms``, ``gap_ms``, ``per_chunk`` tokens per Chunk, ``fault``
stall / no_complete / abort / empty). A reply of ``max_tokens`` tokens is cut into
Chunks of ``per_chunk`` tokens, the first sent at its TTFT and each next one a gap
later, then a Complete (finish LENGTH) whose usage reports PROMPT_TOKENS and the tokens
sent. GetLoads reports cumulative counters that every Generate call advances by
PER_REQUEST, starting from non-zero values as on an engine that has served before.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from loopback_server import PROMPT_TOKENS, STALL_S, Script

from switchyard.api.v1 import engine_pb2, engine_pb2_grpc

# Loads counter increments per request: hit rate 1/4, acceptance 3/4, mean length 3.25.
PER_REQUEST = {
    "prefix_cache_queries": 100,
    "prefix_cache_hits": 25,
    "spec_drafts": 4,
    "spec_draft_tokens": 12,
    "spec_accepted_tokens": 9,
}


def _prompt(request: engine_pb2.GenerateRequest) -> str:
    if request.HasField("chat"):
        return json.dumps([m.content for m in request.chat.messages])
    return request.text


@dataclass
class FakeEngine(engine_pb2_grpc.EngineServicer):
    target: str = ""  # grpc://127.0.0.1:PORT once serving
    requests: list[engine_pb2.GenerateRequest] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PER_REQUEST, 1000))

    async def Generate(
        self, request: engine_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[engine_pb2.GenerateResponse]:
        start = time.perf_counter()
        self.requests.append(request)
        for name, step in PER_REQUEST.items():
            self.counters[name] += step
        script = Script.of(_prompt(request))
        tokens = request.sampling.max_tokens
        if script.fault == "stall":
            await asyncio.sleep(STALL_S)
        if script.fault != "empty":
            for index, first in enumerate(range(0, tokens, script.per_chunk)):
                ids = list(range(first, min(first + script.per_chunk, tokens)))
                due = start + script.ttft_s + index * script.gap_s
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                chunk = engine_pb2.Chunk(text="".join(f"t{i} " for i in ids), token_ids=ids)
                yield engine_pb2.GenerateResponse(request_id=request.request_id, chunk=chunk)
        if script.fault == "no_complete":
            return
        complete = engine_pb2.Complete(
            finish_reason=engine_pb2.ABORT if script.fault == "abort" else engine_pb2.LENGTH,
            usage=engine_pb2.Usage(prompt_tokens=PROMPT_TOKENS, completion_tokens=tokens),
        )
        yield engine_pb2.GenerateResponse(request_id=request.request_id, complete=complete)

    async def GetLoads(
        self, request: engine_pb2.GetLoadsRequest, context: grpc.aio.ServicerContext
    ) -> engine_pb2.Loads:
        return engine_pb2.Loads(**self.counters)
