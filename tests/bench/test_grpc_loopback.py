"""The gRPC backend against the loopback engine: metric figures with multi-token chunks,
GetLoads figures, and every kind of failed request."""

from __future__ import annotations

import time

import pytest
from injected_truth import assert_matches, in_one_of
from loopback_engine import PER_REQUEST, FakeEngine
from loopback_server import PROMPT_TOKENS

from switchyard.bench.serving.grpc_backend import GrpcBackend
from switchyard.bench.serving.serve import ServeSettings, run_serve
from switchyard.bench.serving.workloads import BenchRequest

# Scheduling noise on a loaded machine: the client's send to the server's first chunk
# (TTFT, E2EL), one late wake-up (a single gap; the server keeps absolute deadlines).
TOLERANCE_MS = 30.0
GAP_TOLERANCE_MS = 15.0


def _request(script: str, output_len: int) -> BenchRequest:
    content = f"hello {script}"
    return BenchRequest(
        messages=({"role": "user", "content": content},),
        prompt=content,
        prompt_len=1,
        output_len=output_len,
    )


async def test_metrics_count_chunks_for_latencies_and_tokens_for_throughput(
    fake_engine: FakeEngine,
) -> None:
    await in_one_of(3, lambda: _check_metrics(fake_engine))


async def _check_metrics(fake_engine: FakeEngine) -> None:
    # 12 tokens in Chunks of 4 (3 Chunks, 2 gaps) and 12 tokens one per Chunk (11 gaps).
    requests = [_request("ttft_ms=100 gap_ms=60 per_chunk=4", 12) for _ in range(3)]
    requests += [_request("ttft_ms=250 gap_ms=15 per_chunk=1", 12) for _ in range(5)]
    settings = ServeSettings(target=fake_engine.target, model="fake", warmup=1)
    before = len(fake_engine.requests)
    [result] = await run_serve(settings, requests=requests)
    m = result.metrics
    assert (m.completed, m.failed) == (8, 0), m.errors
    assert [r.chunk_tokens for r in result.records] == [[4] * 3] * 3 + [[1] * 12] * 5
    assert (m.total_output_tokens, m.total_input_tokens) == (96, 8 * PROMPT_TOKENS)
    # Per request: TTFT, E2EL = TTFT + gaps, TPOT = gaps / 11 (usage tokens, not chunks).
    assert_matches("TTFT", m.ttft_ms, [100.0] * 3 + [250.0] * 5, TOLERANCE_MS)
    assert_matches("E2EL", m.e2el_ms, [100.0 + 2 * 60] * 3 + [250.0 + 11 * 15] * 5, TOLERANCE_MS)
    assert_matches("TPOT", m.tpot_ms, [2 * 60 / 11] * 3 + [15.0] * 5, GAP_TOLERANCE_MS)
    assert_matches("ITL", m.itl_ms, [60.0] * 6 + [15.0] * 55, GAP_TOLERANCE_MS)
    # Peak counts the tokens Chunks carry: all 96 arrive within the first second.
    assert m.peak_output_throughput == 96
    assert m.output_throughput == pytest.approx(96 / m.duration_s)
    # GetLoads before and after the measured run: its 8 requests, not the warm-up.
    server = result.server
    assert server is not None
    assert server.prefix_cache_queries == 8 * PER_REQUEST["prefix_cache_queries"]
    assert server.prefix_cache_hit_rate == pytest.approx(0.25)
    assert server.spec_acceptance_rate == pytest.approx(0.75)
    assert server.spec_mean_acceptance_length == pytest.approx(1 + 9 / 4)
    sent = fake_engine.requests[before:]
    assert len(sent) == 1 + 8
    assert all(r.sampling.max_tokens == 12 and r.sampling.ignore_eos for r in sent)


@pytest.mark.parametrize(
    ("script", "kind", "message"),
    [
        ("fault=no_complete", "no_complete", "without a Complete"),
        ("fault=abort", "aborted", "aborted"),
        ("fault=empty", "no_content", "without a chunk"),
        ("fault=stall", "grpc_DEADLINE_EXCEEDED", "Deadline"),
    ],
)
async def test_failure_kinds(fake_engine: FakeEngine, script: str, kind: str, message: str) -> None:
    backend = GrpcBackend(fake_engine.target, timeout_s=0.5)
    started = time.perf_counter()
    try:
        record = await backend.send(_request(script, 3))
    finally:
        await backend.close()
    assert (record.success, record.error_kind) == (False, kind)
    assert message in record.error
    assert time.perf_counter() - started < 2


async def test_failures_are_counted_by_kind_in_a_run(fake_engine: FakeEngine) -> None:
    requests = [_request("", 3), _request("fault=abort", 3), _request("fault=no_complete", 3)]
    settings = ServeSettings(target=fake_engine.target, model="fake", max_concurrency=1)
    [result] = await run_serve(settings, requests=requests * 2)
    m = result.metrics
    assert (m.completed, m.failed) == (2, 4)
    assert m.errors == {"aborted": 2, "no_complete": 2}
