"""The models the router serves: each engine's, and each configured provider's.

An engine's model name is asked from the engine (GetModelInfo), so the config cannot
drift from what is actually served. Engines that are not up yet when the router starts
are retried in the background: the router starts regardless and ``/ready`` says which
engine it is waiting for. A third-party model is ``<provider>/<model>`` as configured;
the provider's own model name may itself contain slashes (``together/meta-llama/...``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc

from switchyard.engine.client import EngineClient
from switchyard.engine.v1 import engine_pb2
from switchyard.router.config import ResolvedProvider, RouterConfig
from switchyard.router.providers.anthropic import Anthropic
from switchyard.router.providers.catalog import Protocol
from switchyard.router.providers.google import Google
from switchyard.router.providers.openai_compatible import OpenAICompatible
from switchyard.router.providers.upstream import Adapter, ProviderModel

log = logging.getLogger(__name__)

MODEL_PREFIX = "switchyard/"
RESOLVE_TIMEOUT_S = 2.0
RESOLVE_RETRY_S = 1.0
ADAPTERS: dict[Protocol, Adapter] = {
    "openai": OpenAICompatible(),
    "anthropic": Anthropic(),
    "google": Google(),
}


@dataclass
class Engine:
    label: str
    client: EngineClient
    info: engine_pb2.ModelInfo | None = None

    owned_by = "switchyard"

    @property
    def model_id(self) -> str | None:
        return MODEL_PREFIX + self.info.served_model_name if self.info else None


class Registry:
    def __init__(self, config: RouterConfig, providers: list[ResolvedProvider]) -> None:
        self._config = config
        self.engines: list[Engine] = []
        self._by_model: dict[str, Engine] = {}
        self.provider_models = {
            f"{p.name}/{model}": ProviderModel(p, ADAPTERS[p.protocol], model)
            for p in providers
            for model in p.models
        }

    def open(self) -> None:
        """Connect to the engines; call on the event loop that will serve requests, since
        a gRPC channel belongs to the loop it was created on."""
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
        if name in self._by_model:
            log.error(
                "engine %s serves %s, already served by engine %s; it gets no traffic",
                engine.label,
                name,
                self._by_model[name].label,
            )
        else:
            self._by_model[name] = engine
            log.info("engine %s serves %s", engine.label, name)
        engine.info = info
        return True

    async def resolve_until_done(self) -> None:
        """Ask every engine for its model, retrying those that are not up yet."""
        pending = list(self.engines)
        while pending:
            done = await asyncio.gather(*(self._resolve(engine) for engine in pending))
            pending = [engine for engine, ok in zip(pending, done, strict=True) if not ok]
            if pending:
                await asyncio.sleep(RESOLVE_RETRY_S)

    def find(self, model: str) -> Engine | ProviderModel | None:
        """The engine for ``switchyard/<name>`` or the bare served name, or the provider
        model for ``<provider>/<model>``."""
        return self.provider_models.get(model) or self._by_model.get(
            model.removeprefix(MODEL_PREFIX)
        )

    def models(self) -> list[Engine | ProviderModel]:
        return [*self._by_model.values(), *self.provider_models.values()]

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

    async def loads(self) -> dict[str, engine_pb2.Loads]:
        """Each reachable engine's loads by served model; engines that fail are left out."""
        engines = [e for e in self._by_model.values() if e.info is not None]
        answers = await asyncio.gather(
            *(e.client.loads(timeout_s=RESOLVE_TIMEOUT_S) for e in engines),
            return_exceptions=True,
        )
        return {
            e.info.served_model_name: answer
            for e, answer in zip(engines, answers, strict=True)
            if isinstance(answer, engine_pb2.Loads)
        }

    async def close(self) -> None:
        await asyncio.gather(*(engine.client.close() for engine in self.engines))
