"""Live updates: the admin API and reloads swap routers atomically, refuse invalid
changes with the reason while the old routers keep serving, and need an admin key."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml
from fake_upstream import FakeUpstream, Reply
from provider_payloads import openai_completion
from routing_harness import (
    ADMIN_KEY,
    CLIENT_KEY,
    PROVIDER_KEYS,
    client_http,
    config_data,
    routing_router,
)

pytestmark = pytest.mark.timeout(120)

HELLO = [{"role": "user", "content": "Hello"}]
NEW_ROUTER = {
    "default_route": {
        "variants": [
            {"id": "a", "model": "openai/gpt-5.5", "weight": 50},
            {"id": "b", "model": "groq/llama-4-scout", "weight": 50},
        ]
    }
}


@pytest.fixture
def config_file(tmp_path: Path, upstream: FakeUpstream) -> Path:
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(config_data(upstream.url)))
    return path


@pytest.fixture
async def router_url(upstream: FakeUpstream, config_file: Path) -> AsyncIterator[str]:
    upstream.replies.clear()
    upstream.received.clear()
    data = yaml.safe_load(config_file.read_text())
    async with routing_router(upstream, data, config_path=str(config_file)) as url:
        yield url


@pytest.fixture
async def admin(router_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_http(router_url, ADMIN_KEY) as http:
        yield http


@pytest.fixture
async def http(router_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_http(router_url) as http:
        yield http


async def chat(http: httpx.AsyncClient, model: str, **extra: object) -> httpx.Response:
    body = {"model": model, "messages": HELLO, **extra}
    return await http.post("/v1/chat/completions", json=body)


async def test_put_get_patch_delete(admin, http, upstream) -> None:
    created = await admin.put("/admin/v1/routers/ab", json=NEW_ROUTER)
    assert created.status_code == 201
    assert [v["weight"] for v in created.json()["default_route"]["variants"]] == [50, 50]
    assert (await admin.get("/admin/v1/routers/ab")).json() == created.json()
    patch = {"default_route": {"variants": [
        {"id": "a", "model": "openai/gpt-5.5", "weight": 100},
    ]}}  # fmt: skip
    patched = await admin.patch("/admin/v1/routers/ab", json=patch)
    assert patched.status_code == 200
    upstream.queue(Reply(body=openai_completion("ok")))
    response = await chat(http, "router/ab", user="someone")
    assert response.json()["metadata"]["variant"] == "a"
    assert (await admin.delete("/admin/v1/routers/ab")).status_code == 204
    gone = await chat(http, "router/ab")
    assert gone.status_code == 404
    assert (await admin.get("/admin/v1/routers/ab")).status_code == 404
    assert "chat" in (await admin.get("/admin/v1/routers")).json()["routers"]


async def test_an_invalid_patch_is_refused_and_the_old_router_kept(admin, http, upstream) -> None:
    before = (await admin.get("/admin/v1/routers/chat")).json()
    bad = {"default_route": {"variants": [
        {"id": "mini", "model": "openai/gpt-5.5-mini", "weight": 90},
    ]}}  # fmt: skip
    refused = await admin.patch("/admin/v1/routers/chat", json=bad)
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert "routers.chat.default_route" in message and "sum to 90" in message
    assert (await admin.get("/admin/v1/routers/chat")).json() == before
    unknown_model = await admin.put(
        "/admin/v1/routers/x",
        json={"default_route": {"variants": [{"id": "a", "model": "nope/m", "weight": 100}]}},
    )
    assert unknown_model.status_code == 400
    assert "'nope/m'" in unknown_model.json()["error"]["message"]
    upstream.queue(Reply(body=openai_completion("still serving")))
    assert (await chat(http, "router/chat")).status_code == 200


async def test_the_admin_api_needs_an_admin_key(router_url: str) -> None:
    async with client_http(router_url, CLIENT_KEY) as client_key:
        assert (await client_key.get("/admin/v1/routers")).status_code == 401
        denied = await client_key.put("/admin/v1/routers/x", json=NEW_ROUTER)
        assert denied.status_code == 401


async def test_the_admin_api_is_off_without_admin_keys(upstream: FakeUpstream) -> None:
    environ = {k: v for k, v in PROVIDER_KEYS.items() if k != "SWITCHYARD_ADMIN_KEYS"}
    async with (
        routing_router(upstream, config_data(upstream.url), environ=environ) as url,
        client_http(url, ADMIN_KEY) as http,
    ):
        response = await http.get("/admin/v1/routers")
    assert response.status_code == 404
    assert "SWITCHYARD_ADMIN_KEYS" in response.json()["error"]["message"]


async def test_reload_rereads_the_file_and_refuses_a_bad_one(admin, config_file: Path) -> None:
    data = yaml.safe_load(config_file.read_text())
    data["routers"]["added"] = NEW_ROUTER
    config_file.write_text(yaml.safe_dump(data))
    reloaded = await admin.post("/admin/v1/reload")
    assert reloaded.status_code == 200
    assert reloaded.json()["routers"] == ["added", "chat"]
    config_file.write_text("routers: [this is: not valid")
    refused = await admin.post("/admin/v1/reload")
    assert refused.status_code == 400
    assert "invalid YAML" in refused.json()["error"]["message"]
    assert "added" in (await admin.get("/admin/v1/routers")).json()["routers"]


async def test_sighup_reloads_the_file(admin, config_file: Path) -> None:
    data = yaml.safe_load(config_file.read_text())
    data["routers"]["by-signal"] = NEW_ROUTER
    config_file.write_text(yaml.safe_dump(data))
    # The router installed its SIGHUP handler on this loop (the main thread's).
    assert signal.getsignal(signal.SIGHUP) is not signal.SIG_DFL
    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(100):
        if "by-signal" in (await admin.get("/admin/v1/routers")).json()["routers"]:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("SIGHUP did not reload the config")


async def test_requests_during_swaps_all_succeed(admin, http, upstream) -> None:
    """Weights flip back and forth while requests are in flight; each request finishes
    on a consistent router and none fails."""
    upstream.queue(*[Reply(body=openai_completion("ok"), delay_s=0.01) for _ in range(60)])
    await admin.put("/admin/v1/routers/flip", json=NEW_ROUTER)

    async def flip() -> None:
        for weight in [10, 90, 30, 70, 0, 100, 50] * 3:
            variants = [
                {"id": "a", "model": "openai/gpt-5.5", "weight": weight},
                {"id": "b", "model": "groq/llama-4-scout", "weight": 100 - weight},
            ]
            response = await admin.patch(
                "/admin/v1/routers/flip", json={"default_route": {"variants": variants}}
            )
            assert response.status_code == 200
            await asyncio.sleep(0.005)

    requests = [chat(http, "router/flip", user=f"u{i}") for i in range(60)]
    results = await asyncio.gather(flip(), *requests)
    statuses = [r.status_code for r in results[1:]]
    assert statuses == [200] * 60
    assert {r.json()["metadata"]["variant"] for r in results[1:]} <= {"a", "b"}
