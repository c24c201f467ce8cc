"""Checks of measured latency distributions against the timings a loopback server injected."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import numpy as np
import pytest

from switchyard.bench.serving.metrics import Distribution

STATS = ("mean", "median", "p90", "p99", "std")


def expected_ms(truth_ms: Sequence[float]) -> dict[str, float]:
    """Each statistic of the injected values, computed here with numpy directly."""
    values = np.asarray(truth_ms, dtype=float)
    return {
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "p90": float(np.percentile(values, 90)),
        "p99": float(np.percentile(values, 99)),
        "std": float(values.std()),
    }


def assert_matches(
    name: str, measured: Distribution, truth_ms: Sequence[float], tolerance_ms: float
) -> None:
    """Every statistic of ``measured`` within ``tolerance_ms`` of the injected truth's."""
    for stat, value in expected_ms(truth_ms).items():
        got = getattr(measured, stat)
        assert got == pytest.approx(value, abs=tolerance_ms), f"{stat} {name}: {got} != {value}"


async def in_one_of(attempts: int, measure: Callable[[], Awaitable[None]]) -> None:
    """Run ``measure`` (a timed run and its assertions) until it passes, at most
    ``attempts`` times: on a shared machine another process can stall a whole run by
    tens of milliseconds, while a wrong definition fails every attempt."""
    for attempt in range(1, attempts + 1):
        try:
            await measure()
            return
        except AssertionError:
            if attempt == attempts:
                raise
