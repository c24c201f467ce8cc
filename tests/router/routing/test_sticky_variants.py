"""Weighted, sticky variant choice: the distribution, stickiness, and how few users move
when weight moves."""

from __future__ import annotations

import random

import pytest

from switchyard.router.routing import sticky

USERS = [f"user-{i}" for i in range(20_000)]


def shares(weights: list[int], route: str = "default") -> list[float]:
    counts = [0] * len(weights)
    for user in USERS:
        counts[sticky.choose(weights, "support", route, user, random.Random(0))] += 1
    return [100 * c / len(USERS) for c in counts]


@pytest.mark.parametrize("weights", [[50, 30, 20], [90, 10], [25, 25, 25, 25], [1, 99]])
def test_users_spread_by_weight(weights: list[int]) -> None:
    for share, weight in zip(shares(weights), weights, strict=True):
        assert share == pytest.approx(weight, abs=1.5)


def test_a_user_always_gets_the_same_variant() -> None:
    weights = [50, 30, 20]
    for user in USERS[:500]:
        # Fresh random sources: a sticky choice must not depend on them.
        picks = {
            sticky.choose(weights, "support", "default", user, random.Random(s)) for s in range(5)
        }
        assert len(picks) == 1


def test_the_hash_is_stable_across_processes() -> None:
    # A fixed point, so a change of hash (or a salted one) cannot pass unnoticed.
    assert sticky.point("support", "default", "alice") == pytest.approx(
        int.from_bytes(
            __import__("hashlib").blake2b(b"support/default/alice", digest_size=8).digest(), "big"
        )
        / 2**64
        * 100
    )


def test_the_route_and_router_salt_the_choice() -> None:
    """Two routes do not put the same users in their first variant."""
    weights = [50, 50]
    first = [sticky.choose(weights, "support", "a", u, random.Random()) for u in USERS[:2000]]
    second = [sticky.choose(weights, "support", "b", u, random.Random()) for u in USERS[:2000]]
    agree = sum(x == y for x, y in zip(first, second, strict=True)) / 2000
    assert agree == pytest.approx(0.5, abs=0.05)


def test_moving_ten_points_moves_ten_percent() -> None:
    before = [sticky.choose([50, 30, 20], "r", "x", u, random.Random()) for u in USERS]
    after = [sticky.choose([40, 40, 20], "r", "x", u, random.Random()) for u in USERS]
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert len(moved) / len(USERS) == pytest.approx(0.10, abs=0.01)
    # Only from the variant that lost weight to the one that gained it.
    assert set(moved) == {(0, 1)}


def test_without_user_the_choice_is_weighted_random() -> None:
    rng = random.Random(7)
    picks = [sticky.choose([70, 30], "r", "x", None, rng) for _ in range(20_000)]
    assert 100 * picks.count(0) / len(picks) == pytest.approx(70, abs=1.5)


def test_a_zero_weight_variant_gets_nobody() -> None:
    assert shares([0, 100])[0] == 0
