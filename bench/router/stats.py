"""What the raw timings and memory samples of the router benchmark mean.

Added latency is the router's percentile minus the direct path's, percentile by
percentile (the convention of LiteLLM's and others' published proxy overheads): the two
samples come from different requests, so there is no per-request difference to take.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from switchyard.bench.serving.metrics import Distribution

# Below this ratio of direct to routed throughput, the client, not the router, is what
# limits both paths: the router path is then at least as fast as it can be measured here.
CLIENT_BOUND_RATIO = 1.25
# RSS growth over the second half of the memory run above which memory is not flat. The
# first half absorbs the allocator's and caches' one-off growth.
FLAT_TOLERANCE_BYTES = 2 << 20
MIB = 1 << 20


def added_ms(router: Distribution, direct: Distribution) -> dict[str, float]:
    """The router's extra milliseconds at p50, p90 and p99."""
    return {
        "p50": router.median - direct.median,
        "p90": router.p90 - direct.p90,
        "p99": router.p99 - direct.p99,
    }


def median_rate(rates: Sequence[float]) -> float:
    """The typical requests/s of repeated runs; one disturbed run does not move it."""
    return statistics.median(rates)


def client_bound(direct_rps: float, router_rps: float) -> bool:
    """Whether the direct path is barely faster than the routed one, which means the load
    generator saturates first and the router's real capacity is not measured."""
    return direct_rps < router_rps * CLIENT_BOUND_RATIO


@dataclass(frozen=True)
class MemoryTrace:
    """The router's RSS before a run of ``requests`` requests and after each of its slices."""

    requests: int
    rss_bytes: tuple[int, ...]

    @property
    def growth_bytes(self) -> int:
        return self.rss_bytes[-1] - self.rss_bytes[0]

    @property
    def second_half_growth_bytes(self) -> int:
        return self.rss_bytes[-1] - self.rss_bytes[len(self.rss_bytes) // 2]

    @property
    def flat(self) -> bool:
        return self.second_half_growth_bytes <= FLAT_TOLERANCE_BYTES

    @property
    def peak_growth_bytes(self) -> int:
        """How far the second half's highest sample passes the first half's. Requests of
        very different sizes move RSS up and down by megabytes; a leak raises its peaks."""
        middle = len(self.rss_bytes) // 2
        return max(self.rss_bytes[middle:]) - max(self.rss_bytes[: middle + 1])

    @property
    def bounded(self) -> bool:
        return self.peak_growth_bytes <= FLAT_TOLERANCE_BYTES

    def to_dict(self) -> dict:
        return {
            "requests": self.requests,
            "rss_mib": [round(rss / MIB, 2) for rss in self.rss_bytes],
            "growth_mib": round(self.growth_bytes / MIB, 2),
            "second_half_growth_mib": round(self.second_half_growth_bytes / MIB, 2),
            "flat": self.flat,
            "peak_growth_mib": round(self.peak_growth_bytes / MIB, 2),
            "bounded": self.bounded,
        }
