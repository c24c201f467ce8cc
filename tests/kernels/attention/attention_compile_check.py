"""Compile the paged attention kernels for NVIDIA GPUs, without a GPU, and count registers.

Each variant is what the launchers (``paged_attention``, ``write_kv_cache``) launch for a
batch (built here from empty CPU tensors; the launches are recorded, not run), compiled
through Triton's real pipeline for Hopper (sm_90) and Ampere (sm_80), with ptxas's
register and spill counts printed per variant. Run as a script with TRITON_INTERPRET
unset; ``--quick`` compiles one representative variant of each kernel for sm_90 only and
fails on any register spill; the full set fails on spills at the register ceiling (a
tile too big for its warps). test_attention_compiles.py runs both.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/kernels: triton_compile
from triton_compile import MAX_REGISTERS, Compiled, Variant, launched_variants, main

from switchyard.kernels.attention.kv_cache import _write_kv_cache_kernel, write_kv_cache
from switchyard.kernels.attention.paged_attention import (
    _merge_splits_kernel,
    _paged_attention_kernel,
    paged_attention,
)

KERNELS = (_paged_attention_kernel, _merge_splits_kernel, _write_kv_cache_kernel)
LONG = 4000  # KV positions of the sequences whose length does not matter
# (q_len, seq_len) per sequence of each batch kind. "verify" is speculative verification
# of 3 draft tokens; "mixed" is vLLM's chunked-prefill step: decodes, verification and a
# prefill chunk in one launch.
BATCHES = {
    "decode": [(1, LONG)] * 8,
    "verify": [(4, LONG)] * 8,
    "mixed": [(1, LONG), (4, LONG), (1, 100), (300, 812)],
    "prefill": [(512, 512), (256, LONG)],
}


def _kv_view(num_blocks: int, num_kv_heads: int, block_size: int, head_dim: int, dtype):
    """K and V caches as vLLM's per-layer view holds them: halves of the last dimension."""
    kv = torch.empty((num_blocks, num_kv_heads, block_size, 2 * head_dim), dtype=dtype)
    return kv[..., :head_dim], kv[..., head_dim:]


def _launch(
    batch: str,
    *,
    heads: tuple[int, int],
    head_dim: int,
    block_size: int = 16,
    dtype: torch.dtype = torch.bfloat16,
    softcap: float | None = None,
    sliding_window: int | None = None,
    splits: int | None = None,
) -> None:
    """Call the launcher on empty tensors shaped as vLLM hands them to our backend."""
    lens = BATCHES[batch]
    num_q_heads, num_kv_heads = heads
    blocks_per_seq = -(-max(seq_len for _, seq_len in lens) // block_size)
    query = torch.empty(sum(q for q, _ in lens), num_q_heads, head_dim, dtype=dtype)
    caches = _kv_view(blocks_per_seq * len(lens), num_kv_heads, block_size, head_dim, dtype)
    starts = [0, *itertools.accumulate(q for q, _ in lens)]
    paged_attention(
        query,
        *caches,
        torch.zeros(len(lens), blocks_per_seq, dtype=torch.int32),
        torch.tensor([seq_len for _, seq_len in lens], dtype=torch.int32),
        torch.tensor(starts, dtype=torch.int32),
        scale=head_dim**-0.5,
        softcap=softcap,
        sliding_window=sliding_window,
        num_kv_splits=splits,
    )


def _write(*, num_kv_heads: int, head_dim: int, block_size: int, dtype: torch.dtype) -> None:
    """Call the KV-cache write as the backend does: K and V sliced from a fused QKV."""
    qkv = torch.empty((64, 3, num_kv_heads, head_dim), dtype=dtype)
    caches = _kv_view(16, num_kv_heads, block_size, head_dim, dtype)
    write_kv_cache(qkv[:, 1], qkv[:, 2], *caches, torch.zeros(64, dtype=torch.int64))


def _variants(label: str, batch: str, **shape: object) -> list[Variant]:
    return launched_variants(label, lambda: _launch(batch, **shape), KERNELS)


def _write_variants(label: str, **shape: object) -> list[Variant]:
    return launched_variants(label, lambda: _write(**shape), KERNELS)


def quick_variants() -> list[Variant]:
    """One of each kind: decode, split-KV and its merge at head_dim 512, a prefill tile,
    GQA group 3 with softcap and window, the KV-cache write."""
    return [
        *_variants("decode llama3-8b", "decode", heads=(32, 8), head_dim=128, splits=1),
        *_variants("split-KV gemma4-31b-global", "decode", heads=(32, 4), head_dim=512, splits=4),
        *_variants("mixed gemma3-270m", "mixed", heads=(4, 1), head_dim=256),
        *_variants(
            "mixed smollm2 softcap window",
            "mixed",
            heads=(9, 3),
            head_dim=64,
            softcap=30.0,
            sliding_window=512,
        ),
        *_write_variants(
            "kv write llama3-8b", num_kv_heads=8, head_dim=128, block_size=16, dtype=torch.bfloat16
        ),
    ]


def all_variants() -> list[Variant]:
    """The quick set, then every head_dim x block size x batch kind (each kind's tile
    rows follow from its query lengths and GQA group), cycling GQA group, dtype, softcap
    and split-KV among them, and the KV-cache write per head_dim and block size; each
    distinct compilation once."""
    variants = quick_variants()
    combos = itertools.product((64, 128, 256, 512), (16, 32, 64), BATCHES)
    for i, (head_dim, block_size, batch) in enumerate(combos):
        group = 8 if batch == "verify" else (1, 4, 8)[i % 3]  # verify: 32-row tiles
        dtype = (torch.bfloat16, torch.float16)[i % 2]
        softcap = 30.0 if i % 3 == 0 else None
        splits = 3 if batch in ("decode", "verify") and i % 2 else 1
        label = (
            f"{batch} d{head_dim} bs{block_size} g{group} {str(dtype)[6:]}"
            f"{' softcap' if softcap else ''} splits={splits}"
        )
        shape = dict(head_dim=head_dim, block_size=block_size, dtype=dtype)
        variants += _variants(
            label, batch, heads=(2 * group, 2), softcap=softcap, splits=splits, **shape
        )
        if batch == "decode":
            write = f"kv write d{head_dim} bs{block_size} {str(dtype)[6:]}"
            variants += _write_variants(write, num_kv_heads=2, **shape)
    return _distinct(variants)


def _distinct(variants: list[Variant]) -> list[Variant]:
    """The first variant of each distinct compilation (the merge kernel, say, does not
    depend on the block size)."""
    seen, kept = set(), []
    for variant in variants:
        key = repr(
            (variant.kernel.fn.__name__, variant.signature, variant.constexprs,
             variant.attrs, variant.options)
        )  # fmt: skip
        if key not in seen:
            seen.add(key)
            kept.append(variant)
    return kept


def tile_fits(variant: Variant, compiled: Compiled) -> str | None:
    """A spill at the register ceiling means the tile does not fit its warps (what
    choose_tile avoids). A few bytes spilled below it are ptxas trading them for
    occupancy: CUDA 12.8's ptxas (Triton 3.6) caps some variants at 128 registers."""
    if compiled.spill_stores and compiled.registers >= MAX_REGISTERS:
        return "spills at the register ceiling"
    return None


if __name__ == "__main__":
    # Any spill fails the default (quick) set; the full set fails on tiles that do not fit.
    sys.exit(
        main(
            sys.argv[1:],
            quick=quick_variants,
            every=all_variants,
            forbid_spills="--quick" in sys.argv,
            check=tile_fits,
        )
    )
