"""Our measurements and figures against ``vllm bench serve``'s own code (vLLM is a
dependency): its request functions read the same loopback streams as our backend, and
its ``calculate_metrics`` summarizes the same records as our ``compute_metrics``."""

from __future__ import annotations

import math

import aiohttp
import numpy as np
import pytest
from injected_truth import in_one_of
from loopback_server import FakeServer
from vllm.benchmarks.lib.endpoint_request_func import (
    RequestFuncInput,
    RequestFuncOutput,
    async_request_openai_chat_completions,
    async_request_openai_completions,
)
from vllm.benchmarks.serve import calculate_metrics

from switchyard.bench.serving.metrics import compute_metrics, parse_slos
from switchyard.bench.serving.openai_backend import ENDPOINTS, OpenAIBackend
from switchyard.bench.serving.record import RequestRecord
from switchyard.bench.serving.workloads import BenchRequest

VLLM_REQUEST = {
    "chat": async_request_openai_chat_completions,
    "completions": async_request_openai_completions,
}
TOKENS = 6
TOLERANCE_S = 0.015  # the two clients read the same stream one after the other
SLOS = "ttft:500,tpot:60,e2el:2000"


def _vllm_output(record: RequestRecord) -> RequestFuncOutput:
    return RequestFuncOutput(
        generated_text=record.generated_text,
        success=record.success,
        latency=record.latency_s,
        output_tokens=record.output_tokens,
        ttft=record.ttft_s,
        itl=list(record.itl_s),
        prompt_len=record.prompt_tokens,
        start_time=record.start_s,
    )


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
@pytest.mark.parametrize("script", ["", "finish=separate", "usage=none"])
async def test_a_stream_is_read_as_vllm_reads_it(
    fake_server: FakeServer, smollm_tokenizer, endpoint: str, script: str
) -> None:
    await in_one_of(3, lambda: _compare_reads(fake_server, smollm_tokenizer, endpoint, script))


async def _compare_reads(fake_server: FakeServer, tokenizer, endpoint: str, script: str) -> None:
    prompt = f"hello {script}"
    backend = OpenAIBackend(fake_server.url, "fake", endpoint=endpoint, tokenizer=tokenizer)
    request = BenchRequest(
        messages=({"role": "user", "content": prompt},),
        prompt=prompt,
        prompt_len=1,
        output_len=TOKENS,
    )
    vllm_input = RequestFuncInput(
        prompt=prompt,
        api_url=fake_server.url + ENDPOINTS[endpoint],
        prompt_len=1,
        output_len=TOKENS,
        model="fake",
        ignore_eos=True,
    )
    try:
        async with aiohttp.ClientSession() as session:
            await VLLM_REQUEST[endpoint](vllm_input, session)  # both clients warm
            await backend.send(request)
            theirs = await VLLM_REQUEST[endpoint](vllm_input, session)
            ours = await backend.send(request)
    finally:
        await backend.close()
    assert theirs.success and ours.success, (theirs.error, ours.error)
    assert len(ours.itl_s) == len(theirs.itl)  # the same events counted as chunks
    assert ours.generated_text == theirs.generated_text
    assert ours.prompt_tokens == theirs.prompt_len
    assert ours.ttft_s == pytest.approx(theirs.ttft, abs=TOLERANCE_S)
    assert ours.latency_s == pytest.approx(theirs.latency, abs=TOLERANCE_S)
    assert ours.itl_s == pytest.approx(theirs.itl, abs=TOLERANCE_S)
    # Output tokens from usage, or (usage=none) the reply re-tokenized in both.
    _, [their_tokens] = calculate_metrics([], [theirs], 1.0, tokenizer, [], {})
    assert ours.output_tokens == their_tokens
    if script == "usage=none":
        assert their_tokens != TOKENS


def _random_records(rng: np.random.Generator) -> list[RequestRecord]:
    """Successful records shaped like SSE streams (one token per chunk, sometimes more
    tokens in usage than chunks), single-token ones, and failures."""
    records = []
    for index in range(60):
        start = float(rng.uniform(0, 6))
        if index % 12 == 0:
            records.append(RequestRecord(start_s=start, error_kind="timeout"))
            continue
        gaps = [float(g) for g in rng.uniform(0.001, 0.12, size=int(rng.integers(0, 40)))]
        ttft = float(rng.uniform(0.02, 1.5))
        chunks = len(gaps) + 1
        records.append(
            RequestRecord(
                start_s=start,
                success=True,
                ttft_s=ttft,
                latency_s=ttft + sum(gaps),
                itl_s=gaps,
                chunk_tokens=[1] * chunks,
                prompt_tokens=int(rng.integers(1, 2000)),
                output_tokens=chunks + int(rng.integers(0, 3)),
                generated_text="x" * chunks,
            )
        )
    return records


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_figure_equals_vllm_calculate_metrics(seed: int) -> None:
    records = _random_records(np.random.default_rng(seed))
    duration_s = 7.5
    ours = compute_metrics(records, duration_s, parse_slos(SLOS))
    theirs, _ = calculate_metrics(
        [], [_vllm_output(r) for r in records], duration_s, None, [90, 99], parse_slos(SLOS)
    )
    assert (ours.completed, ours.failed) == (theirs.completed, theirs.failed)
    assert (ours.total_input_tokens, ours.total_output_tokens) == (
        theirs.total_input,
        theirs.total_output,
    )
    pairs = {
        "request_throughput": theirs.request_throughput,
        "output_throughput": theirs.output_throughput,
        "total_token_throughput": theirs.total_token_throughput,
        "goodput": theirs.request_goodput,
        "peak_output_throughput": theirs.max_output_tokens_per_s,
    }
    for name, value in pairs.items():
        assert getattr(ours, name) == pytest.approx(value, rel=1e-12), name
    assert 0 < ours.goodput < ours.request_throughput  # the SLOs split the requests
    for metric in ("ttft", "tpot", "itl", "e2el"):
        distribution = getattr(ours, f"{metric}_ms")
        percentiles = dict(getattr(theirs, f"percentiles_{metric}_ms"))
        expected = {
            "mean": getattr(theirs, f"mean_{metric}_ms"),
            "median": getattr(theirs, f"median_{metric}_ms"),
            "std": getattr(theirs, f"std_{metric}_ms"),
            "p90": percentiles[90],
            "p99": percentiles[99],
        }
        for stat, value in expected.items():
            assert math.isclose(getattr(distribution, stat), value, rel_tol=1e-9), (metric, stat)


def test_grpc_peak_counts_the_tokens_of_each_chunk_where_vllm_counts_one() -> None:
    """The one documented deviation: a gRPC Chunk may carry several tokens."""
    record = RequestRecord(
        start_s=0.0,
        success=True,
        ttft_s=0.1,
        latency_s=0.3,
        itl_s=[0.1, 0.1],
        chunk_tokens=[4, 4, 4],
        output_tokens=12,
    )
    ours = compute_metrics([record], 1.0)
    theirs, _ = calculate_metrics([], [_vllm_output(record)], 1.0, None, [], {})
    assert (ours.peak_output_throughput, theirs.max_output_tokens_per_s) == (12, 3)
    assert ours.tpot_ms.mean == pytest.approx(theirs.mean_tpot_ms)  # the rest agrees
