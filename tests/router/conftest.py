"""A router served by uvicorn on a free loopback port, in front of the session's engines."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from switchyard.engine.client import EngineClient
from switchyard.router.app import create_app
from switchyard.router.config import RouterConfig, parse_config

KEYS = ("test-key-one", "test-key-two")
MAX_BODY_BYTES = 64 << 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.asynccontextmanager
async def serve_router(config: RouterConfig, **options: object) -> AsyncIterator[str]:
    """Yield the base URL of the app served on this event loop; stops it after."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, **options),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            pytest.fail("uvicorn exited before it started")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
async def router_url(
    engine_processes: dict, smollm: EngineClient, gemma: EngineClient
) -> AsyncIterator[str]:
    config = parse_config(
        {
            "engines": [
                {"name": "smollm", "target": engine_processes["smollm2-135m-instruct"].target},
                {"target": engine_processes["gemma-3-270m"].target},
            ],
            "auth": {"keys": list(KEYS)},
            "max_body_bytes": MAX_BODY_BYTES,
            "request_timeout_s": 120,
        }
    )
    async with serve_router(config) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            # The router asks each engine for its model in the background at start.
            for _ in range(100):
                listed = await client.get(
                    "/v1/models", headers={"Authorization": f"Bearer {KEYS[0]}"}
                )
                if len(listed.json()["data"]) == 2:
                    break
                await asyncio.sleep(0.05)
        yield url
