"""The load generator: timings, exact request counts, and failures that stop the run."""

from __future__ import annotations

import dataclasses

import pytest
from router_bench_harness import ServedUpstream

from switchyard.bench.router.load import LoadClient, RequestFailed, make_target
from switchyard.bench.router.upstream import MODEL


@pytest.mark.parametrize("stream", [False, True])
async def test_sequential_times_every_request(upstream: ServedUpstream, stream: bool) -> None:
    target = make_target("direct", upstream.url, MODEL)
    async with LoadClient() as client:
        timings = await client.sequential(target, stream, 5)
    assert len(timings) == 5
    assert all(0 < t.first_byte_s <= t.total_s for t in timings)
    assert upstream.counts.completions == 5
    assert upstream.counts.streams == (5 if stream else 0)


async def test_burst_sends_exactly_the_count(upstream: ServedUpstream) -> None:
    target = make_target("direct", upstream.url, MODEL)
    async with LoadClient() as client:
        await client.burst(target, True, 4, 23)
    assert client.sent["direct"] == 23
    assert upstream.counts.completions == 23


async def test_saturate_counts_what_completed(upstream: ServedUpstream) -> None:
    target = make_target("direct", upstream.url, MODEL)
    async with LoadClient() as client:
        rate = await client.saturate(target, False, 3, 0.2)
    assert rate.completed > 0
    assert rate.completed == client.sent["direct"] == upstream.counts.completions
    assert rate.per_second == pytest.approx(rate.completed / rate.elapsed_s)


async def test_saturate_sends_one_request_per_worker_even_past_its_deadline(
    upstream: ServedUpstream,
) -> None:
    target = make_target("direct", upstream.url, MODEL)
    async with LoadClient() as client:
        rate = await client.saturate(target, True, 3, 1e-9)
    assert rate.completed == 3 == upstream.counts.streams
    assert rate.per_second > 0


async def test_error_status_fails_the_run(upstream: ServedUpstream) -> None:
    target = make_target("direct", upstream.url, MODEL)
    wrong = dataclasses.replace(target, url=upstream.url + "/v1/nope")
    async with LoadClient() as client:
        with pytest.raises(RequestFailed, match="HTTP 404"):
            await client.burst(wrong, False, 4, 10)


async def test_unreachable_target_fails_the_run() -> None:
    target = make_target("router", "http://127.0.0.1:9", MODEL, api_key="k")
    async with LoadClient() as client:
        with pytest.raises(RequestFailed, match=r"^router: "):
            await client.request(target, False)


def test_routed_target_carries_the_key_and_both_ask_for_usage() -> None:
    target = make_target("router", "http://h:1", "bench/echo", api_key="secret")
    assert target.url == "http://h:1/v1/chat/completions"
    assert target.headers["Authorization"] == "Bearer secret"
    assert b'"include_usage": true' in target.bodies[True]
    assert b'"stream"' not in target.bodies[False]
    assert "Authorization" not in make_target("direct", "http://h:1", MODEL).headers
