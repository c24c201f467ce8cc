"""A first-party model behind the backend interface: which replica serves, and what the
replica set is told about it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchyard.api.v1 import engine_pb2
from switchyard.router.openai_types import CompletionRequest
from switchyard.router.providers.engine import Engine
from switchyard.router.providers.first_party_model import FirstPartyModel
from switchyard.router.replicas import ReplicaSet

# Two full prefix blocks (replicas.DEFAULT_BLOCK_CHARS), for the prefix index to note.
PROMPT = "x" * 128


class _Client:
    """Answers every request with one chunk of text, then its end."""

    async def stream(self, request: engine_pb2.GenerateRequest) -> AsyncIterator[Any]:
        yield engine_pb2.GenerateResponse(chunk=engine_pb2.Chunk(text="hi"))
        yield engine_pb2.GenerateResponse(
            complete=engine_pb2.Complete(
                finish_reason=engine_pb2.STOP,
                usage=engine_pb2.Usage(prompt_tokens=3, completion_tokens=1),
            )
        )


def _model(*labels: str) -> FirstPartyModel:
    engines = [Engine(label, _Client()) for label in labels]  # type: ignore[arg-type]  # a stand-in
    for engine in engines:
        engine.info = engine_pb2.ModelInfo(served_model_name="m")
    return FirstPartyModel("m", ReplicaSet(engines, "cache_aware"))


def _body(stream: bool = False) -> CompletionRequest:
    return CompletionRequest(model="switchyard/m", prompt=PROMPT, stream=stream)


def _in_flight(model: FirstPartyModel) -> list[int]:
    return [replica["in_flight"] for replica in model.replicas.snapshot()]


async def test_one_replica_serves_a_plain_request_uncounted() -> None:
    model = _model("a")
    backend = model.sole_backend({}, _body(), "completions", "r1")
    assert backend is not None
    assert (backend.model, backend.provider, backend.health_key) == (
        "switchyard/m",
        "switchyard",
        "engine/a",
    )
    result = await backend.complete()
    assert result["choices"][0]["text"] == "hi"
    assert model.replicas.snapshot()[0]["indexed_blocks"] == 0


async def test_several_replicas_take_a_choice_and_count_the_chosen_one() -> None:
    model = _model("a", "b")
    assert model.sole_backend({}, _body(), "completions", "r1") is None
    backends = model.backends({}, _body(stream=True), "completions", "r1", lambda key: True)
    assert sorted(backend.health_key for backend in backends) == ["engine/a", "engine/b"]
    chosen = backends[0]
    index = ["engine/a", "engine/b"].index(chosen.health_key)
    events = chosen.stream()
    assert await anext(events)
    counted = _in_flight(model)
    assert counted[index] == 1 and sum(counted) == 1
    await events.aclose()
    assert _in_flight(model) == [0, 0]
    assert model.replicas.snapshot()[index]["indexed_blocks"] == 2


@pytest.mark.parametrize("asked", ["router/r", "m", "switchyard/m"])
async def test_the_answer_names_the_model_the_client_asked_for(asked: str) -> None:
    """Whole or streamed, ``model`` is the id in the request (a named router's too), not
    the engine's ``switchyard/m``."""
    for stream in (False, True):
        body = CompletionRequest(model=asked, prompt=PROMPT, stream=stream)
        backend = _model("a").sole_backend({}, body, "completions", "r1")
        assert backend is not None
        if stream:
            chunks = [chunk async for batch in backend.stream() for chunk in batch]
            assert {chunk["model"] for chunk in chunks} == {asked}
        else:
            assert (await backend.complete())["model"] == asked
