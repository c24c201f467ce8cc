"""The benchmark against a loopback server whose timings are known (see conftest.py)."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path

import pytest
from loopback_server import API_KEY, GAP_S, PROMPT_TOKENS, TTFT_S, FakeServer
from rich.console import Console

from switchyard.bench.serving.progress import RunProgress
from switchyard.bench.serving.runner import TargetError
from switchyard.bench.serving.serve import ServeSettings, run_serve
from switchyard.bench.serving.workloads import BenchRequest
from switchyard.cli.main import main

OUTPUT_TOKENS = 10
# Scheduling noise on a loaded CI machine: a few ms on each measured interval.
TOLERANCE_MS = 8.0


def _request(content: str = "hello", output_len: int = OUTPUT_TOKENS) -> BenchRequest:
    return BenchRequest(
        messages=({"role": "user", "content": content},),
        prompt=content,
        prompt_len=1,
        output_len=output_len,
    )


def _settings(server: FakeServer, **overrides: object) -> ServeSettings:
    return ServeSettings(target=server.url, model="fake", **overrides)


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
async def test_latencies_match_the_injected_timings(fake_server: FakeServer, endpoint: str) -> None:
    settings = _settings(fake_server, endpoint=endpoint, max_concurrency=4)
    [result] = await run_serve(settings, requests=[_request() for _ in range(8)])
    m = result.metrics
    assert (m.completed, m.failed) == (8, 0)
    ttft_ms, gap_ms = TTFT_S * 1000, GAP_S * 1000
    e2el_ms = ttft_ms + (OUTPUT_TOKENS - 1) * gap_ms
    for stat in ("mean", "median"):
        assert getattr(m.ttft_ms, stat) == pytest.approx(ttft_ms, abs=TOLERANCE_MS)
        assert getattr(m.tpot_ms, stat) == pytest.approx(gap_ms, abs=2.5)
        assert getattr(m.itl_ms, stat) == pytest.approx(gap_ms, abs=2.5)
        assert getattr(m.e2el_ms, stat) == pytest.approx(e2el_ms, abs=TOLERANCE_MS)
    # Two waves of four requests; throughputs are the token counts over that duration.
    assert m.duration_s == pytest.approx(2 * e2el_ms / 1000, rel=0.15)
    assert m.total_output_tokens == 8 * OUTPUT_TOKENS
    assert m.total_input_tokens == 8 * PROMPT_TOKENS
    assert m.request_throughput == pytest.approx(8 / m.duration_s)
    assert m.output_throughput == pytest.approx(80 / m.duration_s)
    assert m.total_token_throughput == pytest.approx((80 + 8 * PROMPT_TOKENS) / m.duration_s)
    assert m.peak_output_throughput == 80  # the whole run fits in the first second
    assert all(len(r.itl_s) == OUTPUT_TOKENS - 1 for r in result.records)
    body = fake_server.bodies[-1]
    assert body["stream_options"] == {"include_usage": True}
    assert (body["max_tokens"], body["ignore_eos"]) == (OUTPUT_TOKENS, True)


async def test_goodput_counts_only_requests_meeting_every_slo(fake_server: FakeServer) -> None:
    requests = [_request() for _ in range(4)]
    [lenient] = await run_serve(
        _settings(fake_server, goodput="ttft:500,tpot:100,e2el:1000"), requests=requests
    )
    assert lenient.metrics.goodput == pytest.approx(lenient.metrics.request_throughput)
    [strict] = await run_serve(_settings(fake_server, goodput="ttft:500,tpot:2"), requests=requests)
    assert strict.metrics.goodput == 0.0


async def test_failed_requests_are_counted_by_kind(fake_server: FakeServer) -> None:
    requests = [_request("FAIL" if i % 3 == 0 else "ok") for i in range(6)]
    [result] = await run_serve(_settings(fake_server), requests=requests)
    m = result.metrics
    assert (m.completed, m.failed, m.errors) == (4, 2, {"http_500": 2})
    assert m.total_output_tokens == 4 * OUTPUT_TOKENS
    failed = [r for r in result.records if not r.success]
    assert all("injected failure" in r.error for r in failed)


@pytest.mark.parametrize(
    ("target", "failure"),
    [("http://127.0.0.1:9", "connection"), ("grpc://127.0.0.1:9", "grpc_UNAVAILABLE")],
)
async def test_unreachable_target_stops_the_run(target: str, failure: str) -> None:
    settings = ServeSettings(target=target, model="fake", request_rate=20)
    started = time.perf_counter()
    with pytest.raises(TargetError, match=f"first request failed \\({failure}.*--target"):
        await run_serve(settings, requests=[_request() for _ in range(100)])
    assert time.perf_counter() - started < 2  # not the 5 s the schedule would take


async def test_sweep_runs_one_benchmark_per_value(fake_server: FakeServer) -> None:
    settings = _settings(fake_server, sweep="concurrency=1,4", warmup=2)
    calls_before = len(fake_server.bodies)
    results = await run_serve(settings, requests=[_request(output_len=2) for _ in range(4)])
    assert [r.load.max_concurrency for r in results] == [1, 4]
    assert all(r.metrics.completed == 4 for r in results)
    # Serialized requests take about four times as long as four at once.
    assert results[0].metrics.duration_s > 2.5 * results[1].metrics.duration_s
    assert len(fake_server.bodies) - calls_before == 2 * (2 + 4)  # warm-up is sent per run


def _dataset(tmp_path: Path, failing: int) -> Path:
    lines = [
        {"messages": [{"role": "user", "content": "FAIL" if i < failing else "hi"}]}
        for i in range(4)
    ]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _cli(server: FakeServer, dataset: Path, tmp_path: Path, *extra: str) -> int:
    argv = ["bench", "serve", "--target", server.url, "--model", "fake", "--workload", "jsonl"]
    argv += ["--dataset-path", str(dataset), "--num-prompts", "4", "--jsonl-output-len", "3"]
    return main([*argv, *extra])


def test_cli_exit_code_follows_max_failures(fake_server: FakeServer, tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, failing=1)
    assert _cli(fake_server, dataset, tmp_path) == 1
    assert _cli(fake_server, dataset, tmp_path, "--max-failures", "1") == 0


def test_cli_writes_json_and_csv(fake_server: FakeServer, tmp_path: Path) -> None:
    saved, table = tmp_path / "result.json", tmp_path / "runs.csv"
    code = _cli(
        fake_server,
        _dataset(tmp_path, failing=0),
        tmp_path,
        "--sweep",
        "request-rate=50,100",
        "--save",
        str(saved),
        "--detailed",
        "--csv",
        str(table),
    )
    assert code == 0
    document = json.loads(saved.read_text())
    assert document["settings"]["workload"] == "jsonl"
    assert "python" in document["environment"]
    assert [run["load"]["request_rate"] for run in document["runs"]] == [50, 100]
    assert len(document["runs"][0]["requests"]) == 4
    assert document["runs"][0]["metrics"]["total_output_tokens"] == 12
    with table.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["request_rate"]) for row in rows] == [50.0, 100.0]
    assert all(int(row["completed"]) == 4 for row in rows)


@pytest.mark.parametrize(
    "extra",
    [
        ["--max-concurrency", "0"],
        ["--request-rate", "0"],
        ["--request-rate", "nan"],
        ["--sweep", "concurrency=0"],
        ["--sweep", "concurrency=a"],
        ["--sweep", "concurrency="],
        ["--sweep", "batch=1,2"],
        ["--save", "/no/such/dir/result.json"],
        ["--plot", "plot.txt"],
    ],
)
def test_cli_rejects_settings_that_would_hang(
    fake_server: FakeServer, tmp_path: Path, extra: list[str]
) -> None:
    calls_before = len(fake_server.bodies)
    with pytest.raises(SystemExit, match="error: "):
        _cli(fake_server, _dataset(tmp_path, failing=0), tmp_path, *extra)
    assert len(fake_server.bodies) == calls_before


def test_unknown_target_scheme_is_rejected() -> None:
    with pytest.raises(SystemExit, match="grpc://HOST:PORT"):
        main(["bench", "serve", "--target", "ftp://x:1", "--model", "m", "--num-prompts", "1"])


def test_wrong_api_key_stops_at_the_first_request(fake_server: FakeServer, tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, failing=0)
    calls_before = len(fake_server.bodies)
    with pytest.raises(SystemExit, match=r"http_401: .*Incorrect API key.*check --api-key"):
        _cli(fake_server, dataset, tmp_path, "--api-key", "sk-wrong", "--max-concurrency", "1")
    assert len(fake_server.bodies) == calls_before + 1
    assert _cli(fake_server, dataset, tmp_path, "--api-key", API_KEY) == 0


def test_malformed_jsonl_names_the_file_and_line(fake_server: FakeServer, tmp_path: Path) -> None:
    dataset = tmp_path / "broken.jsonl"
    dataset.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": [\n')
    with pytest.raises(SystemExit, match=rf"error: {dataset}:2: not JSON"):
        _cli(fake_server, dataset, tmp_path)


async def test_progress_bar_counts_the_requests_of_each_run(fake_server: FakeServer) -> None:
    console = Console(
        file=io.StringIO(), force_terminal=True, force_interactive=True, color_system=None
    )
    requests = [_request(output_len=2) for _ in range(4)]
    settings = _settings(fake_server, sweep="concurrency=1,4")
    await run_serve(settings, requests=requests, progress=RunProgress(console))
    drawn = console.file.getvalue()
    for label in ("rate=inf concurrency=1", "rate=inf concurrency=4"):
        assert re.search(rf"{label}.*4/4 requests", drawn)


def test_no_progress_bar_off_a_terminal(
    fake_server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(fake_server, _dataset(tmp_path, failing=0), tmp_path) == 0
    captured = capsys.readouterr()
    assert "Serving benchmark" in captured.out
    assert "requests" not in captured.err and "\x1b" not in captured.err + captured.out


def test_plot_is_a_png_of_distributions_and_the_sweep(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    single, sweep = tmp_path / "single.png", tmp_path / "sweep.png"
    dataset = _dataset(tmp_path, failing=0)
    assert _cli(fake_server, dataset, tmp_path, "--plot", str(single)) == 0
    sweep_flags = ["--sweep", "concurrency=1,4", "--plot", str(sweep)]
    assert _cli(fake_server, dataset, tmp_path, *sweep_flags) == 0
    for path in (single, sweep):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 20_000
    assert sweep.stat().st_size > single.stat().st_size  # two more panels
