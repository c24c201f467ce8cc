"""Latency and throughput of each model as the router has seen them, for
``provider.sort`` and ``model: "auto"``.

Exponentially weighted moving averages: recent requests count most, so a provider that
slows down is ranked lower within a few requests, and memory is one pair of numbers per
model.
"""

from __future__ import annotations

from dataclasses import dataclass

# Weight of the newest sample.
ALPHA = 0.2


@dataclass
class ModelStats:
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    samples: int = 0


def _ewma(old: float | None, sample: float) -> float:
    return sample if old is None else old + ALPHA * (sample - old)


class LiveStats:
    def __init__(self) -> None:
        self._models: dict[str, ModelStats] = {}

    def record(self, model: str, ttft_s: float, output_tokens: int, decode_s: float) -> None:
        """One successful request: time to its first token (or to the whole answer when
        not streamed), and the output tokens produced over ``decode_s`` seconds."""
        stats = self._models.setdefault(model, ModelStats())
        stats.samples += 1
        stats.ttft_s = _ewma(stats.ttft_s, ttft_s)
        if output_tokens > 0 and decode_s > 0:
            stats.tokens_per_s = _ewma(stats.tokens_per_s, output_tokens / decode_s)

    def get(self, model: str) -> ModelStats:
        return self._models.get(model, ModelStats())
