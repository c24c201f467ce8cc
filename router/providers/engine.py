"""A first-party engine as the router knows it: its gRPC client and the model it said
it serves.

It lives below both the engine calls (``first_party``) and the registry that finds the
engines, so neither has to import the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from switchyard.api.client import EngineClient
from switchyard.api.v1 import engine_pb2

MODEL_PREFIX = "switchyard/"


@dataclass
class Engine:
    label: str
    client: EngineClient
    info: engine_pb2.ModelInfo | None = None

    owned_by = "switchyard"

    @property
    def model_id(self) -> str | None:
        return MODEL_PREFIX + self.info.served_model_name if self.info else None

    @cached_property
    def health_key(self) -> str:
        # Cached: the request path reads it for every replica it considers.
        return f"engine/{self.label}"
