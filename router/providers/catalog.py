"""The hosted providers the router knows by name, the wire protocol each speaks, and a
configured provider as the provider clients use it.

A provider named here needs only its models and, when its key lives elsewhere, the key's
environment variable; any other name is an OpenAI-compatible (or Anthropic- or
Gemini-compatible) server of the operator's, configured with ``protocol`` and
``base_url``. :class:`ResolvedProvider` lives here rather than beside the config that
builds it, so the provider clients need nothing from the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Protocol = Literal["openai", "anthropic", "google"]


@dataclass(frozen=True)
class KnownProvider:
    protocol: Protocol
    base_url: str
    api_key_env: str
    # The host documents ``n`` as 1 only (Groq answers 400 to more, DeepSeek offers
    # one choice), so the router refuses ``n > 1`` for it up front, naming the field.
    single_choice: bool = False


KNOWN_PROVIDERS: dict[str, KnownProvider] = {
    "openai": KnownProvider("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    "xai": KnownProvider("openai", "https://api.x.ai/v1", "XAI_API_KEY"),
    "mistral": KnownProvider("openai", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "deepseek": KnownProvider(
        "openai", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", single_choice=True
    ),
    "groq": KnownProvider(
        "openai", "https://api.groq.com/openai/v1", "GROQ_API_KEY", single_choice=True
    ),
    "fireworks": KnownProvider(
        "openai", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"
    ),
    "deepinfra": KnownProvider(
        "openai", "https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY"
    ),
    "together": KnownProvider("openai", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    "anthropic": KnownProvider("anthropic", "https://api.anthropic.com/v1", "ANTHROPIC_API_KEY"),
    "google-ai-studio": KnownProvider(
        "google", "https://generativelanguage.googleapis.com/v1beta", "GEMINI_API_KEY"
    ),
}


@dataclass(frozen=True)
class ResolvedProvider:
    """A provider with the catalog's defaults filled in and its key read."""

    name: str
    protocol: Protocol
    base_url: str
    api_key: str | None
    models: tuple[str, ...]
    timeout_s: float | None
    # Longest whole (non-streaming) response body taken from the provider.
    max_response_bytes: int
    # USD per million tokens (prompt + completion) by model, where configured.
    prices: dict[str, float] = field(default_factory=dict)
    # Whether the host serves one choice per request only (see KnownProvider).
    single_choice: bool = False
