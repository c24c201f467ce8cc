"""Cooling down a failing target, and probing it again."""

from __future__ import annotations

from switchyard.router.routing.health import HealthBoard


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_failures_in_a_row_cool_a_target_down_then_a_probe_decides() -> None:
    clock = Clock()
    board = HealthBoard(failure_threshold=3, cooldown_s=30, clock=clock)
    board.failure("groq", "503")
    board.failure("groq", "503")
    board.success("groq")  # the streak is broken
    board.failure("groq", "503")
    board.failure("groq", "503")
    assert board.available("groq")
    board.failure("groq", "429")
    assert not board.available("groq")
    assert board.available("together")
    [row] = board.report(["groq"])
    assert row["state"] == "cooling_down" and row["last_error"] == "429"
    assert row["cooldown_remaining_s"] == 30
    clock.now += 30
    assert board.available("groq")  # probed again
    board.failure("groq", "503")  # the probe failed: cooled down at once
    assert not board.available("groq")
    clock.now += 30
    board.success("groq")
    assert board.available("groq")
    assert board.report(["groq"])[0]["state"] == "healthy"
