"""Which of a CPU machine's cores the engine's model gets.

vLLM's CPU worker binds one OpenMP thread per core, except for cores it reserves (one per
worker on x86 and Arm) for the engine-core process, which busy-waits on the worker's
shared-memory queue between reads. On a large machine that costs one core in many. On a
small one it costs the model a large share of its compute: half of it on a 2-core machine,
where the reserved core mostly ran that busy-wait (gemma-3-270m, shared-prefix load, on
the 2-core VM: 75 output tok/s with the reservation, 124 without; docs/benchmarks/serving.md
"Switchyard against vLLM's own server").

Without a reservation the engine core's wait still spins, but it yields the core on each
turn (``sched_yield``) and the worker's threads, bound to every core, take it: measured on
the same load, the engine core used 0.25 s of CPU over an 8 s benchmark. (Making it block
on the queue's notification socket instead was tried and gained nothing: one run matched,
two had median TTFT at 3.9 s instead of 1.0 s.)

Several engines on one machine (``switchyard serve --models a,b``) would each take every
core, and their threads, bound to the same cores, would stall each other at every OpenMP
barrier; ``share_cores`` gives each engine its own contiguous share instead, which the
engine binds its model to (``--cpu-cores``).

The settings reach vLLM's processes through the environment, which they inherit, so they
apply to engines we start, not to other vLLM servers in the same environment.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence

# vLLM's own setting for the cores its CPU worker leaves to other processes.
RESERVED_CORES_ENV = "VLLM_CPU_NUM_OF_RESERVED_CPU"
# vLLM's own setting for the cores its CPU worker binds its threads to ("0-3,6"; "auto").
THREAD_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
# Up to this many usable cores, the model gets all of them.
SMALL_MACHINE_CORES = 4


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers narrow)."""
    return len(os.sched_getaffinity(0))


def reserved_cores(
    usable: int, requested: int | None, setting: str = "cpu_reserved_cores"
) -> int | None:
    """Cores to keep from the model's OpenMP threads; None leaves vLLM's own choice.

    ``requested`` is the operator's choice, named ``setting`` in the error; it must leave
    the model at least one core.
    """
    if requested is not None:
        if not 0 <= requested < usable:
            raise ValueError(
                f"{setting} must be between 0 and {usable - 1} "
                f"(this machine has {usable} usable cores), got {requested}"
            )
        return requested
    return 0 if usable <= SMALL_MACHINE_CORES else None


def parse_cores(text: str, usable: Collection[int], setting: str = "cpu_cores") -> tuple[int, ...]:
    """``"0-3,6"`` -> ``(0, 1, 2, 3, 6)``; every core must be one this process may use."""
    cores: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"{setting}: {part!r} is not a core or a range of cores (e.g. 0-3,6)")
        low, high = int(first), int(last) if dash else int(first)
        if low > high:
            raise ValueError(f"{setting}: range {part!r} runs backwards")
        cores.update(range(low, high + 1))
    outside = sorted(cores - set(usable))
    if outside:
        raise ValueError(
            f"{setting}: {format_cores(outside)} not among this machine's usable cores "
            f"({format_cores(usable)})"
        )
    return tuple(sorted(cores))


def format_cores(cores: Collection[int]) -> str:
    return ",".join(str(core) for core in sorted(cores))


def share_cores(usable: Sequence[int], engines: int) -> list[tuple[int, ...]] | None:
    """A contiguous share of ``usable`` for each of ``engines`` engines, the first ones one
    core more when they do not divide evenly; None when there are fewer cores than engines
    (then they share every core)."""
    if engines < 1 or len(usable) < engines:
        return None
    cores = sorted(usable)
    size, extra = divmod(len(cores), engines)
    shares, start = [], 0
    for index in range(engines):
        end = start + size + (index < extra)
        shares.append(tuple(cores[start:end]))
        start = end
    return shares


def configure_engine_processes(
    requested_reserved: int | None, cores: Sequence[int] | None = None
) -> None:
    """Set the environment the engine's vLLM processes inherit; call before starting them.

    ``cores`` binds the model to exactly those cores. Otherwise an operator's own
    ``VLLM_CPU_NUM_OF_RESERVED_CPU`` stands unless ``--cpu-reserved-cores`` overrides it.
    """
    if cores:
        os.environ[THREAD_BIND_ENV] = format_cores(cores)
        return
    reserved = reserved_cores(usable_cores(), requested_reserved)
    if reserved is None or (requested_reserved is None and RESERVED_CORES_ENV in os.environ):
        return
    os.environ[RESERVED_CORES_ENV] = str(reserved)
