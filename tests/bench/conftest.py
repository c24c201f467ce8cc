"""Fixtures of the benchmark tests: the loopback server of loopback_server.py."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from loopback_server import FakeServer, create_app


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
    server = uvicorn.Server(uvicorn.Config(create_app(fake), log_level="warning", lifespan="off"))
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
