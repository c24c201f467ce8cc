"""Writing new tokens' K and V into the paged KV cache, without a host round trip.

vLLM gives each token a slot (block * block_size + offset) and marks padding tokens with
slot -1. Selecting the real tokens with a boolean mask on the host would read the mask
back, a device sync in every layer of every step; this kernel reads each slot on the
device instead and lets the programs of padding tokens return. One program writes one
(token, KV head) row of K and of V; the caches may have any strides, so the K and V halves
of vLLM's per-layer view go in as they are.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from switchyard.kernels.attention.paged_attention import SUPPORTED_DTYPES, SUPPORTED_HEAD_DIMS


@triton.jit
def _write_kv_cache_kernel(
    key_ptr,
    value_ptr,
    key_cache_ptr,
    value_cache_ptr,
    slot_mapping_ptr,
    stride_kt,
    stride_kh,
    stride_kd,
    stride_vt,
    stride_vh,
    stride_vd,
    stride_kcb,
    stride_kch,
    stride_kcn,
    stride_kcd,
    stride_vcb,
    stride_vch,
    stride_vcn,
    stride_vcd,
    BLOCK_SIZE: tl.constexpr,
    HEAD_DIM: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1)
    slot = tl.load(slot_mapping_ptr + token).to(tl.int64)
    if slot < 0:  # a padding token: nothing to write
        return
    block = slot // BLOCK_SIZE
    offset = slot % BLOCK_SIZE
    dims = tl.arange(0, HEAD_DIM)
    key = tl.load(key_ptr + token * stride_kt + head * stride_kh + dims * stride_kd)
    value = tl.load(value_ptr + token * stride_vt + head * stride_vh + dims * stride_vd)
    key_row = key_cache_ptr + block * stride_kcb + head * stride_kch + offset * stride_kcn
    value_row = value_cache_ptr + block * stride_vcb + head * stride_vch + offset * stride_vcn
    tl.store(key_row + dims * stride_kcd, key)
    tl.store(value_row + dims * stride_vcd, value)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def write_kv_cache(
    key: torch.Tensor,
    value: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Store token t's K and V at slot ``slot_mapping[t]`` of the caches; skip slot < 0.

    Shapes: key and value [num_tokens, num_kv_heads, head_dim]; key_cache and value_cache
    [num_blocks, num_kv_heads, block_size, head_dim], any strides; slot_mapping
    [num_tokens], int32 or int64. Slots are not range-checked (that would sync the
    device): they must lie below num_blocks * block_size, as vLLM's do.
    """
    for name, tensor, rank in (
        ("key", key, 3),
        ("value", value, 3),
        ("key_cache", key_cache, 4),
        ("value_cache", value_cache, 4),
        ("slot_mapping", slot_mapping, 1),
    ):
        _check(tensor.dim() == rank, f"{name} must have {rank} dimensions, got {tensor.dim()}")
        _check(tensor.device == key.device, f"{name} is on {tensor.device}, key on {key.device}")
    _check(key.dtype in SUPPORTED_DTYPES, f"key dtype must be float16 or bfloat16, not {key.dtype}")
    for name, tensor in (("value", value), ("key_cache", key_cache), ("value_cache", value_cache)):
        _check(
            tensor.dtype == key.dtype,
            f"{name} dtype {tensor.dtype} differs from key dtype {key.dtype}",
        )
    _check(
        slot_mapping.dtype in (torch.int32, torch.int64),
        f"slot_mapping must be int32 or int64, not {slot_mapping.dtype}",
    )
    _check(
        value.shape == key.shape,
        f"value shape {tuple(value.shape)} != key shape {tuple(key.shape)}",
    )
    _check(
        value_cache.shape == key_cache.shape,
        f"value_cache shape {tuple(value_cache.shape)} != key_cache shape {tuple(key_cache.shape)}",
    )
    num_tokens, num_kv_heads, head_dim = key.shape
    _, cache_heads, block_size, cache_head_dim = key_cache.shape
    _check(
        (cache_heads, cache_head_dim) == (num_kv_heads, head_dim),
        f"key_cache has {cache_heads} heads of {cache_head_dim}, key {num_kv_heads} of {head_dim}",
    )
    _check(
        head_dim in SUPPORTED_HEAD_DIMS,
        f"key head_dim {head_dim} is not one of {SUPPORTED_HEAD_DIMS}",
    )
    _check(
        slot_mapping.shape[0] == num_tokens,
        f"slot_mapping has {slot_mapping.shape[0]} entries for {num_tokens} tokens",
    )
    if num_tokens == 0:
        return
    _write_kv_cache_kernel[(num_tokens, num_kv_heads)](
        key,
        value,
        key_cache,
        value_cache,
        slot_mapping,
        *key.stride(),
        *value.stride(),
        *key_cache.stride(),
        *value_cache.stride(),
        BLOCK_SIZE=block_size,
        HEAD_DIM=head_dim,
    )
