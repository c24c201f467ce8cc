"""Plain torch paged attention and KV-cache write: the definitions the Triton kernels are
tested against.

Readable first: one sequence at a time, K/V gathered from the block table into
contiguous tensors, explicit causal and window masks, float64 arithmetic. The result is
float32 whatever the input dtype, so tests compare in fp32 without a rounding step of the
reference's own; callers that need the query's dtype cast (``out.copy_`` does).
"""

from __future__ import annotations

import torch


def _gather(cache: torch.Tensor, blocks: torch.Tensor, seq_len: int) -> torch.Tensor:
    """One sequence's [seq_len, num_kv_heads, head_dim] slice of a paged cache, in float64."""
    num_kv_heads, head_dim = cache.shape[1], cache.shape[3]
    per_block = cache[blocks].permute(0, 2, 1, 3)  # [blocks, block_size, kv_heads, head_dim]
    return per_block.reshape(-1, num_kv_heads, head_dim)[:seq_len].double()


def paged_attention_reference(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    query_start_loc: torch.Tensor,
    *,
    scale: float,
    sliding_window: int | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """Same contract as ``paged_attention`` (no ``out``, no split control); returns float32.

    Query token j of sequence i sits at position seq_len_i - q_len_i + j and sees KV
    positions k with k <= p and, with a window w, k > p - w. Query head h reads KV head
    h // (num_q_heads // num_kv_heads).
    """
    num_q_heads = query.shape[1]
    num_kv_heads, block_size = key_cache.shape[1], key_cache.shape[2]
    group = num_q_heads // num_kv_heads
    out = torch.empty(query.shape, dtype=torch.float32, device=query.device)
    starts = query_start_loc.tolist()
    for i, seq_len in enumerate(seq_lens.tolist()):
        q = query[starts[i] : starts[i + 1]].double()
        q_len = q.shape[0]
        if q_len == 0:
            continue
        blocks = block_table[i, : (seq_len + block_size - 1) // block_size].long()
        k = _gather(key_cache, blocks, seq_len).repeat_interleave(group, dim=1)
        v = _gather(value_cache, blocks, seq_len).repeat_interleave(group, dim=1)

        logits = torch.einsum("qhd,khd->hqk", q, k) * scale
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        q_pos = torch.arange(seq_len - q_len, seq_len, device=query.device)[:, None]
        k_pos = torch.arange(seq_len, device=query.device)[None, :]
        visible = k_pos <= q_pos
        if sliding_window is not None:
            visible &= k_pos > q_pos - sliding_window
        logits = logits.masked_fill(~visible, float("-inf"))
        out[starts[i] : starts[i + 1]] = torch.einsum("hqk,khd->qhd", logits.softmax(-1), v).float()
    return out


def write_kv_cache_reference(
    key: torch.Tensor,
    value: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Same contract as ``write_kv_cache``. Selecting the real tokens with a boolean mask
    reads the mask back on the host, which is fine here (the CPU engine path, tests)."""
    slots = slot_mapping.long()
    real = slots >= 0  # -1 marks padding tokens
    block_size = key_cache.shape[2]
    blocks, offsets = slots[real] // block_size, slots[real] % block_size
    key_cache[blocks, :, offsets] = key[real]
    value_cache[blocks, :, offsets] = value[real]
