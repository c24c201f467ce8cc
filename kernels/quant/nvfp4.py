"""NVFP4 in Triton: quantize, dequantize, and a weight-only (W4A16) GEMM.

The format and the exact arithmetic are defined in ``reference.py`` (nvidia-modelopt
0.47.0's ``NVFP4QTensor``, bit for bit); these kernels compute the same results:

* ``nvfp4_quantize``: one program per tile of rows x 16-element blocks. It loads the
  tile's even and odd columns as two [rows, blocks, 8] tensors, so that a byte's two
  nibbles are computed side by side and packed without any reshuffling.
* ``nvfp4_dequantize``: the inverse walk, writing the even and odd columns.
* ``nvfp4_linear``: ``x @ W.T (+ bias)`` for bf16/fp16/fp32 activations and NVFP4
  weights, for GPUs without FP4 tensor cores (Hopper): W tiles are decoded to the
  activation dtype in registers, and only the 4-bit codes and E4M3 scales are read from
  memory, which is the point at decode batch sizes, where the GEMM is bandwidth-bound.
  The even and odd halves of each K tile meet the matching strided halves of x in two
  ``tl.dot`` calls, so nibbles are never interleaved in registers. ``code * block scale``
  has at most 6 significant bits and is exact in bf16 and fp16; the global scale is
  applied once to the fp32 accumulator.

Bit-exactness needs care where the obvious Triton spelling differs from torch's IEEE
arithmetic: fp32 division uses ``tl.math.div_rn`` (``/`` compiles to a faster division
that is not correctly rounded); fp32 -> E4M3 and fp32 -> bf16 are rounded to
nearest-even with integer bit operations, and E4M3 scales are read as raw bytes and
decoded the same way (the CPU interpreter truncates bf16, and FP8 conversions are not
available on every GPU Triton targets); bf16 weights are read as their bits and widened
by a shift (the interpreter's bf16 conversion flushes subnormals). The compiled PTX
divides with ``div.rn.f32`` and never flushes subnormals (tests/kernels/quant checks
it). Only long-standing ``tl`` operations are used: the kernels run on Triton 3.6 as well
as on newer releases and in the CPU interpreter.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from switchyard.kernels.quant.reference import BLOCK_SIZE, QUANT_DTYPES, check_finite

ACTIVATION_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
E2M1_MAX = 6.0
E4M3_MAX = 448.0
# The same constants as kernels see them (a jitted function reads only constexpr globals).
_E4M3_MIN_SUBNORMAL = tl.constexpr(2.0**-9)
_E4M3_MAX = tl.constexpr(E4M3_MAX)

# Quantize / dequantize tiles: rows x 16-element blocks per program.
QUANT_BLOCK_ROWS = 16
QUANT_BLOCK_GROUPS = 8
# GEMM tiles. BLOCK_K is in unpacked elements and a multiple of 32 (each of the two dots
# needs at least 16 along K). Split-K gives small-M, long-K shapes (down projections at
# decode) enough programs to fill a GPU of ~132 SMs; the split partials are summed in fp32.
TARGET_PROGRAMS = 264
MIN_K_PER_SPLIT = 1024
MAX_K_SPLITS = 16


@triton.jit
def _e4m3_encode(x):
    """fp32 in [2**-9, 448] -> the E4M3 (fn) byte nearest to it, ties to even.

    The 24-bit significand keeps 3 fraction bits for normal values (exponent >= -6) and
    fewer below, where E4M3 is subnormal with a fixed step of 2**-9; a rounding carry
    into the next exponent comes out right by itself in both encodings.
    """
    bits = x.to(tl.int32, bitcast=True)
    exponent = (bits >> 23) - 127
    significand = (bits & 0x7FFFFF) | 0x800000
    shift = 20 + tl.maximum(-6 - exponent, 0)
    kept = significand >> shift
    rest = significand - (kept << shift)
    half = 1 << (shift - 1)
    kept += ((rest > half) | ((rest == half) & ((kept & 1) == 1))).to(tl.int32)
    code = tl.where(exponent >= -6, ((exponent + 6) << 3) + kept, kept)
    return code.to(tl.uint8)


@triton.jit
def _e4m3_decode(code):
    """E4M3 (fn) byte -> fp32, exactly; 0x7F / 0xFF are NaN, as in torch."""
    code = code.to(tl.int32)
    exponent = (code >> 3) & 0xF
    mantissa = code & 0x7
    normal = (((exponent + 120) << 23) | (mantissa << 20)).to(tl.float32, bitcast=True)
    value = tl.where(exponent > 0, normal, mantissa.to(tl.float32) * _E4M3_MIN_SUBNORMAL)
    value = tl.where((code & 0x7F) == 0x7F, float("nan"), value)
    return tl.where((code & 0x80) != 0, -value, value)


@triton.jit
def _e2m1_encode(scaled):
    """fp32 (already divided by its scale) -> 4-bit code, as modelopt's ``_cast_fp4``.

    The magnitude index counts the rounding bounds strictly below the magnitude, plus one
    on the ties 0.75, 1.75 and 3.5: round half to even, saturating at 6.
    """
    a = tl.abs(scaled)
    index = (
        (a > 0.25).to(tl.int32)
        + (a > 0.75).to(tl.int32)
        + (a > 1.25).to(tl.int32)
        + (a > 1.75).to(tl.int32)
        + (a > 2.5).to(tl.int32)
        + (a > 3.5).to(tl.int32)
        + (a > 5.0).to(tl.int32)
        + (a == 0.75).to(tl.int32)
        + (a == 1.75).to(tl.int32)
        + (a == 3.5).to(tl.int32)
    )
    return (tl.where(scaled < 0, 8, 0) + index).to(tl.uint8)


@triton.jit
def _e2m1_decode(code):
    """4-bit code (in any integer type) -> fp32 value; code 8 reads back as +0."""
    magnitude = (code & 0x7).to(tl.float32)  # index 0..7 -> 0, .5, 1, 1.5, 2, 3, 4, 6
    value = tl.where(
        magnitude < 4.0,
        magnitude * 0.5,
        tl.where(magnitude < 6.0, magnitude - 2.0, 2.0 * magnitude - 8.0),
    )
    return tl.where((code & 0x8) != 0, -value, value)


@triton.jit
def _bf16_bits(x):
    """fp32 -> the bits of the nearest bf16 (ties to even), as int16; x is finite."""
    bits = x.to(tl.uint32, bitcast=True)
    bits += 0x7FFF + ((bits >> 16) & 1)
    return (bits >> 16).to(tl.int16)


@triton.jit
def _load_fp32(ptrs, mask, BF16_BITS: tl.constexpr):
    """Load as fp32. With BF16_BITS the pointers are bf16 data viewed as int16, widened
    by a shift: exact for every value, where the CPU interpreter's bf16 conversion
    flushes subnormals (and loses their sign)."""
    if BF16_BITS:
        bits = tl.load(ptrs, mask, 0).to(tl.int32) << 16
        return bits.to(tl.float32, bitcast=True)
    return tl.load(ptrs, mask, 0.0).to(tl.float32)


@triton.jit
def _nvfp4_quantize_kernel(
    packed_ptr,
    scales_ptr,
    w_ptr,
    global_scale_ptr,
    rows,
    groups,
    stride_wr,
    stride_wc,
    stride_pr,
    stride_pc,
    stride_sr,
    stride_sc,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_GROUPS: tl.constexpr,
    W_BF16_BITS: tl.constexpr,
):
    """One tile of [BLOCK_ROWS rows, BLOCK_GROUPS 16-element blocks] of w."""
    row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    group = tl.program_id(1) * BLOCK_GROUPS + tl.arange(0, BLOCK_GROUPS)
    pair = tl.arange(0, 8)
    valid = (row < rows)[:, None, None] & (group < groups)[None, :, None]
    even_col = group[None, :, None] * 16 + 2 * pair[None, None, :]
    w_rows = w_ptr + row.to(tl.int64)[:, None, None] * stride_wr
    even = _load_fp32(w_rows + even_col * stride_wc, valid, W_BF16_BITS)
    odd = _load_fp32(w_rows + (even_col + 1) * stride_wc, valid, W_BF16_BITS)

    # Block scale: block amax / (6 * global scale); 0 -> 1; clamped to E4M3's range.
    global_scale = tl.load(global_scale_ptr)
    block_amax = tl.maximum(tl.max(tl.abs(even), 2), tl.max(tl.abs(odd), 2))
    # An all-zero tensor has global scale 0 (modelopt's 0 / 0 = NaN): its blocks get 1.
    denominator = tl.where(global_scale > 0.0, 6.0 * global_scale, 1.0)
    ratio = tl.math.div_rn(block_amax, tl.full(block_amax.shape, 1.0, tl.float32) * denominator)
    ratio = tl.where(ratio == 0.0, 1.0, ratio)
    ratio = tl.where(global_scale > 0.0, ratio, 1.0)
    ratio = tl.minimum(tl.maximum(ratio, _E4M3_MIN_SUBNORMAL), _E4M3_MAX)
    scale_code = _e4m3_encode(ratio)

    # Elements divided by the scale as stored (E4M3 value * global scale), then rounded.
    # div_rn does not broadcast: both operands are given the full tile shape.
    divisor = tl.broadcast_to(
        (_e4m3_decode(scale_code) * global_scale)[:, :, None], [BLOCK_ROWS, BLOCK_GROUPS, 8]
    )
    nonzero = divisor != 0.0
    safe = tl.where(nonzero, divisor, 1.0)
    even_code = _e2m1_encode(tl.where(nonzero, tl.math.div_rn(even, safe), 0.0))
    odd_code = _e2m1_encode(tl.where(nonzero, tl.math.div_rn(odd, safe), 0.0))

    packed_rows = packed_ptr + row.to(tl.int64)[:, None, None] * stride_pr
    tl.store(
        packed_rows + (group[None, :, None] * 8 + pair[None, None, :]) * stride_pc,
        even_code | (odd_code << 4),
        valid,
    )
    scale_ptrs = scales_ptr + row.to(tl.int64)[:, None] * stride_sr + group[None, :] * stride_sc
    tl.store(scale_ptrs, scale_code, (row < rows)[:, None] & (group < groups)[None, :])


@triton.jit
def _nvfp4_dequantize_kernel(
    out_ptr,
    packed_ptr,
    scales_ptr,
    global_scale_ptr,
    rows,
    groups,
    stride_or,
    stride_oc,
    stride_pr,
    stride_pc,
    stride_sr,
    stride_sc,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_GROUPS: tl.constexpr,
    OUT_BF16: tl.constexpr,
):
    """One tile of [BLOCK_ROWS rows, BLOCK_GROUPS blocks]: code * (scale * global scale).

    With OUT_BF16, ``out_ptr`` is the output viewed as int16 and receives rounded bits.
    """
    row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    group = tl.program_id(1) * BLOCK_GROUPS + tl.arange(0, BLOCK_GROUPS)
    pair = tl.arange(0, 8)
    valid2 = (row < rows)[:, None] & (group < groups)[None, :]
    valid = valid2[:, :, None]
    row64 = row.to(tl.int64)
    byte_ptrs = (
        packed_ptr
        + row64[:, None, None] * stride_pr
        + (group[None, :, None] * 8 + pair[None, None, :]) * stride_pc
    )
    byte = tl.load(byte_ptrs, valid, 0)
    code = tl.load(scales_ptr + row64[:, None] * stride_sr + group[None, :] * stride_sc, valid2, 0)
    scale = (_e4m3_decode(code) * tl.load(global_scale_ptr))[:, :, None]
    even = _e2m1_decode(byte & 0xF) * scale
    odd = _e2m1_decode(byte >> 4) * scale

    even_ptrs = (
        out_ptr
        + row64[:, None, None] * stride_or
        + (group[None, :, None] * 16 + 2 * pair[None, None, :]) * stride_oc
    )
    if OUT_BF16:
        tl.store(even_ptrs, _bf16_bits(even), valid)
        tl.store(even_ptrs + stride_oc, _bf16_bits(odd), valid)
    else:
        tl.store(even_ptrs, even.to(out_ptr.dtype.element_ty), valid)
        tl.store(even_ptrs + stride_oc, odd.to(out_ptr.dtype.element_ty), valid)


@triton.jit
def _nvfp4_linear_kernel(
    out_ptr,
    x_ptr,
    packed_ptr,
    scales_ptr,
    global_scale_ptr,
    bias_ptr,
    M,
    N,
    K,
    k_per_split,
    stride_os,
    stride_om,
    stride_on,
    stride_xm,
    stride_xk,
    stride_pn,
    stride_pk,
    stride_sn,
    stride_sk,
    HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_FP32: tl.constexpr,
    IEEE_FP32: tl.constexpr,
):
    """One [BLOCK_M, BLOCK_N] tile of x @ W.T over one split of K.

    Without split-K (one split) ``out_ptr`` is the output, in x's dtype, with the global
    scale and bias applied. With splits it is the fp32 partial buffer [split, M, N] and
    split s writes its own slice (scaled; split 0 adds the bias); the launcher sums them.
    """
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    split = tl.program_id(2)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = rm < M
    n_ok = rn < N
    HALF_K: tl.constexpr = BLOCK_K // 2
    GROUPS: tl.constexpr = BLOCK_K // 16
    half = tl.arange(0, HALF_K)
    groups = tl.arange(0, GROUPS)
    x_rows = x_ptr + rm.to(tl.int64)[:, None] * stride_xm
    w_cols = rn.to(tl.int64)[None, :]

    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    k_start = split * k_per_split
    k_end = tl.minimum(k_start + k_per_split, K)
    for k0 in range(k_start, k_end, BLOCK_K):
        # K is a multiple of 16, so a block's even and odd columns are valid together.
        k_even = k0 + 2 * half
        k_ok = k_even < k_end
        x_even = tl.load(x_rows + k_even[None, :] * stride_xk, m_ok[:, None] & k_ok[None, :], 0.0)
        x_odd = tl.load(
            x_rows + (k_even + 1)[None, :] * stride_xk, m_ok[:, None] & k_ok[None, :], 0.0
        )
        w_ok = k_ok[:, None] & n_ok[None, :]
        byte = tl.load(
            packed_ptr + w_cols * stride_pn + (k0 // 2 + half)[:, None] * stride_pk, w_ok, 0
        )
        # One scale per 16 K (8 bytes): decoded once, repeated to the rows of its bytes.
        g_ok = (k0 + 16 * groups < k_end)[:, None] & n_ok[None, :]
        code = tl.load(
            scales_ptr + w_cols * stride_sn + (k0 // 16 + groups)[:, None] * stride_sk, g_ok, 0
        )
        scale = tl.reshape(
            tl.broadcast_to(_e4m3_decode(code)[:, None, :], [GROUPS, 8, BLOCK_N]), [HALF_K, BLOCK_N]
        )
        w_even = _e2m1_decode(byte & 0xF) * scale  # exact: <= 6 significant bits
        w_odd = _e2m1_decode(byte >> 4) * scale
        if DOT_FP32:  # the CPU interpreter, whose bf16 dot is broken (see attention)
            x_even = x_even.to(tl.float32)
            x_odd = x_odd.to(tl.float32)
        else:
            w_even = w_even.to(x_ptr.dtype.element_ty)
            w_odd = w_odd.to(x_ptr.dtype.element_ty)
        if IEEE_FP32:
            acc += tl.dot(x_even, w_even, input_precision="ieee")
            acc += tl.dot(x_odd, w_odd, input_precision="ieee")
        else:
            acc += tl.dot(x_even, w_even)
            acc += tl.dot(x_odd, w_odd)

    acc = acc * tl.load(global_scale_ptr)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + rn, n_ok, 0.0).to(tl.float32)
        acc += tl.where(split == 0, bias, 0.0)[None, :]
    o_ptrs = (
        out_ptr + split * stride_os + rm.to(tl.int64)[:, None] * stride_om + rn[None, :] * stride_on
    )
    tl.store(o_ptrs, acc.to(out_ptr.dtype.element_ty), m_ok[:, None] & n_ok[None, :])


# Under TRITON_INTERPRET=1 (read when the decorators above ran) kernels are interpreted.
_INTERPRETED = not isinstance(_nvfp4_linear_kernel, triton.runtime.JITFunction)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _global_scale_tensor(global_scale: torch.Tensor | float, device: torch.device) -> torch.Tensor:
    """``global_scale`` as a 1-element fp32 tensor on ``device`` (a pointer for the kernels).

    A tensor stays where it is (no host round trip per GEMM); it must hold one fp32 value.
    """
    if isinstance(global_scale, torch.Tensor):
        _require(
            global_scale.numel() == 1,
            f"global_scale must hold one value, got shape {tuple(global_scale.shape)}",
        )
        _require(
            global_scale.dtype == torch.float32,
            f"global_scale must be float32, not {global_scale.dtype}",
        )
        _require(
            global_scale.device == device,
            f"global_scale is on {global_scale.device}, the weights on {device}",
        )
        return global_scale.reshape(1)
    return torch.tensor([float(global_scale)], dtype=torch.float32, device=device)


def _check_packed(packed: torch.Tensor, block_scales: torch.Tensor) -> tuple[int, int]:
    """Validate an NVFP4 weight's two tensors; return its unpacked (rows, cols)."""
    _require(packed.dim() == 2, f"packed must be 2-D [rows, cols / 2], got {packed.dim()} dims")
    _require(packed.dtype == torch.uint8, f"packed must be uint8, not {packed.dtype}")
    _require(
        block_scales.dtype == torch.float8_e4m3fn,
        f"block_scales must be float8_e4m3fn, not {block_scales.dtype}",
    )
    rows, cols = packed.shape[0], 2 * packed.shape[1]
    _require(cols % BLOCK_SIZE == 0, f"packed has {cols} unpacked columns, not a multiple of 16")
    _require(
        tuple(block_scales.shape) == (rows, cols // BLOCK_SIZE),
        f"block_scales shape {tuple(block_scales.shape)} != (rows, cols / 16) = "
        f"{(rows, cols // BLOCK_SIZE)} for packed {tuple(packed.shape)}",
    )
    _require(
        block_scales.device == packed.device,
        f"block_scales is on {block_scales.device}, packed on {packed.device}",
    )
    return rows, cols


def _check_out(out: torch.Tensor, shape: tuple, dtype: torch.dtype, device, name: str) -> None:
    _require(tuple(out.shape) == tuple(shape), f"{name} shape {tuple(out.shape)} != {tuple(shape)}")
    _require(out.dtype == dtype, f"{name} dtype must be {dtype}, not {out.dtype}")
    _require(out.device == device, f"{name} is on {out.device}, expected {device}")


def nvfp4_quantize(
    w: torch.Tensor,
    global_scale: torch.Tensor | float | None = None,
    *,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize a weight ``w [rows, cols]`` (bf16, fp16 or fp32, any strides) to NVFP4.

    Returns ``(packed uint8 [rows, cols / 2], block_scales float8_e4m3fn [rows, cols / 16],
    global_scale fp32 0-dim)``, bit-identical to nvidia-modelopt 0.47.0's
    ``NVFP4QTensor.quantize(w, 16)`` (see reference.py for the arithmetic and the
    all-zero-tensor case). ``global_scale`` None takes amax(|w|) / (6 * 448); a given one
    (fused layers that must share it) must be positive and finite, and block scales
    that would exceed 448 under it saturate, as their codes do at 6.

    ``out=(packed, block_scales)`` writes into existing tensors (e.g. a checkpoint's
    parameters), any strides. ``cols`` must be a multiple of 16; NaN or Inf in ``w``
    raise ValueError (the check costs one reduction and one host sync, which
    quantization, done once per weight, can afford).
    """
    _require(w.dim() == 2, f"w must be 2-D [rows, cols], got {w.dim()} dims")
    _require(
        w.dtype in QUANT_DTYPES, f"w dtype must be float32, float16 or bfloat16, not {w.dtype}"
    )
    rows, cols = w.shape
    _require(cols % BLOCK_SIZE == 0, f"w has {cols} columns, not a multiple of 16")
    if out is None:
        packed = torch.empty((rows, cols // 2), dtype=torch.uint8, device=w.device)
        block_scales = torch.empty(
            (rows, cols // BLOCK_SIZE), dtype=torch.float8_e4m3fn, device=w.device
        )
    else:
        packed, block_scales = out
        _check_out(packed, (rows, cols // 2), torch.uint8, w.device, "out[0] (packed)")
        _check_out(
            block_scales,
            (rows, cols // BLOCK_SIZE),
            torch.float8_e4m3fn,
            w.device,
            "out[1] (block_scales)",
        )
    amax = check_finite(w)
    if global_scale is None:
        scale = (amax / (E2M1_MAX * E4M3_MAX)).reshape(1)
    else:
        scale = _global_scale_tensor(global_scale, w.device)
        value = scale.item()
        _require(0 < value < float("inf"), f"global_scale must be positive and finite, got {value}")
    if w.numel():
        groups = cols // BLOCK_SIZE
        scales_bytes = block_scales.view(torch.uint8)
        grid = (triton.cdiv(rows, QUANT_BLOCK_ROWS), triton.cdiv(groups, QUANT_BLOCK_GROUPS))
        _nvfp4_quantize_kernel[grid](
            packed,
            scales_bytes,
            w.view(torch.int16) if w.dtype == torch.bfloat16 else w,
            scale,
            rows,
            groups,
            *w.stride(),
            *packed.stride(),
            *scales_bytes.stride(),
            BLOCK_ROWS=QUANT_BLOCK_ROWS,
            BLOCK_GROUPS=QUANT_BLOCK_GROUPS,
            W_BF16_BITS=w.dtype == torch.bfloat16,
        )
    return packed, block_scales, scale.reshape(())


def nvfp4_dequantize(
    packed: torch.Tensor,
    block_scales: torch.Tensor,
    global_scale: torch.Tensor | float,
    dtype: torch.dtype = torch.bfloat16,
    *,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The weight ``[rows, cols]`` in ``dtype``: code * (block scale * global scale).

    The product is formed in fp32 and rounded once to ``dtype`` (nearest, ties to even),
    as modelopt's ``NVFP4QTensor.dequantize`` does, so results are bit-identical to it.
    ``out`` (any strides, of ``dtype``) receives the result when given.
    """
    rows, cols = _check_packed(packed, block_scales)
    _require(dtype in QUANT_DTYPES, f"dtype must be float32, float16 or bfloat16, not {dtype}")
    scale = _global_scale_tensor(global_scale, packed.device)
    if out is None:
        out = torch.empty((rows, cols), dtype=dtype, device=packed.device)
    else:
        _check_out(out, (rows, cols), dtype, packed.device, "out")
    if out.numel() == 0:
        return out
    groups = cols // BLOCK_SIZE
    scales_bytes = block_scales.view(torch.uint8)
    grid = (triton.cdiv(rows, QUANT_BLOCK_ROWS), triton.cdiv(groups, QUANT_BLOCK_GROUPS))
    _nvfp4_dequantize_kernel[grid](
        out.view(torch.int16) if dtype == torch.bfloat16 else out,
        packed,
        scales_bytes,
        scale,
        rows,
        groups,
        *out.stride(),
        *packed.stride(),
        *scales_bytes.stride(),
        BLOCK_ROWS=QUANT_BLOCK_ROWS,
        BLOCK_GROUPS=QUANT_BLOCK_GROUPS,
        OUT_BF16=dtype == torch.bfloat16,
    )
    return out


def choose_tiles(m: int, n: int, k: int) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_K, K splits) for an [m, k] x [k, n] NVFP4 GEMM.

    Small M (decode) is bandwidth-bound: narrow M tiles, long K tiles, and split-K when
    the N tiles alone cannot fill the GPU. Large M uses bigger tiles that reuse each
    decoded W tile across more rows. Untuned starting points, to be set from
    ``switchyard bench kernels nvfp4`` on the target GPU.
    """
    block_m = 16 if m <= 16 else 32 if m <= 32 else 64
    block_n = 64 if m <= 64 else 128
    block_k = 256 if m <= 64 else 64
    block_k = min(block_k, max(32, triton.next_power_of_2(k)))
    tiles = triton.cdiv(m, block_m) * triton.cdiv(n, block_n)
    splits = 1
    if tiles < TARGET_PROGRAMS:
        splits = min(MAX_K_SPLITS, TARGET_PROGRAMS // tiles, max(1, k // MIN_K_PER_SPLIT))
    return block_m, block_n, block_k, max(1, splits)


def nvfp4_linear(
    x: torch.Tensor,
    packed: torch.Tensor,
    block_scales: torch.Tensor,
    global_scale: torch.Tensor | float,
    bias: torch.Tensor | None = None,
    *,
    out: torch.Tensor | None = None,
    k_splits: int | None = None,
) -> torch.Tensor:
    """``x @ W.T + bias`` with W ``[N, K]`` in NVFP4, dequantized inside the GEMM (W4A16).

    ``x [..., K]`` is bf16, fp16 or fp32 (any leading dims, any strides); ``packed
    [N, K / 2]``, ``block_scales [N, K / 16]`` and ``global_scale`` are as
    ``nvfp4_quantize`` returns them (a global scale given as a tensor stays on the device:
    no host sync per call); ``bias [N]`` in x's dtype. K and N must be multiples of 16.
    Returns ``[..., N]`` in x's dtype (``out`` when given), accumulated in fp32.
    ``k_splits`` overrides the split-K heuristic (tests force it).
    """
    _require(x.dim() >= 1, "x must have at least one dimension [..., K]")
    _require(
        x.dtype in ACTIVATION_DTYPES,
        f"x dtype must be bfloat16, float16 or float32, not {x.dtype}",
    )
    n, k = _check_packed(packed, block_scales)
    _require(n % 16 == 0, f"packed has N = {n} rows, not a multiple of 16")
    _require(x.shape[-1] == k, f"x has K = {x.shape[-1]} columns, the weight {k}")
    _require(packed.device == x.device, f"packed is on {packed.device}, x on {x.device}")
    if bias is not None:
        _require(tuple(bias.shape) == (n,), f"bias shape {tuple(bias.shape)} != (N,) = {(n,)}")
        _require(bias.dtype == x.dtype, f"bias dtype {bias.dtype} differs from x dtype {x.dtype}")
        _require(bias.device == x.device, f"bias is on {bias.device}, x on {x.device}")
        _require(bias.is_contiguous(), "bias must be contiguous")
    _require(k_splits is None or k_splits >= 1, f"k_splits must be >= 1, got {k_splits}")
    scale = _global_scale_tensor(global_scale, x.device)

    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    if out is None:
        out = torch.empty((*x.shape[:-1], n), dtype=x.dtype, device=x.device)
    else:
        _check_out(out, (*x.shape[:-1], n), x.dtype, x.device, "out")
    try:
        out2 = out.view(m, n)
    except RuntimeError:
        raise ValueError("out must be viewable as [tokens, N] (e.g. contiguous)") from None
    if m == 0:
        return out
    block_m, block_n, block_k, splits = choose_tiles(m, n, k)
    if k_splits is not None:
        splits = k_splits
    # Each split's K range is a whole number of BLOCK_K tiles (so of 16-element blocks).
    k_per_split = triton.cdiv(triton.cdiv(k, splits), block_k) * block_k
    splits = triton.cdiv(k, k_per_split)
    if splits == 1:
        target, split_stride = out2, 0
    else:
        target = torch.empty((splits, m, n), dtype=torch.float32, device=x.device)
        split_stride = target.stride(0)
    scales_bytes = block_scales.view(torch.uint8)
    grid = (triton.cdiv(n, block_n), triton.cdiv(m, block_m), splits)
    _nvfp4_linear_kernel[grid](
        target,
        x2,
        packed,
        scales_bytes,
        scale,
        bias if bias is not None else scale,  # unused without HAS_BIAS: any pointer
        m,
        n,
        k,
        k_per_split,
        split_stride,
        target.stride(-2),
        target.stride(-1),
        *x2.stride(),
        *packed.stride(),
        *scales_bytes.stride(),
        HAS_BIAS=bias is not None,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_K=block_k,
        DOT_FP32=_INTERPRETED and x.dtype != torch.float32,
        IEEE_FP32=x.dtype == torch.float32,
    )
    if splits > 1:
        out2.copy_(target.sum(0))
    return out
