"""Route conditions: every example of docs/routers.example.yaml against requests that
should and should not take it, and the errors a bad condition gets at load."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from switchyard.router.config import ConfigError, load_config, parse_config
from switchyard.router.errors import APIError
from switchyard.router.openai_types import ChatCompletionRequest, CompletionRequest
from switchyard.router.routing.conditions import compile_condition
from switchyard.router.routing.table import RoutingTable, apply_variant

EXAMPLE = Path(__file__).parents[3] / "docs" / "routers.example.yaml"


@pytest.fixture(scope="module")
def table() -> RoutingTable:
    return RoutingTable(load_config(EXAMPLE).routers, random.Random(0))


def chat(metadata: dict | None = None, *, user: str | None = None, messages: int = 1, text="hi"):
    body = {
        "model": "router/support",
        "messages": [{"role": "user", "content": text}] * messages,
        "metadata": metadata,
        "user": user,
    }
    return ChatCompletionRequest.model_validate(body)


@pytest.mark.parametrize(
    ("request_", "route"),
    [
        (chat({"tier": "enterprise", "language": "es"}), "enterprise"),  # first match wins
        (chat({"tier": "free"}), "default"),
        (chat({"language": "es"}), "spanish"),
        (chat({"country": "MX"}), "spanish"),
        (chat({"country": "FR"}), "default"),
        (chat({"emotion": "angry", "intent": "refund"}), "upset"),
        (chat({"emotion": "angry", "intent": "question"}), "default"),
        (chat(messages=21), "long-conversation"),
        (chat(text="x" * 24_004), "long-conversation"),
        (chat(user="staff-ana"), "internal"),
        (chat(user="ana"), "default"),
        # A key the request lacks makes a condition false, not an error.
        (chat(), "default"),
        (chat({"emotion": "angry"}), "default"),
    ],
)
def test_documented_conditions(table: RoutingTable, request_, route: str) -> None:
    assert table.decide("support", request_).route == route


def test_completions_requests_are_routed_too(table: RoutingTable) -> None:
    request = CompletionRequest.model_validate(
        {"model": "router/support", "prompt": "hi", "metadata": {"language": "es"}}
    )
    assert table.decide("support", request).route == "spanish"


def test_variant_overrides_and_system_prompt(table: RoutingTable) -> None:
    request = chat({"country": "MX"})
    decision = table.decide("support", request)
    body = apply_variant(request.model_dump(exclude_none=True), decision.variant, request)
    assert body["messages"][0] == {
        "role": "system",
        "content": "Answer in Spanish; the customer writes from MX.",
    }
    upset = chat({"emotion": "angry", "intent": "refund"})
    decision = table.decide("support", upset)
    raw = {**upset.model_dump(exclude_none=True), "temperature": 1.5}
    assert apply_variant(raw, decision.variant, upset)["temperature"] == 0.2
    assert raw["temperature"] == 1.5  # the client's body is left alone


def test_no_match_without_default_is_a_400_naming_the_router() -> None:
    config = parse_config(
        {
            "engines": [{"target": "127.0.0.1:5000"}],
            "routers": {
                "strict": {
                    "routes": [
                        {
                            "name": "es",
                            "condition": 'metadata.language == "es"',
                            "variants": [{"id": "a", "model": "switchyard/x", "weight": 100}],
                        }
                    ]
                }
            },
        }
    )
    with pytest.raises(APIError) as error:
        RoutingTable(config.routers).decide("strict", chat({"language": "fr"}))
    assert error.value.status == 400
    assert "strict" in error.value.message


def test_unknown_router_is_404(table: RoutingTable) -> None:
    with pytest.raises(APIError) as error:
        table.decide("nope", chat())
    assert error.value.status == 404


@pytest.mark.parametrize(
    ("condition", "problem"),
    [
        ('metadata.language == "es" &&', "invalid CEL"),
        ('lang == "es"', "unknown variable 'lang'"),
    ],
)
def test_bad_conditions_are_refused_at_load(condition: str, problem: str) -> None:
    config = {
        "engines": [{"target": "127.0.0.1:5000"}],
        "routers": {
            "r": {
                "routes": [
                    {
                        "name": "x",
                        "condition": condition,
                        "variants": [{"id": "a", "model": "switchyard/x", "weight": 100}],
                    }
                ]
            }
        },
    }
    with pytest.raises(ConfigError) as error:
        parse_config(config)
    assert str(error.value).startswith("routers.r.routes[0].condition: ")
    assert problem in str(error.value)


def test_a_condition_of_the_wrong_type_does_not_match() -> None:
    condition = compile_condition("metadata.tier > 3")
    assert not condition.matches({"metadata": {"tier": "gold"}})
    assert condition.matches({"metadata": {"tier": 5}})
