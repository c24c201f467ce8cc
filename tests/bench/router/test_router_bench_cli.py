"""``switchyard bench router`` run for real with tiny numbers, and its refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

COMMAND = [sys.executable, "-m", "switchyard.cli.main", "bench", "router"]
TINY = ["--requests", "50", "--rounds", "2", "--concurrency", "4", "--duration-s", "0.3"]
TINY += ["--warmup", "5", "--memory-requests", "40"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=120)


def test_end_to_end_with_tiny_numbers(tmp_path: Path) -> None:
    out = tmp_path / "router.json"
    result = _run(*TINY, "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "| non-streaming latency p50 / p90 / p99, concurrency 1 |" in result.stdout
    assert "target added p50 <= 0.5 ms" in result.stdout
    document = json.loads(out.read_text())

    for mode in ("non-streaming", "streaming"):
        for path in ("direct", "router"):
            latency = document["latency_ms"][mode][path]
            assert 0 < latency["median"] <= latency["p90"] <= latency["p99"]
        rates = document["throughput_rps"][mode]
        assert len(rates["rounds"]["router"]) == 2
        assert rates["direct"] > 0 and rates["router"] > 0
    streaming = document["latency_ms"]["streaming"]
    assert 0 < streaming["first_byte"]["router"]["median"] <= streaming["router"]["p99"]

    # Every routed request reached the upstream: the router proxied, it did not answer.
    requests = document["requests"]
    measured = 2 * 2 * 50 + 2 * 2 * 5 + 40  # latency, warm-up at 1 and at 4, memory
    assert requests["router"] >= measured and requests["direct"] >= measured - 40
    assert requests["upstream_completions"] == requests["direct"] + requests["router"]

    memory = document["memory"]
    assert memory["requests"] == 40
    assert len(memory["rss_mib"]) == 11 and min(memory["rss_mib"]) > 0
    assert document["environment"]["servers"]["router_workers"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--requests", "0"], "--requests: must be at least 1, got 0"),
        (["--concurrency", "many"], "--concurrency: not an integer"),
        (["--duration-s", "-1"], "--duration-s: must be a positive number of seconds"),
        (["--memory-requests", "-5"], "--memory-requests: must be at least 1"),
        (["--warmup", "-1"], "--warmup: must be at least 0"),
    ],
)
def test_bad_numbers_are_usage_errors(args: list[str], message: str) -> None:
    result = _run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("where", ["missing", "directory"])
def test_unwritable_json_path_fails_before_the_run(tmp_path: Path, where: str) -> None:
    path = tmp_path / "missing" / "out.json" if where == "missing" else tmp_path
    result = _run("--json", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("error: --json: ")
    assert "Traceback" not in result.stderr
    assert "warming up" not in result.stderr
