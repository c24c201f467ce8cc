"""OpenRouter's `models`, `provider` and `auto` extras, on a fixed set of offers."""

from __future__ import annotations

import pytest

from switchyard.router.errors import APIError
from switchyard.router.openai_types import ProviderPreferences
from switchyard.router.routing.live_stats import LiveStats
from switchyard.router.routing.preferences import Offer, chain, hosts

BOTH = frozenset({"chat", "completions"})
OFFERS = [
    Offer("switchyard/gemma-3-270m", "switchyard", "gemma-3-270m", BOTH, 0.0),
    Offer("groq/llama-4-scout", "groq", "llama-4-scout", BOTH, 0.4),
    Offer("together/llama-4-scout", "together", "llama-4-scout", BOTH, 0.3),
    Offer("fireworks/llama-4-scout", "fireworks", "llama-4-scout", BOTH, None),
    Offer("openai/gpt-5.5", "openai", "gpt-5.5", BOTH, 20.0),
    Offer("anthropic/claude-opus-4-7", "anthropic", "claude-opus-4-7", frozenset({"chat"}), 90.0),
]


def ids(offers: list[Offer]) -> list[str]:
    return [offer.model_id for offer in offers]


def prefs(**fields) -> ProviderPreferences:
    return ProviderPreferences.model_validate(fields)


def test_a_full_id_is_that_host_only() -> None:
    assert ids(hosts("groq/llama-4-scout", OFFERS, None, LiveStats())) == ["groq/llama-4-scout"]


def test_a_bare_name_is_every_host_in_config_order() -> None:
    assert ids(hosts("llama-4-scout", OFFERS, None, LiveStats())) == [
        "groq/llama-4-scout",
        "together/llama-4-scout",
        "fireworks/llama-4-scout",
    ]


def test_order_then_the_rest() -> None:
    found = hosts("llama-4-scout", OFFERS, prefs(order=["fireworks"]), LiveStats())
    assert [o.provider for o in found] == ["fireworks", "groq", "together"]
    found = hosts(
        "llama-4-scout", OFFERS, prefs(order=["fireworks"], allow_fallbacks=False), LiveStats()
    )
    assert [o.provider for o in found] == ["fireworks"]


def test_only_and_ignore() -> None:
    assert [
        o.provider
        for o in hosts("llama-4-scout", OFFERS, prefs(only=["together", "groq"]), LiveStats())
    ] == ["groq", "together"]
    assert [
        o.provider for o in hosts("llama-4-scout", OFFERS, prefs(ignore=["groq"]), LiveStats())
    ] == ["together", "fireworks"]


def test_sort_by_price_puts_unpriced_hosts_last() -> None:
    found = hosts("llama-4-scout", OFFERS, prefs(sort="price"), LiveStats())
    assert [o.provider for o in found] == ["together", "groq", "fireworks"]


def test_sort_by_measured_latency_and_throughput() -> None:
    stats = LiveStats()
    stats.record("groq/llama-4-scout", ttft_s=0.05, output_tokens=500, decode_s=1.0)
    stats.record("together/llama-4-scout", ttft_s=0.30, output_tokens=900, decode_s=1.0)
    latency = hosts("llama-4-scout", OFFERS, prefs(sort="latency"), stats)
    assert [o.provider for o in latency] == ["groq", "together", "fireworks"]
    throughput = hosts("llama-4-scout", OFFERS, prefs(sort="throughput"), stats)
    assert [o.provider for o in throughput] == ["together", "groq", "fireworks"]


def test_recent_measurements_count_most() -> None:
    stats = LiveStats()
    stats.record("groq/llama-4-scout", ttft_s=0.05, output_tokens=0, decode_s=0)
    for _ in range(10):
        stats.record("groq/llama-4-scout", ttft_s=1.0, output_tokens=0, decode_s=0)
    assert stats.get("groq/llama-4-scout").ttft_s > 0.85


def test_models_is_a_fallback_list_without_repeats() -> None:
    found = chain(
        "openai/gpt-5.5", ["llama-4-scout", "openai/gpt-5.5"], OFFERS, None, LiveStats(), "chat"
    )
    assert ids(found) == [
        "openai/gpt-5.5",
        "groq/llama-4-scout",
        "together/llama-4-scout",
        "fireworks/llama-4-scout",
    ]


def test_auto_is_every_model_cheapest_first_for_the_endpoint() -> None:
    found = chain("auto", [], OFFERS, None, LiveStats(), "completions")
    assert found[0].model_id == "switchyard/gemma-3-270m"
    assert "anthropic/claude-opus-4-7" not in ids(found)  # no completions endpoint
    prices = [
        o.price
        for o in chain("auto", [], OFFERS, prefs(ignore=["switchyard"]), LiveStats(), "chat")
    ]
    assert prices == [0.3, 0.4, 20.0, 90.0, None]


def test_unknown_model_in_models_is_404_naming_it() -> None:
    with pytest.raises(APIError) as error:
        chain("openai/gpt-5.5", ["nope"], OFFERS, None, LiveStats(), "chat")
    assert (error.value.status, error.value.param) == (404, "models[0]")


def test_preferences_that_leave_nothing_are_a_400() -> None:
    with pytest.raises(APIError) as error:
        chain("llama-4-scout", [], OFFERS, prefs(only=["openai"]), LiveStats(), "chat")
    assert (error.value.status, error.value.param) == (400, "provider")
