"""The models the router serves: each engine's, and each configured provider's.

An engine's model name is asked from the engine (GetModelInfo), so the config cannot
drift from what is actually served. Engines that are not up yet when the router starts
are retried in the background: the router starts regardless and ``/ready`` says which
engine it is waiting for. A third-party model is ``<provider>/<model>`` as configured;
the provider's own model name may itself contain slashes (``together/meta-llama/...``).
Several engines serving the same model are replicas of it; which one a request goes to
is the replica policy's choice (see ``replicas``). The registry also holds the one
client every provider is reached through, and opens and closes it with the engines.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

from switchyard.api.client import EngineClient
from switchyard.api.v1 import engine_pb2
from switchyard.router.backend import ServedModel
from switchyard.router.config import RouterConfig
from switchyard.router.providers.anthropic import Anthropic
from switchyard.router.providers.catalog import Protocol, ResolvedProvider
from switchyard.router.providers.engine import MODEL_PREFIX, Engine
from switchyard.router.providers.first_party_model import FirstPartyModel
from switchyard.router.providers.google import Google
from switchyard.router.providers.openai_compatible import OpenAICompatible
from switchyard.router.providers.upstream import Adapter, ProviderModel, UpstreamClient
from switchyard.router.redaction import Redactor
from switchyard.router.replicas import ReplicaSet
from switchyard.router.routing.preferences import Offer

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT_S = 2.0
RESOLVE_RETRY_S = 1.0
ADAPTERS: dict[Protocol, Adapter] = {
    "openai": OpenAICompatible(),
    "anthropic": Anthropic(),
    "google": Google(),
}


def _label(engine: Engine) -> str:
    return engine.label


class Registry:
    def __init__(
        self, config: RouterConfig, providers: list[ResolvedProvider], redact: Redactor
    ) -> None:
        self._config = config
        self.engines: list[Engine] = []
        self._by_model: dict[str, FirstPartyModel] = {}
        # One client, one keep-alive pool per origin, for every provider.
        self.upstream = UpstreamClient(redact, config.provider_connections_per_origin)
        self.provider_models = {
            f"{p.name}/{model}": ProviderModel(p, ADAPTERS[p.protocol], model, self.upstream)
            for p in providers
            for model in p.models
        }

    def open(self) -> None:
        """Connect to the engines and open the provider client; call on the event loop
        that will serve requests, since a gRPC channel belongs to the loop it was created
        on."""
        self.upstream.open()
        self.engines = [
            Engine(e.label, EngineClient(e.target, timeout_s=self._config.request_timeout_s))
            for e in self._config.engines
        ]

    async def _resolve(self, engine: Engine) -> bool:
        try:
            info = await engine.client.model_info(timeout_s=RESOLVE_TIMEOUT_S)
        except grpc.aio.AioRpcError:
            return False
        name = info.served_model_name
        engine.info = info
        model = self._by_model.get(name)
        if model is None:
            replicas = ReplicaSet([engine], self._config.replica_policy, label=_label)
            self._by_model[name] = FirstPartyModel(name, replicas)
        else:
            model.replicas.add(engine)
        log.info("engine %s serves %s", engine.label, name)
        return True

    async def resolve_until_done(self) -> None:
        """Ask every engine for its model, retrying those that are not up yet."""
        pending = list(self.engines)
        while pending:
            done = await asyncio.gather(*(self._resolve(engine) for engine in pending))
            pending = [engine for engine, ok in zip(pending, done, strict=True) if not ok]
            if pending:
                await asyncio.sleep(RESOLVE_RETRY_S)

    def find(self, model: str) -> ServedModel | None:
        """The first-party model for ``switchyard/<name>`` or the bare served name, or
        the provider model for ``<provider>/<model>``."""
        return self.provider_models.get(model) or self._by_model.get(
            model.removeprefix(MODEL_PREFIX)
        )

    def models(self) -> list[ServedModel]:
        return [*self._by_model.values(), *self.provider_models.values()]

    def offers(self) -> list[Offer]:
        """Every served model as ``provider`` preferences and ``auto`` see it; a
        first-party model costs nothing per token."""
        first_party = [
            Offer(m.model_id, "switchyard", m.name, frozenset({"chat", "completions"}), 0.0)
            for m in self._by_model.values()
        ]
        third_party = [
            Offer(
                m.model_id,
                m.provider.name,
                m.model,
                m.adapter.endpoints,
                m.provider.prices.get(m.model),
            )
            for m in self.provider_models.values()
        ]
        return first_party + third_party

    def replica_report(self) -> dict[str, list[dict[str, Any]]]:
        """Each first-party model's replicas: in-flight requests and prefix index size."""
        return {m.model_id: m.replicas.snapshot() for m in self._by_model.values()}

    def health_targets(self) -> list[str]:
        providers = dict.fromkeys(m.provider.name for m in self.provider_models.values())
        return [*providers, *(engine.health_key for engine in self.engines)]

    async def readiness(self) -> dict[str, str]:
        """Each engine's state: ``serving``, ``not serving`` or ``model unknown``."""
        serving = await asyncio.gather(*(e.client.is_serving() for e in self.engines))
        states = {}
        for engine, up in zip(self.engines, serving, strict=True):
            if not up:
                states[engine.label] = "not serving"
            elif engine.info is None:
                states[engine.label] = "model unknown"
            else:
                states[engine.label] = "serving"
        return states

    async def loads(self) -> dict[tuple[str, str], engine_pb2.Loads]:
        """Each reachable engine's loads by (served model, engine label); engines that
        fail are left out."""
        resolved = [(e, e.info) for e in self.engines if e.info is not None]
        answers = await asyncio.gather(
            *(e.client.loads(timeout_s=RESOLVE_TIMEOUT_S) for e, _ in resolved),
            return_exceptions=True,
        )
        return {
            (info.served_model_name, e.label): answer
            for (e, info), answer in zip(resolved, answers, strict=True)
            if isinstance(answer, engine_pb2.Loads)
        }

    async def close(self) -> None:
        await asyncio.gather(*(engine.client.close() for engine in self.engines))
        await self.upstream.close()
