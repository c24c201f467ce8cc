"""GPU timing: cold L2, warm-up, the median of many runs; and the copy-bandwidth roofline.

Every timed run starts with the L2 cache flushed (a buffer twice its size is
overwritten), so KV a kernel reads comes from HBM as it does in serving, where the other
layers' weights and KV pass through L2 between two calls of one layer. Times come from
CUDA events around each run; the median resists the odd slow run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch

# Runs per measurement: as many as fit in rep_ms, within these bounds.
MIN_REPS = 10
MAX_REPS = 1000
ESTIMATE_REPS = 5
COPY_BYTES = 1 << 30


def l2_flush_buffer(device: torch.device) -> torch.Tensor:
    """A buffer whose overwrite evicts the whole L2 (twice its size: L2 is not strict LRU)."""
    l2_bytes = torch.cuda.get_device_properties(device).L2_cache_size
    return torch.empty(2 * l2_bytes, dtype=torch.uint8, device=device)


def _time_runs_ms(fn: Callable[[], object], flush: torch.Tensor, reps: int) -> list[float]:
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for start, end in zip(starts, ends, strict=True):
        flush.zero_()
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) for start, end in zip(starts, ends, strict=True)]


def median_time_us(
    fn: Callable[[], object], flush: torch.Tensor, *, warmup_ms: float, rep_ms: float
) -> float:
    """Median microseconds of ``fn`` from a cold L2, after ``warmup_ms`` of warm-up runs.

    A first call (compilation, autotuning) and a short estimate size the warm-up and the
    number of runs, as triton.testing.do_bench does.
    """
    fn()
    torch.cuda.synchronize()
    estimate_ms = statistics.mean(_time_runs_ms(fn, flush, ESTIMATE_REPS))
    warmup = max(1, min(MAX_REPS, round(warmup_ms / estimate_ms)))
    reps = max(MIN_REPS, min(MAX_REPS, round(rep_ms / estimate_ms)))
    for _ in range(warmup):
        fn()
    return statistics.median(_time_runs_ms(fn, flush, reps)) * 1e3


def copy_bandwidth_tbps(
    device: torch.device, flush: torch.Tensor, *, warmup_ms: float, rep_ms: float
) -> float:
    """Device-to-device copy bandwidth in TB/s, counting bytes read plus bytes written.

    The practical ceiling for a bandwidth-bound kernel on this GPU, measured in the same
    run as the kernels, so achieved TB/s can be reported as a fraction of it.
    """
    source = torch.empty(COPY_BYTES, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    time_us = median_time_us(
        lambda: target.copy_(source), flush, warmup_ms=warmup_ms, rep_ms=rep_ms
    )
    return 2 * COPY_BYTES / time_us / 1e6
