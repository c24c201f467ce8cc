"""Two engine replicas of one model behind the router: the replica policy decides where
each request goes (read from each engine's own completed-request counter), and a replica
that dies is failed over to the other."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from router_harness import serve_router

from switchyard.api.client import EngineClient
from switchyard.router.config import parse_config

pytestmark = pytest.mark.timeout(600)

MODEL = "switchyard/smollm2-135m-instruct"
# Two long, distinct system prompts: each a prefix worth keeping on one replica.
PREFIXES = {
    name: " ".join(f"{name} rule {i}: answer briefly and politely." for i in range(50))
    for name in ("alpha", "beta")
}


def body(prefix: str, question: int) -> dict:
    return {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": PREFIXES[prefix]},
            {"role": "user", "content": f"Question {question}: what is {question} + 1?"},
        ],
        "max_tokens": 2,
    }


async def completed(engines: list[EngineClient]) -> list[int]:
    return [(await e.loads()).requests_completed for e in engines]


async def send(url: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        return [await http.post("/v1/chat/completions", json=b) for b in bodies]


async def spread(url: str, engines: list[EngineClient], bodies: list[dict]) -> list[int]:
    before = await completed(engines)
    responses = await send(url, bodies)
    assert [r.status_code for r in responses] == [200] * len(bodies)
    # The engine counts a request when its last output is processed: allow a moment.
    deadline = time.monotonic() + 5
    while sum(after := await completed(engines)) - sum(before) < len(bodies):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    return [a - b for a, b in zip(after, before, strict=True)]


def router_config(targets: list[str], policy: str):
    engines = [{"name": f"replica-{i}", "target": t} for i, t in enumerate(targets)]
    return parse_config({"engines": engines, "replica_policy": policy})


async def ready(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        deadline = time.monotonic() + 60
        while (await http.get("/ready")).status_code != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


async def test_replica_policies_and_failover(engine_processes, smollm, spawn_engine) -> None:
    second = spawn_engine("smollm2-135m-instruct")
    second_client = await second.wait_serving()
    engines = [smollm, second_client]
    targets = [engine_processes["smollm2-135m-instruct"].target, second.target]
    try:
        round_robin = router_config(targets, "round_robin")
        async with serve_router(round_robin, insecure_no_auth=True) as url:
            await ready(url)
            assert await spread(url, engines, [body("alpha", q) for q in range(4)]) == [2, 2]

        cache_aware = router_config(targets, "cache_aware")
        async with serve_router(cache_aware, insecure_no_auth=True) as url:
            await ready(url)
            alpha = await spread(url, engines, [body("alpha", q) for q in range(4)])
            beta = await spread(url, engines, [body("beta", q) for q in range(4)])
            # Each prefix stays on one replica, and the two prefixes use both replicas.
            assert sorted(alpha) == [0, 4]
            assert sorted(beta) == [0, 4]
            assert alpha != beta

            # A replica that dies is retried on the other one, before any byte is sent.
            second.kill()
            responses = await send(url, [body(p, 9) for p in ("alpha", "beta")])
            assert [r.status_code for r in responses] == [200, 200]
            attempts = [r.json()["metadata"]["attempts"] for r in responses]
            failed = [a for a in attempts if len(a) == 2]
            assert len(failed) == 1
            assert failed[0][0]["status"] == 503 and failed[0][1]["status"] == 200
    finally:
        await second_client.close()
