"""Prometheus metrics of the router, and of the engines behind it, at ``GET /metrics``.

Router series (``switchyard_router_*``) are labelled by model and provider: requests by
status, request latency and time-to-first-token histograms, tokens in and out, requests
in flight. Engine series are read from each engine's ``GetLoads`` when scraped, under
vLLM's own metric names (``vllm:prefix_cache_hits_total``, ...), so dashboards and
``bench serve`` built for vLLM's server read them unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from switchyard.api.v1 import engine_pb2
from switchyard.router.routing.attempts import Attempt

# Latency buckets from sub-millisecond (cached or tiny answers) to minutes (long outputs).
LATENCY_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
)  # fmt: skip
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Observation:
    """One request as the metrics see it, filled in while it is served."""

    model: str
    provider: str
    endpoint: str
    started: float
    first_token_at: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # The labels the in-flight gauge went up under, for taking it down again: a routed
    # request's model and provider change once one of its attempts serves it.
    in_flight_labels: tuple[str, str] = ("", "")

    def served_by(self, model: str, provider: str) -> None:
        """Label the request's series with the model and provider that served it."""
        self.model, self.provider = model, provider

    def record_usage(self, usage: dict[str, Any] | None) -> None:
        if usage:
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)


class _Children:
    """A metric's labelled children, each looked up once.

    ``labels()`` validates the values and takes a lock on every call; a request makes
    seven such calls, a measurable share of the router's time per request. The label
    values come from configured models and providers (never from the client's text), so
    the cache stays as small as the series themselves."""

    def __init__(self, metric: MetricWrapperBase) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class RouterMetrics:
    """The router's series, in a registry of their own (no process-global state, so
    several routers in one process, as in tests, do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("model", "provider")
        self.requests = Counter(
            "switchyard_router_requests",
            "Requests answered, by final HTTP status (a stream that failed after it began "
            "counts under the status of its error event)",
            (*labels, "endpoint", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "switchyard_router_request_duration_seconds",
            "Time from receiving a request to its last byte",
            labels,
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "switchyard_router_time_to_first_token_seconds",
            "Time from receiving a streaming request to its first content chunk",
            labels,
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.tokens = Counter(
            "switchyard_router_tokens",
            "Tokens as the provider counted them",
            (*labels, "direction"),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "switchyard_router_requests_in_flight",
            "Requests being served",
            labels,
            registry=self.registry,
        )
        self.attempts = Counter(
            "switchyard_router_attempts",
            "Attempts of routed requests (named routers, fallbacks, replicas), by the "
            "model and provider tried and the attempt's HTTP status",
            (*labels, "status"),
            registry=self.registry,
        )
        self.target_up = Gauge(
            "switchyard_router_target_up",
            "1 while a provider or engine replica takes traffic, 0 while cooled down",
            ("target",),
            registry=self.registry,
        )

        self._in_flight = _Children(self.in_flight)
        self._requests = _Children(self.requests)
        self._latency = _Children(self.latency)
        self._ttft = _Children(self.ttft)
        self._tokens = _Children(self.tokens)

    def start(self, model: str, provider: str, endpoint: str) -> Observation:
        self._in_flight(model, provider).inc()
        return Observation(
            model, provider, endpoint, time.perf_counter(), in_flight_labels=(model, provider)
        )

    def finish(self, observation: Observation, status: int) -> None:
        o = observation
        self._in_flight(*o.in_flight_labels).dec()
        self._requests(o.model, o.provider, o.endpoint, str(status)).inc()
        if status >= 400:
            return
        self._latency(o.model, o.provider).observe(time.perf_counter() - o.started)
        if o.first_token_at is not None:
            self._ttft(o.model, o.provider).observe(o.first_token_at - o.started)
        self._tokens(o.model, o.provider, "prompt").inc(o.prompt_tokens)
        self._tokens(o.model, o.provider, "completion").inc(o.completion_tokens)

    def attempt(self, attempt: Attempt) -> None:
        self.attempts.labels(attempt.model, attempt.provider, str(attempt.status)).inc()

    def set_target_health(self, rows: list[dict[str, object]]) -> None:
        for row in rows:
            self.target_up.labels(str(row["target"])).set(row["state"] == "healthy")

    def unrouted(self, endpoint: str, status: int) -> None:
        """A request refused before it had a model (bad key, bad body, unknown model);
        labelled ``-`` so made-up model names cannot grow the series without bound."""
        self.requests.labels("-", "-", endpoint, str(status)).inc()

    def render(self, engine_loads: dict[tuple[str, str], engine_pb2.Loads]) -> bytes:
        """The exposition text: router series, then one block per engine model."""
        return generate_latest(self.registry) + engine_exposition(engine_loads).encode()


# vLLM metric name -> (type, help, Loads field).
ENGINE_SERIES = (
    ("vllm:num_requests_running", "gauge", "Requests running", "running_requests"),
    ("vllm:num_requests_waiting", "gauge", "Requests waiting", "waiting_requests"),
    ("vllm:kv_cache_usage_perc", "gauge", "KV cache usage, 0..1", "kv_cache_usage"),
    (
        "vllm:prefix_cache_queries_total",
        "counter",
        "Prompt tokens looked up in the prefix cache",
        "prefix_cache_queries",
    ),
    (
        "vllm:prefix_cache_hits_total",
        "counter",
        "Prompt tokens found in the prefix cache",
        "prefix_cache_hits",
    ),
    ("vllm:spec_decode_num_drafts_total", "counter", "Speculative drafts", "spec_drafts"),
    (
        "vllm:spec_decode_num_draft_tokens_total",
        "counter",
        "Speculative draft tokens",
        "spec_draft_tokens",
    ),
    (
        "vllm:spec_decode_num_accepted_tokens_total",
        "counter",
        "Speculative tokens accepted",
        "spec_accepted_tokens",
    ),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def engine_exposition(engine_loads: dict[tuple[str, str], engine_pb2.Loads]) -> str:
    """Each engine's loads as vLLM names them, labelled ``model_name`` like vLLM's and
    ``engine`` to tell replicas of one model apart."""
    if not engine_loads:
        return ""
    lines = []
    for name, kind, help_text, field in ENGINE_SERIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for (model, engine), loads in engine_loads.items():
            labels = f'model_name="{_label(model)}",engine="{_label(engine)}"'
            lines.append(f"{name}{{{labels}}} {getattr(loads, field)}")
    lines += speculative_exposition(engine_loads)
    return "\n".join(lines) + "\n"


def speculative_exposition(engine_loads: dict[tuple[str, str], engine_pb2.Loads]) -> list[str]:
    """Speculative decoding beyond the three counters: accepted tokens per draft position
    (vLLM's series and ``position`` label), and, for engines that have drafted, the
    acceptance rate (accepted / draft tokens) and mean acceptance length (1 + accepted /
    drafts) since the engine started. The ratios are for a glance; over a window, divide
    ``rate()``s of the counters."""
    name = "vllm:spec_decode_num_accepted_tokens_per_pos_total"
    lines = [
        f"# HELP {name} Speculative tokens accepted, by position in the draft",
        f"# TYPE {name} counter",
    ]
    for (model, engine), loads in engine_loads.items():
        labels = f'model_name="{_label(model)}",engine="{_label(engine)}"'
        for position, accepted in enumerate(loads.spec_accepted_tokens_per_position):
            lines.append(f'{name}{{{labels},position="{position}"}} {accepted}')
    ratios: tuple[tuple[str, str, Callable[[engine_pb2.Loads], float]], ...] = (
        (
            "switchyard_engine_spec_acceptance_rate",
            "Speculative tokens accepted / proposed, since the engine started",
            lambda loads: loads.spec_accepted_tokens / loads.spec_draft_tokens,
        ),
        (
            "switchyard_engine_spec_mean_acceptance_length",
            "Tokens per verification step (1 + accepted / drafts), since the engine started",
            lambda loads: 1 + loads.spec_accepted_tokens / loads.spec_drafts,
        ),
    )
    for name, help_text, ratio in ratios:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for (model, engine), loads in engine_loads.items():
            if loads.spec_drafts and loads.spec_draft_tokens:
                labels = f'model_name="{_label(model)}",engine="{_label(engine)}"'
                lines.append(f"{name}{{{labels}}} {ratio(loads)}")
    return lines
