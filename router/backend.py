"""The one interface between the request path and whatever serves a request.

A model the router serves (:class:`ServedModel`) hands out :class:`Backend`\\ s, one
request to one target each; the request handlers and the fallback machinery call them
without knowing whether an engine replica answers over gRPC or a provider over HTTP.
What differs between the two (replica choice and accounting, the raw body forwarded to a
provider) lives in their implementations: ``providers.first_party_model`` and
``providers.upstream``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Protocol

from switchyard.router.openai_types import Endpoint, OpenAIRequest

Json = dict[str, Any]


class Call(Protocol):
    """A request ready to be sent, whole or streamed."""

    def complete(self) -> Awaitable[Json]:
        """The whole response object; raises APIError."""
        ...

    def stream(self) -> AsyncGenerator[list[Json]]:
        """The response's chunks, in batches sent together; raises APIError. Nothing is
        yielded before the target accepted the request, so awaiting the first batch
        learns of a refusal while the client can still get a status."""
        ...


class Backend(Call, Protocol):
    """One request to one target; what a fallback run tries, records and cools down."""

    def complete(self, first_token_timeout_s: float | None = None) -> Awaitable[Json]:
        """The whole response object; raises APIError, a 504 when no token came within
        ``first_token_timeout_s``.

        Only an engine's answer has a first token to wait for: the router reads it as a
        gRPC stream even when the client asked for no stream. A provider's non-streaming
        answer arrives whole (its headers too) once all of it is generated, so there is
        nothing a first-token limit could bound but the whole generation: providers
        ignore it."""
        ...

    @property
    def model(self) -> str:
        """The id clients use: ``openai/gpt-5.5``, ``switchyard/gemma-3-270m``."""
        ...

    @property
    def provider(self) -> str:
        """Who serves it, as metrics and attempts name it: ``openai``, ``switchyard``."""
        ...

    @property
    def health_key(self) -> str:
        """What its failures cool down: the provider, or one engine replica."""
        ...


class ServedModel(Protocol):
    """A model as the request path sees it: first-party or a provider's alike."""

    @property
    def model_id(self) -> str: ...

    @property
    def owned_by(self) -> str: ...

    def sole_backend(
        self, raw: Json, body: OpenAIRequest, endpoint: Endpoint, request_id: str
    ) -> Backend | None:
        """The backend of a plain request, served without the fallback machinery; None
        when serving it takes a choice (among several engine replicas)."""
        ...

    def backends(
        self,
        raw: Json,
        body: OpenAIRequest,
        endpoint: Endpoint,
        request_id: str,
        available: Callable[[str], bool],
    ) -> list[Backend]:
        """Every backend that may serve the request, best first; ``available`` says
        whether a health key is out of its cooldown."""
        ...
