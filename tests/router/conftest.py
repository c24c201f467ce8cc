"""A router served by uvicorn on a free loopback port, in front of the session's engines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from router_harness import KEYS, MAX_BODY_BYTES, serve_router

from switchyard.api.client import EngineClient
from switchyard.router.config import parse_config

READY_TIMEOUT_S = 60


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
            # The router asks each engine for its model in the background at start; /ready
            # answers 200 once every engine is serving and its model is known.
            deadline = time.monotonic() + READY_TIMEOUT_S
            while (ready := await client.get("/ready")).status_code != 200:
                if time.monotonic() > deadline:
                    pytest.fail(f"router not ready after {READY_TIMEOUT_S} s: {ready.json()}")
                await asyncio.sleep(0.1)
        yield url
