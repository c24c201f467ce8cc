"""The ``routers:`` section of the router config: named routers, their routes and
variants, validated as they are loaded (from the file or the admin API).

Every error names its place, e.g. ``routers.support.routes[1].variants: route
'billing': variant weights sum to 90, they must sum to exactly 100``.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from switchyard.router.routing.conditions import Condition, compile_condition

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
NAME_RULE = "lower-case letters, digits, '.', '-' and '_', starting with a letter or digit"
# `{{ metadata.language }}` or `{{ user }}` in a system prompt template.
PLACEHOLDER = re.compile(r"\{\{\s*(metadata\.[A-Za-z0-9_.-]+|user)\s*\}\}")


class _Strict(BaseModel):
    # A misspelt key would otherwise be silently ignored and its default used.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(kind: str, name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"{kind} {name!r} must be {NAME_RULE}")
    return name


class GenerationOverrides(_Strict):
    """Generation fields a variant sets, replacing whatever the client sent."""

    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    stop: list[str] | None = Field(default=None, max_length=4)
    seed: int | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None

    def fields(self) -> dict[str, object]:
        return self.model_dump(exclude_none=True)


class VariantConfig(_Strict):
    id: str
    model: str = Field(min_length=1)
    weight: Annotated[int, Field(ge=0, le=100)]
    overrides: GenerationOverrides = GenerationOverrides()
    # Put before the client's messages (chat only); `{{ metadata.KEY }}` and `{{ user }}`
    # are filled in from the request, an absent key with an empty string.
    system_prompt: str | None = None
    # Tried in order when the model before fails (429, 5xx, connection errors,
    # timeouts) before any byte reached the client.
    fallbacks: list[str] = []
    # Give up on an attempt whose stream has not produced its first token by then.
    ttft_timeout_ms: Annotated[int, Field(gt=0)] | None = None
    # Deadline of each attempt, streaming included.
    attempt_timeout_ms: Annotated[int, Field(gt=0)] | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_name("variant id", value)

    @field_validator("system_prompt")
    @classmethod
    def _placeholders(cls, template: str | None) -> str | None:
        if template is None:
            return None
        rest = PLACEHOLDER.sub("", template)
        if "{{" in rest or "}}" in rest:
            raise ValueError(
                "a placeholder is {{ metadata.KEY }} or {{ user }}; found another use of {{ }}"
            )
        return template

    @property
    def chain(self) -> list[str]:
        """The models tried for this variant, in order."""
        return [self.model, *self.fallbacks]


class _RouteBody(_Strict):
    variants: list[VariantConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights(self) -> _RouteBody:
        ids = [variant.id for variant in self.variants]
        for index, variant_id in enumerate(ids):
            if variant_id in ids[:index]:
                raise ValueError(f"duplicate variant id {variant_id!r}")
        total = sum(variant.weight for variant in self.variants)
        if total != 100:
            raise ValueError(
                f"route {self.label!r}: variant weights sum to {total}, "
                "they must sum to exactly 100"
            )
        return self

    @property
    def label(self) -> str:
        return getattr(self, "name", "default")


class RouteConfig(_RouteBody):
    name: str
    # A CEL expression; see switchyard.router.routing.conditions for what it can read.
    condition: str
    _condition: Condition = PrivateAttr()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name("route name", value)

    @field_validator("condition")
    @classmethod
    def _compiles(cls, source: str) -> str:
        compile_condition(source)
        return source

    def model_post_init(self, context: object) -> None:
        self._condition = compile_condition(self.condition)

    @property
    def compiled(self) -> Condition:
        return self._condition


class DefaultRouteConfig(_RouteBody):
    name: str = "default"


class NamedRouterConfig(_Strict):
    description: str | None = None
    routes: list[RouteConfig] = []
    # Taken when no route's condition matches; without it such a request is a 400.
    default_route: DefaultRouteConfig | None = None
    # Deadline of the whole request, every attempt together.
    deadline_ms: Annotated[int, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _routes(self) -> NamedRouterConfig:
        if not self.routes and self.default_route is None:
            raise ValueError("a router needs routes, a default_route, or both")
        names = [route.name for route in self.routes]
        if self.default_route is not None:
            names.append(self.default_route.name)
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"duplicate route name {name!r}")
        return self
