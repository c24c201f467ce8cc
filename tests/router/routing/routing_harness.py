"""A router with named routers in front of the loopback provider stand-in.

Every provider points at the same stand-in and each has its own key, so a test tells
from the key the stand-in received which provider an attempt went to, and queues the
replies of a chain of attempts in order.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fake_upstream import FakeUpstream
from router_harness import serve_app, serve_router

from switchyard.router.config import parse_config

CLIENT_KEY = "sk-client-routing"
ADMIN_KEY = "sk-admin-routing"
PROVIDER_KEYS = {
    "OPENAI_API_KEY": "sk-openai-r",
    "TOGETHER_API_KEY": "sk-together-r",
    "GROQ_API_KEY": "sk-groq-r",
    "SWITCHYARD_ADMIN_KEYS": ADMIN_KEY,
}
KEY_TO_PROVIDER = {
    "Bearer sk-openai-r": "openai",
    "Bearer sk-together-r": "together",
    "Bearer sk-groq-r": "groq",
}


def config_data(upstream_url: str, **overrides: Any) -> dict[str, Any]:
    base = upstream_url + "/v1"
    return {
        "auth": {"keys": [CLIENT_KEY]},
        "providers": {
            "openai": {
                "base_url": base,
                "models": ["gpt-5.5", "gpt-5.5-mini"],
                "timeout_s": 5,
                "prices": {"gpt-5.5": {"prompt": 5, "completion": 15}},
            },
            "together": {
                "base_url": base,
                "models": ["llama-4-scout"],
                "prices": {"llama-4-scout": {"prompt": 0.2, "completion": 0.6}},
            },
            "groq": {
                "base_url": base,
                "models": ["llama-4-scout"],
                "prices": {"llama-4-scout": {"prompt": 0.1, "completion": 0.3}},
            },
            "unreachable": {
                "protocol": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "models": ["m"],
            },
        },
        # Failures must not cool providers down across tests, except where a test says.
        "health": {"failure_threshold": 1000, "cooldown_s": 60},
        "routers": {
            "chat": {
                "routes": [
                    {
                        "name": "fallbacks",
                        "condition": 'metadata.scenario == "fallback"',
                        "variants": [
                            {
                                "id": "main",
                                "model": "openai/gpt-5.5",
                                "weight": 100,
                                "fallbacks": ["together/llama-4-scout", "groq/llama-4-scout"],
                                "ttft_timeout_ms": 400,
                                "attempt_timeout_ms": 1500,
                            }
                        ],
                    }
                ],
                "default_route": {
                    "variants": [
                        {
                            "id": "mini",
                            "model": "openai/gpt-5.5-mini",
                            "weight": 100,
                            "overrides": {"temperature": 0.1},
                        }
                    ]
                },
            }
        },
        **overrides,
    }


@contextlib.asynccontextmanager
async def routing_router(
    upstream: FakeUpstream, data: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[str]:
    config = parse_config(data or config_data(upstream.url))
    options.setdefault("environ", PROVIDER_KEYS)
    async with serve_router(config, **options) as url:
        yield url


@contextlib.asynccontextmanager
async def fake_upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    async with serve_app(fake.app()) as url:
        fake.url = url
        yield fake


def providers_called(upstream: FakeUpstream) -> list[str]:
    return [KEY_TO_PROVIDER[r.headers["authorization"]] for r in upstream.received]


def client_http(url: str, key: str = CLIENT_KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"})
