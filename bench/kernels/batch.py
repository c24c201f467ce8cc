"""The paged batch every attention backend reads, and the check of their outputs.

Device-agnostic: the benchmark builds and checks batches on the GPU, the tests on CPU
(where our kernel runs under Triton's interpreter), through the same functions.

K and V live in separate caches in the NHD page layout, ``[num_blocks, page_size,
num_kv_heads, head_dim]``: the layout vLLM's Triton attention and FlashInfer take
as they are; our kernel reads the same memory through a transposed view (it accepts any
strides). Pages are handed out in a random order, as in a cache that has been in use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from switchyard.bench.kernels.shapes import AttentionShape, Case
from switchyard.kernels.attention import paged_attention_reference

# Relative error norm ||out - ref|| / ||ref|| allowed per dtype (FlashInfer's habit).
TOLERANCE = {torch.bfloat16: 1e-2, torch.float16: 5e-3}


@dataclass
class AttentionBatch:
    """One batch's inputs. ``lens`` holds (q_len, seq_len) per sequence, on the host."""

    shape: AttentionShape
    lens: list[tuple[int, int]]
    query: torch.Tensor  # [num_tokens, num_q_heads, head_dim]
    key_cache: torch.Tensor  # [num_blocks, page_size, num_kv_heads, head_dim]
    value_cache: torch.Tensor
    block_table: torch.Tensor  # [num_seqs, max_blocks] int32
    seq_lens: torch.Tensor  # [num_seqs] int32
    query_start_loc: torch.Tensor  # [num_seqs + 1] int32

    @property
    def page_size(self) -> int:
        return self.key_cache.shape[1]

    @property
    def max_q_len(self) -> int:
        return max(q_len for q_len, _ in self.lens)

    @property
    def max_seq_len(self) -> int:
        return max(seq_len for _, seq_len in self.lens)


def make_batch(
    case: Case,
    *,
    page_size: int,
    dtype: torch.dtype,
    device: torch.device | str,
    seed: int = 0,
) -> AttentionBatch:
    """Random Q, K and V (standard normal) for ``case`` over a shuffled paged cache."""
    shape, lens = case.shape, case.lens()
    host = torch.Generator().manual_seed(seed)
    on_device = torch.Generator(device=device).manual_seed(seed)
    blocks_per_seq = [-(-seq_len // page_size) for _, seq_len in lens]
    num_blocks = sum(blocks_per_seq)
    order = torch.randperm(num_blocks, generator=host, dtype=torch.int32)
    block_table = torch.zeros((len(lens), max(blocks_per_seq)), dtype=torch.int32)
    first = 0
    for i, count in enumerate(blocks_per_seq):
        block_table[i, :count] = order[first : first + count]
        first += count

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(size, generator=on_device, device=device, dtype=dtype)

    cache_size = (num_blocks, page_size, shape.num_kv_heads, shape.head_dim)
    q_lens = [q_len for q_len, _ in lens]
    query_start_loc = torch.tensor([0, *q_lens], dtype=torch.int32).cumsum(0, dtype=torch.int32)
    return AttentionBatch(
        shape=shape,
        lens=lens,
        query=randn(sum(q_lens), shape.num_q_heads, shape.head_dim),
        key_cache=randn(*cache_size),
        value_cache=randn(*cache_size),
        block_table=block_table.to(device),
        seq_lens=torch.tensor([seq_len for _, seq_len in lens], dtype=torch.int32, device=device),
        query_start_loc=query_start_loc.to(device),
    )


def reference_output(batch: AttentionBatch) -> torch.Tensor:
    """The float32 output of the kernels' torch reference (float64 math, one sequence at a time)."""
    return paged_attention_reference(
        batch.query,
        batch.key_cache.transpose(1, 2),
        batch.value_cache.transpose(1, 2),
        batch.block_table,
        batch.seq_lens,
        batch.query_start_loc,
        scale=batch.shape.softmax_scale,
        sliding_window=batch.shape.sliding_window,
    )


@dataclass(frozen=True)
class RefCheck:
    relative_error: float
    tolerance: float

    @property
    def passed(self) -> bool:
        # Written so that a NaN error (a NaN in the output) fails.
        return self.relative_error <= self.tolerance


def refcheck(output: torch.Tensor, expected: torch.Tensor) -> RefCheck:
    """Relative error norm of ``output`` against the float32 reference, and its dtype's bound."""
    diff = output.double() - expected.double()
    error = (diff.norm() / expected.double().norm()).item()
    return RefCheck(relative_error=error, tolerance=TOLERANCE[output.dtype])
