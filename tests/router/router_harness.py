"""Serving ASGI apps on loopback for the router tests: the router under test and the
stand-ins it talks to. A plain module, not a conftest, so test files import it by a name
no other folder's helpers share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from switchyard.common.engine_process import free_port
from switchyard.router.app import create_app
from switchyard.router.config import RouterConfig

KEYS = ("test-key-one", "test-key-two")
MAX_BODY_BYTES = 64 << 10


@contextlib.asynccontextmanager
async def serve_router(config: RouterConfig, **options: object) -> AsyncIterator[str]:
    """Yield the base URL of the router served on this event loop; stops it after."""
    async with serve_app(create_app(config, **options)) as url:
        yield url


@contextlib.asynccontextmanager
async def serve_app(app: Starlette) -> AsyncIterator[str]:
    """Yield the base URL of an ASGI app served on this event loop; stops it after."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
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


async def metric_total(router_url: str, name: str, **labels: str) -> float:
    """The sum of the router's ``name`` samples whose labels include ``labels``, from its
    /metrics."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(router_url + "/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )
