"""One small end-to-end run against the session's real engine over gRPC."""

from __future__ import annotations

from switchyard.api.client import EngineClient
from switchyard.bench.serving.serve import ServeSettings, run_serve


async def test_random_workload_against_the_engine(smollm: EngineClient, engine_processes) -> None:
    target = engine_processes["smollm2-135m-instruct"].target
    settings = ServeSettings(
        target=f"grpc://{target}",
        model="smollm2-135m-instruct",
        num_prompts=4,
        random_input_len=32,
        random_output_len=8,
        max_concurrency=2,
        goodput="e2el:60000",
    )
    [result] = await run_serve(settings)
    m = result.metrics
    assert (m.completed, m.failed) == (4, 0), m.errors
    assert [r.output_tokens for r in result.records] == [8] * 4
    assert [r.prompt_tokens for r in result.records] == [32] * 4
    assert sum(sum(r.chunk_tokens) for r in result.records) == 32
    assert 0 < m.ttft_ms.mean < m.e2el_ms.mean
    assert m.tpot_ms.mean > 0
    assert m.goodput == m.request_throughput


async def test_multi_turn_over_grpc_reuses_the_cached_history(
    smollm: EngineClient, engine_processes
) -> None:
    target = engine_processes["smollm2-135m-instruct"].target
    settings = ServeSettings(
        target=f"grpc://{target}",
        model="smollm2-135m-instruct",
        workload="multi-turn",
        mt_num_conversations=2,
        mt_turns=2,
        mt_user_len=160,  # turn 1 spans whole KV blocks, so turn 2 can hit them
        mt_output_len=8,
        seed=1,
    )
    [result] = await run_serve(settings)
    assert (result.metrics.completed, result.metrics.failed) == (4, 0), result.metrics.errors
    second_turns = result.records[1::2]
    assert all(r.prompt_tokens > 2 * 160 + 8 for r in second_turns)
    server = result.server
    assert server is not None and server.prefix_cache_queries >= 4 * 160
    assert 0 < server.prefix_cache_hit_rate < 1
    assert server.spec_acceptance_rate is None  # no speculation configured
