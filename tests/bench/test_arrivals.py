"""The arrival schedule: mean interval 1/rate at any burstiness, reproducible by seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from switchyard.bench.serving.arrivals import arrival_offsets
from switchyard.bench.serving.runner import Load, parse_sweep, sweep_loads


@pytest.mark.parametrize("burstiness", [0.5, 1.0, 4.0])
def test_mean_interval_is_the_inverse_rate(burstiness: float) -> None:
    offsets = arrival_offsets(20_000, rate=8.0, burstiness=burstiness, seed=1)
    assert offsets[0] == 0.0
    gaps = np.diff(offsets)
    assert gaps.mean() == pytest.approx(1 / 8, rel=0.05)
    # Gamma(k, 1/(rate k)) has coefficient of variation 1/sqrt(k): burstiness shapes spread.
    assert gaps.std() / gaps.mean() == pytest.approx(1 / math.sqrt(burstiness), rel=0.1)


def test_schedule_is_reproducible_with_a_seed() -> None:
    first = arrival_offsets(100, rate=3.0, seed=7)
    assert np.array_equal(first, arrival_offsets(100, rate=3.0, seed=7))
    assert not np.array_equal(first, arrival_offsets(100, rate=3.0, seed=8))


def test_infinite_rate_sends_everything_at_once() -> None:
    assert not arrival_offsets(5, rate=math.inf).any()


@pytest.mark.parametrize(("rate", "burstiness"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0)])
def test_invalid_rates_are_rejected(rate: float, burstiness: float) -> None:
    with pytest.raises(ValueError):
        arrival_offsets(3, rate=rate, burstiness=burstiness)


def test_sweeps_replace_one_load_field() -> None:
    base = Load(request_rate=2.0, max_concurrency=8)
    assert [x.max_concurrency for x in sweep_loads(base, "concurrency=1,2,4")] == [1, 2, 4]
    rates = sweep_loads(base, "request-rate=1,2.5")
    assert [(x.request_rate, x.max_concurrency) for x in rates] == [(1.0, 8), (2.5, 8)]
    assert sweep_loads(base, None) == [base]


@pytest.mark.parametrize(
    "spec",
    [
        "concurrency",
        "batch=1,2",
        "concurrency=1.5",
        "concurrency=inf",
        "concurrency=nan",
        "request-rate=0",
        "request-rate=nan",
        "request-rate=2,nan",
        "request-rate=-inf",
    ],
)
def test_malformed_sweeps_are_rejected(spec: str) -> None:
    with pytest.raises(ValueError, match=r"--sweep|concurrency values"):
        parse_sweep(spec)


def test_an_infinite_request_rate_sweeps_to_all_at_once() -> None:
    loads = sweep_loads(Load(), "request-rate=2,inf")
    assert [x.request_rate for x in loads] == [2.0, math.inf]
    assert loads[1].label() == "rate=inf concurrency=unlimited"
