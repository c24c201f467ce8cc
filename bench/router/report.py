"""The router benchmark's results as a markdown table (for
docs/benchmarks/router-overhead.md), verdicts on the targets, and a JSON document with
everything measured."""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict
from typing import Any

from switchyard.bench.environment import package_versions
from switchyard.bench.router.overhead import MODES, Results
from switchyard.bench.router.stats import MIB, added_ms, client_bound, median_rate
from switchyard.bench.serving.metrics import Distribution

# The targets for one router worker.
TARGET_ADDED_P50_MS = 0.5
TARGET_ROUTER_RPS = 3000.0
# What the router's speed depends on, saved with the numbers.
VERSIONED_PACKAGES = (
    "switchyard",
    "uvicorn",
    "uvloop",
    "httptools",
    "starlette",
    "aiohttp",
    "pydantic",
)


def throughput(results: Results, mode: str) -> dict[str, float]:
    """The median requests/s of the rounds, per path."""
    return {path: median_rate(rates) for path, rates in results.throughput[mode].items()}


def to_json(results: Results) -> dict[str, Any]:
    latency: dict[str, Any] = {}
    for mode, measured in results.latency.items():
        latency[mode] = _paths(measured.total)
        if MODES[mode]:
            latency[mode]["first_byte"] = _paths(measured.first_byte)
    rates: dict[str, Any] = {}
    for mode, rounds in results.throughput.items():
        medians = throughput(results, mode)
        rates[mode] = {
            **medians,
            "rounds": rounds,
            "client_bound": client_bound(medians["direct"], medians["router"]),
        }
    return {
        "settings": asdict(results.settings),
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "packages": package_versions(VERSIONED_PACKAGES),
            "servers": results.servers,
        },
        "latency_ms": latency,
        "throughput_rps": rates,
        "memory": results.memory.to_dict(),
        "requests": {**results.sent, "upstream_completions": results.upstream_completions},
        "targets": {
            "added_p50_ms": TARGET_ADDED_P50_MS,
            "router_rps": TARGET_ROUTER_RPS,
            "met": _targets_met(results),
        },
    }


def _paths(by_path: dict[str, Distribution]) -> dict[str, Any]:
    return {
        "direct": asdict(by_path["direct"]),
        "router": asdict(by_path["router"]),
        "added": added_ms(by_path["router"], by_path["direct"]),
    }


def _targets_met(results: Results) -> dict[str, bool]:
    total = results.latency["non-streaming"].total
    return {
        "added_p50": added_ms(total["router"], total["direct"])["p50"] <= TARGET_ADDED_P50_MS,
        "router_rps": throughput(results, "non-streaming")["router"] >= TARGET_ROUTER_RPS,
        "memory_flat": results.memory.flat,
    }


def _triple(d: Distribution) -> str:
    return f"{d.median:.2f} / {d.p90:.2f} / {d.p99:.2f} ms"


def _added(router: Distribution, direct: Distribution) -> str:
    added = added_ms(router, direct)
    return " / ".join(f"{added[p]:+.2f}" for p in ("p50", "p90", "p99")) + " ms"


def markdown(results: Results) -> str:
    """The results table: latency at concurrency 1 as p50 / p90 / p99, then throughput and
    the router's memory."""
    settings = results.settings
    rows = [
        "| measure | direct | through the router | added by the router |",
        "|---|---|---|---|",
    ]
    for mode, measured in results.latency.items():
        series = [("latency", measured.total)]
        if MODES[mode]:
            series = [("latency to last byte", measured.total), ("TTFB", measured.first_byte)]
        for label, by_path in series:
            direct, router = by_path["direct"], by_path["router"]
            rows.append(
                f"| {mode} {label} p50 / p90 / p99, concurrency 1 | {_triple(direct)} "
                f"| {_triple(router)} | {_added(router, direct)} |"
            )
    for mode in results.throughput:
        rates = throughput(results, mode)
        rows.append(
            f"| {mode} throughput, concurrency {settings.concurrency} "
            f"| {rates['direct']:,.0f} req/s | {rates['router']:,.0f} req/s | |"
        )
    memory = results.memory
    rows.append(
        f"| router RSS over {memory.requests:,} requests | "
        f"| {memory.rss_bytes[0] / MIB:.1f} -> {memory.rss_bytes[-1] / MIB:.1f} MiB "
        f"| {memory.growth_bytes / MIB:+.1f} MiB |"
    )
    return "\n".join(rows)


def notes(results: Results) -> list[str]:
    """Plain-language verdicts: the targets, memory, and whether the client was the limit."""
    met = _targets_met(results)
    total = results.latency["non-streaming"].total
    added_p50 = added_ms(total["router"], total["direct"])["p50"]
    router_rps = throughput(results, "non-streaming")["router"]
    lines = [
        f"target added p50 <= {TARGET_ADDED_P50_MS} ms (non-streaming): "
        f"{'met' if met['added_p50'] else 'missed'} ({added_p50:.2f} ms)",
        f"target >= {TARGET_ROUTER_RPS:,.0f} req/s on one router worker (non-streaming): "
        f"{'met' if met['router_rps'] else 'missed'} ({router_rps:,.0f} req/s)",
    ]
    memory = results.memory
    half = memory.second_half_growth_bytes / MIB
    lines.append(
        f"router memory: {'flat' if memory.flat else 'GREW'} "
        f"({half:+.2f} MiB over the second half of {memory.requests:,} requests)"
    )
    for mode in results.throughput:
        rates = throughput(results, mode)
        direct, router = rates["direct"], rates["router"]
        if client_bound(direct, router):
            lines.append(
                f"{mode}: the direct path is barely faster than the router's ({direct:,.0f} vs "
                f"{router:,.0f} req/s): the load generator is the bottleneck, so the router's "
                "throughput is at least this"
            )
        else:
            lines.append(
                f"{mode}: the direct path does {direct / router:.1f}x the router's requests/s: "
                "the load generator is not what limits the router"
            )
    return lines
