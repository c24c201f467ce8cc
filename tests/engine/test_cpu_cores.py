"""The engine's CPU core policy: on small machines the model gets every core."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from switchyard.engine import cpu_cores
from switchyard.engine.cpu_cores import (
    RESERVED_CORES_ENV,
    configure_engine_processes,
    reserved_cores,
    usable_cores,
)


@pytest.mark.parametrize(("usable", "expected"), [(1, 0), (2, 0), (4, 0), (5, None), (64, None)])
def test_small_machines_reserve_nothing_and_large_ones_keep_vllms_choice(
    usable: int, expected: int | None
) -> None:
    assert reserved_cores(usable, None) == expected


@pytest.mark.parametrize(("usable", "requested"), [(2, 0), (2, 1), (16, 3), (16, 15)])
def test_an_operators_choice_that_leaves_the_model_a_core_stands(
    usable: int, requested: int
) -> None:
    assert reserved_cores(usable, requested) == requested


@pytest.mark.parametrize(("usable", "requested"), [(2, 2), (2, -1), (1, 1), (16, 16)])
def test_a_choice_that_leaves_the_model_no_core_is_refused_by_name(
    usable: int, requested: int
) -> None:
    with pytest.raises(ValueError) as error:
        reserved_cores(usable, requested, "--cpu-reserved-cores")
    assert str(error.value) == (
        f"--cpu-reserved-cores must be between 0 and {usable - 1} "
        f"(this machine has {usable} usable cores), got {requested}"
    )


def test_usable_cores_is_this_processs_affinity() -> None:
    assert usable_cores() == len(os.sched_getaffinity(0)) >= 1


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(cpu_cores, "usable_cores", lambda: 2)
    monkeypatch.delenv(RESERVED_CORES_ENV, raising=False)
    return monkeypatch


def test_a_small_machine_tells_vllm_to_reserve_nothing(two_cores: pytest.MonkeyPatch) -> None:
    configure_engine_processes(None)
    assert os.environ[RESERVED_CORES_ENV] == "0"


def test_an_operators_environment_stands_unless_the_flag_overrides_it(
    two_cores: pytest.MonkeyPatch,
) -> None:
    two_cores.setenv(RESERVED_CORES_ENV, "1")
    configure_engine_processes(None)
    assert os.environ[RESERVED_CORES_ENV] == "1"
    configure_engine_processes(0)
    assert os.environ[RESERVED_CORES_ENV] == "0"


def test_a_large_machine_leaves_vllms_setting_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_cores, "usable_cores", lambda: 32)
    monkeypatch.delenv(RESERVED_CORES_ENV, raising=False)
    configure_engine_processes(None)
    assert RESERVED_CORES_ENV not in os.environ
    configure_engine_processes(2)
    assert os.environ[RESERVED_CORES_ENV] == "2"


def test_a_refused_choice_changes_nothing(two_cores: pytest.MonkeyPatch) -> None:
    two_cores.setenv(RESERVED_CORES_ENV, "1")
    with pytest.raises(ValueError, match="cpu_reserved_cores must be between 0 and 1"):
        configure_engine_processes(2)
    assert os.environ[RESERVED_CORES_ENV] == "1"


def test_engine_serve_refuses_a_reservation_that_leaves_no_core() -> None:
    cores = usable_cores()
    engine_serve = [sys.executable, "-m", "switchyard.cli.main", "engine", "serve"]
    result = subprocess.run(
        [*engine_serve, "--port", "0", "--cpu-reserved-cores", str(cores)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert f"--cpu-reserved-cores must be between 0 and {cores - 1}" in result.stderr
    assert "Traceback" not in result.stderr


async def test_the_reservation_reaches_vllms_thread_binding(
    engine_processes, gemma, spawn_engine
) -> None:
    """An engine told to reserve nothing binds its worker to the cores of a session engine
    (tests/conftest.py reserves some) plus the ones that engine kept back.

    Compared with a running engine rather than the machine: vLLM binds one thread per
    physical core of one NUMA node, which the affinity mask alone does not tell."""
    session = engine_processes["gemma-3-270m"]
    command = psutil.Process(session.process.pid).cmdline()
    reserved = int(command[command.index("--cpu-reserved-cores") + 1])
    unreserved = spawn_engine("smollm2-135m-instruct", "--cpu-reserved-cores", "0")
    await (await unreserved.wait_serving()).close()

    kept_back = _worker_cores(session.process.pid)
    everything = _worker_cores(unreserved.process.pid)
    assert kept_back <= everything
    assert len(everything) - len(kept_back) == reserved


def _worker_cores(group_id: int) -> set[int]:
    """The cores vLLM bound the worker of the engine whose process group is given to: it
    binds each OpenMP thread to one core, so the union over the worker's threads."""
    group = [p for p in psutil.process_iter(["name"]) if _in_group(p, group_id)]
    workers = [p for p in group if (p.info["name"] or "").startswith("VLLM::Worker")]
    assert len(workers) == 1, [p.info["name"] for p in group]
    return set().union(*(os.sched_getaffinity(t.id) for t in workers[0].threads()))


def _in_group(process: psutil.Process, group_id: int) -> bool:
    try:
        return os.getpgid(process.pid) == group_id
    except ProcessLookupError:
        return False
