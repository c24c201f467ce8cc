"""Which providers and engine replicas are failing, so selection and fallback skip them.

A target (a third-party provider, or one engine replica) that fails ``failure_threshold``
times in a row is cooled down for ``cooldown_s``: candidates it would have served go to
the next one in line. When the cooldown ends one request probes it (half-open): until
that probe answers, every other request still passes the target by, since a target
that hangs would otherwise hold each request that arrives in the meantime. A success
makes it healthy again, a failure cools it down once more, and a probe that ends
without a verdict (the client left, or sent a bad request) lets the next request probe.
Only failures that say something about the target count (429, 5xx, connection errors,
timeouts), never a client's bad request.
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
    # A request probes the target, its cooldown over; the others pass it by meanwhile.
    probing: bool = False


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
        """Whether requests go to ``target``: not cooling down, nor being probed."""
        state = self._targets.get(target)
        return state is None or (state.cooling_until <= self._clock() and not state.probing)

    def start_probe(self, target: str) -> bool:
        """Whether an attempt at ``target`` made now is its probe: its cooldown is over and
        nobody probes it yet. The one that gets True calls :meth:`end_probe` once it has
        an answer, or none."""
        state = self._targets.get(target)
        if state is None or state.probing or not 0 < state.cooling_until <= self._clock():
            return False
        state.probing = True
        return True

    def end_probe(self, target: str, answered: bool = False) -> None:
        """The probe of ``target`` is over; ``answered``: it answered (a stream's first
        token), so the target is healthy again before the attempt's outcome is known.
        A failure recorded before this has cooled it down again already."""
        state = self._state(target)
        state.probing = False
        if answered:
            state.consecutive_failures = 0
            state.cooling_until = 0.0

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
