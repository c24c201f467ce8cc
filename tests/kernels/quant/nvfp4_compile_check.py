"""Compile every NVFP4 kernel variant for NVIDIA GPUs, without a GPU.

The CPU interpreter runs kernels as Python and accepts things the compiler rejects
(non-constexpr globals, operand shapes that do not broadcast); this compiles each kernel,
as its launcher calls it, through Triton's real pipeline (TTIR -> PTX -> cubin, with the
ptxas Triton ships) for Ampere (sm_80) and Hopper (sm_90), and checks that the PTX
divides with IEEE rounding and never flushes subnormals, which bit-exactness with
modelopt needs. Run as a script (TRITON_INTERPRET must be unset); ``--quick`` compiles
one variant of each kernel for sm_90 only (a few seconds, not minutes).
test_nvfp4_compiles.py runs both.
"""

from __future__ import annotations

import inspect
import os
import re
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from switchyard.kernels.quant import nvfp4

TARGETS = (GPUTarget("cuda", 80, 32), GPUTarget("cuda", 90, 32))


def _signature(kernel, pointers: dict[str, str], constexprs: dict[str, object]) -> dict:
    names = inspect.signature(kernel.fn).parameters
    return {
        name: "constexpr"
        if name in constexprs
        else pointers[name]
        if name.endswith("_ptr")
        else "i32"
        for name in names
    }


def variants() -> list[tuple[str, object, dict[str, str], dict[str, object]]]:
    """(label, kernel, pointer types, constexprs), one per way the launchers call them."""
    out = []
    for w_type, bf16 in (("*i16", True), ("*fp16", False), ("*fp32", False)):
        out.append(
            (
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
            (
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
                    (
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


def main(argv: list[str]) -> int:
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("unset TRITON_INTERPRET: the interpreter does not compile", file=sys.stderr)
        return 2
    quick = "--quick" in argv
    failures = 0
    for target in TARGETS[-1:] if quick else TARGETS:
        for label, kernel, pointers, constexprs in variants():
            if quick and label not in QUICK:
                continue
            source = ASTSource(
                fn=kernel, signature=_signature(kernel, pointers, constexprs), constexprs=constexprs
            )
            try:
                ptx = triton.compile(source, target=target).asm["ptx"]
            except Exception as error:
                failures += 1
                print(f"FAIL sm_{target.arch} {label}: {type(error).__name__}: {error}")
                continue
            divisions = set(re.findall(r"\bdiv\.[a-z0-9.]*f32", ptx))
            if "quantize" in label and (".ftz" in ptx or divisions - {"div.rn.f32"}):
                failures += 1
                print(f"FAIL sm_{target.arch} {label}: divisions {sorted(divisions)}")
                continue
            print(f"ok   sm_{target.arch} {label}")
    print(f"{failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
