"""A first-party model behind the one backend interface: the engine replicas that serve
it, and one request to one of them.

With several replicas the replica policy orders them for each prompt, and the request is
counted in the chosen replica's in-flight figures and prefix index, which the policy's
next choices read. A model with one replica serves a plain request directly, uncounted,
as there is nothing to choose.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from functools import cached_property

from switchyard.router.backend import Backend, Json
from switchyard.router.openai_types import Endpoint, OpenAIRequest
from switchyard.router.providers import first_party
from switchyard.router.providers.engine import MODEL_PREFIX, Engine
from switchyard.router.replicas import ReplicaSet


@dataclass
class FirstPartyModel:
    """A model the engines serve, with its replicas."""

    name: str
    replicas: ReplicaSet[Engine]

    owned_by = "switchyard"

    @cached_property
    def model_id(self) -> str:
        # Cached: every request to the model reads it.
        return MODEL_PREFIX + self.name

    def sole_backend(
        self, raw: Json, body: OpenAIRequest, endpoint: Endpoint, request_id: str
    ) -> Backend | None:
        replicas = self.replicas.replicas
        if len(replicas) != 1:
            return None
        return EngineBackend(self.model_id, replicas[0], body, request_id)

    def backends(
        self,
        raw: Json,
        body: OpenAIRequest,
        endpoint: Endpoint,
        request_id: str,
        available: Callable[[str], bool],
    ) -> list[Backend]:
        """One backend per replica, in the replica policy's order for this prompt."""
        prompt = body.prompt_text()
        replicas = self.replicas
        ordered = replicas.order(
            prompt, body.user, available=lambda engine: available(engine.health_key)
        )
        model_id = self.model_id
        return [
            EngineBackend(model_id, engine, body, request_id, replicas=replicas, prompt=prompt)
            for engine in ordered
        ]


class EngineBackend:
    """One request to one engine; with a replica set, counted in its in-flight figures
    and its prefix index while it runs."""

    __slots__ = ("_body", "_engine", "_prompt", "_replicas", "_request_id", "model")

    provider = "switchyard"

    def __init__(
        self,
        model: str,
        engine: Engine,
        body: OpenAIRequest,
        request_id: str,
        *,
        replicas: ReplicaSet[Engine] | None = None,
        prompt: str = "",
    ) -> None:
        self.model = model
        self._engine = engine
        self._body = body
        self._request_id = request_id
        self._replicas = replicas
        self._prompt = prompt

    @property
    def health_key(self) -> str:
        return self._engine.health_key

    async def complete(self, first_token_timeout_s: float | None = None) -> Json:
        engine, body, request_id = self._engine, self._body, self._request_id
        if self._replicas is None:
            return await first_party.complete(engine, body, request_id, first_token_timeout_s)
        self._replicas.started(engine, self._prompt)
        try:
            return await first_party.complete(engine, body, request_id, first_token_timeout_s)
        finally:
            self._replicas.finished(engine)

    def stream(self) -> AsyncGenerator[list[Json]]:
        events = first_party.stream(self._engine, self._body, self._request_id)
        return events if self._replicas is None else self._counted(events, self._replicas)

    async def _counted(
        self, events: AsyncGenerator[list[Json]], replicas: ReplicaSet[Engine]
    ) -> AsyncGenerator[list[Json]]:
        replicas.started(self._engine, self._prompt)
        try:
            async for batch in events:
                yield batch
        finally:
            await events.aclose()
            replicas.finished(self._engine)
