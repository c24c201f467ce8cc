"""What this CPU offers that changes which kernels vLLM-CPU runs.

vLLM 0.32's CPU build decides by the CPU, at model build time: with AMX tiles
(``amx_tile``, Sapphire Rapids and later) its bf16 attention takes its AMX kernel and
bf16/fp16 linear layers of up to 1 MiB take the SGL ``weight_packed_linear`` kernel;
without, a vector attention kernel and oneDNN. Both are correct; they round differently,
so bf16 near-ties can resolve differently (README "Known limits"). The one-line summary
goes into the engine's log and the head of every test run, so a result can be read
against the path that produced it.
"""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The flags, in the order they are reported.
FLAGS = ("amx_tile", "amx_bf16", "amx_fp16", "avx512f", "avx512_bf16", "avx512_fp16")


def describe_cpu(cpuinfo: str | None = None, amx_usable: bool | None = None) -> str:
    """``cpu: <model>; amx_tile amx_bf16 ... (vLLM-CPU: AMX attention and SGL small GEMMs)``
    from /proc/cpuinfo (or ``cpuinfo``); the flags listed are those present. The path is
    the one vLLM takes, which asks torch whether AMX tiles are usable (the kernel must
    also permit them), unless ``amx_usable`` says."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:
            return "cpu: unknown (no /proc/cpuinfo)"
    model, flags = "unknown model", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model name") and model == "unknown model":
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    present = [flag for flag in FLAGS if flag in flags]
    if amx_usable is None:
        amx_usable = "amx_tile" in flags and _torch_says_amx()
    path = "AMX attention and SGL small GEMMs" if amx_usable else "vector attention, oneDNN GEMMs"
    return f"cpu: {model}; {' '.join(present) or 'no AMX or AVX-512'} (vLLM-CPU: {path})"


def _torch_says_amx() -> bool:
    import torch

    return bool(torch.cpu._is_amx_tile_supported())
