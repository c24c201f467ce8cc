"""The replica benchmark's arithmetic, table, JSON, router config and CLI refusals; none of
them starts an engine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from switchyard.bench.router import replicas
from switchyard.bench.router.replicas import (
    Outcome,
    Results,
    Settings,
    combined_hit_rate,
    prompt_token_shares,
    router_config,
)
from switchyard.bench.serving.metrics import compute_metrics
from switchyard.bench.serving.record import RequestRecord
from switchyard.bench.serving.server_metrics import ServerFigures
from switchyard.cli.main import build_parser
from switchyard.router.config import parse_config


def _figures(hits: float, queries: float) -> ServerFigures:
    return ServerFigures(prefix_cache_hits=hits, prefix_cache_queries=queries)


def _metrics(*ttfts_ms: float):
    records = []
    for ttft in ttfts_ms:
        record = RequestRecord(start_s=0.0, prompt_tokens=600)
        record.add_chunk(ttft / 1000, 1, None)
        record.output_tokens, record.success = 1, True
        records.append(record)
    return compute_metrics(records, duration_s=1.0)


def test_hit_rate_pools_tokens_over_replicas_rather_than_averaging_rates() -> None:
    engines = {"a": _figures(900, 1000), "b": _figures(0, 200)}
    # 900 / 1200, not the mean of 90 % and 0 %.
    assert combined_hit_rate(engines) == pytest.approx(0.75)
    assert prompt_token_shares(engines) == pytest.approx({"a": 1000 / 1200, "b": 200 / 1200})


@pytest.mark.parametrize(
    "engines",
    [
        {"a": _figures(900, 1000), "b": None},  # b's counters could not be read
        {"a": _figures(900, 1000), "b": ServerFigures(prefix_cache_queries=10)},
        {"a": _figures(0, 0), "b": _figures(0, 0)},  # nothing looked up
    ],
    ids=["unreadable-replica", "missing-counter", "no-queries"],
)
def test_hit_rate_is_unknown_rather_than_partial(engines: dict) -> None:
    assert combined_hit_rate(engines) is None


def _results() -> Results:
    settings = Settings(groups=2, prompts_per_group=3)
    return Results(
        settings,
        [
            Outcome("single", 0, _metrics(100, 120, 300), {"a": _figures(600, 1000)}),
            Outcome(
                "cache_aware",
                1,
                _metrics(50, 60, 70),
                {"a": _figures(270, 500), "b": _figures(330, 500)},
            ),
            Outcome("round_robin", 2, _metrics(80, 90, 400), {"a": _figures(0, 0), "b": None}),
        ],
    )


def test_markdown_has_one_row_per_configuration() -> None:
    table = replicas.markdown(_results())
    assert table.splitlines()[0].startswith("2 system prompts of 512 tokens x 3 questions")
    assert "| single | 1 | 60.0% | 120.0 ms | 264.0 ms | a 100% | 3 / 0 |" in table
    assert "| cache_aware | 2 | 60.0% | 60.0 ms | 68.0 ms | a 50% / b 50% | 3 / 0 |" in table
    assert "| round_robin | 2 | n/a | 90.0 ms | 338.0 ms | n/a | 3 / 0 |" in table


def test_json_is_strict_and_complete() -> None:
    document = json.loads(json.dumps(replicas.to_json(_results()), allow_nan=False))
    assert document["settings"]["configurations"] == ["single", "cache_aware", "round_robin"]
    single, cache_aware, round_robin = document["configurations"]
    assert single["replicas"] == ["a"] and single["prefix_cache_hit_rate"] == 0.6
    assert cache_aware["engines"]["b"]["prefix_cache_hit_rate"] == 0.66
    assert cache_aware["ttft_ms"]["median"] == pytest.approx(60.0)
    assert round_robin["prefix_cache_hit_rate"] is None and round_robin["engines"]["b"] is None
    assert document["environment"]["python"]


@pytest.mark.parametrize("configuration", replicas.CONFIGURATIONS)
def test_router_accepts_the_benchmarks_config(
    configuration: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_KEY", "k")
    targets = (
        {"a": "127.0.0.1:1"}
        if configuration == "single"
        else {"a": "127.0.0.1:1", "b": "127.0.0.1:2"}
    )
    config = parse_config(router_config(targets, configuration, "BENCH_KEY"))
    assert [engine.label for engine in config.engines] == list(targets)
    if configuration != "single":
        assert config.replica_policy == configuration


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings(configurations=("single", "random")), "configurations: choose from"),
        (Settings(configurations=("single", "single")), "each at most once"),
        (Settings(system_prompt_len=2000, question_len=64), "exceed --max-model-len"),
    ],
)
def test_settings_that_would_fail_late_are_refused(settings: Settings, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings.check()


def test_cli_routes_to_each_router_benchmark() -> None:
    parser = build_parser()
    overhead = parser.parse_args(["bench", "router", "--requests", "5"])
    assert overhead.run.__name__ == "_run" and overhead.requests == 5
    args = parser.parse_args(
        ["bench", "router", "replicas", "--configurations", "single,least_loaded", "--groups", "2"]
    )
    assert args.run.__name__ == "_run_replicas"
    assert args.configurations == ("single", "least_loaded") and args.groups == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--configurations", "single,random"], "--configurations: a comma-separated list"),
        (["--groups", "0"], "--groups: must be at least 1"),
        (["--kv-cache-gib", "-1"], "--kv-cache-gib: must be a positive number"),
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str], message: str) -> None:
    command = [sys.executable, "-m", "switchyard.cli.main", "bench", "router", "replicas"]
    result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_too_long_prompts_fail_before_any_engine_starts() -> None:
    command = [sys.executable, "-m", "switchyard.cli.main", "bench", "router", "replicas"]
    result = subprocess.run(
        [*command, "--system-prompt-len", "4000"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: system prompt + question + output tokens exceed")
