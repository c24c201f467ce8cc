"""The provider client's limits, through the router, against raw loopback providers: a
whole response over ``max_response_bytes`` and the connections open to one origin."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from provider_payloads import openai_completion
from raw_http import EndlessBody, Reader, Writer, read_request, reply, serving
from router_harness import serve_router

from switchyard.router.config import parse_config

KEY = "sk-client-limits"
HELLO = [{"role": "user", "content": "Hello"}]


def config(url: str, **settings: Any) -> dict[str, Any]:
    provider = {"protocol": "openai", "base_url": url + "/v1", "models": ["m"]}
    return {
        "auth": {"keys": [KEY]},
        "providers": {"raw": {**provider, **settings.pop("provider", {})}},
        **settings,
    }


def client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)


async def test_a_whole_response_over_the_cap_is_a_502_naming_the_provider() -> None:
    endless = EndlessBody()

    async with serving(endless) as (_, upstream_url):
        data = config(upstream_url, provider={"max_response_bytes": 4096})
        async with serve_router(parse_config(data), environ={}) as url, client(url) as http:
            response = await http.post(
                "/v1/chat/completions", json={"model": "raw/m", "messages": HELLO}
            )
            await asyncio.wait_for(endless.dropped.wait(), 10)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_response_too_large"
    assert error["message"].startswith("raw sent a response larger than the router accepts")
    assert "4096 bytes" in error["message"]
    assert endless.written < 32 << 20  # the router stopped reading; it did not take it all in


async def test_requests_beyond_the_per_origin_cap_wait_for_a_connection() -> None:
    answered = json.dumps(openai_completion("hi")).encode()

    async def one_at_a_time(reader: Reader, writer: Writer) -> None:
        while True:  # keep-alive
            await read_request(reader)
            await asyncio.sleep(0.1)  # long enough for the others to arrive meanwhile
            writer.write(reply(answered))
            await writer.drain()

    async with serving(one_at_a_time) as (server, upstream_url):
        data = config(upstream_url, provider_connections_per_origin=1)
        async with serve_router(parse_config(data), environ={}) as url, client(url) as http:
            body = {"model": "raw/m", "messages": HELLO}
            responses = await asyncio.gather(
                *(http.post("/v1/chat/completions", json=body) for _ in range(4))
            )
    assert [r.status_code for r in responses] == [200] * 4
    assert server.connections == 1
