"""Compile Triton kernels for NVIDIA GPUs on a machine without one, and read ptxas's report.

The CPU interpreter that runs the kernel tests accepts code the compiler rejects
(non-constexpr globals, operand shapes that do not broadcast) and says nothing about
registers. This pushes a kernel through Triton's real pipeline (TTIR -> PTX -> cubin, with
the ptxas Triton ships) for a chosen architecture and parses ptxas's ``-v`` report: a
launched kernel's ``n_regs`` / ``n_spills`` come from the CUDA driver, which a machine
without a GPU lacks, but ptxas prints the same figures when it builds the cubin.

The per-kernel compile checks (``*_compile_check.py``) are scripts built on this module;
they must run without TRITON_INTERPRET, under which kernels are interpreted objects, so
the tests run them in a subprocess.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import re
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from unittest import mock

import triton
from triton.backends.compiler import BaseBackend, GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import JITFunction, native_specialize_impl

TARGETS = (GPUTarget("cuda", 80, 32), GPUTarget("cuda", 90, 32))
HOPPER = TARGETS[-1]
MAX_REGISTERS = 255  # per thread, on both targets


@dataclass(frozen=True)
class Variant:
    """One compilation of a kernel: its argument types, constants, hints and options."""

    label: str
    kernel: JITFunction
    signature: dict[str, str]
    constexprs: dict[str, object]
    attrs: dict[tuple[int, ...], list] = field(default_factory=dict)
    options: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Compiled:
    ptx: str
    registers: int  # per thread
    spill_stores: int  # bytes per thread
    spill_loads: int


def hand_variant(
    label: str, kernel: JITFunction, pointers: dict[str, str], constexprs: dict[str, object]
) -> Variant:
    """A variant spelt out by hand: a type for every ``*_ptr`` argument, the constants,
    and every other argument an int32 (no divisibility hints)."""
    signature = {
        name: "constexpr"
        if name in constexprs
        else pointers[name]
        if name.endswith("_ptr")
        else "i32"
        for name in inspect.signature(kernel.fn).parameters
    }
    return Variant(label, kernel, signature, constexprs)


def launched_variants(
    label: str, launch: Callable[[], object], kernels: Collection[JITFunction]
) -> list[Variant]:
    """The variants of ``kernels`` that ``launch`` launches, in launch order.

    ``launch`` calls a launcher on CPU tensors; the launches are recorded instead of run,
    so a variant is exactly what the launcher asks for (constants, launch options). They
    are specialised as Triton's JIT specialises a launch on a GPU: ints equal to 1 and
    None become constants, 16-byte-aligned pointers and multiples of 16 get divisibility
    hints, which change vectorisation and so register use.
    """
    recorded: list[Variant] = []

    def recorder(kernel: JITFunction) -> Callable[..., None]:
        def run(*args: object, grid: object, warmup: bool, **kwargs: object) -> None:
            name = kernel.fn.__name__
            recorded.append(_specialise(f"{label}: {name}", kernel, args, kwargs))

        return run

    with contextlib.ExitStack() as stack:
        for kernel in kernels:
            stack.enter_context(mock.patch.object(kernel, "run", recorder(kernel)))
        launch()
    return recorded


def _specialise(label: str, kernel: JITFunction, args: tuple, kwargs: dict[str, object]) -> Variant:
    """What ``kernel.run`` would compile for these arguments, computed without a device."""
    names = [param.name for param in kernel.params]
    bound = inspect.signature(kernel.fn).bind(
        *args, **{k: v for k, v in kwargs.items() if k in names}
    )
    bound.apply_defaults()
    signature: dict[str, str] = {}
    constexprs: dict[str, object] = {}
    attrs: dict[tuple[int, ...], list] = {}
    for index, param in enumerate(kernel.params):
        value = bound.arguments[param.name]
        if param.is_constexpr:
            kind, spec = "constexpr", value
        else:
            kind, spec = native_specialize_impl(
                BaseBackend,
                value,
                param.is_const,
                not param.do_not_specialize,
                not param.do_not_specialize_on_alignment,
            )
        signature[param.name] = kind
        if kind == "constexpr":
            constexprs[param.name] = spec
        elif isinstance(spec, str) and spec:
            attrs[(index,)] = BaseBackend.parse_attr(spec)
    options = {k: v for k, v in kwargs.items() if k not in names}
    return Variant(label, kernel, signature, constexprs, attrs, options)


def compile_variant(variant: Variant, target: GPUTarget) -> Compiled:
    """Compile ``variant`` for ``target`` (never from Triton's cache: ptxas must run)."""
    source = ASTSource(
        fn=variant.kernel,
        signature=variant.signature,
        constexprs=variant.constexprs,
        attrs=variant.attrs,
    )
    # These scripts compile and exit: the settings may as well stay for the process.
    triton.knobs.compilation.always_compile = True
    triton.knobs.nvidia.dump_ptxas_log = True  # printed to stdout
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        kernel = triton.compile(source, target=target, options=dict(variant.options))
    report = log.getvalue()
    registers = re.search(r"Used (\d+) registers", report)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
    if registers is None or spills is None:
        raise RuntimeError(f"no register report in ptxas's log:\n{report}")
    return Compiled(
        ptx=kernel.asm["ptx"],
        registers=int(registers[1]),
        spill_stores=int(spills[1]),
        spill_loads=int(spills[2]),
    )


def main(
    argv: list[str],
    *,
    quick: Callable[[], list[Variant]],
    every: Callable[[], list[Variant]],
    forbid_spills: bool,
    check: Callable[[Variant, Compiled], str | None] = lambda variant, compiled: None,
) -> int:
    """Compile variants, print a line per compilation (registers, spills), count failures.

    ``--quick`` compiles the ``quick`` variants for sm_90 only, otherwise ``every``
    variant for every target. A variant fails if it does not compile, if ``check`` names
    a problem with it, or (with ``forbid_spills``) if ptxas spilled registers to local
    memory.
    """
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("unset TRITON_INTERPRET: the interpreter does not compile", file=sys.stderr)
        return 2
    is_quick = "--quick" in argv
    selected = quick() if is_quick else every()
    failures = 0
    print(f"triton {triton.__version__}: registers per thread, spill stores/loads in bytes")
    for target in (HOPPER,) if is_quick else TARGETS:
        for variant in selected:
            where = f"sm_{target.arch} {variant.label}"
            try:
                compiled = compile_variant(variant, target)
            except Exception as error:
                failures += 1
                print(f"FAIL {where}: {type(error).__name__}: {error}")
                continue
            problem = check(variant, compiled)
            if problem is None and forbid_spills and compiled.spill_stores:
                problem = "spills registers"
            failures += problem is not None
            print(
                f"{'FAIL' if problem else 'ok  '} {compiled.registers:3d} regs "
                f"{compiled.spill_stores:4d}/{compiled.spill_loads:<4d} spill  {where}"
                + (f": {problem}" if problem else "")
            )
    print(f"{failures} failed")
    return 1 if failures else 0
