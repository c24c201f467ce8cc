"""The named routers in force, and the decision each makes for a request.

A :class:`RoutingTable` is immutable: a reload or an admin update builds a new one and
swaps it in with a single assignment, so a request keeps the table it started with.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from switchyard.router.errors import APIError, invalid_request
from switchyard.router.openai_types import ChatCompletionRequest, OpenAIRequest
from switchyard.router.routing import sticky
from switchyard.router.routing.config import PLACEHOLDER, NamedRouterConfig, VariantConfig

ROUTER_PREFIX = "router/"


@dataclass(frozen=True)
class Decision:
    router: str
    route: str
    variant: VariantConfig
    deadline_ms: int | None

    def labels(self) -> dict[str, str]:
        return {"router": self.router, "route": self.route, "variant": self.variant.id}


def request_facts(request: OpenAIRequest) -> dict[str, Any]:
    """What a condition can read (see ``conditions.VARIABLES``)."""
    if isinstance(request, ChatCompletionRequest):
        texts = [message.text() for message in request.messages]
        endpoint = "chat"
    else:
        texts = [request.prompt_text()]
        endpoint = "completions"
    return {
        "metadata": dict(request.metadata or {}),
        "model": request.model,
        "user": request.user or "",
        "message_count": len(texts),
        "prompt_tokens": sum(map(len, texts)) // 4,
        "endpoint": endpoint,
    }


class RoutingTable:
    def __init__(
        self, routers: Mapping[str, NamedRouterConfig], rng: random.Random | None = None
    ) -> None:
        self.routers = dict(routers)
        self._rng = rng or random.Random()

    def decide(self, name: str, request: OpenAIRequest) -> Decision:
        """Raise 404 for an unknown router, 400 when no route matches and there is no
        default route."""
        router = self.routers.get(name)
        if router is None:
            raise APIError(
                404,
                f"the router {name!r} does not exist",
                param="model",
                code="model_not_found",
            )
        facts = request_facts(request)
        chosen = next((r for r in router.routes if r.compiled.matches(facts)), None)
        route = chosen or router.default_route
        if route is None:
            raise invalid_request(
                f"no route of router {name!r} matches this request and it has no default_route",
                "metadata",
            )
        weights = [variant.weight for variant in route.variants]
        index = sticky.choose(weights, name, route.label, request.user, self._rng)
        return Decision(name, route.label, route.variants[index], router.deadline_ms)


def apply_variant(
    raw: dict[str, Any], variant: VariantConfig, request: OpenAIRequest
) -> dict[str, Any]:
    """The request body the variant's models get: its generation overrides set, its
    system prompt (if any) put first; the client's body is not modified."""
    body = {**raw, **variant.overrides.fields()}
    limit = variant.overrides.max_tokens
    if limit is not None and "max_completion_tokens" in raw:
        # The newer field wins when both are present, so the override goes there too.
        body["max_completion_tokens"] = limit
    if variant.system_prompt is not None and isinstance(request, ChatCompletionRequest):
        body["messages"] = [
            {"role": "system", "content": render(variant.system_prompt, request)},
            *raw["messages"],
        ]
    return body


def render(template: str, request: OpenAIRequest) -> str:
    metadata = request.metadata or {}

    def value(match: Any) -> str:
        name = match.group(1)
        if name == "user":
            return request.user or ""
        return metadata.get(name.removeprefix("metadata."), "")

    return PLACEHOLDER.sub(value, template)
