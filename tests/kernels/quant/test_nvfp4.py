"""The NVFP4 Triton kernels against their torch reference, and both against nvidia-modelopt.

Quantize and dequantize must be bit-exact: codes, scale bytes and the global scale equal
the reference's, which equals modelopt's (``nvfp4_golden.safetensors`` holds vectors
written by modelopt 0.47.0 itself; when modelopt can be imported, random tensors are
also compared with it live). The GEMM is compared with a float64 reference within a
relative error bound per dtype. Outputs are poisoned before each call (0xFF bytes: NaN
scales and -6 codes; NaN activations), so an element a kernel fails to write shows up.

On CPU the kernels run under Triton's interpreter (tests/conftest.py sets
TRITON_INTERPRET), which is slow: the default run takes a covering set of the GEMM's
parameter matrix, and the full product is marked slow.
"""

from __future__ import annotations

import itertools
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from switchyard.kernels.quant import (
    nvfp4_dequantize,
    nvfp4_dequantize_reference,
    nvfp4_linear,
    nvfp4_linear_reference,
    nvfp4_quantize,
    nvfp4_quantize_reference,
)
from switchyard.kernels.quant.nvfp4 import choose_tiles

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = (torch.bfloat16, torch.float16, torch.float32)
TOLERANCE = {torch.bfloat16: 1e-2, torch.float16: 5e-3, torch.float32: 1e-5}
GOLDEN = Path(__file__).with_name("nvfp4_golden.safetensors")
# Under this global scale a block whose amax is 6 has block scale 256 (exact in E4M3) and
# divisor exactly 1, so its elements reach the E2M1 rounding step unchanged.
UNIT_GLOBAL_SCALE = 2.0**-8
# Every E2M1 value and the midpoint (rounding tie) between each pair of neighbours, with
# what modelopt rounds each to: ties go to the even mantissa (0.25 -> 0, 0.75 -> 1, ...).
ROUNDING = {
    0.0: 0.0, 0.25: 0.0, 0.5: 0.5, 0.75: 1.0, 1.0: 1.0, 1.25: 1.0, 1.5: 1.5, 1.75: 2.0,
    2.0: 2.0, 2.5: 2.0, 3.0: 3.0, 3.5: 4.0, 4.0: 4.0, 5.0: 4.0, 6.0: 6.0,
}  # fmt: skip
E2M1_CODE = {0.0: 0, 0.5: 1, 1.0: 2, 1.5: 3, 2.0: 4, 3.0: 5, 4.0: 6, 6.0: 7}


def seeded(*key: object) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def lognormal_rows(rows: int, cols: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    """Normal values with row magnitudes spread over ~e^+-6, so that small rows get E4M3
    subnormal block scales or the 2**-9 clamp while large ones get scales near 448."""
    spread = torch.exp(2.0 * torch.randn(rows, 1, generator=gen))
    return (torch.randn(rows, cols, generator=gen) * spread).to(device=DEVICE, dtype=dtype)


def poisoned_quant_out(rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    packed = torch.full((rows, cols // 2), 0xFF, dtype=torch.uint8, device=DEVICE)
    scales = torch.full((rows, cols // 16), 0xFF, dtype=torch.uint8, device=DEVICE)
    return packed, scales.view(torch.float8_e4m3fn)


def assert_same_quantization(ours: tuple, expected: tuple) -> None:
    """Packed codes, scale bytes and global scale all bit-identical."""
    packed, scales, global_scale = ours
    ref_packed, ref_scales, ref_global = expected
    assert packed.dtype == torch.uint8 and scales.dtype == torch.float8_e4m3fn
    assert global_scale.dtype == torch.float32 and global_scale.shape == ()
    assert torch.equal(global_scale.cpu(), ref_global.cpu().float().reshape(()))
    mismatched = (scales.view(torch.uint8).cpu() != ref_scales.view(torch.uint8).cpu()).sum()
    assert mismatched == 0, f"{mismatched} block scale bytes differ"
    mismatched = (packed.cpu() != ref_packed.cpu()).sum()
    assert mismatched == 0, f"{mismatched} packed bytes differ"


def quantize_poisoned(w: torch.Tensor, global_scale=None) -> tuple:
    out = poisoned_quant_out(*w.shape)
    result = nvfp4_quantize(w, global_scale, out=out)
    assert result[0] is out[0] and result[1] is out[1]
    return result


def check_quantize(w: torch.Tensor, global_scale=None) -> tuple:
    ours = quantize_poisoned(w, global_scale)
    assert_same_quantization(ours, nvfp4_quantize_reference(w, global_scale))
    return ours


# --- quantize ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(1, 16), (5, 48), (17, 144), (40, 272)], ids=str)
def test_quantize_random_matches_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    check_quantize(lognormal_rows(*shape, dtype, seeded(shape, dtype)))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_quantize_given_global_scale(dtype: torch.dtype) -> None:
    """A shared global scale (fused layers): larger and smaller than the tensor's own."""
    w = lognormal_rows(9, 64, dtype, seeded("given", dtype))
    own = w.float().abs().amax().item() / 2688
    for scale in (own * 4, own / 4, torch.tensor(own, device=DEVICE)):
        check_quantize(w, scale)


def test_quantize_strided_input() -> None:
    """Any strides: a transposed view and a column slice of a wider tensor."""
    base = lognormal_rows(64, 48, torch.bfloat16, seeded("strided"))
    for w in (base.T, base[:, 16:48], base[::2]):
        check_quantize(w)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_quantize_every_rounding_boundary(dtype: torch.dtype) -> None:
    """Each E2M1 value, each tie between neighbours and the nearest ``dtype`` values
    either side of both, with either sign, reached with a divisor of exactly 1."""
    cases = []  # (input, expected value after rounding)
    for value, rounded in ROUNDING.items():
        exact = torch.tensor(value, dtype=dtype)
        below = torch.nextafter(exact, torch.tensor(-1.0, dtype=dtype))
        above = torch.nextafter(exact, torch.tensor(7.0, dtype=dtype))
        values = sorted(ROUNDING)
        i = values.index(value)
        # Off a tie, a value rounds to the grid point on its side; off a grid point, to it.
        is_tie = value not in E2M1_CODE
        cases.append((exact, rounded))
        if value > 0:
            cases.append((below, values[i - 1] if is_tie else value))
        cases.append((above, values[i + 1] if is_tie else min(value, 6.0)))
    values = torch.stack([v for v, _ in cases]).to(dtype)
    expected = torch.tensor([e for _, e in cases])
    values, expected = torch.cat([values, -values]), torch.cat([expected, -expected])
    # 15 payload elements per block after a leading 6 that pins the block scale.
    blocks = -(-values.numel() // 15)
    w = torch.zeros(blocks, 16, dtype=dtype)
    w[:, 0] = 6.0
    payload = torch.arange(blocks * 16)
    payload = payload[payload % 16 != 0][: values.numel()]
    w.view(-1)[payload] = values
    w = w.reshape(1, -1).to(DEVICE)
    packed, scales, _ = check_quantize(w, UNIT_GLOBAL_SCALE)
    assert (scales.view(torch.uint8) == 0x78).all(), "every block scale is 256"
    codes = torch.stack([packed & 0xF, packed >> 4], -1).reshape(blocks, 16)[:, 1:]
    codes = codes.reshape(-1)[: values.numel()].cpu()
    magnitudes = [E2M1_CODE[abs(e)] for e in expected.tolist()]
    # A negative value keeps its sign bit even when it rounds to zero (modelopt's code 8).
    signs = [8 if v < 0 else 0 for v in values.float().tolist()]
    assert codes.tolist() == [m | s for m, s in zip(magnitudes, signs, strict=True)]


def test_quantize_every_block_scale_rounding() -> None:
    """Block amaxes at every E4M3 value, every midpoint between neighbours (ties go to
    the even code) and the fp32 values either side of each: the kernel's integer E4M3
    rounding must equal torch's cast. A global scale of fp32(1/6) makes 6 * scale exactly
    1.0, so each block's ratio is its amax itself."""
    grid = torch.arange(1, 127, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    midpoints = (grid[:-1] + grid[1:]) / 2
    amax = torch.cat([grid, midpoints, torch.tensor([1e-4, 2.0**-10, 500.0])])
    amax = torch.cat([amax, amax.nextafter(torch.tensor(0.0)), amax.nextafter(torch.tensor(1e3))])
    w = torch.zeros(amax.numel(), 16)
    w[:, 3] = amax
    w[:, 8] = -amax / 3  # below the amax, and negative
    global_scale = torch.tensor(1.0 / 6.0)
    assert (6.0 * global_scale).item() == 1.0
    _, scales, _ = check_quantize(w.to(DEVICE), global_scale.to(DEVICE))
    ties = (midpoints.to(torch.float8_e4m3fn).float() != midpoints).sum()
    assert ties == midpoints.numel(), "every midpoint is a tie"
    expected = amax.clamp(2.0**-9, 448.0).to(torch.float8_e4m3fn)
    assert torch.equal(scales.view(torch.uint8).cpu()[:, 0], expected.view(torch.uint8))


def test_quantize_zeros_and_zero_blocks() -> None:
    """An all-zero tensor reads back as zeros (modelopt's own result is NaN scales); in a
    nonzero tensor an all-zero block gets scale 1.0, as modelopt gives it."""
    zeros = torch.zeros(3, 32, dtype=torch.bfloat16, device=DEVICE)
    packed, scales, global_scale = check_quantize(zeros)
    assert global_scale.item() == 0.0
    assert (packed == 0).all() and (scales.float() == 1.0).all()
    assert (nvfp4_dequantize(packed, scales, global_scale) == 0).all()

    w = lognormal_rows(4, 64, torch.float16, seeded("zero-block"))
    w[1, 16:32] = 0.0
    w[2, 0] = -0.0
    packed, scales, _ = check_quantize(w)
    assert scales[1, 1].float().item() == 1.0
    assert (packed[1, 8:16] == 0).all()


def test_quantize_single_outlier() -> None:
    """One huge value sets the global scale: its block scale is 448 and other blocks go
    to small, subnormal or clamped (2**-9) E4M3 scales, as in modelopt."""
    w = lognormal_rows(8, 64, torch.bfloat16, seeded("outlier"))
    w[3, 21] = 3.0e5
    w[6, 40] = -1e-7  # a value that rounds to zero with its sign bit
    _, scales, global_scale = check_quantize(w)
    assert scales[3, 1].float().item() == 448.0
    assert global_scale.item() == pytest.approx(3.0e5 / 2688, rel=1e-2)
    assert (scales.view(torch.uint8) < 8).any(), "expected subnormal E4M3 block scales"


def test_quantize_saturates_above_the_range() -> None:
    """Under a global scale far too small, block scales clamp at 448 and codes at +-6."""
    w = torch.randn(4, 32, generator=seeded("saturate")).to(DEVICE)
    global_scale = w.abs().amax().item() / 2688 / 64
    packed, scales, _ = check_quantize(w, global_scale)
    assert (scales.float() == 448.0).all()
    assert ((packed & 0x7) == 7).any() and ((packed >> 4 & 0x7) == 7).any()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=str)
def test_quantize_rejects_nan_and_inf(bad: float) -> None:
    w = torch.ones(4, 32, dtype=torch.bfloat16, device=DEVICE)
    w[2, 7] = bad
    kind = "NaN" if bad != bad else "infinite"
    with pytest.raises(ValueError, match=rf"^w contains {kind} values"):
        nvfp4_quantize(w)
    with pytest.raises(ValueError, match=rf"^w contains {kind} values"):
        nvfp4_quantize_reference(w)


@pytest.mark.parametrize(
    ("w", "kwargs", "message"),
    [
        (torch.ones(4, 24), {}, r"^w has 24 columns, not a multiple of 16"),
        (torch.ones(64), {}, r"^w must be 2-D"),
        (torch.ones(4, 32, dtype=torch.int32), {}, r"^w dtype"),
        (torch.ones(4, 32), {"global_scale": 0.0}, r"^global_scale must be positive"),
        (torch.ones(4, 32), {"global_scale": -1.0}, r"^global_scale must be positive"),
        (torch.ones(4, 32), {"global_scale": float("nan")}, r"^global_scale must be positive"),
        (torch.ones(4, 32), {"global_scale": float("inf")}, r"^global_scale must be positive"),
        (torch.ones(4, 32), {"global_scale": torch.ones(2)}, r"^global_scale must hold one"),
        (
            torch.ones(4, 32),
            {"global_scale": torch.ones((), dtype=torch.float64)},
            r"^global_scale must be float32",
        ),
        (
            torch.ones(4, 32),
            {"out": (torch.empty(4, 15, dtype=torch.uint8), torch.empty(4, 2))},
            r"^out\[0\] \(packed\) shape",
        ),
        (
            torch.ones(4, 32),
            {"out": (torch.empty(4, 16, dtype=torch.uint8), torch.empty(4, 2))},
            r"^out\[1\] \(block_scales\) dtype",
        ),
    ],
    ids=lambda value: str(value)[:40] if isinstance(value, str) else None,
)
def test_quantize_bad_arguments(w: torch.Tensor, kwargs: dict, message: str) -> None:
    kwargs = {
        key: value.to(DEVICE) if isinstance(value, torch.Tensor) else value
        for key, value in kwargs.items()
    }
    if "out" in kwargs:
        kwargs["out"] = tuple(t.to(DEVICE) for t in kwargs["out"])
    with pytest.raises(ValueError, match=message):
        nvfp4_quantize(w.to(DEVICE), **kwargs)


# --- dequantize -------------------------------------------------------------------------


def random_nvfp4(rows: int, cols: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Every byte value as codes; scales from every finite positive E4M3 byte."""
    packed = torch.randint(0, 256, (rows, cols // 2), generator=gen, dtype=torch.uint8)
    packed.view(-1)[: min(256, packed.numel())] = torch.arange(min(256, packed.numel()))
    scales = torch.randint(0, 0x7F, (rows, cols // 16), generator=gen, dtype=torch.uint8)
    global_scale = torch.rand((), generator=gen) * 1e-2
    return (
        packed.to(DEVICE),
        scales.view(torch.float8_e4m3fn).to(DEVICE),
        global_scale.to(DEVICE),
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(1, 16), (16, 512), (33, 80)], ids=str)
def test_dequantize_matches_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    packed, scales, global_scale = random_nvfp4(*shape, seeded("deq", shape, dtype))
    out = torch.full(shape, float("nan"), dtype=dtype, device=DEVICE)
    result = nvfp4_dequantize(packed, scales, global_scale, dtype, out=out)
    assert result is out
    expected = nvfp4_dequantize_reference(packed, scales, global_scale, dtype)
    assert torch.equal(out, expected), f"{(out != expected).sum()} elements differ"


def test_dequantize_strided_and_float_scale() -> None:
    """Strided packed / scales / out, and the global scale as a Python float."""
    packed, scales, global_scale = random_nvfp4(32, 64, seeded("deq-strided"))
    wide = torch.full((16, 256), float("nan"), dtype=torch.bfloat16, device=DEVICE)
    out = wide[:, 64:128]
    nvfp4_dequantize(packed[::2], scales[::2], global_scale.item(), torch.bfloat16, out=out)
    expected = nvfp4_dequantize_reference(packed[::2], scales[::2], global_scale, torch.bfloat16)
    assert torch.equal(out, expected)
    assert wide[:, :64].isnan().all() and wide[:, 128:].isnan().all(), "wrote outside out"


def test_round_trip_is_idempotent() -> None:
    """Quantizing a dequantized fp32 tensor with the same global scale gives back the
    same codes, up to signed zeros (dequantization reads code 8 back as +0)."""
    w = lognormal_rows(16, 128, torch.float32, seeded("round-trip"))
    packed, scales, global_scale = nvfp4_quantize(w)
    again = nvfp4_quantize(nvfp4_dequantize(packed, scales, global_scale, torch.float32))
    assert torch.equal(again[1].view(torch.uint8), scales.view(torch.uint8))
    unsigned_zero = torch.where((packed & 0xF) == 8, packed & 0xF0, packed)
    unsigned_zero = torch.where((unsigned_zero >> 4) == 8, unsigned_zero & 0x0F, unsigned_zero)
    assert torch.equal(again[0], unsigned_zero)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p, s: (p.int(), s), r"^packed must be uint8"),
        (lambda p, s: (p[None], s), r"^packed must be 2-D"),
        (lambda p, s: (p, s.float()), r"^block_scales must be float8_e4m3fn"),
        (lambda p, s: (p, s[:, :1]), r"^block_scales shape"),
        (lambda p, s: (p[:, :4], s[:, :1]), r"^packed has 8 unpacked columns"),
    ],
)
def test_dequantize_bad_arguments(edit, message: str) -> None:
    packed, scales, global_scale = random_nvfp4(4, 32, seeded("deq-bad"))
    with pytest.raises(ValueError, match=message):
        nvfp4_dequantize(*edit(packed, scales), global_scale)


# --- bit-exactness with nvidia-modelopt ---------------------------------------------------


def golden_cases() -> list[str]:
    with safe_open(GOLDEN, "pt") as f:
        return sorted({key.split(".")[0] for key in f.keys()})  # noqa: SIM118 - not a dict


@pytest.mark.parametrize("name", golden_cases())
def test_matches_modelopt_golden_vectors(name: str) -> None:
    """Vectors that modelopt 0.47.0 wrote (make_nvfp4_golden.py): our kernel and our
    reference reproduce its packed bytes, scale bytes, global scale and dequantization."""
    with safe_open(GOLDEN, "pt") as f:
        assert f.metadata()["nvidia-modelopt"] == "0.47.0"
        keys = [key for key in f.keys() if key.startswith(name + ".")]  # noqa: SIM118
        tensor = {key.split(".")[1]: f.get_tensor(key) for key in keys}
    w = tensor["w"].to(DEVICE)
    given = tensor.get("given_global_scale")
    given = given.to(DEVICE) if given is not None else None
    expected = (tensor["packed"], tensor["scales"], tensor["global_scale"])
    assert_same_quantization(quantize_poisoned(w, given), expected)
    assert_same_quantization(nvfp4_quantize_reference(w, given), expected)
    scales = tensor["scales"].view(torch.float8_e4m3fn).to(DEVICE)
    global_scale = tensor["global_scale"].to(DEVICE)
    dequant = nvfp4_dequantize(tensor["packed"].to(DEVICE), scales, global_scale, w.dtype)
    assert torch.equal(dequant.cpu(), tensor["dequant"])


def _modelopt_nvfp4():
    """modelopt's own packing; the Makefile installs it (see the `quant` extra)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from modelopt.torch.quantization.qtensor.nvfp4_tensor import NVFP4QTensor
    return NVFP4QTensor


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_modelopt_live(dtype: torch.dtype) -> None:
    nvfp4_qtensor = _modelopt_nvfp4()
    for seed in range(4):
        w = lognormal_rows(16, 96, dtype, seeded("live", dtype, seed))
        given = None if seed % 2 else torch.tensor(w.float().abs().amax().item() / 2000)
        qtensor, scales, global_scale = nvfp4_qtensor.quantize(
            w.clone(), 16, weights_scaling_factor_2=given
        )
        expected = (qtensor._quantized_data, scales, global_scale)
        assert_same_quantization(quantize_poisoned(w, given), expected)
        reference = qtensor.dequantize(
            dtype, scale=scales, double_scale=global_scale, block_sizes={-1: 16}
        )
        assert torch.equal(nvfp4_dequantize(*expected, dtype), reference)


# --- linear (W4A16 GEMM) ------------------------------------------------------------------


@dataclass(frozen=True)
class LinearCase:
    m: int
    n: int
    k: int
    dtype: torch.dtype
    bias: bool
    splits: int | None  # None: the launcher's heuristic

    def __str__(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return f"m={self.m}-n={self.n}-k={self.k}-{dtype}-bias={self.bias}-splits={self.splits}"


MS = (1, 7, 64, 300)
# (N, K): minimal; neither a multiple of the GEMM's tiles; K spanning several tiles;
# K over 1024, where the heuristic splits K at small M.
NKS = ((16, 16), (48, 80), (144, 272), (32, 2064))
BIAS = (False, True)
SPLITS = (None, 3)
# Every (M, dtype) pair once, the other axes cycling so each value of each occurs.
DEFAULT_LINEAR = [
    LinearCase(m, *NKS[i % len(NKS)], dtype, BIAS[i % 2], SPLITS[(i // 2) % 2])
    for i, (m, dtype) in enumerate(itertools.product(MS, DTYPES))
]
SLOW_LINEAR = [
    case
    for case in (
        LinearCase(m, n, k, dtype, bias, splits)
        for m, (n, k), dtype, bias, splits in itertools.product(MS, NKS, DTYPES, BIAS, SPLITS)
    )
    if case not in set(DEFAULT_LINEAR)
]


def make_linear(m: int, n: int, k: int, dtype: torch.dtype, bias: bool, seed: object) -> tuple:
    gen = seeded(seed)
    # Scaled by 1/sqrt(K) so that outputs stay well inside fp16's range at any K.
    w = lognormal_rows(n, k, torch.float32, gen) / k**0.5
    packed, scales, global_scale = nvfp4_quantize(w)
    x = torch.randn(m, k, generator=gen).to(device=DEVICE, dtype=dtype)
    b = torch.randn(n, generator=gen).to(device=DEVICE, dtype=dtype) if bias else None
    return x, packed, scales, global_scale, b


def check_linear(x, packed, scales, global_scale, bias, **options) -> torch.Tensor:
    out = torch.full((*x.shape[:-1], packed.shape[0]), float("nan"), dtype=x.dtype, device=DEVICE)
    result = nvfp4_linear(x, packed, scales, global_scale, bias, out=out, **options)
    assert result is out
    assert not out.isnan().any(), "unwritten or NaN output elements"
    ref = nvfp4_linear_reference(x.reshape(-1, x.shape[-1]), packed, scales, global_scale, bias)
    error = ((out.reshape(ref.shape).float() - ref).norm() / ref.norm()).item()
    assert error <= TOLERANCE[x.dtype], f"relative error {error:.2e}"
    return out


def run_linear(case: LinearCase) -> None:
    args = make_linear(case.m, case.n, case.k, case.dtype, case.bias, str(case))
    check_linear(*args, k_splits=case.splits)


@pytest.mark.parametrize("case", DEFAULT_LINEAR, ids=str)
def test_linear_matches_reference(case: LinearCase) -> None:
    run_linear(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_LINEAR, ids=str)
def test_linear_matches_reference_full_matrix(case: LinearCase) -> None:
    run_linear(case)


def test_default_linear_cases_cover_every_value() -> None:
    for axis, values in (("m", MS), ("dtype", DTYPES), ("bias", BIAS), ("splits", SPLITS)):
        assert {getattr(case, axis) for case in DEFAULT_LINEAR} == set(values), axis
    assert {(case.n, case.k) for case in DEFAULT_LINEAR} == set(NKS)


def test_linear_m_4096() -> None:
    check_linear(*make_linear(4096, 32, 48, torch.bfloat16, True, "m4096"))


def test_linear_heuristic_splits_long_k_at_small_m() -> None:
    assert choose_tiles(1, 16, 2048)[3] > 1
    assert choose_tiles(1, 21504, 5376)[3] == 1  # enough N tiles: no split
    assert choose_tiles(4096, 5376, 21504)[3] == 1
    check_linear(*make_linear(1, 16, 2048, torch.float16, False, "heuristic-split"))


def test_linear_leading_dims_strided_x_and_float_scale() -> None:
    """x [..., K] with leading dims and column-sliced (strided) rows; a float scale."""
    x, packed, scales, global_scale, bias = make_linear(6, 48, 64, torch.bfloat16, True, "dims")
    wide = torch.cat([x, torch.full_like(x, float("nan"))], dim=-1)[:, :64]
    out = check_linear(wide.reshape(2, 3, 64), packed, scales, global_scale.item(), bias)
    assert out.shape == (2, 3, 48)
    allocated = nvfp4_linear(x, packed, scales, global_scale, bias)
    assert torch.equal(allocated, out.reshape(6, 48))
    assert nvfp4_linear(x[:0], packed, scales, global_scale).shape == (0, 48)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a | {"x": a["x"][:, :32]}, r"^x has K = 32 columns, the weight 64"),
        (lambda a: a | {"x": a["x"].int()}, r"^x dtype"),
        (lambda a: a | {"packed": a["packed"][:40]}, r"^block_scales shape"),
        (
            lambda a: a | {"packed": a["packed"][:40], "block_scales": a["block_scales"][:40]},
            r"^packed has N = 40 rows, not a multiple of 16",
        ),
        (
            lambda a: a | {"packed": a["packed"][:, :4], "block_scales": a["block_scales"][:, :1]},
            r"^packed has 8 unpacked columns, not a multiple of 16",
        ),
        (lambda a: a | {"bias": a["x"][0, :48]}, r"^bias shape"),
        (lambda a: a | {"bias": a["bias"].float()}, r"^bias dtype"),
        (lambda a: a | {"out": a["x"].float()}, r"^out dtype"),
        (lambda a: a | {"out": a["x"][:, :40]}, r"^out shape"),
        (
            lambda a: (
                a
                | {
                    "x": a["x"].reshape(2, 2, 64),
                    "out": a["x"].new_empty(2, 64, 2).permute(0, 2, 1),
                }
            ),
            r"^out must be viewable",
        ),
        (lambda a: a | {"k_splits": 0}, r"^k_splits must be >= 1"),
        (lambda a: a | {"global_scale": torch.ones(3)}, r"^global_scale must hold one value"),
    ],
)
def test_linear_bad_arguments(edit, message: str) -> None:
    x, packed, scales, global_scale, bias = make_linear(4, 64, 64, torch.float16, True, "bad")
    args = {
        "x": x,
        "packed": packed,
        "block_scales": scales,
        "global_scale": global_scale,
        "bias": bias,
    }
    with pytest.raises(ValueError, match=message):
        nvfp4_linear(**edit(args))
