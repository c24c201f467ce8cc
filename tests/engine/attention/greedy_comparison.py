"""How two greedy generations of the same model are compared when each engine computes
in bf16 by its own kernels: see tests/engine/attention/test_backend.py for why."""

from __future__ import annotations

from switchyard.api.client import Generation
from switchyard.api.v1 import engine_pb2

# Measured between our backend and vLLM's (AMX and vector kernels) on these requests:
# at most 0.08 nats on a sampled token's logprob in bf16 (Gemma), far less in float32.
# Two bf16 logit ulps (0.25) is far below what a broken attention layer costs.
LOGPROB_TOLERANCE = 0.25
# Two ulps of a bf16 logit between 16 and 32, plus float slack.
NEAR_TIE_NATS = 0.26


def _margin(token_logprob: engine_pb2.TokenLogprob) -> float:
    top = sorted((t.logprob for t in token_logprob.top), reverse=True)
    return top[0] - top[1]


def _runner_up(token_logprob: engine_pb2.TokenLogprob) -> int:
    return max(
        (t for t in token_logprob.top if t.token_id != token_logprob.token_id),
        key=lambda t: t.logprob,
    ).token_id


def positions_that_agree(want: Generation, have: Generation, request: str) -> int:
    """How many leading tokens of two greedy generations agree; fails on a difference
    that is not a shared near-tie or on a logprob beyond the tolerance."""
    for position, (expected, got) in enumerate(zip(want.logprobs, have.logprobs, strict=True)):
        if expected.token_id != got.token_id:
            where = f"{request}: token {position} ({expected.token!r} vs {got.token!r})"
            assert _margin(expected) <= NEAR_TIE_NATS, f"{where}: stock margin was clear"
            assert _margin(got) <= NEAR_TIE_NATS, f"{where}: our margin was clear"
            assert _runner_up(expected) == got.token_id, f"{where}: not the runner-up"
            assert _runner_up(got) == expected.token_id, f"{where}: not the runner-up"
            return position
        difference = abs(expected.logprob - got.logprob)
        assert difference <= LOGPROB_TOLERANCE, (
            f"{request}: token {position} ({got.token!r}) logprob {got.logprob:.3f}, "
            f"stock {expected.logprob:.3f}"
        )
    return len(want.logprobs)
