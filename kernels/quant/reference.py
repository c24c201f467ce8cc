"""Plain torch NVFP4: the definition the Triton kernels are tested against.

NVFP4 stores a weight ``W [rows, cols]`` as

* ``packed`` uint8 ``[rows, cols / 2]``: one E2M1 code per element (sign bit 3, magnitude
  index 0..7 into {0, 0.5, 1, 1.5, 2, 3, 4, 6}), two per byte, the even column in the
  low nibble and the odd column in the high nibble;
* ``block_scales`` float8_e4m3fn ``[rows, cols / 16]``: one scale per 16 consecutive
  elements of a row;
* ``global_scale`` fp32 scalar: the tensor's amax / (6 * 448), so that the largest block
  scale lands on E4M3's largest value.

and reads it back as ``code_value * (float(block_scale) * global_scale)``.

The arithmetic is, operation for operation and in the same floating-point precision,
that of nvidia-modelopt 0.47.0's ``NVFP4QTensor`` (``modelopt/torch/quantization/
qtensor/nvfp4_tensor.py``): ``get_weights_scaling_factor_2``,
``get_weights_scaling_factor`` (dynamic path, block size 16, ``keep_high_precision=False``),
``_cast_fp4``, the packing in ``quantize`` (``try_tensorrt=False``) and the non-fast
``dequantize``. So the results are bit-identical to modelopt's wherever modelopt's are
meaningful; the few inputs where they are not are rejected or defined here:

* NaN or Inf anywhere in the input: ``ValueError`` (modelopt quietly emits codes derived
  from a NaN comparison);
* an all-zero tensor: modelopt divides 0 by a global scale of 0 and writes NaN block
  scales and 6.0 codes (dequantizing gives NaN). Here the global scale is 0 as in
  modelopt, every block scale is 1.0 (what modelopt's own ``scale == 0 -> 1.0`` rule
  intends) and every code is +0, so the tensor reads back as zeros. Any block whose
  ``block_scale * global_scale`` underflows to 0 (possible only with a global scale
  below ~1e-42) is written as zeros the same way;
* ``cols`` not a multiple of 16: ``ValueError`` (modelopt zero-pads the last block).

Readable first; nothing here is meant to be fast.
"""

from __future__ import annotations

import torch

BLOCK_SIZE = 16  # elements per block scale, along the last (K) dimension
E2M1_MAX = 6.0
E4M3_MAX = 448.0
E4M3_MIN_SUBNORMAL = 2.0**-9
# modelopt's rounding table: a magnitude rounds to index searchsorted(bounds, |v|) (the
# number of bounds strictly below it), plus one when it sits exactly on 0.75, 1.75 or 3.5.
# Ties between two E2M1 values thereby go to the one with an even mantissa bit (0.25 -> 0,
# 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4): round half to even.
E2M1_BOUNDS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)
E2M1_TIES_UP = (0.75, 1.75, 3.5)
# Value of each 4-bit code. Code 8 ("negative zero") reads back as +0, as in modelopt.
E2M1_VALUES = (0, 0.5, 1, 1.5, 2, 3, 4, 6, 0, -0.5, -1, -1.5, -2, -3, -4, -6)
QUANT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_finite(w: torch.Tensor, name: str = "w") -> torch.Tensor:
    """The tensor's amax (fp32, 0-dim); ValueError if any element is NaN or infinite.

    One reduction does both jobs: amax propagates NaN and is infinite with an Inf.
    """
    amax = w.abs().amax().float() if w.numel() else torch.zeros((), device=w.device)
    if not torch.isfinite(amax):
        bad = "NaN" if torch.isnan(amax) else "infinite"
        raise ValueError(f"{name} contains {bad} values; NVFP4 cannot represent them")
    return amax


def global_scale_from_amax(amax: torch.Tensor) -> torch.Tensor:
    """modelopt's ``get_weights_scaling_factor_2``: amax / (6 * 448) in fp32."""
    return amax.float() / (E2M1_MAX * E4M3_MAX)


def e2m1_codes(scaled: torch.Tensor) -> torch.Tensor:
    """modelopt's ``_cast_fp4``: fp32 values (already divided by their scale) to 4-bit codes.

    Magnitudes above 5 saturate to 6 (code 7); a negative value that rounds to 0 keeps
    its sign bit (code 8), exactly as modelopt writes it.
    """
    sign = (scaled < 0).to(torch.uint8)
    magnitude = scaled.abs()
    bounds = torch.tensor(E2M1_BOUNDS, device=scaled.device)
    index = torch.searchsorted(bounds, magnitude, out_int32=True).to(torch.uint8)
    ties_up = torch.tensor(E2M1_TIES_UP, device=scaled.device)
    on_tie = (magnitude.unsqueeze(-1) == ties_up).any(-1).to(torch.uint8)
    return (sign << 3) + index + on_tie


def amax_block_scales(blocks: torch.Tensor, global_scale: torch.Tensor) -> torch.Tensor:
    """The fp32 block scales of ``blocks [..., 16]`` before rounding to E4M3: block amax /
    (6 * global scale), and 1.0 where that is 0."""
    block_scale = blocks.abs().amax(-1).float() / (E2M1_MAX * global_scale)
    block_scale[block_scale == 0] = 1.0
    if global_scale == 0:  # all-zero tensor: 0 / 0 above (see the module docstring)
        block_scale.fill_(1.0)
    return block_scale


def e4m3_block_scales(block_scale: torch.Tensor) -> torch.Tensor:
    """fp32 block scales (relative to the global scale) clamped to E4M3's range and rounded
    to float8_e4m3fn, as modelopt stores them."""
    return block_scale.clamp(min=E4M3_MIN_SUBNORMAL, max=E4M3_MAX).to(torch.float8_e4m3fn)


def pack_e2m1(codes: torch.Tensor) -> torch.Tensor:
    """4-bit codes ``[rows, cols]`` to bytes ``[rows, cols / 2]``: even column in the low
    nibble, odd column in the high one."""
    return (codes[:, 1::2] << 4) | codes[:, 0::2]


def nvfp4_quantize_reference(
    w: torch.Tensor, global_scale: torch.Tensor | float | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same contract as ``nvfp4_quantize``: (packed, block_scales, global_scale).

    ``global_scale`` None computes it from the tensor's amax; a given one (e.g. shared
    by fused layers) must be a positive finite fp32 value.
    """
    if w.dim() != 2 or w.shape[1] % BLOCK_SIZE:
        raise ValueError(f"w must be 2-D with columns a multiple of 16, got {tuple(w.shape)}")
    amax = check_finite(w)
    if global_scale is None:
        global_scale = global_scale_from_amax(amax)
    else:
        global_scale = torch.as_tensor(global_scale, dtype=torch.float32, device=w.device)
    rows, cols = w.shape
    blocks = w.reshape(rows, cols // BLOCK_SIZE, BLOCK_SIZE)

    # get_weights_scaling_factor: block amax / (6 * global scale), 0 -> 1, clamp, to E4M3.
    block_scales = e4m3_block_scales(amax_block_scales(blocks, global_scale))

    # quantize: divide by the dequantized scale (fp32), round to E2M1, pack pairs.
    divisor = (block_scales.to(torch.float32) * global_scale).unsqueeze(-1)
    scaled = blocks / divisor  # bf16 / fp16 inputs are promoted to fp32 exactly
    scaled = torch.where(divisor == 0, 0.0, scaled).reshape(rows, cols)
    return pack_e2m1(e2m1_codes(scaled)), block_scales, global_scale.reshape(())


def nvfp4_dequantize_reference(
    packed: torch.Tensor,
    block_scales: torch.Tensor,
    global_scale: torch.Tensor | float,
    dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    """modelopt's ``dequantize``: code value * (block scale * global scale) in fp32, then
    one rounding to ``dtype``."""
    rows, half_cols = packed.shape
    codes = torch.stack([packed & 0x0F, packed >> 4], dim=-1).reshape(rows, 2 * half_cols)
    values = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=packed.device)[codes.long()]
    global_scale = torch.as_tensor(global_scale, dtype=torch.float32, device=packed.device)
    scale = block_scales.to(torch.float32) * global_scale
    out = values.reshape(rows, -1, BLOCK_SIZE) * scale.unsqueeze(-1)
    return out.reshape(rows, 2 * half_cols).to(dtype)


def nvfp4_linear_reference(
    x: torch.Tensor,
    packed: torch.Tensor,
    block_scales: torch.Tensor,
    global_scale: torch.Tensor | float,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x @ W.T + bias`` with W the dequantized NVFP4 weight [N, K], in float64.

    Returns float32 whatever x's dtype, so tests compare without a rounding of the
    reference's own (as the attention reference does).
    """
    weight = nvfp4_dequantize_reference(packed, block_scales, global_scale, torch.float32)
    out = x.double() @ weight.double().T
    if bias is not None:
        out = out + bias.double()
    return out.float()
