"""Which providers and engine replicas are failing, so selection and fallback skip them.

A target (a third-party provider, or one engine replica) that fails ``failure_threshold``
times in a row is cooled down for ``cooldown_s``: candidates it would have served go to
the next one in line. When the cooldown ends the next request probes it: a success
makes it healthy again, a failure cools it down once more. Only failures that say
something about the target count (429, 5xx, connection errors, timeouts), never a
client's bad request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TargetHealth:
    consecutive_failures: int = 0
    cooling_until: float = 0.0
    last_error: str | None = None
    failures: int = 0
    successes: int = 0


class HealthBoard:
    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._targets: dict[str, TargetHealth] = {}

    def _state(self, target: str) -> TargetHealth:
        state = self._targets.get(target)
        if state is None:
            state = self._targets[target] = TargetHealth()
        return state

    def available(self, target: str) -> bool:
        state = self._targets.get(target)
        return state is None or state.cooling_until <= self._clock()

    def success(self, target: str) -> None:
        state = self._state(target)
        state.successes += 1
        state.consecutive_failures = 0
        state.cooling_until = 0.0

    def failure(self, target: str, error: str) -> None:
        state = self._state(target)
        state.failures += 1
        state.consecutive_failures += 1
        state.last_error = error
        if state.consecutive_failures >= self.failure_threshold:
            state.cooling_until = self._clock() + self.cooldown_s

    def report(self, targets: list[str]) -> list[dict[str, object]]:
        """Each target's state, for the admin API and the metrics."""
        now = self._clock()
        rows: list[dict[str, object]] = []
        for target in targets:
            state = self._targets.get(target, TargetHealth())
            cooling = state.cooling_until > now
            rows.append(
                {
                    "target": target,
                    "state": "cooling_down" if cooling else "healthy",
                    "cooldown_remaining_s": round(state.cooling_until - now, 3) if cooling else 0,
                    "consecutive_failures": state.consecutive_failures,
                    "failures": state.failures,
                    "successes": state.successes,
                    "last_error": state.last_error,
                }
            )
        return rows
