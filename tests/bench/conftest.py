"""Fixtures of the benchmark tests: the loopback OpenAI server of loopback_server.py, the
loopback Engine of loopback_engine.py, and a port that never answers a connection."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
import uvicorn
from loopback_engine import FakeEngine
from loopback_server import FakeServer, create_app

from switchyard.api.v1 import engine_pb2_grpc


@pytest.fixture(autouse=True)
def no_ambient_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--api-key`` defaults to $OPENAI_API_KEY, which the loopback server would refuse."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeServer]:
    """The server on its own thread and event loop, so benchmark load cannot delay its timers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # bound here, so no other process can take the port
    port = listener.getsockname()[1]
    fake = FakeServer(f"http://127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(create_app(fake), log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the loopback server did not start")
        time.sleep(0.01)
    yield fake
    server.should_exit = True
    thread.join(timeout=5)
    listener.close()


@pytest.fixture(scope="session")
def fake_engine() -> Iterator[FakeEngine]:
    """The fake engine's gRPC server on its own thread and event loop, like fake_server."""
    engine = FakeEngine()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> grpc.aio.Server:
        server = grpc.aio.server()
        engine_pb2_grpc.add_EngineServicer_to_server(engine, server)
        engine.target = f"grpc://127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    yield engine
    asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A loopback port whose accept queue is full and never drained: the kernel drops the
    SYN of any further connection, which so gets no answer at all, as from a host behind
    a firewall that drops packets (a refused connection, by contrast, fails at once)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = []
    for _ in range(4):  # more than the queue holds
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        queued.append(client)
    yield port
    for client in queued:
        client.close()
    listener.close()
