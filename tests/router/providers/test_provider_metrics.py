"""``GET /metrics`` after provider requests that succeed, stream and fail."""

from __future__ import annotations

import httpx
import openai
import pytest
from fake_upstream import FakeUpstream, Reply
from prometheus_client.parser import text_string_to_metric_families
from provider_payloads import (
    anthropic_message,
    anthropic_stream,
    openai_completion,
    openai_error,
    openai_stream,
)

MODEL = "openai/gpt-5.5"
LABELS = {"model": MODEL, "provider": "openai"}


async def _values(router_url: str) -> dict[str, dict[tuple, float]]:
    async with httpx.AsyncClient() as http:
        response = await http.get(router_url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return values


def _get(values: dict, name: str, **labels: str) -> float:
    return values.get(name, {}).get(tuple(sorted({**LABELS, **labels}.items())), 0.0)


async def test_requests_tokens_and_ttft_are_counted(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, router_url: str
) -> None:
    before = await _values(router_url)
    upstream.queue(
        Reply(body=openai_completion("hi")),
        Reply(frames=openai_stream(["a", "b", "c"])),
        Reply(status=429, body=openai_error("slow down", "requests")),
        Reply(status=400, body=openai_error("bad stream", "invalid_request_error")),
    )
    messages = [{"role": "user", "content": "hi"}]
    await client.chat.completions.create(model=MODEL, messages=messages)
    stream = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    [chunk async for chunk in stream]
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model=MODEL, messages=messages)
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    after = await _values(router_url)

    def delta(name: str, **labels: str) -> float:
        return _get(after, name, **labels) - _get(before, name, **labels)

    ok = {"endpoint": "chat", "status": "200"}
    assert delta("switchyard_router_requests_total", **ok) == 2
    assert delta("switchyard_router_requests_total", endpoint="chat", status="429") == 1
    # A stream refused before it began counts once, under its model.
    assert delta("switchyard_router_requests_total", endpoint="chat", status="400") == 1
    unrouted = {"model": "-", "provider": "-", "endpoint": "chat", "status": "400"}
    assert _get(after, "switchyard_router_requests_total", **unrouted) == _get(
        before, "switchyard_router_requests_total", **unrouted
    )
    # 10 completion tokens from the whole response, 3 from the stream's usage chunk, which
    # the router asked for although the client did not.
    assert delta("switchyard_router_tokens_total", direction="completion") == 13
    assert delta("switchyard_router_tokens_total", direction="prompt") == 38
    assert delta("switchyard_router_time_to_first_token_seconds_count") == 1
    assert delta("switchyard_router_request_duration_seconds_count") == 2
    assert _get(after, "switchyard_router_requests_in_flight") == 0


async def test_routed_requests_are_counted_under_the_provider_that_served_them(
    client: openai.AsyncOpenAI, upstream: FakeUpstream, router_url: str
) -> None:
    """With OpenRouter's ``models`` fallbacks the request is served by whichever attempt
    succeeds; its latency, first token and tokens go under that model and provider."""
    before = await _values(router_url)
    served = {"model": "anthropic/claude-opus-4-7", "provider": "anthropic"}
    upstream.queue(
        Reply(status=503, body=openai_error("Overloaded", "server_error")),
        Reply(body=anthropic_message([{"type": "text", "text": "hi"}])),
        Reply(status=503, body=openai_error("Overloaded", "server_error")),
        Reply(frames=anthropic_stream([{"text": "hello"}])),
    )
    request = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "extra_body": {"models": [served["model"]]},
    }
    await client.chat.completions.create(**request)
    stream = await client.chat.completions.create(**request, stream=True)
    [chunk async for chunk in stream]
    after = await _values(router_url)

    def delta(name: str, **labels: str) -> float:
        return _get(after, name, **served, **labels) - _get(before, name, **served, **labels)

    assert delta("switchyard_router_requests_total", endpoint="chat", status="200") == 2
    assert delta("switchyard_router_request_duration_seconds_count") == 2
    assert delta("switchyard_router_time_to_first_token_seconds_count") == 1
    assert delta("switchyard_router_tokens_total", direction="completion") == 6 + 15
    routed = {"model": MODEL, "provider": "router"}
    assert not any(
        dict(labels).get("provider") == "router"
        for series in (
            "switchyard_router_requests_total",
            "switchyard_router_request_duration_seconds_count",
        )
        for labels in after.get(series, {})
    )
    # The in-flight gauge went up under the labels known at the start, and back down.
    assert _get(after, "switchyard_router_requests_in_flight", **routed) == 0
    failed_attempt = {"status": "503"}
    assert (
        _get(after, "switchyard_router_attempts_total", **failed_attempt)
        - _get(before, "switchyard_router_attempts_total", **failed_attempt)
        == 2
    )
