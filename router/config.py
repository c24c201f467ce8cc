"""The router's YAML configuration, validated when it is loaded.

A bad config fails at start with the offending field named (``engines[0].target: ...``)
rather than at the first request that happens to use it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from switchyard.common.validation import describe
from switchyard.router.providers.catalog import KNOWN_PROVIDERS, Protocol, ResolvedProvider
from switchyard.router.providers.engine import MODEL_PREFIX
from switchyard.router.providers.http_client import DEFAULT_MAX_CONNECTIONS_PER_ORIGIN
from switchyard.router.providers.proxy_env import proxy_variable
from switchyard.router.replicas import ReplicaPolicy
from switchyard.router.routing.config import NAME, NAME_RULE, NamedRouterConfig, VariantConfig

DEFAULT_MAX_BODY_BYTES = 4 << 20
# A whole provider response larger than this is a 502: generous for any completion (a
# long answer with logprobs is a few MiB), bounded against a provider that never stops.
DEFAULT_MAX_RESPONSE_BYTES = 64 << 20
DEFAULT_KEYS_ENV = "SWITCHYARD_API_KEYS"
DEFAULT_ADMIN_KEYS_ENV = "SWITCHYARD_ADMIN_KEYS"
# Provider names prefix model ids (``openai/gpt-5.5``): lower-case, no slash.
PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# Prefixes with a meaning of their own in a request's ``model``.
RESERVED_PROVIDER_NAMES = frozenset({"switchyard", "router", "auto"})


class ConfigError(ValueError):
    """A config that cannot be used; the message names the field."""


class _Strict(BaseModel):
    # A misspelt key would otherwise be silently ignored and its default used.
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(_Strict):
    # A label for logs and /ready; the served model name comes from the engine itself.
    name: str | None = None
    target: str

    @field_validator("target")
    @classmethod
    def _host_and_port(cls, target: str) -> str:
        host, sep, port = target.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"must be host:port, got {target!r}")
        return target

    @property
    def label(self) -> str:
        return self.name or self.target


class AuthConfig(_Strict):
    keys_env: str | None = None
    keys: list[str] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AuthConfig:
        if self.keys_env is not None and self.keys is not None:
            raise ValueError("set either keys_env or keys, not both")
        if self.keys is not None and any(not key.strip() for key in self.keys):
            raise ValueError("keys must not contain empty strings")
        return self

    default_keys_env: ClassVar[str] = DEFAULT_KEYS_ENV

    def resolve_keys(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """The accepted keys: listed in the config, or read from the environment
        (``keys_env``, default ``SWITCHYARD_API_KEYS``) as a comma-separated list."""
        if self.keys is not None:
            return list(self.keys)
        environ = os.environ if environ is None else environ
        raw = environ.get(self.keys_env or self.default_keys_env, "")
        return [key.strip() for key in raw.split(",") if key.strip()]


class AdminConfig(AuthConfig):
    """Keys of the admin API (``/admin/v1/...``), distinct from the client keys: a
    client key never changes routing. Without any admin key the admin API is off."""

    default_keys_env: ClassVar[str] = DEFAULT_ADMIN_KEYS_ENV


class HealthConfig(_Strict):
    # Failures in a row (429, 5xx, connection errors, timeouts) that cool a target down.
    failure_threshold: int = Field(default=3, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0)


class Price(_Strict):
    """USD per million tokens."""

    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)


class ProviderConfig(_Strict):
    # Known providers (openai, anthropic, ...) need neither: the catalog has both.
    protocol: Protocol | None = None
    base_url: str | None = None
    # The environment variable holding the provider's key; never the key itself, so the
    # file can go into version control. Unset for a known provider: the catalog's name.
    api_key_env: str | None = None
    models: list[str] = Field(min_length=1)
    # Deadline of one upstream call, streaming included; None waits as long as it takes.
    timeout_s: float | None = Field(default=600.0, gt=0)
    # Largest non-streaming response body taken from it; a larger one is a 502.
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, gt=0)
    # What each model costs, for `provider.sort: price` and `model: "auto"`.
    prices: dict[str, Price] = {}

    @model_validator(mode="after")
    def _prices_of_listed_models(self) -> ProviderConfig:
        for model in self.prices:
            if model not in self.models:
                raise ValueError(f"prices.{model}: not one of this provider's models")
        return self

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, base_url: str | None) -> str | None:
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {base_url!r}")
        return base_url.rstrip("/") if base_url else base_url

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: list[str]) -> list[str]:
        for index, model in enumerate(models):
            if not model.strip():
                raise ValueError(f"models[{index}] must not be empty")
        return models

    def resolve(self, name: str, environ: Mapping[str, str]) -> ResolvedProvider:
        known = KNOWN_PROVIDERS.get(name)
        key_env = self.api_key_env or (known.api_key_env if known else None)
        api_key = None
        if key_env is not None:
            api_key = environ.get(key_env, "").strip()
            if not api_key:
                raise ConfigError(
                    f"providers.{name}.api_key_env: the environment variable {key_env} is not set"
                )
        # known is None only off the catalog, where RouterConfig requires both fields.
        base_url = self.base_url or known.base_url  # type: ignore[union-attr]
        proxy = proxy_variable(base_url, environ)
        if proxy is not None:
            raise ConfigError(
                f"providers.{name}: {proxy} is set, but the router connects to providers "
                f"directly, not through a proxy; unset {proxy} or exempt "
                f"{urlsplit(base_url).hostname} in NO_PROXY"
            )
        return ResolvedProvider(
            name=name,
            protocol=self.protocol or known.protocol,  # type: ignore[union-attr]
            base_url=base_url,
            api_key=api_key,
            models=tuple(self.models),
            timeout_s=self.timeout_s,
            max_response_bytes=self.max_response_bytes,
            prices={m: p.prompt + p.completion for m, p in self.prices.items()},
            single_choice=known is not None and known.single_choice,
        )


class RouterConfig(_Strict):
    engines: list[EngineConfig] = []
    providers: dict[str, ProviderConfig] = {}
    auth: AuthConfig = AuthConfig()
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    # Deadline of one engine call, streaming included; None waits as long as it takes.
    request_timeout_s: float | None = Field(default=600.0, gt=0)
    # Connections open at once to one provider origin; more requests wait for one.
    provider_connections_per_origin: int = Field(default=DEFAULT_MAX_CONNECTIONS_PER_ORIGIN, gt=0)
    # How a request picks among engines serving the same model.
    replica_policy: ReplicaPolicy = "cache_aware"
    health: HealthConfig = HealthConfig()
    admin: AdminConfig = AdminConfig()
    # Named routers, selected with `model: "router/<name>"`.
    routers: dict[str, NamedRouterConfig] = {}

    @model_validator(mode="after")
    def _distinct_engines(self) -> RouterConfig:
        if not self.engines and not self.providers:
            raise ValueError("engines: configure at least one engine or one provider")
        labels = [engine.label for engine in self.engines]
        for index, label in enumerate(labels):
            if label in labels[:index]:
                raise ValueError(f"engines[{index}]: duplicate engine {label!r}")
        return self

    @model_validator(mode="after")
    def _providers_are_complete(self) -> RouterConfig:
        for name, provider in self.providers.items():
            if not PROVIDER_NAME.match(name) or name in RESERVED_PROVIDER_NAMES:
                raise ValueError(
                    f"providers.{name}: a provider name is lower-case letters, digits, '-' "
                    f"and '_', and not one of {sorted(RESERVED_PROVIDER_NAMES)}"
                )
            if name not in KNOWN_PROVIDERS:
                for field in ("protocol", "base_url"):
                    if getattr(provider, field) is None:
                        raise ValueError(
                            f"providers.{name}.{field}: required for a provider that is not "
                            f"one of {sorted(KNOWN_PROVIDERS)}"
                        )
        return self

    @model_validator(mode="after")
    def _routers_name_served_models(self) -> RouterConfig:
        offered = {f"{name}/{model}" for name, p in self.providers.items() for model in p.models}
        bare = {model for p in self.providers.values() for model in p.models}
        for name, router in self.routers.items():
            if not NAME.match(name):
                raise ValueError(f"routers.{name}: a router name must be {NAME_RULE}")
            for r_index, route in enumerate(router.routes):
                where = f"routers.{name}.routes[{r_index}]"
                _check_models(where, route.variants, offered, bare)
            if router.default_route is not None:
                where = f"routers.{name}.default_route"
                _check_models(where, router.default_route.variants, offered, bare)
        return self

    def resolve_providers(self, environ: Mapping[str, str] | None = None) -> list[ResolvedProvider]:
        """Every provider with its key read; ConfigError names a key that is not set."""
        environ = os.environ if environ is None else environ
        return [provider.resolve(name, environ) for name, provider in self.providers.items()]


def _check_models(
    where: str, variants: Sequence[VariantConfig], offered: set[str], bare: set[str]
) -> None:
    """A variant's models must be served: first-party (checked against the engines once
    they answer), a configured provider's, or a model name some provider offers."""
    for v_index, variant in enumerate(variants):
        for m_index, model in enumerate(variant.chain):
            if model.startswith(MODEL_PREFIX) or model in offered or model in bare:
                continue
            field_name = "model" if m_index == 0 else f"fallbacks[{m_index - 1}]"
            raise ValueError(
                f"{where}.variants[{v_index}].{field_name}: {model!r} is not a configured "
                "provider's model (provider/model) nor a first-party model (switchyard/...)"
            )


def parse_config(data: object) -> RouterConfig:
    """Validate already-parsed YAML; every problem is reported, each with its field."""
    if not isinstance(data, dict):
        raise ConfigError("the config must be a mapping at the top level")
    try:
        return RouterConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe(error)) from None


def config_schema() -> str:
    """The config's JSON Schema, for editors and CI checks of config files. Rules a
    schema cannot state (weights summing to 100, CEL that compiles, models that exist)
    are checked at load."""
    schema = RouterConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Switchyard router config"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def read_config_data(path: str | Path) -> object:
    """The file's YAML, not yet validated."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None


def load_config(path: str | Path) -> RouterConfig:
    return parse_config(read_config_data(path))
