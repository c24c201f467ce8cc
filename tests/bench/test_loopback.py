"""The benchmark against a loopback server whose timings are known (see conftest.py)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import socket
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from injected_truth import assert_matches, in_one_of
from loopback_server import API_KEY, PROMPT_TOKENS, FakeServer
from rich.console import Console

from switchyard.bench.serving import serve
from switchyard.bench.serving.metrics import compute_metrics, parse_slos
from switchyard.bench.serving.openai_backend import OpenAIBackend
from switchyard.bench.serving.progress import RunProgress
from switchyard.bench.serving.runner import Load, TargetError, run_benchmark
from switchyard.bench.serving.serve import ServeSettings, run_serve
from switchyard.bench.serving.workloads import BenchRequest
from switchyard.cli.main import main

OUTPUT_TOKENS = 10
# Scheduling noise on a loaded machine: the client's send to the server's first chunk
# (TTFT, E2EL), one late wake-up (a single gap; the server keeps absolute deadlines).
TOLERANCE_MS = 30.0
GAP_TOLERANCE_MS = 15.0
# Injected per request: (TTFT ms, gap ms) with 6 output tokens, so TPOT = gap and
# E2EL = TTFT + 5 gaps = 90, 110, 130, 250, 220, 240, 350, 700 ms. Spread so that the
# statistics differ from each other by more than the tolerance.
SCRIPTS = [(40, 10), (60, 10), (80, 10), (100, 30), (120, 20), (140, 20), (300, 10), (500, 40)]
SCRIPTED_TOKENS = 6


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
async def test_every_metric_matches_the_injected_timings(
    fake_server: FakeServer, endpoint: str
) -> None:
    await in_one_of(3, lambda: _check_every_metric(fake_server, endpoint))


async def _check_every_metric(fake_server: FakeServer, endpoint: str) -> None:
    requests = [_request(f"ttft_ms={t} gap_ms={g}", SCRIPTED_TOKENS) for t, g in SCRIPTS]
    # ttft fails 300 and 500, tpot fails 30 and 40, e2el fails 700: 5 of 8 are good. The
    # warm-up opens the connections, as a real server's would already be.
    settings = _settings(
        fake_server, endpoint=endpoint, goodput="ttft:200,tpot:25,e2el:500", warmup=8
    )
    [result] = await run_serve(settings, requests=requests)
    m = result.metrics
    assert (m.completed, m.failed) == (8, 0), m.errors
    gaps_after_first = SCRIPTED_TOKENS - 1
    ttft = [t for t, _ in SCRIPTS]
    tpot = [g for _, g in SCRIPTS]
    e2el = [t + gaps_after_first * g for t, g in SCRIPTS]
    # vLLM's chat role chunk arrives with the first token: it is the first chunk, and the
    # first token's chunk follows it after a gap of about 0.
    role_gap = [0.0] if endpoint == "chat" else []
    itl = [gap for _, g in SCRIPTS for gap in role_gap + [g] * gaps_after_first]
    assert_matches("TTFT", m.ttft_ms, ttft, TOLERANCE_MS)
    assert_matches("E2EL", m.e2el_ms, e2el, TOLERANCE_MS)
    assert_matches("TPOT", m.tpot_ms, tpot, GAP_TOLERANCE_MS)
    assert_matches("ITL", m.itl_ms, itl, GAP_TOLERANCE_MS)
    # All at once: the run lasts as long as its longest request.
    assert m.duration_s * 1000 == pytest.approx(max(e2el), abs=2 * TOLERANCE_MS)
    assert m.total_output_tokens == 8 * SCRIPTED_TOKENS  # from usage
    assert m.total_input_tokens == 8 * PROMPT_TOKENS  # from usage, not the workload's 1
    assert m.request_throughput == pytest.approx(8 / m.duration_s)
    assert m.output_throughput == pytest.approx(8 * SCRIPTED_TOKENS / m.duration_s)
    assert m.total_token_throughput == pytest.approx(
        8 * (SCRIPTED_TOKENS + PROMPT_TOKENS) / m.duration_s
    )
    # Peak: one per chunk, within the first second: chat's role chunks count too.
    assert m.peak_output_throughput == 8 * (SCRIPTED_TOKENS + len(role_gap))
    assert m.goodput == pytest.approx(5 / m.duration_s)
    # Other SLOs over the same requests: E2EL <= 180 ms: 3; TPOT <= 15 ms: 4.
    for slos, good in (("e2el:180", 3), ("tpot:15", 4), ("ttft:1000", 8)):
        metrics = compute_metrics(result.records, m.duration_s, parse_slos(slos))
        assert metrics.goodput == pytest.approx(good / m.duration_s), slos
    body = fake_server.bodies[-1]
    assert body["stream_options"] == {"include_usage": True}
    assert (body["max_tokens"], body["ignore_eos"]) == (SCRIPTED_TOKENS, True)


async def test_failed_requests_are_counted_by_kind(fake_server: FakeServer) -> None:
    requests = [_request("FAIL" if i % 3 == 0 else "ok") for i in range(6)]
    requests += [_request("fault=error"), _request("fault=empty")]
    [result] = await run_serve(_settings(fake_server, max_concurrency=1), requests=requests)
    m = result.metrics
    assert (m.completed, m.failed) == (4, 4)
    assert m.errors == {"http_500": 2, "stream_error": 1, "no_content": 1}
    assert m.total_output_tokens == 4 * OUTPUT_TOKENS
    failed = [r for r in result.records if not r.success]
    assert "injected failure" in failed[0].error


@pytest.mark.parametrize("scheme", ["http", "grpc"])
@pytest.mark.parametrize("answer", ["refused", "none"])
async def test_unreachable_target_stops_the_run(
    scheme: str, answer: str, unanswered_port: int
) -> None:
    port = 9 if answer == "refused" else unanswered_port
    kind = "connection" if answer == "refused" else "connect_timeout"
    settings = ServeSettings(
        target=f"{scheme}://127.0.0.1:{port}", model="fake", request_rate=20, connect_timeout_s=0.3
    )
    started = time.perf_counter()
    expected = rf"could not connect to --target {scheme}://127\.0\.0\.1:{port} \({kind}: .*--target"
    with pytest.raises(TargetError, match=expected):
        await run_serve(settings, requests=[_request() for _ in range(100)])
    assert time.perf_counter() - started < 2  # not the request timeout, nor the schedule's 5 s


def test_a_down_target_stops_the_cli_before_the_tokenizer_or_workload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def untouchable(*args: object, **kwargs: object) -> None:
        raise AssertionError("touched before --target was checked")

    monkeypatch.setattr(serve, "load_tokenizer", untouchable)
    monkeypatch.setattr(serve, "build_workload", untouchable)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: a connection is refused
        target = f"http://127.0.0.1:{closed.getsockname()[1]}"
        started = time.perf_counter()
        with pytest.raises(SystemExit) as exit_:
            main(["bench", "serve", "--target", target, "--model", "org/some-model"])
    message = str(exit_.value.code)
    assert message.startswith(f"error: could not connect to --target {target} (connection: ")
    assert "\n" not in message
    assert time.perf_counter() - started < 5  # seconds, where the tokenizer alone took 9


async def test_a_first_request_that_cannot_connect_stops_the_run(unanswered_port: int) -> None:
    # The check before the run passed; then the target stopped answering connections.
    backend = OpenAIBackend(f"http://127.0.0.1:{unanswered_port}", "fake", connect_timeout_s=0.3)
    started = time.perf_counter()
    try:
        with pytest.raises(TargetError, match=r"first request failed \(connect_timeout: .*"):
            await run_benchmark(backend, [_request() for _ in range(50)], Load(request_rate=20))
    finally:
        await backend.close()
    assert time.perf_counter() - started < 2


async def test_sweep_runs_one_benchmark_per_value(fake_server: FakeServer) -> None:
    settings = _settings(fake_server, sweep="concurrency=1,4", warmup=2)
    calls_before = len(fake_server.bodies)
    results = await run_serve(settings, requests=[_request(output_len=2) for _ in range(4)])
    assert [r.load.max_concurrency for r in results] == [1, 4]
    assert all(r.metrics.completed == 4 for r in results)
    # Concurrency 1 sends each request after the previous one's last chunk; 4 overlaps all.
    serial, parallel = (sorted(r.records, key=lambda x: x.start_s) for r in results)
    assert all(b.start_s >= a.start_s + a.latency_s for a, b in itertools.pairwise(serial))
    assert max(r.start_s for r in parallel) < min(r.start_s + r.latency_s for r in parallel)
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


def test_cli_exit_code_follows_max_failures(
    fake_server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = _dataset(tmp_path, failing=1)
    assert _cli(fake_server, dataset, tmp_path) == 1
    captured = capsys.readouterr()
    message = "error: a run had 1 failed request(s), more than --max-failures 0"
    assert message in captured.err and message not in captured.out
    assert _cli(fake_server, dataset, tmp_path, "--max-failures", "1") == 0


def _strict_json(text: str) -> dict:
    """Parse as strict JSON: NaN and Infinity, which Python writes by default, are errors."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_cli_writes_json_and_csv(fake_server: FakeServer, tmp_path: Path) -> None:
    saved, table, plot = tmp_path / "result.json", tmp_path / "runs.csv", tmp_path / "p.png"
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
        "--plot",
        str(plot),
        "--max-failures",
        "2",
        "--api-key",
        API_KEY,
    )
    assert code == 0
    text = saved.read_text()
    document = _strict_json(text)
    assert API_KEY not in text
    assert document["settings"]["workload"] == "jsonl"
    assert document["settings"]["connect_timeout_s"] == 10.0
    # Every option as parsed, outputs and exit threshold included; the rate's inf as text.
    arguments = document["arguments"]
    assert arguments["max_failures"] == 2 and arguments["detailed"] is True
    assert (arguments["csv"], arguments["plot"]) == (str(table), str(plot))
    assert (arguments["request_rate"], arguments["sweep"]) == ("inf", "request-rate=50,100")
    assert arguments["api_key"] == "<set>"
    environment = document["environment"]
    assert environment["cpu_count"] >= 1 and environment["cpu_affinity"] >= 1
    assert isinstance(environment["gpus"], list) and "cpu" in environment
    assert "python" in environment and "aiohttp" in environment["packages"]
    started = [datetime.fromisoformat(run["started_utc"]) for run in document["runs"]]
    assert all(s.utcoffset() == timedelta(0) for s in started) and started[0] < started[1]
    assert datetime.fromisoformat(environment["date_utc"]) >= started[1].replace(microsecond=0)
    assert [run["load"]["request_rate"] for run in document["runs"]] == [50, 100]
    assert len(document["runs"][0]["requests"]) == 4
    assert document["runs"][0]["metrics"]["total_output_tokens"] == 12
    with table.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["request_rate"]) for row in rows] == [50.0, 100.0]
    assert [row["started_utc"] for row in rows] == [r["started_utc"] for r in document["runs"]]
    assert all(int(row["completed"]) == 4 for row in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(  # no temporary files left
        ["prompts.jsonl", "result.json", "runs.csv", "p.png"]
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-concurrency", "0"], "--max-concurrency must be > 0"),
        (["--request-rate", "0"], "--request-rate must be > 0"),
        (["--request-rate", "nan"], "--request-rate must be > 0, got nan"),
        (["--burstiness", "inf"], "--burstiness must be finite"),
        (["--random-range-ratio", "nan"], "--random-range-ratio must be in [0, 1)"),
        (["--request-timeout", "0"], "--request-timeout must be > 0, got 0"),
        (["--connect-timeout", "-1"], "--connect-timeout must be > 0"),
        (["--connect-timeout", "inf"], "--connect-timeout must be finite"),
        (["--max-failures", "-1"], "--max-failures must be >= 0, got -1"),
        (["--goodput", "ttft:nan"], "goodput SLO ttft must be a finite number"),
        (["--sweep", "concurrency=0"], "positive"),
        (["--sweep", "concurrency=a"], "must be numbers"),
        (["--sweep", "concurrency="], "positive"),
        (["--sweep", "request-rate=1,nan"], "positive values, got '1,nan'"),
        (["--sweep", "batch=1,2"], "KEY=V1,V2"),
        (["--save", "/no/such/dir/result.json"], "--save: no directory"),
        (["--plot", "plot.txt"], "--plot must end in"),
    ],
)
def test_cli_rejects_settings_that_would_hang(
    fake_server: FakeServer, tmp_path: Path, extra: list[str], message: str
) -> None:
    calls_before = len(fake_server.bodies)
    with pytest.raises(SystemExit, match=f"^error: .*{re.escape(message)}"):
        _cli(fake_server, _dataset(tmp_path, failing=0), tmp_path, *extra)
    assert len(fake_server.bodies) == calls_before


@pytest.mark.parametrize("target", ["ftp://x:1", "grpc://x", "http://x:port", "http://:80"])
def test_malformed_targets_are_rejected(target: str) -> None:
    with pytest.raises(SystemExit, match="grpc://HOST:PORT"):
        main(["bench", "serve", "--target", target, "--model", "m", "--num-prompts", "1"])


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
