"""The router's YAML configuration, validated when it is loaded.

A bad config fails at start with the offending field named (``engines[0].target: ...``)
rather than at the first request that happens to use it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from switchyard.router.field_paths import field_path

DEFAULT_MAX_BODY_BYTES = 4 << 20
DEFAULT_KEYS_ENV = "SWITCHYARD_API_KEYS"


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


class RouterConfig(_Strict):
    engines: list[EngineConfig] = Field(min_length=1)
    auth: AuthConfig = AuthConfig()
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    # Deadline of one engine call, streaming included; None waits as long as it takes.
    request_timeout_s: float | None = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _distinct_engines(self) -> RouterConfig:
        labels = [engine.label for engine in self.engines]
        for index, label in enumerate(labels):
            if label in labels[:index]:
                raise ValueError(f"engines[{index}]: duplicate engine {label!r}")
        return self


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
