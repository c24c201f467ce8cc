"""The recipe's ``weights`` section as a function: which codes and block scales each
quantized weight gets. Every method returns ``nvfp4_quantize_reference``'s triple
(packed uint8, E4M3 block scales, fp32 global scale), so the checkpoint is written, and
read back, the same way whichever one chose them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from switchyard.engine.quantization.gptq import gptq_nvfp4
from switchyard.engine.quantization.recipes import WeightMethod, Weights
from switchyard.engine.quantization.scale_search import encode, search_block_scales
from switchyard.kernels.quant import nvfp4_quantize, nvfp4_quantize_reference
from switchyard.kernels.quant.reference import check_finite

if TYPE_CHECKING:  # calibration imports checkpoint, which imports this module
    from switchyard.engine.quantization.calibration import InputStatistics

# (module name, bf16 weight [out, in], global scale) -> (packed, block scales, global scale)
WeightQuantizer = Callable[
    [str, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]
]


def round_to_nearest() -> WeightQuantizer:
    """modelopt's round-to-nearest: the Triton kernel on a GPU; its torch reference
    (bit-identical, and vectorised, where the Triton CPU interpreter runs a program at a
    time and takes minutes per model) without one."""
    on_gpu = torch.cuda.is_available()
    quantize = nvfp4_quantize if on_gpu else nvfp4_quantize_reference
    device = torch.device("cuda" if on_gpu else "cpu")

    def rtn(_module: str, w: torch.Tensor, global_scale: torch.Tensor):
        packed, scales, scale = quantize(w.to(device), global_scale.to(device))
        return packed.cpu(), scales.cpu(), scale.cpu()

    return rtn


def weight_quantizer(weights: Weights, stats: InputStatistics | None) -> WeightQuantizer:
    """The quantizer ``weights`` describes; ``stats`` must hold the Hessians of every
    module it will see when the method is calibrated. Weights that sequential GPTQ
    already rounded (``stats.rounded``) come back as it rounded them."""
    if not weights.calibrated:
        return round_to_nearest()
    if stats is None or not stats.hessians:
        raise ValueError("calibrated weight rounding needs the calibration Hessians")
    factors = weights.scale_search.factors if weights.scale_search is not None else ()

    def calibrated(module: str, w: torch.Tensor, global_scale: torch.Tensor):
        if module in stats.rounded:
            return stats.rounded[module]
        hessian = stats.hessian(module)
        if weights.method is WeightMethod.GPTQ:
            assert weights.damp is not None  # the recipe validator requires it for gptq
            return gptq_nvfp4(
                w, hessian, global_scale, weights.damp, factors, act_order=weights.act_order
            )
        check_finite(w)
        scales = search_block_scales(w, global_scale, factors, hessian.diagonal())
        return encode(w, scales, global_scale), scales, global_scale.reshape(())

    return calibrated
