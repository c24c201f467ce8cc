"""A real gRPC server inside the test process, without vLLM: the engine's health service
and, where given, an Engine servicer, so the client's waiting and the servicer's error
mapping are tested over the wire in milliseconds."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from switchyard.api.client import SERVICE_NAME
from switchyard.api.v1 import engine_pb2_grpc


@contextlib.asynccontextmanager
async def serve_in_process(
    servicer: engine_pb2_grpc.EngineServicer | None = None,
) -> AsyncIterator[tuple[str, health.aio.HealthServicer]]:
    """Yield the server's target and its health servicer, which starts NOT_SERVING."""
    server = grpc.aio.server()
    if servicer is not None:
        engine_pb2_grpc.add_EngineServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", health_servicer
    finally:
        await server.stop(None)
