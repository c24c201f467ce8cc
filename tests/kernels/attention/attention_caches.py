"""Paged K/V caches for the attention kernel tests, in the layouts the kernels must accept."""

from __future__ import annotations

import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
LAYOUTS = ("contiguous", "kv_halves", "token_major")


def make_cache(
    shape: tuple[int, int, int, int], dtype: torch.dtype, layout: str, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random K and V caches [num_blocks, num_kv_heads, block_size, head_dim] in a layout."""
    num_blocks, num_kv_heads, block_size, head_dim = shape

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(size, generator=gen).to(device=DEVICE, dtype=dtype)

    if layout == "kv_halves":  # vLLM's view: K and V are the halves of the last dimension
        kv = randn(num_blocks, num_kv_heads, block_size, 2 * head_dim)
        return kv[..., :head_dim], kv[..., head_dim:]
    if layout == "token_major":  # stored [blocks, block_size, heads, dim], viewed head-major
        return tuple(
            randn(num_blocks, block_size, num_kv_heads, head_dim).transpose(1, 2) for _ in range(2)
        )
    return randn(*shape), randn(*shape)
