"""A provider that keeps failing is cooled down, skipped, shown as such, and probed
again when its cooldown ends, by one request while the others still pass it by."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fake_upstream import FakeUpstream, Reply
from prometheus_client.parser import text_string_to_metric_families
from provider_payloads import openai_completion, openai_error, openai_stream
from routing_harness import (
    ADMIN_KEY,
    client_http,
    config_data,
    providers_called,
    routing_router,
)
from stalling_upstream import StallingUpstream

pytestmark = pytest.mark.timeout(120)

COOLDOWN_S = 1.0
BODY = {
    "model": "router/chat",
    "messages": [{"role": "user", "content": "Hello"}],
    "metadata": {"scenario": "fallback"},
}


@pytest.fixture
async def router_url(upstream: FakeUpstream) -> AsyncIterator[str]:
    data = config_data(upstream.url, health={"failure_threshold": 2, "cooldown_s": COOLDOWN_S})
    async with routing_router(upstream, data) as url:
        yield url


def target_up(metrics_text: str) -> dict[str, float]:
    return {
        s.labels["target"]: s.value
        for family in text_string_to_metric_families(metrics_text)
        for s in family.samples
        if s.name == "switchyard_router_target_up"
    }


async def test_cooldown_skip_and_probe(router_url: str, upstream: FakeUpstream) -> None:
    down = Reply(503, openai_error("overloaded", "server_error"))
    ok = Reply(body=openai_completion("ok"))
    async with client_http(router_url) as http, client_http(router_url, ADMIN_KEY) as admin:
        upstream.queue(down, ok, down, ok)
        for _ in range(2):
            assert (await http.post("/v1/chat/completions", json=BODY)).status_code == 200
        assert providers_called(upstream) == ["openai", "together"] * 2

        # Two failures in a row: openai is cooled down and the chain starts at together.
        upstream.received.clear()
        upstream.queue(ok)
        response = await http.post("/v1/chat/completions", json=BODY)
        attempts = response.json()["metadata"]["attempts"]
        assert [a["provider"] for a in attempts] == ["together"]
        assert providers_called(upstream) == ["together"]
        report = (await admin.get("/admin/v1/providers")).json()["targets"]
        openai_row = next(row for row in report if row["target"] == "openai")
        assert openai_row["state"] == "cooling_down"
        assert openai_row["consecutive_failures"] == 2
        assert target_up((await http.get("/metrics")).text)["openai"] == 0

        # After the cooldown the next request probes openai again.
        await asyncio.sleep(COOLDOWN_S + 0.1)
        upstream.received.clear()
        upstream.queue(ok)
        response = await http.post("/v1/chat/completions", json=BODY)
        assert providers_called(upstream) == ["openai"]
        assert target_up((await http.get("/metrics")).text)["openai"] == 1


async def test_after_the_cooldown_one_request_probes_and_the_others_fall_back(
    upstream: FakeUpstream,
) -> None:
    """openai hangs (each attempt ends at the route's 400 ms first-token limit); together
    answers. Of the requests that arrive together once the cooldown is over, exactly one
    tries openai; the others go to together at once, as during the cooldown."""
    concurrent = 8
    body = {**BODY, "stream": True}
    upstream.received.clear()
    async with StallingUpstream().serving() as hanging:
        data = config_data(upstream.url, health={"failure_threshold": 2, "cooldown_s": COOLDOWN_S})
        data["providers"]["openai"]["base_url"] = hanging.url + "/v1"
        async with (
            routing_router(upstream, data) as url,
            client_http(url) as http,
            client_http(url, ADMIN_KEY) as admin,
        ):
            ok = Reply(frames=openai_stream(["ok"]))
            upstream.queue(ok, ok)
            for _ in range(2):  # two timeouts in a row: openai cools down
                assert (await http.post("/v1/chat/completions", json=body)).status_code == 200
            assert hanging.requests == 2

            await asyncio.sleep(COOLDOWN_S + 0.1)
            upstream.queue(*[ok] * concurrent)
            responses = await asyncio.gather(
                *(http.post("/v1/chat/completions", json=body) for _ in range(concurrent))
            )
            assert [r.status_code for r in responses] == [200] * concurrent
            assert hanging.requests == 3
            assert providers_called(upstream) == ["together"] * (2 + concurrent)
            # The probe timed out: openai is cooled down again.
            report = (await admin.get("/admin/v1/providers")).json()["targets"]
            assert next(row for row in report if row["target"] == "openai")["state"] == (
                "cooling_down"
            )
