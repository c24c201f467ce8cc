"""Choosing a variant by weight: sticky for a known user, random otherwise.

A user is hashed with the router and route names onto a line from 0 to 100 cut into
the variants' weights, in config order. The hash is an unkeyed BLAKE2b, not Python's
salted ``hash()``, so every router replica and every restart puts a user at the same
point, with no shared state. Moving weight between two neighbouring variants moves
exactly the users between the old and the new cut: put variants that trade weight next
to each other. (No stateless scheme keeps every other variant's users in place for all
trades among three or more variants, so neighbours are the contract.)
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

_SCALE = float(1 << 64)


def point(router: str, route: str, user: str) -> float:
    """The user's place on the weight line, in [0, 100)."""
    digest = hashlib.blake2b(f"{router}/{route}/{user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE * 100.0


def pick(weights: Sequence[int], at: float) -> int:
    """The index of the variant whose slice of the line holds ``at``."""
    edge = 0
    for index, weight in enumerate(weights):
        edge += weight
        if at < edge:
            return index
    # Only reachable if weights sum to less than 100, which the config refuses.
    return len(weights) - 1


def choose(
    weights: Sequence[int], router: str, route: str, user: str | None, rng: random.Random
) -> int:
    at = point(router, route, user) if user else rng.random() * 100.0
    return pick(weights, at)
