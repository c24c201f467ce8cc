"""``GET /metrics``: the router's series after requests of every outcome, read back with
Prometheus's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from switchyard.api.v1 import engine_pb2
from switchyard.router.metrics import RouterMetrics, engine_exposition


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_router_series_count_outcomes_tokens_and_first_tokens() -> None:
    metrics = RouterMetrics()
    ok = metrics.start("openai/gpt-5.5", "openai", "chat")
    ok.record_usage({"prompt_tokens": 11, "completion_tokens": 5})
    ok.first_token_at = ok.started + 0.02
    metrics.finish(ok, 200)
    failed = metrics.start("openai/gpt-5.5", "openai", "chat")
    metrics.finish(failed, 429)
    metrics.start("openai/gpt-5.5", "openai", "chat")  # still running
    metrics.unrouted("chat", 404)
    values = samples(metrics.render({}).decode())
    model = (("model", "openai/gpt-5.5"), ("provider", "openai"))

    def requests(status: str, labels: tuple = model) -> float:
        key = tuple(sorted((*labels, ("endpoint", "chat"), ("status", status))))
        return values[("switchyard_router_requests_total", key)]

    assert requests("200") == 1
    assert requests("429") == 1
    assert requests("404", (("model", "-"), ("provider", "-"))) == 1
    assert values[("switchyard_router_requests_in_flight", model)] == 1
    tokens = {
        direction: values[
            ("switchyard_router_tokens_total", tuple(sorted((*model, ("direction", direction)))))
        ]
        for direction in ("prompt", "completion")
    }
    assert tokens == {"prompt": 11, "completion": 5}
    assert values[("switchyard_router_time_to_first_token_seconds_count", model)] == 1
    le_25ms = tuple(sorted((*model, ("le", "0.025"))))
    assert values[("switchyard_router_time_to_first_token_seconds_bucket", le_25ms)] == 1
    # Failed requests are counted, but not timed.
    assert values[("switchyard_router_request_duration_seconds_count", model)] == 1


def test_engine_loads_use_vllm_names() -> None:
    loads = engine_pb2.Loads(
        running_requests=2, prefix_cache_queries=100, prefix_cache_hits=60, spec_draft_tokens=9
    )
    values = samples(engine_exposition({('odd "model"', "replica-a"): loads}))
    label = (("engine", "replica-a"), ("model_name", 'odd "model"'))
    assert values[("vllm:num_requests_running", label)] == 2
    assert values[("vllm:prefix_cache_queries_total", label)] == 100
    assert values[("vllm:prefix_cache_hits_total", label)] == 60
    assert values[("vllm:spec_decode_num_draft_tokens_total", label)] == 9
    assert engine_exposition({}) == ""
