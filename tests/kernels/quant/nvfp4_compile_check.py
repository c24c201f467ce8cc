"""Compile every NVFP4 kernel variant for NVIDIA GPUs, without a GPU.

The CPU interpreter runs kernels as Python and accepts things the compiler rejects
(non-constexpr globals, operand shapes that do not broadcast); this compiles each kernel,
as its launcher calls it, through Triton's real pipeline (TTIR -> PTX -> cubin, with the
ptxas Triton ships) for Ampere (sm_80) and Hopper (sm_90), and checks that the PTX
divides with IEEE rounding and never flushes subnormals, which bit-exactness with
modelopt needs; it prints ptxas's register and spill counts of each. Run as a script
(TRITON_INTERPRET must be unset); ``--quick`` compiles one variant of each kernel for
sm_90 only (a few seconds, not minutes). test_nvfp4_compiles.py runs both. The compiling
itself is tests/kernels/triton_compile.py, shared with the attention kernels' check.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/kernels: triton_compile
from triton_compile import Compiled, Variant, hand_variant, main

from switchyard.kernels.quant import nvfp4


def variants() -> list[Variant]:
    """One per way the launchers call the kernels."""
    out = []
    for w_type, bf16 in (("*i16", True), ("*fp16", False), ("*fp32", False)):
        out.append(
            hand_variant(
                f"quantize w={w_type}",
                nvfp4._nvfp4_quantize_kernel,
                {"packed_ptr": "*u8", "scales_ptr": "*u8", "w_ptr": w_type,
                 "global_scale_ptr": "*fp32"},
                {"BLOCK_ROWS": nvfp4.QUANT_BLOCK_ROWS, "BLOCK_GROUPS": nvfp4.QUANT_BLOCK_GROUPS,
                 "W_BF16_BITS": bf16},
            )
        )  # fmt: skip
    for out_type, bf16 in (("*i16", True), ("*fp16", False), ("*fp32", False)):
        out.append(
            hand_variant(
                f"dequantize out={out_type}",
                nvfp4._nvfp4_dequantize_kernel,
                {"out_ptr": out_type, "packed_ptr": "*u8", "scales_ptr": "*u8",
                 "global_scale_ptr": "*fp32"},
                {"BLOCK_ROWS": nvfp4.QUANT_BLOCK_ROWS, "BLOCK_GROUPS": nvfp4.QUANT_BLOCK_GROUPS,
                 "OUT_BF16": bf16},
            )
        )  # fmt: skip
    for x_type in ("*bf16", "*fp16", "*fp32"):
        for m in (1, 64, 4096):  # each tile choice of choose_tiles
            block_m, block_n, block_k, splits = nvfp4.choose_tiles(m, 5376, 21504)
            for split in sorted({1, splits}):
                out.append(
                    hand_variant(
                        f"linear x={x_type} m={m} splits={split}",
                        nvfp4._nvfp4_linear_kernel,
                        {"out_ptr": x_type if split == 1 else "*fp32", "x_ptr": x_type,
                         "packed_ptr": "*u8", "scales_ptr": "*u8", "global_scale_ptr": "*fp32",
                         "bias_ptr": x_type},
                        {"HAS_BIAS": split == 1, "BLOCK_M": block_m, "BLOCK_N": block_n,
                         "BLOCK_K": block_k, "DOT_FP32": False, "IEEE_FP32": x_type == "*fp32"},
                    )
                )  # fmt: skip
    return out


QUICK = ("quantize w=*i16", "dequantize out=*i16", "linear x=*bf16 m=1 splits=3")


def quick_variants() -> list[Variant]:
    chosen = [variant for variant in variants() if variant.label in QUICK]
    assert len(chosen) == len(QUICK), "a QUICK label names no variant"
    return chosen


def check_divisions(variant: Variant, compiled: Compiled) -> str | None:
    """Quantization must divide with IEEE rounding and keep subnormals."""
    divisions = set(re.findall(r"\bdiv\.[a-z0-9.]*f32", compiled.ptx))
    if "quantize" in variant.label and (".ftz" in compiled.ptx or divisions - {"div.rn.f32"}):
        return f"divisions {sorted(divisions)}"
    return None


if __name__ == "__main__":
    sys.exit(
        main(
            sys.argv[1:],
            quick=quick_variants,
            every=variants,
            forbid_spills=False,
            check=check_divisions,
        )
    )
