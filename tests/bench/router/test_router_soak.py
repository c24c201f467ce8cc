"""``switchyard bench router soak``: the fuzzer's requests, the checks on each answer, the
memory verdict, and a short real run against a real router."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from switchyard.bench.router.fuzz import (
    FAULT_STATUSES,
    FLAKY_ROUTER,
    VALID_MODELS,
    FuzzedRequest,
    fuzzed_request,
)
from switchyard.bench.router.soak import _problem
from switchyard.bench.router.stats import FLAT_TOLERANCE_BYTES, MIB, MemoryTrace

COMMAND = [sys.executable, "-m", "switchyard.cli.main", "bench", "router", "soak"]
KINDS = {
    "valid",
    "large",
    "too_large",
    "fault",
    "fault_fallback",
    "client_leaves",
    "unknown_model",
    "wrong_type",
    "bad_json",
    "bad_auth",
}


def _draw(count: int, seed: int = 0) -> list[FuzzedRequest]:
    rng = random.Random(seed)
    return [fuzzed_request(rng, "sk-soak") for _ in range(count)]


def test_a_seed_replays_the_same_requests_and_another_seed_does_not() -> None:
    assert _draw(200, seed=3) == _draw(200, seed=3)
    assert _draw(200, seed=3) != _draw(200, seed=4)


def test_every_kind_is_drawn_with_the_statuses_it_may_get() -> None:
    drawn = _draw(3000)
    assert {request.kind for request in drawn} == KINDS
    for request in drawn:
        if request.kind in {"valid", "large", "client_leaves"}:
            body = json.loads(request.body)
            assert body["model"] in VALID_MODELS
            assert body["messages"][-1]["role"] == "user"
            assert request.stream == bool(body.get("stream"))
            assert request.headers["Authorization"] == "Bearer sk-soak"
            assert request.expected == {200}
            assert request.leaves == (request.kind == "client_leaves")
        elif request.kind == "fault":
            body = json.loads(request.body)
            fault = body["model"].removeprefix("flaky/")
            assert request.expected == {FAULT_STATUSES[fault][request.stream]}
            assert request.broken_stream == (fault == "cut" and request.stream)
        elif request.kind == "fault_fallback":
            assert json.loads(request.body)["model"] == FLAKY_ROUTER
            assert request.expected == {200} and not request.broken_stream
        elif request.kind == "bad_auth":
            assert request.headers.get("Authorization") != "Bearer sk-soak"
            assert request.expected == {401}
        elif request.kind == "too_large":
            assert len(request.body) > 4 << 20 and request.expected == {413}
        else:
            assert request.expected <= {400, 404}


def test_made_up_values_are_fresh_per_request() -> None:
    users = [json.loads(r.body).get("user") for r in _draw(2000) if r.kind == "valid"]
    named = [user for user in users if user is not None]
    assert len(named) > 200
    assert len(set(named)) > 0.9 * len(named)


@pytest.mark.parametrize(
    ("stream", "expected", "status", "body", "problem"),
    [
        (False, {200}, 200, b"{}", None),
        (True, {200}, 200, b"data: {}\n\ndata: [DONE]\n\n", None),
        (True, {200}, 200, b"data: {}\n\n", "a stream without [DONE]"),
        (False, {400}, 500, b'{"error": {"message": "boom"}}', "expected [400]"),
        (False, {400}, 400, b'{"error": {"message": "bad"}}', None),
        (False, {400}, 400, b"<html>bad</html>", "an error body that is not {error: {message}}"),
        (False, {400}, 400, b'{"error": "bad"}', "an error body that is not {error: {message}}"),
        (False, {401}, 401, b'{"error": {"message": ""}}', "an empty error message"),
    ],
)
def test_each_answer_is_checked_against_its_request(
    stream: bool, expected: set[int], status: int, body: bytes, problem: str | None
) -> None:
    request = FuzzedRequest("k", b"{}", {}, stream, frozenset(expected))
    assert _problem(request, status, body) == problem


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'data: {"choices": []}\n\ndata: {"error": {"message": "cut"}}\n\n', None),
        (
            b'data: {"choices": []}\n\ndata: [DONE]\n\n',
            "an error body that is not {error: {message}}",
        ),
        (b'data: {"choices": []}\n\n', "an error body that is not {error: {message}}"),
    ],
)
def test_a_broken_stream_must_end_with_an_error_event(body: bytes, problem: str | None) -> None:
    request = FuzzedRequest("fault", b"{}", {}, True, frozenset({200}), broken_stream=True)
    assert _problem(request, 200, body) == problem


def test_memory_that_swings_is_bounded_and_memory_that_climbs_is_not() -> None:
    swinging = MemoryTrace(1000, tuple(MIB * value for value in (86, 96, 92, 91, 93, 90, 95)))
    assert swinging.peak_growth_bytes == -MIB and swinging.bounded
    assert not swinging.flat  # the last-sample measure would call the same run growing
    climbing = MemoryTrace(1000, tuple(MIB * (86 + step) for step in range(11)))
    assert climbing.peak_growth_bytes == 5 * MIB > FLAT_TOLERANCE_BYTES
    assert not climbing.bounded
    assert climbing.to_dict()["bounded"] is False


def test_a_short_run_finds_every_answer_as_documented(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    result = subprocess.run(
        [*COMMAND, "--requests", "1000", "--concurrency", "8", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    document = json.loads(out.read_text())
    assert document["finding_count"] == 0, document["findings"]
    statuses = {kind: Counter(counts) for kind, counts in document["statuses"].items()}
    assert sum(sum(c.values()) for c in statuses.values()) == 1000
    assert set(statuses["valid"]) == {"200"} and set(statuses["bad_auth"]) == {"401"}
    assert set(statuses["wrong_type"]) == {"400"} and set(statuses["bad_json"]) == {"400"}
    assert set(statuses["unknown_model"]) <= {"400", "404"}
    assert set(statuses["fault_fallback"]) == {"200"}
    assert {"429", "502", "503"} <= set(statuses["fault"]) <= {"200", "429", "502", "503"}
    assert len(document["memory"]["rss_mib"]) == 21
    # A short run is too short to judge memory: the exit status may be 1 for that alone.
    assert result.returncode == (0 if document["memory"]["bounded"] else 1), result.stderr
    assert "| valid | 200: " in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--requests", "5"], "--requests: must be at least 20, got 5"),
        (["--concurrency", "0"], "--concurrency: must be at least 1"),
        (["--seed", "x"], "--seed: not an integer"),
    ],
)
def test_bad_numbers_are_usage_errors(args: list[str], message: str) -> None:
    result = subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
