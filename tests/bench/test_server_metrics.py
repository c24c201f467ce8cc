"""Server-side figures: Prometheus parsing, deltas over a run, and their absence."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from loopback_server import PER_REQUEST, FakeServer
from rich.console import Console

from switchyard.bench.serving.report import print_summary
from switchyard.bench.serving.serve import ServeSettings, run_serve
from switchyard.bench.serving.server_metrics import (
    ServerFigures,
    parse_prometheus,
    prometheus_scraper,
    server_figures,
)
from switchyard.bench.serving.workloads import BenchRequest
from switchyard.cli.main import main

REQUEST = BenchRequest(
    messages=({"role": "user", "content": "hi"},), prompt="hi", prompt_len=1, output_len=2
)


def test_prometheus_counters_are_summed_over_label_sets() -> None:
    text = """\
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 300.0
vllm:prefix_cache_queries_created{engine="0",model_name="m"} 1.7e+09
vllm:prefix_cache_queries_total{engine="1",model_name="m \\"x\\" {y}"} 100.0
vllm:prefix_cache_hits_total{engine="0"} 40
vllm:external_prefix_cache_hits_total{engine="0"} 7
vllm:num_requests_running 3
"""
    assert parse_prometheus(text) == {"prefix_cache_queries": 400.0, "prefix_cache_hits": 40.0}


def test_figures_are_deltas_and_leave_out_what_is_missing() -> None:
    before = {"prefix_cache_queries": 1000.0, "prefix_cache_hits": 10.0, "spec_drafts": 5.0}
    after = {"prefix_cache_queries": 1800.0, "prefix_cache_hits": 210.0, "spec_drafts": 5.0}
    figures = server_figures(before, after)
    assert figures == ServerFigures(prefix_cache_queries=800, prefix_cache_hits=200, spec_drafts=0)
    assert figures.prefix_cache_hit_rate == 0.25
    assert figures.spec_acceptance_rate is None  # no draft-token counter
    assert figures.spec_mean_acceptance_length is None  # no drafts during the run
    assert figures.to_dict() == {
        "prefix_cache_queries": 800,
        "prefix_cache_hits": 200,
        "spec_drafts": 0,
        "prefix_cache_hit_rate": 0.25,
    }
    assert server_figures(None, after) is None
    assert server_figures(before, None) is None
    assert server_figures({}, {}) is None


async def test_figures_cover_the_measured_run_only(fake_server: FakeServer) -> None:
    settings = ServeSettings(target=fake_server.url, model="fake", warmup=2, max_concurrency=2)
    [result] = await run_serve(settings, requests=[REQUEST] * 4)
    server = result.server
    assert server is not None
    assert server.prefix_cache_queries == 4 * PER_REQUEST["vllm:prefix_cache_queries"]
    assert server.prefix_cache_hits == 4 * PER_REQUEST["vllm:prefix_cache_hits"]
    assert server.prefix_cache_hit_rate == 0.25
    assert server.spec_acceptance_rate == 0.75
    assert server.spec_mean_acceptance_length == 3.25
    console = Console(file=io.StringIO(), width=200)
    print_summary([result], console)
    summary = console.file.getvalue()
    assert "25.0% (100 / 400 tok)" in summary
    assert "75.0% (36 / 48 tok)" in summary
    assert "3.25" in summary


@pytest.mark.parametrize("mode", ["missing", "garbage"])
async def test_a_target_without_usable_metrics_just_has_no_figures(
    fake_server: FakeServer, mode: str
) -> None:
    fake_server.metrics = mode
    try:
        [result] = await run_serve(
            ServeSettings(target=fake_server.url, model="fake"), requests=[REQUEST] * 2
        )
    finally:
        fake_server.metrics = "prometheus"
    assert result.metrics.completed == 2
    assert result.server is None
    console = Console(file=io.StringIO(), width=200)
    print_summary([result], console)
    assert "prefix cache" not in console.file.getvalue()


async def test_an_unreachable_metrics_endpoint_gives_nothing() -> None:
    assert await prometheus_scraper("http://127.0.0.1:9")() is None


def test_saved_results_carry_the_figures(fake_server: FakeServer, tmp_path: Path) -> None:
    dataset = tmp_path / "one.jsonl"
    dataset.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    saved, table = tmp_path / "result.json", tmp_path / "runs.csv"
    argv = ["bench", "serve", "--target", fake_server.url, "--model", "fake"]
    argv += ["--workload", "jsonl", "--dataset-path", str(dataset), "--num-prompts", "2"]
    argv += ["--jsonl-output-len", "2", "--save", str(saved), "--csv", str(table)]
    assert main(argv) == 0
    [run] = json.loads(saved.read_text())["runs"]
    assert run["server"]["prefix_cache_hit_rate"] == 0.25
    assert run["server"]["spec_draft_tokens"] == 24
    with table.open() as handle:
        [row] = list(csv.DictReader(handle))
    assert float(row["spec_acceptance_rate"]) == 0.75
    assert float(row["spec_mean_acceptance_length"]) == 3.25
