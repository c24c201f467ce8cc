"""The router's YAML configuration, validated when it is loaded.

A bad config fails at start with the offending field named (``engines[0].target: ...``)
rather than at the first request that happens to use it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from switchyard.router.field_paths import field_path
from switchyard.router.providers.catalog import KNOWN_PROVIDERS, Protocol

DEFAULT_MAX_BODY_BYTES = 4 << 20
DEFAULT_KEYS_ENV = "SWITCHYARD_API_KEYS"
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

    def resolve_keys(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """The accepted client keys: listed in the config, or read from the environment
        (``keys_env``, default ``SWITCHYARD_API_KEYS``) as a comma-separated list."""
        if self.keys is not None:
            return list(self.keys)
        environ = os.environ if environ is None else environ
        raw = environ.get(self.keys_env or DEFAULT_KEYS_ENV, "")
        return [key.strip() for key in raw.split(",") if key.strip()]


@dataclass(frozen=True)
class ResolvedProvider:
    """A provider with the catalog's defaults filled in and its key read."""

    name: str
    protocol: Protocol
    base_url: str
    api_key: str | None
    models: tuple[str, ...]
    timeout_s: float | None


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
        return ResolvedProvider(
            name=name,
            protocol=self.protocol or known.protocol,  # type: ignore[union-attr]
            base_url=self.base_url or known.base_url,  # type: ignore[union-attr]
            api_key=api_key,
            models=tuple(self.models),
            timeout_s=self.timeout_s,
        )


class RouterConfig(_Strict):
    engines: list[EngineConfig] = []
    providers: dict[str, ProviderConfig] = {}
    auth: AuthConfig = AuthConfig()
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    # Deadline of one engine call, streaming included; None waits as long as it takes.
    request_timeout_s: float | None = Field(default=600.0, gt=0)

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

    def resolve_providers(self, environ: Mapping[str, str] | None = None) -> list[ResolvedProvider]:
        """Every provider with its key read; ConfigError names a key that is not set."""
        environ = os.environ if environ is None else environ
        return [provider.resolve(name, environ) for name, provider in self.providers.items()]


def parse_config(data: object) -> RouterConfig:
    """Validate already-parsed YAML; every problem is reported, each with its field."""
    if not isinstance(data, dict):
        raise ConfigError("the config must be a mapping at the top level")
    try:
        return RouterConfig.model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            message = item["msg"].removeprefix("Value error, ")
            path = field_path(item["loc"])
            problems.append(f"{path}: {message}" if path else message)
        raise ConfigError("; ".join(problems)) from None


def load_config(path: str | Path) -> RouterConfig:
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    return parse_config(data)
