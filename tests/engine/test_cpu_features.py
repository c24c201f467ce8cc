"""The CPU summary at the head of test runs and in the engine's log."""

from __future__ import annotations

from switchyard.engine.cpu_features import describe_cpu

SAPPHIRE_RAPIDS = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
GENOA = """model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu sse avx2 avx512f avx512_bf16
"""


def test_an_amx_cpu_is_named_with_its_flags_and_vllms_amx_path() -> None:
    line = describe_cpu(SAPPHIRE_RAPIDS, amx_usable=True)
    assert line == (
        "cpu: Intel(R) Xeon(R) Platinum 8480+; amx_tile amx_bf16 avx512f avx512_bf16 "
        "(vLLM-CPU: AMX attention and SGL small GEMMs)"
    )


def test_a_cpu_without_amx_gets_the_vector_path() -> None:
    assert describe_cpu(GENOA, amx_usable=False) == (
        "cpu: AMD EPYC 9654 96-Core Processor; avx512f avx512_bf16 "
        "(vLLM-CPU: vector attention, oneDNN GEMMs)"
    )


def test_a_cpu_with_neither_says_so() -> None:
    line = describe_cpu("model name : Old CPU\nflags : fpu sse avx2\n")
    assert line == "cpu: Old CPU; no AMX or AVX-512 (vLLM-CPU: vector attention, oneDNN GEMMs)"


def test_amx_the_kernel_does_not_permit_is_not_the_path_vllm_takes() -> None:
    line = describe_cpu(SAPPHIRE_RAPIDS, amx_usable=False)
    assert "amx_tile" in line and line.endswith("(vLLM-CPU: vector attention, oneDNN GEMMs)")


def test_this_machine_is_described_as_torch_sees_it(monkeypatch) -> None:
    import torch

    assert describe_cpu().startswith("cpu: ")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert describe_cpu().endswith("(vLLM-CPU: vector attention, oneDNN GEMMs)")
