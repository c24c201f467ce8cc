"""The statistics and the report of the router benchmark, on constructed measurements."""

from __future__ import annotations

import json

import pytest

from switchyard.bench.router import report
from switchyard.bench.router.overhead import Latency, Results, Settings
from switchyard.bench.router.stats import (
    FLAT_TOLERANCE_BYTES,
    MIB,
    MemoryTrace,
    added_ms,
    client_bound,
    median_rate,
)
from switchyard.bench.serving.metrics import Distribution


def _ms(*values: float) -> Distribution:
    return Distribution.of_seconds([value / 1000 for value in values])


def test_added_latency_is_taken_percentile_by_percentile() -> None:
    direct = _ms(*[0.2] * 95, *[1.0] * 5)
    router = _ms(*[0.5] * 95, *[3.0] * 5)
    added = added_ms(router, direct)
    assert added["p50"] == pytest.approx(0.3)
    assert added["p90"] == pytest.approx(0.3)
    assert added["p99"] == pytest.approx(2.0)


def test_median_rate_ignores_one_disturbed_round() -> None:
    assert median_rate([1500.0, 200.0, 1600.0]) == 1500.0


@pytest.mark.parametrize(
    ("direct", "router", "bound"),
    [(5000.0, 1200.0, False), (1300.0, 1200.0, True), (1500.0, 1200.0, False)],
)
def test_client_bound_when_direct_is_barely_faster(
    direct: float, router: float, bound: bool
) -> None:
    assert client_bound(direct, router) is bound


def test_memory_with_early_growth_only_is_flat() -> None:
    trace = MemoryTrace(1000, (100 * MIB, 104 * MIB, *[104 * MIB] * 9))
    assert trace.growth_bytes == 4 * MIB
    assert trace.second_half_growth_bytes == 0
    assert trace.flat
    assert trace.to_dict()["growth_mib"] == 4.0


def test_memory_growing_steadily_is_not_flat() -> None:
    trace = MemoryTrace(1000, tuple(100 * MIB + step * MIB for step in range(11)))
    assert trace.second_half_growth_bytes == 5 * MIB > FLAT_TOLERANCE_BYTES
    assert not trace.flat
    assert trace.to_dict()["flat"] is False


def _results(router_rps: float, direct_stream_rps: float) -> Results:
    latency = {
        "non-streaming": Latency(
            total={"direct": _ms(0.2, 0.2, 0.2), "router": _ms(0.6, 0.6, 0.6)},
            first_byte={"direct": _ms(0.2, 0.2, 0.2), "router": _ms(0.6, 0.6, 0.6)},
        ),
        "streaming": Latency(
            total={"direct": _ms(0.3, 0.3, 0.3), "router": _ms(1.3, 1.3, 1.3)},
            first_byte={"direct": _ms(0.25, 0.25, 0.25), "router": _ms(0.9, 0.9, 0.9)},
        ),
    }
    throughput = {
        "non-streaming": {"direct": [6000.0, 5000.0, 7000.0], "router": [router_rps] * 3},
        "streaming": {"direct": [direct_stream_rps] * 3, "router": [500.0] * 3},
    }
    memory = MemoryTrace(10_000, (80 * MIB, *[81 * MIB] * 10))
    return Results(
        settings=Settings(),
        latency=latency,
        throughput=throughput,
        memory=memory,
        sent={"direct": 100, "router": 90},
        upstream_completions=190,
        servers={"event_loop": "uvloop", "http": "httptools", "router_workers": 1},
    )


def test_markdown_table_has_every_measure() -> None:
    table = report.markdown(_results(router_rps=1234.0, direct_stream_rps=4000.0))
    lines = table.splitlines()
    assert lines[0].startswith("| measure | direct | through the router |")
    assert (
        "| non-streaming latency p50 / p90 / p99, concurrency 1 | 0.20 / 0.20 / 0.20 ms "
        "| 0.60 / 0.60 / 0.60 ms | +0.40 / +0.40 / +0.40 ms |" in lines
    )
    assert any(line.startswith("| streaming TTFB p50") and "+0.65" in line for line in lines)
    assert "| non-streaming throughput, concurrency 32 | 6,000 req/s | 1,234 req/s | |" in lines
    assert "| router RSS over 10,000 requests | | 80.0 -> 81.0 MiB | +1.0 MiB |" in lines


def test_notes_give_the_verdicts_and_name_a_client_bound_mode() -> None:
    notes = report.notes(_results(router_rps=3500.0, direct_stream_rps=550.0))
    assert notes[0] == "target added p50 <= 0.5 ms (non-streaming): met (0.40 ms)"
    assert "met (3,500 req/s)" in notes[1]
    assert notes[2].startswith("router memory: flat")
    assert notes[3].startswith("non-streaming: the direct path does 1.7x the router's")
    assert notes[4].startswith("streaming: the direct path is barely faster than the router's")
    assert "the load generator is the bottleneck" in notes[4]


def test_notes_say_when_the_throughput_target_is_missed() -> None:
    notes = report.notes(_results(router_rps=1200.0, direct_stream_rps=4000.0))
    assert "missed (1,200 req/s)" in notes[1]
    assert not any("is the bottleneck" in note for note in notes)


def test_json_document_has_every_figure() -> None:
    document = json.loads(json.dumps(report.to_json(_results(1200.0, 4000.0))))
    assert document["settings"]["concurrency"] == 32
    assert document["environment"]["servers"]["event_loop"] == "uvloop"
    non_streaming = document["latency_ms"]["non-streaming"]
    assert non_streaming["added"]["p50"] == pytest.approx(0.4)
    assert "first_byte" not in non_streaming
    assert document["latency_ms"]["streaming"]["first_byte"]["added"]["p50"] == pytest.approx(0.65)
    rates = document["throughput_rps"]["non-streaming"]
    assert (rates["direct"], rates["router"], rates["client_bound"]) == (6000.0, 1200.0, False)
    assert rates["rounds"]["direct"] == [6000.0, 5000.0, 7000.0]
    assert document["requests"] == {"direct": 100, "router": 90, "upstream_completions": 190}
    assert document["targets"]["met"] == {
        "added_p50": True,
        "router_rps": False,
        "memory_flat": True,
    }
