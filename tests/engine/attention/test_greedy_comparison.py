"""The rule the backend equivalence test applies to two greedy generations, on made-up
logprobs: a shared near-tie may part them, nothing else may."""

from __future__ import annotations

import pytest
from greedy_comparison import LOGPROB_TOLERANCE, NEAR_TIE_NATS, positions_that_agree

from switchyard.api.client import Generation
from switchyard.api.v1 import engine_pb2


def step(chosen: int, logprob: float, runner_up: int, runner_up_logprob: float):
    top = [
        engine_pb2.TopLogprob(token_id=chosen, logprob=logprob),
        engine_pb2.TopLogprob(token_id=runner_up, logprob=runner_up_logprob),
    ]
    return engine_pb2.TokenLogprob(token_id=chosen, logprob=logprob, top=top)


def generation(*steps) -> Generation:
    return Generation(logprobs=list(steps), token_ids=[s.token_id for s in steps])


def test_identical_generations_agree_everywhere() -> None:
    steps = [step(1, -0.1, 2, -3.0), step(3, -0.5, 4, -1.5)]
    assert positions_that_agree(generation(*steps), generation(*steps), "r") == 2


def test_a_shared_near_tie_may_part_them_and_ends_the_comparison() -> None:
    want = generation(step(1, -0.1, 2, -3.0), step(5, -1.0, 6, -1.0 - NEAR_TIE_NATS / 2))
    have = generation(step(1, -0.12, 2, -3.0), step(6, -1.05, 5, -1.05))
    assert positions_that_agree(want, have, "r") == 1


def test_a_clear_choice_made_differently_fails() -> None:
    want = generation(step(5, -0.2, 6, -2.0))
    have = generation(step(6, -1.0, 5, -1.05))
    with pytest.raises(AssertionError, match="stock margin was clear"):
        positions_that_agree(want, have, "r")


def test_a_logprob_beyond_the_tolerance_fails_even_when_the_tokens_agree() -> None:
    want = generation(step(5, -0.2, 6, -2.0))
    have = generation(step(5, -0.2 - 2 * LOGPROB_TOLERANCE, 6, -2.0))
    with pytest.raises(AssertionError, match="logprob"):
        positions_that_agree(want, have, "r")


def test_parting_on_a_token_that_was_not_the_runner_up_fails() -> None:
    want = generation(step(5, -1.0, 6, -1.1))
    have = generation(step(7, -1.0, 6, -1.05))
    with pytest.raises(AssertionError, match="runner-up"):
        positions_that_agree(want, have, "r")
