"""What one benchmark request measured, and the interface every target implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from switchyard.bench.serving.workloads import BenchRequest


@dataclass
class RequestRecord:
    """Timings of one request, in seconds from its own send time.

    ``chunk_tokens[i]`` is how many tokens the i-th chunk carried (1 per SSE event with
    choices, as ``vllm bench serve`` counts; the exact count over gRPC); the chunks arrived
    at ``ttft_s`` and then after each gap in ``itl_s``. ``generated_text`` is the reply,
    kept because a multi-turn conversation sends it back in its next turn (and ``--detailed``
    saves it, as ``vllm bench serve`` does).
    """

    start_s: float
    success: bool = False
    ttft_s: float = 0.0
    latency_s: float = 0.0
    itl_s: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    output_tokens: int = 0
    generated_text: str = ""
    error_kind: str = ""
    error: str = ""

    def add_chunk(self, now: float, tokens: int, last: float | None) -> float:
        """Record a chunk that arrived at perf-counter time ``now``; returns ``now``."""
        if last is None:
            self.ttft_s = now - self.start_s
        else:
            self.itl_s.append(now - last)
        self.latency_s = now - self.start_s
        self.chunk_tokens.append(tokens)
        return now

    def fail(self, kind: str, message: str) -> RequestRecord:
        self.success = False
        self.error_kind = kind
        self.error = message[:500]
        return self


class Backend(Protocol):
    """A target the benchmark sends requests to."""

    async def send(self, request: BenchRequest) -> RequestRecord: ...

    async def close(self) -> None: ...
