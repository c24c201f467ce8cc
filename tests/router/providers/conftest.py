"""A router in front of the loopback provider stand-in, one of each per module.

Every provider's key is in the router's environment (never in its config), so the tests
can check that each key reaches its own provider and never a client or a log; so is an
admin key, which turns the admin API on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
from fake_upstream import FakeUpstream
from router_harness import serve_app, serve_router

from switchyard.router.config import parse_config

CLIENT_KEY = "sk-client-test"
ADMIN_KEY = "sk-admin-secret-5"
PROVIDER_KEYS = {
    "OPENAI_API_KEY": "sk-openai-secret-1",
    "ANTHROPIC_API_KEY": "sk-ant-secret-2",
    "GEMINI_API_KEY": "gemini-secret-3",
    "GROQ_API_KEY": "gsk-secret-4",
}
# Short, so a provider that stalls is a 504 within the test's patience.
PROVIDER_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    async with serve_app(fake.app()) as url:
        fake.url = url
        yield fake


def router_config(upstream_url: str) -> dict:
    """Every protocol, and two OpenAI-compatible hosts, pointed at the stand-in."""
    return {
        "auth": {"keys": [CLIENT_KEY]},
        "providers": {
            "openai": {
                "base_url": upstream_url + "/v1",
                "models": ["gpt-5.5"],
                "timeout_s": PROVIDER_TIMEOUT_S,
            },
            "groq": {"base_url": upstream_url + "/v1", "models": ["meta-llama/llama-4-scout"]},
            "anthropic": {"base_url": upstream_url + "/v1", "models": ["claude-opus-4-7"]},
            "google-ai-studio": {
                "base_url": upstream_url + "/v1beta",
                "models": ["gemini-3.5-flash"],
            },
            "unreachable": {
                "protocol": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "models": ["m"],
            },
        },
    }


@pytest.fixture(scope="module")
async def router_url(upstream: FakeUpstream) -> AsyncIterator[str]:
    config = parse_config(router_config(upstream.url))
    environ = {**PROVIDER_KEYS, "SWITCHYARD_ADMIN_KEYS": ADMIN_KEY}
    async with serve_router(config, environ=environ) as url:
        yield url


@pytest.fixture
async def client(router_url: str, upstream: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    upstream.replies.clear()
    upstream.stream_cancelled.clear()
    async with openai.AsyncOpenAI(
        base_url=router_url + "/v1", api_key=CLIENT_KEY, max_retries=0
    ) as client:
        yield client


@pytest.fixture
def provider_keys() -> dict[str, str]:
    return dict(PROVIDER_KEYS)


@pytest.fixture
def admin_key() -> str:
    return ADMIN_KEY


@pytest.fixture
def router_secrets() -> list[str]:
    """Every secret the router holds: the providers' keys, the client's and the admin's."""
    return [*PROVIDER_KEYS.values(), CLIENT_KEY, ADMIN_KEY]
