"""Requests to the engine's gRPC ``Generate``, through the client the router uses.

Prompts with known token ids are sent as ``token_ids``, so the engine sees exactly the
prompt length the workload asked for; others go as chat messages.
"""

from __future__ import annotations

import time
import uuid

import grpc

from switchyard.api.client import EngineClient, SamplingKwargs, build_request
from switchyard.api.v1 import engine_pb2
from switchyard.bench.serving.record import RequestRecord
from switchyard.bench.serving.workloads import BenchRequest


class GrpcBackend:
    """Streams each request through one shared channel (HTTP/2 multiplexed)."""

    def __init__(self, target: str, *, timeout_s: float | None = None) -> None:
        self.client = EngineClient(target.removeprefix("grpc://"), timeout_s=timeout_s)

    async def close(self) -> None:
        await self.client.close()

    @staticmethod
    def build(request: BenchRequest) -> engine_pb2.GenerateRequest:
        sampling: SamplingKwargs = {}
        if request.output_len is not None:
            sampling = {"max_tokens": request.output_len, "ignore_eos": True}
        request_id = uuid.uuid4().hex
        if request.token_ids is not None:
            return build_request(request_id=request_id, token_ids=request.token_ids, **sampling)
        return build_request(request_id=request_id, messages=request.messages, **sampling)

    async def send(self, request: BenchRequest) -> RequestRecord:
        message = self.build(request)
        record = RequestRecord(start_s=time.perf_counter(), prompt_tokens=request.prompt_len)
        last: float | None = None
        pieces: list[str] = []
        complete: engine_pb2.Complete | None = None
        try:
            async for response in self.client.stream(message):
                if response.HasField("chunk"):
                    tokens = len(response.chunk.token_ids)
                    last = record.add_chunk(time.perf_counter(), tokens, last)
                    pieces.append(response.chunk.text)
                else:
                    complete = response.complete
        except grpc.aio.AioRpcError as error:
            return record.fail(f"grpc_{error.code().name}", error.details() or "")
        if complete is None:
            return record.fail("no_complete", "the stream ended without a Complete message")
        if complete.finish_reason == engine_pb2.ABORT:
            return record.fail("aborted", "the engine aborted the request")
        if last is None:
            return record.fail("no_content", "the stream ended without a chunk")
        record.output_tokens = complete.usage.completion_tokens
        record.prompt_tokens = complete.usage.prompt_tokens or record.prompt_tokens
        record.generated_text = "".join(pieces)
        record.success = True
        return record
