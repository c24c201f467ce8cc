"""Proxy variables: a provider they would send through a proxy stops the router's start,
naming the variable; one ``NO_PROXY`` exempts, or one on loopback, is reached directly."""

from __future__ import annotations

import json

import httpx
import pytest
from provider_payloads import openai_completion
from raw_http import Reader, Writer, read_request, reply, serving
from router_harness import serve_router

from switchyard.router.app import create_app
from switchyard.router.config import ConfigError, parse_config
from switchyard.router.providers.proxy_env import proxy_variable

KEY = "sk-client-proxy"
PROXY = "http://127.0.0.1:3128"


@pytest.mark.parametrize(
    ("url", "environ", "variable"),
    [
        ("https://api.openai.com/v1", {"HTTPS_PROXY": PROXY}, "HTTPS_PROXY"),
        ("https://api.openai.com/v1", {"https_proxy": PROXY, "HTTPS_PROXY": PROXY}, "https_proxy"),
        ("https://api.openai.com/v1", {"HTTP_PROXY": PROXY}, None),
        ("http://10.0.0.5:8000/v1", {"HTTP_PROXY": PROXY}, "HTTP_PROXY"),
        ("http://10.0.0.5:8000/v1", {"ALL_PROXY": PROXY}, "ALL_PROXY"),
        ("https://api.openai.com/v1", {"HTTPS_PROXY": " "}, None),
        ("https://api.openai.com/v1", {"HTTPS_PROXY": PROXY, "NO_PROXY": "api.openai.com"}, None),
        ("https://api.openai.com/v1", {"HTTPS_PROXY": PROXY, "no_proxy": ".openai.com"}, None),
        ("https://api.openai.com/v1", {"HTTPS_PROXY": PROXY, "NO_PROXY": "*"}, None),
        ("http://10.0.0.5:8000/v1", {"HTTP_PROXY": PROXY, "NO_PROXY": "10.0.0.5:8000"}, None),
        ("http://10.0.0.5:8000/v1", {"HTTP_PROXY": PROXY, "NO_PROXY": "10.0.0.5:90"}, "HTTP_PROXY"),
        ("http://[fd00::5]:8000/v1", {"HTTP_PROXY": PROXY, "NO_PROXY": "fd00::5"}, None),
        ("https://API.OpenAI.com/v1", {"HTTPS_PROXY": PROXY, "NO_PROXY": " openai.com. "}, None),
        # A server on the router's own machine is never behind a proxy.
        ("http://127.0.0.1:8000/v1", {"HTTP_PROXY": PROXY}, None),
        ("http://localhost:8000/v1", {"ALL_PROXY": PROXY}, None),
        ("http://[::1]:8000/v1", {"HTTP_PROXY": PROXY}, None),
        (
            "https://api.openai.com/v1",
            {"HTTPS_PROXY": PROXY, "NO_PROXY": "openai.com.evil,x.openai.com"},
            "HTTPS_PROXY",
        ),
    ],
)
def test_the_variable_that_applies_to_a_url(
    url: str, environ: dict[str, str], variable: str | None
) -> None:
    assert proxy_variable(url, environ) == variable


def test_a_proxied_provider_stops_the_start_naming_the_variable() -> None:
    config = parse_config({"auth": {"keys": [KEY]}, "providers": {"openai": {"models": ["m"]}}})
    environ = {"OPENAI_API_KEY": "k", "HTTPS_PROXY": PROXY}
    with pytest.raises(ConfigError) as error:
        create_app(config, environ=environ)
    assert str(error.value) == (
        "providers.openai: HTTPS_PROXY is set, but the router connects to providers "
        "directly, not through a proxy; unset HTTPS_PROXY or exempt api.openai.com in NO_PROXY"
    )
    assert create_app(config, environ={**environ, "NO_PROXY": "api.openai.com"}) is not None


async def test_a_loopback_provider_is_reached_directly_whatever_the_proxy_variables() -> None:
    async def provider(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(reply(json.dumps(openai_completion("direct")).encode()))
        await writer.drain()

    async def proxy(reader: Reader, writer: Writer) -> None:
        await read_request(reader)

    async with serving(provider) as (_, provider_url), serving(proxy) as (proxy_seen, proxy_url):
        config = parse_config(
            {
                "auth": {"keys": [KEY]},
                "providers": {
                    "local": {
                        "protocol": "openai",
                        "base_url": provider_url + "/v1",
                        "models": ["m"],
                    }
                },
            }
        )
        environ = {"HTTP_PROXY": proxy_url, "ALL_PROXY": proxy_url}
        async with serve_router(config, environ=environ) as url, httpx.AsyncClient() as http:
            response = await http.post(
                url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {KEY}"},
                json={"model": "local/m", "messages": [{"role": "user", "content": "Hi"}]},
            )
    assert response.json()["choices"][0]["message"]["content"] == "direct"
    assert proxy_seen.connections == 0
