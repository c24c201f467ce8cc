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


def test_after_the_cooldown_one_probe_at_a_time_and_the_others_pass_by() -> None:
    clock = Clock()
    board = HealthBoard(failure_threshold=1, cooldown_s=30, clock=clock)
    assert not board.start_probe("groq")  # never failed: nothing to probe
    board.failure("groq", "503")
    assert not board.start_probe("groq")  # cooling down
    clock.now += 30
    assert board.available("groq")
    assert board.start_probe("groq")
    # Until the probe answers, every other request passes the target by.
    assert not board.available("groq")
    assert not board.start_probe("groq")
    board.end_probe("groq")  # no verdict (the client left): the next request probes
    assert board.available("groq")
    assert board.start_probe("groq")
    board.failure("groq", "503")
    board.end_probe("groq")  # the probe failed: cooled down again
    assert not board.available("groq")
    assert board.report(["groq"])[0]["state"] == "cooling_down"
    clock.now += 30
    assert board.start_probe("groq")
    board.end_probe("groq", answered=True)  # a stream's first token: healthy again
    assert board.available("groq")
    assert not board.start_probe("groq")
    assert board.report(["groq"])[0]["state"] == "healthy"
