"""Shared fixtures: real engines for the integration tests, one ``switchyard engine serve``
process per embedded model for the whole session, both started at once so their minute of
start-up overlaps (each uses one core). Teardown sends SIGTERM and requires a clean exit 0,
so every run also checks graceful shutdown.

Without a GPU, Triton kernels run under its interpreter. Triton reads TRITON_INTERPRET when
it is imported (vLLM imports it too), so the variable is set here, in the first file pytest
loads, before anything imports triton; engine subprocesses get their environment without it.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from switchyard.api.client import EngineClient
from switchyard.common.engine_process import EngineProcess
from switchyard.engine.cpu_features import describe_cpu

MODELS = ("smollm2-135m-instruct", "gemma-3-270m")
TEST_ENGINE_RESERVED_CORES = 1 if len(os.sched_getaffinity(0)) > 1 else 0


def pytest_report_header() -> str:
    """The CPU and the vLLM-CPU kernels it gets, at the head of every run (and CI log)."""
    return describe_cpu()


def _engine_environment() -> dict[str, str]:
    """The test process's environment, less the interpreter switch meant for kernel tests."""
    return {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


def _launch(model: str, log_dir: Path, *extra: str) -> EngineProcess:
    args = ["--model", model, "--enforce-eager"]
    args += ["--kv-cache-gib", "1", "--max-model-len", "2048", "--shutdown-grace", "5"]
    # Two engines share the machine, so neither's worker takes every core (the default on
    # small machines): each keeps vLLM's usual layout, the last core left to the rest,
    # unless the caller binds it to cores of its own.
    if "--cpu-cores" not in extra:
        args += ["--cpu-reserved-cores", str(TEST_ENGINE_RESERVED_CORES)]
    # Later flags win in argparse, so callers can override the defaults above.
    args += extra
    log_path = log_dir / f"engine-{Path(model).name}.log"  # model may be a checkpoint path
    return EngineProcess.start(model, args, log_path=log_path, env=_engine_environment())


@pytest.fixture(scope="session")
def engine_processes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, EngineProcess]]:
    log_dir = tmp_path_factory.mktemp("engines")
    engines = {model: _launch(model, log_dir) for model in MODELS}
    yield engines
    failures = []
    for engine in engines.values():
        code = engine.stop()  # SIGTERM, then SIGKILL for whatever of vLLM outlived it
        if code != 0:
            exit = "killed after it did not stop" if code is None else f"exited {code}"
            failures.append(f"{engine.name} {exit} on SIGTERM:\n{engine.log_tail()}")
    assert not failures, "\n".join(failures)


@pytest.fixture
def spawn_engine(tmp_path: Path) -> Iterator:
    """Start a private engine for a test that stops or breaks it; killed afterwards."""
    spawned: list[EngineProcess] = []

    def spawn(model: str, *extra: str) -> EngineProcess:
        engine = _launch(model, tmp_path, *extra)
        spawned.append(engine)
        return engine

    yield spawn
    for engine in spawned:
        engine.kill()


@pytest.fixture(scope="session")
def launch_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Start an engine with extra flags for a module-scoped fixture, which stops it when
    its module is done (so it does not hold memory for the rest of the session); any left
    running are killed at the end of the session."""
    launched: list[EngineProcess] = []

    def launch(model: str, *extra: str) -> EngineProcess:
        engine = _launch(model, tmp_path_factory.mktemp("engine"), *extra)
        launched.append(engine)
        return engine

    yield launch
    for engine in launched:
        engine.kill()


@pytest.fixture(scope="session")
async def smollm(engine_processes: dict[str, EngineProcess]) -> AsyncIterator[EngineClient]:
    client = await engine_processes["smollm2-135m-instruct"].wait_serving()
    yield client
    await client.close()


@pytest.fixture(scope="session")
async def gemma(engine_processes: dict[str, EngineProcess]) -> AsyncIterator[EngineClient]:
    client = await engine_processes["gemma-3-270m"].wait_serving()
    yield client
    await client.close()


@pytest.fixture(scope="session")
def gemma_tokenizer():
    from transformers import AutoTokenizer

    from switchyard.engine.models.prepare import prepare

    return AutoTokenizer.from_pretrained(prepare("gemma-3-270m"))


@pytest.fixture(scope="session")
def smollm_tokenizer():
    from transformers import AutoTokenizer

    from switchyard.engine.models.prepare import prepare

    return AutoTokenizer.from_pretrained(prepare("smollm2-135m-instruct"))
