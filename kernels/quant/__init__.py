"""NVFP4 quantization: Triton kernels and their plain torch references."""

from switchyard.kernels.quant.nvfp4 import nvfp4_dequantize, nvfp4_linear, nvfp4_quantize
from switchyard.kernels.quant.reference import (
    nvfp4_dequantize_reference,
    nvfp4_linear_reference,
    nvfp4_quantize_reference,
)

__all__ = [
    "nvfp4_dequantize",
    "nvfp4_dequantize_reference",
    "nvfp4_linear",
    "nvfp4_linear_reference",
    "nvfp4_quantize",
    "nvfp4_quantize_reference",
]
