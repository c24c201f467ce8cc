"""``switchyard bench kernels nvfp4``: our W4A16 NVFP4 GEMM against bf16 ``torch.matmul``.

For every (model, projection, M) the weight is drawn at random, quantized with our
kernel, and multiplied by random activations: ``ours`` is ``nvfp4_linear`` on the packed
weight, ``torch`` is ``x @ W.T`` on the dequantized weight in the activation dtype
(the dense layer NVFP4 replaces). Reported per backend: median time from a cold L2,
TFLOP/s, and TB/s of the bytes each must move at least (nvfp4_shapes), also as a share
of the device-to-device copy bandwidth measured in the same run. With ``--refcheck``
both are compared against the float64 product of x and the dequantized weight.

Without a CUDA GPU it runs on CPU with Triton's interpreter (TRITON_INTERPRET=1) so the
command and its checks can be tested; those timings say nothing about the kernel.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from switchyard.bench.environment import package_versions
from switchyard.bench.kernels import timing
from switchyard.bench.kernels.nvfp4_shapes import MODELS, dense_bytes, gemm_flops, nvfp4_bytes
from switchyard.kernels.quant import nvfp4_dequantize, nvfp4_linear, nvfp4_quantize
from switchyard.kernels.quant.reference import (
    nvfp4_dequantize_reference,
    nvfp4_linear_reference,
    nvfp4_quantize_reference,
)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Relative error norm allowed per activation dtype (as the attention benchmark's).
TOLERANCE = {torch.bfloat16: 1e-2, torch.float16: 5e-3}
VERSIONED_PACKAGES = ("switchyard", "torch", "triton")
CPU_REPS = 1  # the interpreter is slow, and its times mean nothing


@dataclass(frozen=True)
class Settings:
    models: tuple[str, ...]
    layers: tuple[str, ...]
    ms: tuple[int, ...]
    dtype: str
    backends: tuple[str, ...]
    refcheck: bool
    warmup_ms: float
    rep_ms: float
    seed: int


@dataclass(frozen=True)
class Nvfp4Record:
    """One backend timed on one GEMM. ``refcheck`` is "pass", "fail", or "" when not run."""

    model: str
    layer: str
    m: int
    n: int
    k: int
    dtype: str
    backend: str
    time_us: float
    tflops: float
    tbps: float
    copy_bw_pct: float | None  # None on CPU, where no copy bandwidth is measured
    refcheck: str = ""
    rel_err: float | None = None


@dataclass
class BenchResult:
    device: str
    copy_bw_tbps: float | None
    records: list[Nvfp4Record] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: bool = False  # our kernel raised, or a backend failed its reference check


def _cpu_median_us(fn: Callable[[], object]) -> float:
    fn()
    runs = []
    for _ in range(CPU_REPS):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1e6


def run(settings: Settings, log: Callable[[str], None] = print) -> BenchResult:
    """Every case on the CUDA device, or on CPU (interpreted) when there is none."""
    if torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
        flush = timing.l2_flush_buffer(device)
        copy_bw = timing.copy_bandwidth_tbps(
            device, flush, warmup_ms=settings.warmup_ms, rep_ms=settings.rep_ms
        )
        result = BenchResult(torch.cuda.get_device_name(device), copy_bw)
        log(f"{result.device}: device-to-device copy {copy_bw:.2f} TB/s")

        def measure(fn: Callable[[], object]) -> float:
            return timing.median_time_us(
                fn, flush, warmup_ms=settings.warmup_ms, rep_ms=settings.rep_ms
            )
    else:
        device = torch.device("cpu")
        result = BenchResult(f"CPU ({platform.processor() or platform.machine()})", None)
        result.notes.append("no CUDA GPU: ours ran in Triton's interpreter; times are meaningless")
        measure = _cpu_median_us

    gen = torch.Generator(device=device).manual_seed(settings.seed)
    for model in settings.models:
        for layer in settings.layers:
            _run_layer(model, layer, settings, gen, measure, result, log)
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the next layer's weights may be far larger
    return result


def _run_layer(
    model: str,
    layer: str,
    settings: Settings,
    gen: torch.Generator,
    measure: Callable[[Callable[[], object]], float],
    result: BenchResult,
    log: Callable[[str], None],
) -> None:
    """Every M and backend on one projection; its weights are freed on return."""
    dtype = DTYPES[settings.dtype]
    device = gen.device
    n, k = MODELS[model].layers()[layer]
    # Preparing the weights is not measured. On CPU the torch references do it, as the
    # interpreter would take long; their results are bit-identical (tests/kernels/quant).
    on_gpu = device.type == "cuda"
    quantize = nvfp4_quantize if on_gpu else nvfp4_quantize_reference
    dequantize = nvfp4_dequantize if on_gpu else nvfp4_dequantize_reference
    packed, scales, global_scale = quantize(
        torch.randn((n, k), generator=gen, device=device, dtype=dtype)
    )
    dense = dequantize(packed, scales, global_scale, dtype)
    backends: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "ours": lambda x: nvfp4_linear(x, packed, scales, global_scale),
        "torch": lambda x: torch.matmul(x, dense.T),
    }
    for m in settings.ms:
        x = torch.randn((m, k), generator=gen, device=device, dtype=dtype)
        expected = None
        if settings.refcheck:
            expected = nvfp4_linear_reference(x, packed, scales, global_scale)
        for name in settings.backends:
            record = _measure(
                model, layer, m, n, k, name, backends[name], x, expected, measure, settings
            )
            if record is None:
                result.failed |= name == "ours"
                result.notes.append(f"{model} {layer} m={m}: {name} failed")
                continue
            if result.copy_bw_tbps:
                record = _with_copy_share(record, result.copy_bw_tbps)
            result.failed |= record.refcheck == "fail"
            result.records.append(record)
            log(_line(record))


def _measure(
    model: str,
    layer: str,
    m: int,
    n: int,
    k: int,
    name: str,
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    expected: torch.Tensor | None,
    measure: Callable[[Callable[[], object]], float],
    settings: Settings,
) -> Nvfp4Record | None:
    """One backend on one case; None if it raised (the run goes on without it)."""
    try:
        check = None if expected is None else relative_error(fn(x), expected)
        time_us = measure(lambda: fn(x))
    except Exception as error:  # a backend that cannot run a case must not end the run
        print(f"note: {model} {layer} m={m} {name}: {type(error).__name__}: {error}")
        return None
    size = x.element_size()
    nbytes = nvfp4_bytes(m, n, k, size) if name == "ours" else dense_bytes(m, n, k, size)
    passed = None if check is None else check <= TOLERANCE[x.dtype]
    return Nvfp4Record(
        model=model,
        layer=layer,
        m=m,
        n=n,
        k=k,
        dtype=settings.dtype,
        backend=name,
        time_us=time_us,
        tflops=gemm_flops(m, n, k) / time_us / 1e6,
        tbps=nbytes / time_us / 1e6,
        copy_bw_pct=None,
        refcheck="" if passed is None else ("pass" if passed else "fail"),
        rel_err=check,
    )


def _with_copy_share(record: Nvfp4Record, copy_bw_tbps: float) -> Nvfp4Record:
    values = asdict(record) | {"copy_bw_pct": 100 * record.tbps / copy_bw_tbps}
    return Nvfp4Record(**values)


def relative_error(output: torch.Tensor, expected: torch.Tensor) -> float:
    """||output - expected|| / ||expected|| in float64; NaN in the output gives NaN (fails)."""
    diff = output.double() - expected.double()
    return (diff.norm() / expected.double().norm()).item()


def _line(record: Nvfp4Record) -> str:
    share = "" if record.copy_bw_pct is None else f" ({record.copy_bw_pct:.0f}% of copy)"
    check = "" if not record.refcheck else f", refcheck {record.refcheck} ({record.rel_err:.1e})"
    return (
        f"{record.model} {record.layer} m={record.m} {record.backend}: {record.time_us:.1f} us, "
        f"{record.tflops:.1f} TFLOP/s, {record.tbps:.2f} TB/s{share}{check}"
    )


TEXT_COLUMNS = frozenset({"model", "layer", "backend", "refcheck"})


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table, numbers right-aligned."""
    align = ["---" if name in TEXT_COLUMNS else "---:" for name in header]
    return "\n".join("| " + " | ".join(line) + " |" for line in [header, align, *rows])


def render(records: list[Nvfp4Record]) -> str:
    """All records, then ours against torch per case (speedup = theirs / ours)."""
    header = ["model", "layer", "backend", "M", "N", "K", "time (us)", "TFLOP/s", "TB/s"]
    header += ["% copy BW", "refcheck"]
    rows = [
        [
            r.model,
            r.layer,
            r.backend,
            str(r.m),
            str(r.n),
            str(r.k),
            f"{r.time_us:.1f}",
            f"{r.tflops:.1f}",
            f"{r.tbps:.2f}",
            "-" if r.copy_bw_pct is None else f"{r.copy_bw_pct:.0f}",
            r.refcheck or "-",
        ]
        for r in records
    ]
    sections = ["### Results", _markdown(header, rows)]
    dense = {(r.model, r.layer, r.m): r for r in records if r.backend == "torch"}
    pairs = [
        (dense[(r.model, r.layer, r.m)], r)
        for r in records
        if r.backend == "ours" and (r.model, r.layer, r.m) in dense
    ]
    if pairs:
        header = ["model", "layer", "M", "torch (us)", "ours (us)", "speedup"]
        rows = [
            [
                a.model,
                a.layer,
                str(a.m),
                f"{b.time_us:.1f}",
                f"{a.time_us:.1f}",
                f"{b.time_us / a.time_us:.2f}x",
            ]
            for b, a in pairs
        ]
        sections += ["### ours against torch", _markdown(header, rows)]
    return "\n\n".join(sections)


def document(settings: Settings, result: BenchResult) -> dict[str, Any]:
    """The JSON file's metadata: where, with what, and how the records were taken."""
    return {
        "benchmark": "nvfp4",
        "device": result.device,
        "copy_bw_tbps": result.copy_bw_tbps,
        "environment": {
            "python": platform.python_version(),
            "cuda": torch.version.cuda,
            "packages": package_versions(VERSIONED_PACKAGES),
        },
        "settings": asdict(settings),
        "notes": result.notes,
    }
