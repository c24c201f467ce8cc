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
    THREAD_BIND_ENV,
    configure_engine_processes,
    parse_cores,
    reserved_cores,
    share_cores,
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


@pytest.fixture(autouse=True)
def no_core_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without vLLM's core settings and ends with the environment as it
    was. configure_engine_processes writes os.environ itself, which monkeypatch undoes only
    for names it has recorded (delenv of an absent name records nothing), and engines that
    later tests spawn inherit whatever is left: a leaked thread binding pins them."""
    for name in (RESERVED_CORES_ENV, THREAD_BIND_ENV):
        monkeypatch.setenv(name, "recorded")
        monkeypatch.delenv(name)


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(cpu_cores, "usable_cores", lambda: 2)
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
    configure_engine_processes(None)
    assert RESERVED_CORES_ENV not in os.environ
    configure_engine_processes(2)
    assert os.environ[RESERVED_CORES_ENV] == "2"


def test_a_refused_choice_changes_nothing(two_cores: pytest.MonkeyPatch) -> None:
    two_cores.setenv(RESERVED_CORES_ENV, "1")
    with pytest.raises(ValueError, match="cpu_reserved_cores must be between 0 and 1"):
        configure_engine_processes(2)
    assert os.environ[RESERVED_CORES_ENV] == "1"


@pytest.mark.parametrize(
    ("text", "cores"), [("0-1,3", (0, 1, 3)), (" 2 ", (2,)), ("3,0-3,1", (0, 1, 2, 3))]
)
def test_core_lists_read_as_vllm_writes_them(text: str, cores: tuple[int, ...]) -> None:
    assert parse_cores(text, range(4)) == cores


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", "cpu_cores: 'a' is not a core or a range of cores (e.g. 0-3,6)"),
        ("1-", "cpu_cores: '1-' is not a core or a range of cores"),
        ("0,,1", "cpu_cores: '' is not a core or a range of cores"),
        ("-1", "cpu_cores: '-1' is not a core or a range of cores"),
        ("3-1", "cpu_cores: range '3-1' runs backwards"),
        ("2-5", "cpu_cores: 4,5 not among this machine's usable cores (0,1,2,3)"),
    ],
)
def test_a_bad_core_list_is_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_cores(text, range(4))
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    ("usable", "engines", "shares"),
    [
        ([0, 1], 2, [(0,), (1,)]),
        ([3, 1, 0, 2], 2, [(0, 1), (2, 3)]),
        (list(range(5)), 2, [(0, 1, 2), (3, 4)]),
        (list(range(7)), 3, [(0, 1, 2), (3, 4), (5, 6)]),
        ([0, 1], 1, [(0, 1)]),
        ([0, 1], 3, None),
    ],
)
def test_several_engines_get_disjoint_shares_of_every_core(
    usable: list[int], engines: int, shares: list[tuple[int, ...]] | None
) -> None:
    assert share_cores(usable, engines) == shares


def test_a_core_list_binds_the_model_and_leaves_the_reservation_alone(
    two_cores: pytest.MonkeyPatch,
) -> None:
    configure_engine_processes(None, (1,))
    assert os.environ[THREAD_BIND_ENV] == "1"
    assert RESERVED_CORES_ENV not in os.environ


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--cpu-reserved-cores", "{cores}"], 1, "--cpu-reserved-cores must be between 0 and"),
        (["--cpu-cores", "0-{cores}"], 2, "argument --cpu-cores: cores: {cores} not among"),
        (
            ["--cpu-cores", "0", "--cpu-reserved-cores", "0"],
            2,
            "argument --cpu-reserved-cores: not allowed with argument --cpu-cores",
        ),
    ],
)
def test_engine_serve_refuses_a_core_setting_it_cannot_honour(
    args: list[str], code: int, message: str
) -> None:
    cores = max(os.sched_getaffinity(0)) + 1
    engine_serve = [sys.executable, "-m", "switchyard.cli.main", "engine", "serve"]
    result = subprocess.run(
        [*engine_serve, "--port", "0", *(a.format(cores=cores) for a in args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == code
    assert message.format(cores=cores) in result.stderr, result.stderr[-2000:]
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


async def test_a_core_list_is_what_vllms_worker_runs_on(spawn_engine) -> None:
    last = max(os.sched_getaffinity(0))
    engine = spawn_engine("smollm2-135m-instruct", "--cpu-cores", str(last))
    await (await engine.wait_serving()).close()
    assert _worker_cores(engine.process.pid) == {last}


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
