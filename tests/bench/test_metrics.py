"""The metric math on synthetic records, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from switchyard.bench.serving.metrics import (
    Distribution,
    compute_metrics,
    parse_slos,
    peak_output_throughput,
    tpot_s,
)
from switchyard.bench.serving.record import RequestRecord


def _record(start: float, ttft: float, gaps: list[float], tokens: int, **extra) -> RequestRecord:
    return RequestRecord(
        start_s=start,
        success=True,
        ttft_s=ttft,
        latency_s=ttft + sum(gaps),
        itl_s=gaps,
        chunk_tokens=[1] * (len(gaps) + 1),
        output_tokens=tokens,
        **extra,
    )


def test_distribution_reports_milliseconds_with_numpy_percentiles() -> None:
    values = [0.001 * v for v in range(1, 101)]
    d = Distribution.of_seconds(values)
    assert d.mean == pytest.approx(50.5)
    assert d.median == pytest.approx(50.5)
    assert d.p90 == pytest.approx(np.percentile(range(1, 101), 90))
    assert d.p99 == pytest.approx(np.percentile(range(1, 101), 99))
    assert d.std == pytest.approx(np.std(range(1, 101)))
    assert Distribution.of_seconds([]) == Distribution(0.0, 0.0, 0.0, 0.0, 0.0)


def test_tpot_excludes_the_first_token_and_single_token_requests() -> None:
    # 5 tokens: TTFT 100 ms, then 4 tokens over 200 ms -> 50 ms per token.
    assert tpot_s(_record(0.0, 0.1, [0.05] * 4, 5)) == pytest.approx(0.05)
    assert tpot_s(_record(0.0, 0.1, [], 1)) is None
    # Output tokens come from usage, not chunks: 2 chunks carrying 9 tokens.
    assert tpot_s(_record(0.0, 0.1, [0.08], 9)) == pytest.approx(0.01)


def test_compute_metrics_pools_itl_and_ignores_failures_in_latencies() -> None:
    records = [
        _record(0.0, 0.1, [0.01, 0.03], 3, prompt_tokens=10),
        _record(0.5, 0.2, [0.02], 2, prompt_tokens=20),
        _record(0.6, 0.3, [], 1, prompt_tokens=30),
        RequestRecord(start_s=0.7, error_kind="http_500"),
        RequestRecord(start_s=0.8, error_kind="timeout"),
        RequestRecord(start_s=0.9, error_kind="http_500"),
    ]
    m = compute_metrics(records, duration_s=2.0)
    assert (m.completed, m.failed) == (3, 3)
    assert m.errors == {"http_500": 2, "timeout": 1}
    assert (m.total_input_tokens, m.total_output_tokens) == (60, 6)
    assert m.request_throughput == pytest.approx(1.5)
    assert m.output_throughput == pytest.approx(3.0)
    assert m.total_token_throughput == pytest.approx(33.0)
    assert m.ttft_ms.mean == pytest.approx(200.0)
    assert m.itl_ms.mean == pytest.approx(20.0)  # (10 + 30 + 20) / 3, pooled
    assert m.tpot_ms.mean == pytest.approx(20.0)  # (40/2 + 20/1) / 2; the 1-token one left out
    assert m.e2el_ms.median == pytest.approx(220.0)  # of 140, 220, 300
    assert m.goodput is None


def test_goodput_needs_every_slo_and_counts_single_token_tpot_as_zero() -> None:
    records = [
        _record(0.0, 0.1, [0.01] * 4, 5),  # TTFT 100, TPOT 10, E2EL 140
        _record(0.0, 0.3, [0.01] * 4, 5),  # TTFT 300
        _record(0.0, 0.1, [0.05] * 4, 5),  # TPOT 50
        _record(0.0, 0.1, [], 1),  # TPOT 0
    ]
    slos = parse_slos("ttft:200,tpot:20")
    assert compute_metrics(records, 2.0, slos).goodput == pytest.approx(1.0)  # 2 good / 2 s
    assert compute_metrics(records, 2.0, parse_slos("e2el:120")).goodput == pytest.approx(0.5)


def test_peak_output_throughput_uses_one_second_buckets_from_the_first_send() -> None:
    records = [
        _record(10.0, 0.5, [0.2, 0.2, 0.2], 4),  # chunks at 0.5, 0.7, 0.9, 1.1 s
        _record(10.6, 0.2, [0.1], 2),  # chunks at 0.8, 0.9 s
    ]
    assert peak_output_throughput(records) == 5.0  # bucket [0, 1): 3 + 2
    records[1].chunk_tokens = [4, 4]  # gRPC chunks may carry several tokens
    assert peak_output_throughput(records) == 11.0
    assert peak_output_throughput([]) == 0.0


@pytest.mark.parametrize(
    "spec", ["ttft", "ttft:abc", "latency:5", "ttft:-1", "ttft:0", "tpot:nan", "e2el:inf"]
)
def test_parse_slos_rejects_malformed_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="goodput SLO"):
        parse_slos(spec)
