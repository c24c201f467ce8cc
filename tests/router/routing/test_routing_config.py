"""Validation of the `routers:` section: each mistake is refused at load, named."""

from __future__ import annotations

import copy

import pytest

from switchyard.router.config import ConfigError, parse_config

BASE = {
    "providers": {"openai": {"models": ["gpt-5.5"]}, "groq": {"models": ["llama-4-scout"]}},
    "routers": {
        "support": {
            "routes": [
                {
                    "name": "billing",
                    "condition": 'metadata.intent == "billing"',
                    "variants": [
                        {"id": "a", "model": "openai/gpt-5.5", "weight": 60},
                        {"id": "b", "model": "groq/llama-4-scout", "weight": 40},
                    ],
                }
            ],
            "default_route": {"variants": [{"id": "c", "model": "llama-4-scout", "weight": 100}]},
        }
    },
}


def variant(config: dict, index: int = 0) -> dict:
    return config["routers"]["support"]["routes"][0]["variants"][index]


def refused(mutate) -> str:
    config = copy.deepcopy(BASE)
    mutate(config)
    with pytest.raises(ConfigError) as error:
        parse_config(config)
    return str(error.value)


def test_the_base_config_is_valid() -> None:
    config = parse_config(copy.deepcopy(BASE))
    assert config.routers["support"].routes[0].variants[1].chain == ["groq/llama-4-scout"]


def test_weights_must_sum_to_100_naming_router_route_and_sum() -> None:
    message = refused(lambda c: variant(c).update(weight=50))
    assert message == (
        "routers.support.routes[0]: route 'billing': variant weights sum to 90, "
        "they must sum to exactly 100"
    )


def test_unknown_model_is_named_with_its_place() -> None:
    message = refused(lambda c: variant(c, 1).update(fallbacks=["openai/gpt-4"]))
    assert message.startswith("routers.support.routes[0].variants[1].fallbacks[0]: 'openai/gpt-4'")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: variant(c).update(weight=-1), "routers.support.routes[0].variants[0].weight"),
        (lambda c: variant(c).update(id="B A"), "variant id 'B A' must be"),
        (lambda c: variant(c, 1).update(id="a"), "duplicate variant id 'a'"),
        (lambda c: variant(c).update(ttft_timeout_ms=0), "ttft_timeout_ms"),
        (lambda c: variant(c).update(overrides={"temperature": 9}), "overrides.temperature"),
        (lambda c: variant(c).update(overrides={"temprature": 1}), "overrides.temprature"),
        (lambda c: variant(c).update(system_prompt="{{ nope }}"), "placeholder"),
        (lambda c: c["routers"]["support"].update(routes=[], default_route=None), "needs routes"),
        (lambda c: c["routers"].update({"Bad Name": c["routers"]["support"]}), "Bad Name"),
    ],
)
def test_mistakes_are_refused(mutate, expected: str) -> None:
    assert expected in refused(mutate)


def test_prices_must_name_listed_models() -> None:
    message = refused(
        lambda c: c["providers"]["openai"].update(prices={"gpt-4": {"prompt": 1, "completion": 2}})
    )
    assert message == "providers.openai: prices.gpt-4: not one of this provider's models"
