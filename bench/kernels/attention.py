"""``switchyard bench kernels attention``: our paged attention against upstream kernels.

For every case of the grid (model x batch x KV length, one mode), every backend is
prepared on the same batch, optionally checked against the torch reference, and timed
(cold L2, median). Needs a CUDA GPU; the pieces it is built from run anywhere.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from switchyard.bench.environment import gpus, package_versions
from switchyard.bench.kernels import timing
from switchyard.bench.kernels.backends import BACKENDS, BackendUnavailable, Prepare
from switchyard.bench.kernels.batch import (
    AttentionBatch,
    RefCheck,
    make_batch,
    refcheck,
    reference_output,
)
from switchyard.bench.kernels.report import Record
from switchyard.bench.kernels.shapes import Case, attention_bytes, attention_flops

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
VERSIONED_PACKAGES = ("switchyard", "torch", "triton", "vllm", "flashinfer-python")


@dataclass(frozen=True)
class Settings:
    models: tuple[str, ...]
    mode: str
    batches: tuple[int, ...]
    kv_lens: tuple[int, ...]
    chunk: int
    page_size: int
    dtype: str
    backends: tuple[str, ...]
    refcheck: bool
    warmup_ms: float
    rep_ms: float
    seed: int

    def cases(self) -> list[Case]:
        return [
            Case(model, self.mode, batch, kv_len, self.chunk)
            for model in self.models
            for batch in self.batches
            for kv_len in self.kv_lens
        ]


@dataclass
class BenchResult:
    device: str
    copy_bw_tbps: float
    records: list[Record] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: bool = False  # our kernel raised, or a backend failed its reference check


def environment() -> dict[str, Any]:
    """Package versions, GPUs and their driver, so saved results are compared knowingly."""
    return {
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "gpus": gpus(),  # name, memory and NVIDIA driver version of each
        "packages": package_versions(VERSIONED_PACKAGES),
    }


def run(settings: Settings, log: Callable[[str], None] = print) -> BenchResult:
    """Benchmark every case and backend on the current CUDA device."""
    device = torch.device("cuda", torch.cuda.current_device())
    flush = timing.l2_flush_buffer(device)
    copy_bw = timing.copy_bandwidth_tbps(
        device, flush, warmup_ms=settings.warmup_ms, rep_ms=settings.rep_ms
    )
    result = BenchResult(device=torch.cuda.get_device_name(device), copy_bw_tbps=copy_bw)
    log(f"{result.device}: device-to-device copy {copy_bw:.2f} TB/s")

    backends: dict[str, Prepare] = {}
    for name in settings.backends:
        try:
            backends[name] = BACKENDS[name]()
        except BackendUnavailable as error:
            result.notes.append(f"{name} skipped: {error}")
            log(f"note: {result.notes[-1]}")

    for case in settings.cases():
        _run_case(case, settings, backends, flush, result, log)
        torch.cuda.empty_cache()  # the next case's batch may be far larger or smaller
    return result


def _run_case(
    case: Case,
    settings: Settings,
    backends: dict[str, Prepare],
    flush: torch.Tensor,
    result: BenchResult,
    log: Callable[[str], None],
) -> None:
    """Every backend on one case; records and notes go into ``result``."""
    dtype = DTYPES[settings.dtype]
    batch = make_batch(
        case, page_size=settings.page_size, dtype=dtype, device=flush.device, seed=settings.seed
    )
    expected = reference_output(batch) if settings.refcheck else None
    flops = attention_flops(case.shape, batch.lens)
    nbytes = attention_bytes(case.shape, batch.lens, batch.query.element_size())
    label = f"{case.model} {case.mode} batch={case.batch} kv_len={case.kv_len}"
    for name, prepare in backends.items():
        try:
            check, time_us = _measure(prepare, batch, expected, flush, settings)
        except Exception as error:  # a backend that cannot run a case must not end the run
            result.notes.append(f"{label}: {name} failed: {type(error).__name__}: {error}")
            log(f"note: {result.notes[-1]}")
            result.failed |= name == "ours"
            continue
        result.failed |= check is not None and not check.passed
        tbps = nbytes / time_us / 1e6
        record = Record(
            model=case.model,
            mode=case.mode,
            batch=case.batch,
            kv_len=case.kv_len,
            chunk=case.chunk,
            page_size=settings.page_size,
            dtype=settings.dtype,
            backend=name,
            time_us=time_us,
            tflops=flops / time_us / 1e6,
            tbps=tbps,
            copy_bw_pct=100 * tbps / result.copy_bw_tbps,
            refcheck="" if check is None else ("pass" if check.passed else "fail"),
            rel_err=None if check is None else check.relative_error,
        )
        result.records.append(record)
        verdict = "" if check is None else f", refcheck {record.refcheck} ({record.rel_err:.1e})"
        log(
            f"{label} {name}: {time_us:.1f} us, {record.tflops:.1f} TFLOP/s, "
            f"{tbps:.2f} TB/s ({record.copy_bw_pct:.0f}% of copy){verdict}"
        )


def _measure(
    prepare: Prepare,
    batch: AttentionBatch,
    expected: torch.Tensor | None,
    flush: torch.Tensor,
    settings: Settings,
) -> tuple[RefCheck | None, float]:
    """One backend on one batch: its reference check (when asked for) and median time.

    A function of its own so that the backend's buffers (SDPA's gathered KV, FlashInfer's
    workspace) are freed before the next backend prepares.
    """
    fn = prepare(batch)
    check = refcheck(fn(), expected) if expected is not None else None
    time_us = timing.median_time_us(fn, flush, warmup_ms=settings.warmup_ms, rep_ms=settings.rep_ms)
    return check, time_us


def document(settings: Settings, result: BenchResult) -> dict[str, Any]:
    """The JSON file's metadata: where, with what, and how the records were taken (the
    command line as given, so a committed result says how to take it again)."""
    return {
        "benchmark": "attention",
        "command": list(sys.argv),
        "device": result.device,
        "copy_bw_tbps": result.copy_bw_tbps,
        "environment": environment(),
        "settings": asdict(settings),
        "notes": result.notes,
    }
