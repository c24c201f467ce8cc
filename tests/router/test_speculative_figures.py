"""Speculative-decoding figures on the router's side: ``usage.speculative`` per request,
and the per-position and ratio series in ``/metrics``."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from switchyard.api.v1 import engine_pb2
from switchyard.router.metrics import engine_exposition
from switchyard.router.providers.engine import Engine
from switchyard.router.providers.first_party import speculates, usage


def _complete() -> engine_pb2.Complete:
    return engine_pb2.Complete(
        finish_reason=engine_pb2.LENGTH,
        usage=engine_pb2.Usage(prompt_tokens=10, completion_tokens=20, cached_prompt_tokens=4),
        spec_draft_tokens=16,
        spec_accepted_tokens=11,
    )


def test_usage_carries_speculative_counts_only_when_the_engine_speculates() -> None:
    assert "speculative" not in usage(_complete())
    figures = usage(_complete(), speculative=True)
    assert figures["speculative"] == {"draft_tokens": 16, "accepted_tokens": 11}
    assert figures["completion_tokens"] == 20 and figures["total_tokens"] == 30


def test_speculates_reads_the_engine_model_info() -> None:
    engine = Engine(label="e", client=None)  # type: ignore[arg-type]
    assert not speculates(engine)
    engine.info = engine_pb2.ModelInfo(served_model_name="m")
    assert not speculates(engine)
    engine.info.speculative_config = '{"method": "ngram", "num_speculative_tokens": 4}'
    assert speculates(engine)


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_have_per_position_counts_and_ratios() -> None:
    speculating = engine_pb2.Loads(
        spec_drafts=10,
        spec_draft_tokens=40,
        spec_accepted_tokens=25,
        spec_accepted_tokens_per_position=[9, 7, 5, 4],
    )
    plain = engine_pb2.Loads(running_requests=1)
    samples = _samples(engine_exposition({("a", "e1"): speculating, ("b", "e2"): plain}))
    labels = (("engine", "e1"), ("model_name", "a"))
    per_position = "vllm:spec_decode_num_accepted_tokens_per_pos_total"
    for position, accepted in enumerate([9, 7, 5, 4]):
        key = (per_position, tuple(sorted((*labels, ("position", str(position))))))
        assert samples[key] == accepted
    assert samples[("switchyard_engine_spec_acceptance_rate", labels)] == 25 / 40
    assert samples[("switchyard_engine_spec_mean_acceptance_length", labels)] == 1 + 25 / 10
    # An engine that never drafted has no ratios (0/0 is not a rate).
    assert not [k for k in samples if "spec_acceptance" in k[0] and ("model_name", "b") in k[1]]
