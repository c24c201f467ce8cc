"""Paged attention in Triton for mixed batches: decode, speculative verification and prefill.

One launch serves the whole batch. Each program owns a tile of query rows of one sequence
and one KV head; the GQA group is folded into the tile (rows are (query token, head in
group) pairs, as in vLLM's triton_unified_attention), so every K/V block is loaded once
per KV head rather than once per query head. The KV cache is read block by block through
the block table with arbitrary strides, so vLLM's combined K|V view can be passed as two
slices without a copy.

Two grid axes keep small batches busy:

* split-KV (flash-decoding): a decode batch of few sequences has few tiles, so the KV
  range of each tile is cut into ``num_kv_splits`` segments processed by separate
  programs, each writing a normalised partial output and its log-sum-exp; a second kernel
  merges them.
* V slices: for head_dim >= 256 a program accumulates only ``BLOCK_DV`` columns of the
  output (QK^T is recomputed over the full head_dim in ``BLOCK_DK`` chunks), so the fp32
  accumulator stays small and head_dim 512 does not collapse occupancy.

Softmax is online (running max and sum in fp32, base-2 exponentials).
"""

from __future__ import annotations

import itertools

import torch
import triton
import triton.language as tl

SUPPORTED_HEAD_DIMS = (64, 128, 256, 512)
SUPPORTED_BLOCK_SIZES = (16, 32, 64)
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16)

# A sliding window this wide never masks anything: it lets "no window" share the windowed
# code path (positions stay far from int32 overflow).
NO_WINDOW = 1 << 30
# QK^T is computed in head_dim chunks of at most this many columns, and V in slices of at
# most this many columns, to bound the registers one program needs.
MAX_BLOCK_DK = 128
MAX_BLOCK_DV = 128
# Rows of a query tile (see choose_tile).
MIN_TILE_ROWS = 16
MAX_TILE_ROWS = 64
MAX_TILE_ROWS_HEAD_DIM_512 = 32
# Split-KV heuristic: aim for about two waves of programs on a ~132-SM GPU, never give a
# split fewer than MIN_KV_PER_SPLIT positions, and split only batches of short queries
# (decode and speculative verification), where tiles are few and KV ranges long.
TARGET_PROGRAMS = 256
MIN_KV_PER_SPLIT = 256
MAX_KV_SPLITS = 16
MAX_SPLIT_QUERY_LEN = 8

# Globals read inside @triton.jit code must be tl.constexpr: the compiler rejects any other
# (the CPU interpreter does not, so only the compile check would notice).
LOG2E: tl.constexpr = tl.constexpr(1.4426950408889634)
LN2: tl.constexpr = tl.constexpr(0.6931471805599453)


@triton.jit
def _find_seq(query_start_loc_ptr, tile, num_seqs, BLOCK_Q: tl.constexpr):
    """The sequence owning query tile ``tile``, by binary search.

    Sequence i's tiles are numbered from ``query_start_loc[i] // BLOCK_Q + i``: monotonic,
    computable without a host-side table, and leaving room for its ``cdiv(q_len, BLOCK_Q)``
    tiles whatever the alignment of its first token.
    """
    lo: tl.int32 = 0
    hi = num_seqs
    while lo < hi:
        mid = (lo + hi) // 2
        first_tile = tl.load(query_start_loc_ptr + mid) // BLOCK_Q + mid
        if first_tile <= tile:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@triton.jit
def _tanh(x):
    # tanh is not in tl's long-standing API; this form saturates cleanly at +-1.
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def _dot(a, b, UPCAST: tl.constexpr):
    """tl.dot, with the operands widened to fp32 when UPCAST.

    Only the CPU interpreter sets UPCAST: it stores bfloat16 as uint16 and its tl.dot
    multiplies the bit patterns (triton-lang/triton#11584, "not supported yet"). The
    operands are already rounded to bf16, so the widened product is the same math.
    """
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b)


@triton.jit
def _paged_attention_kernel(
    out_ptr,
    lse_ptr,
    q_ptr,
    k_ptr,
    v_ptr,
    block_table_ptr,
    seq_lens_ptr,
    query_start_loc_ptr,
    scale,
    softcap,
    window,
    num_seqs,
    stride_os,
    stride_ot,
    stride_oh,
    stride_od,
    stride_ls,
    stride_lt,
    stride_lh,
    stride_qt,
    stride_qh,
    stride_qd,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_kd,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_vd,
    stride_bs,
    stride_bb,
    GROUP: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_DK: tl.constexpr,
    BLOCK_DV: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    USE_SOFTCAP: tl.constexpr,
    DOT_FP32: tl.constexpr,
):
    """One (query tile, KV head x V slice, KV split) of the attention output.

    With NUM_SPLITS == 1, ``out_ptr`` is the final output; otherwise it is the fp32
    partial buffer [split, token, head, dim] and ``lse_ptr`` receives the natural-log
    LSE [split, token, head] of each row over this split's KV range (-inf when empty).
    """
    BLOCK_Q: tl.constexpr = BLOCK_M // GROUP
    NUM_DV: tl.constexpr = HEAD_DIM // BLOCK_DV
    tile = tl.program_id(0)
    kv_head = tl.program_id(1) // NUM_DV
    dv_start = (tl.program_id(1) % NUM_DV) * BLOCK_DV
    split = tl.program_id(2)

    seq = _find_seq(query_start_loc_ptr, tile, num_seqs, BLOCK_Q)
    q_start = tl.load(query_start_loc_ptr + seq)
    q_len = tl.load(query_start_loc_ptr + seq + 1) - q_start
    tile_q0 = (tile - (q_start // BLOCK_Q + seq)) * BLOCK_Q
    if tile_q0 >= q_len:
        return
    seq_len = tl.load(seq_lens_ptr + seq)
    context = seq_len - q_len  # the queries are the last q_len positions

    rows = tl.arange(0, BLOCK_M)
    q_idx = tile_q0 + rows // GROUP
    row_valid = (rows < BLOCK_Q * GROUP) & (q_idx < q_len)
    head = kv_head * GROUP + rows % GROUP
    q_pos = context + q_idx
    token = (q_start + q_idx).to(tl.int64)

    # KV blocks any row of this tile can see (causal + window), then this split's share.
    first_pos = context + tile_q0
    last_pos = context + tl.minimum(tile_q0 + BLOCK_Q, q_len) - 1
    block_lo = tl.maximum(first_pos - window + 1, 0) // BLOCK_SIZE
    block_hi = last_pos // BLOCK_SIZE + 1
    per_split = tl.cdiv(block_hi - block_lo, NUM_SPLITS)
    split_lo = block_lo + split * per_split
    split_hi = tl.minimum(split_lo + per_split, block_hi)

    offs_n = tl.arange(0, BLOCK_SIZE)
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = dv_start + tl.arange(0, BLOCK_DV)
    q_rows = q_ptr + token[:, None] * stride_qt + head[:, None] * stride_qh
    block_row = block_table_ptr + seq.to(tl.int64) * stride_bs

    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_M], tl.float32)  # noqa: E741 - the usual name in flash attention
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    for block in range(split_lo, split_hi):
        physical = tl.load(block_row + block * stride_bb).to(tl.int64)
        kv_pos = block * BLOCK_SIZE + offs_n
        kv_valid = kv_pos < seq_len  # slots past seq_len may hold anything, even NaN
        k_block = k_ptr + physical * stride_kb + kv_head * stride_kh + offs_n[None, :] * stride_kn

        s = tl.zeros([BLOCK_M, BLOCK_SIZE], tl.float32)
        for d0 in range(0, HEAD_DIM, BLOCK_DK):
            # Q chunks are re-read per KV block; they come from L1/L2 after the first.
            q = tl.load(q_rows + (d0 + offs_dk)[None, :] * stride_qd, row_valid[:, None], 0.0)
            k = tl.load(k_block + (d0 + offs_dk)[:, None] * stride_kd, kv_valid[None, :], 0.0)
            s += _dot(q, k, DOT_FP32)
        s = s * scale
        if USE_SOFTCAP:
            s = softcap * _tanh(s / softcap)
        visible = (
            row_valid[:, None]
            & (kv_pos[None, :] <= q_pos[:, None])
            & (kv_pos[None, :] > q_pos[:, None] - window)
        )
        s = tl.where(visible, s * LOG2E, float("-inf"))

        m_new = tl.maximum(m, tl.max(s, 1))
        # A row that has seen nothing yet keeps m = -inf; exponentiate against 0 instead
        # so that -inf - -inf never makes a NaN.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m - m_safe)
        l = l * alpha + tl.sum(p, 1)  # noqa: E741
        v_ptrs = (
            v_ptr
            + physical * stride_vb
            + kv_head * stride_vh
            + offs_n[:, None] * stride_vn
            + offs_dv[None, :] * stride_vd
        )
        v = tl.load(v_ptrs, kv_valid[:, None], 0.0)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, DOT_FP32)
        m = m_new

    empty = l == 0.0  # only possible for a split whose share of the KV range is empty
    out = acc / tl.where(empty, 1.0, l)[:, None]
    o_ptrs = (
        out_ptr
        + split * stride_os
        + token[:, None] * stride_ot
        + head[:, None] * stride_oh
        + offs_dv[None, :] * stride_od
    )
    tl.store(o_ptrs, out.to(out_ptr.dtype.element_ty), row_valid[:, None])
    if NUM_SPLITS > 1:  # noqa: SIM102 - compile-time test outside, runtime test inside
        if dv_start == 0:  # every V slice has the same LSE; one of them writes it
            lse = tl.where(empty, float("-inf"), (m + tl.log2(tl.where(empty, 1.0, l))) * LN2)
            lse_ptrs = lse_ptr + split * stride_ls + token * stride_lt + head * stride_lh
            tl.store(lse_ptrs, lse, row_valid)


@triton.jit
def _merge_splits_kernel(
    out_ptr,
    partial_ptr,
    lse_ptr,
    num_splits,
    stride_ot,
    stride_oh,
    stride_od,
    stride_ps,
    stride_pt,
    stride_ph,
    stride_pd,
    stride_ls,
    stride_lt,
    stride_lh,
    SPLITS_POW2: tl.constexpr,
    HEAD_DIM: tl.constexpr,
):
    """out[token, head] = sum_s exp(lse_s) * partial_s / sum_s exp(lse_s), stably."""
    token = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1)
    splits = tl.arange(0, SPLITS_POW2)
    present = splits < num_splits
    lse = tl.load(
        lse_ptr + splits * stride_ls + token * stride_lt + head * stride_lh,
        present,
        float("-inf"),
    )
    weight = tl.exp(lse - tl.max(lse, 0))  # an empty split has lse = -inf: weight 0
    dims = tl.arange(0, HEAD_DIM)
    partial = tl.load(
        partial_ptr
        + splits[:, None] * stride_ps
        + token * stride_pt
        + head * stride_ph
        + dims[None, :] * stride_pd,
        present[:, None],
        0.0,
    )
    out = tl.sum(partial * weight[:, None], 0) / tl.sum(weight, 0)
    o_ptrs = out_ptr + token * stride_ot + head * stride_oh + dims * stride_od
    tl.store(o_ptrs, out.to(out_ptr.dtype.element_ty))


# Under TRITON_INTERPRET=1 (read when the decorators above ran) kernels are interpreted.
_INTERPRETED = not isinstance(_paged_attention_kernel, triton.runtime.JITFunction)


def choose_tile(head_dim: int, block_size: int, max_query_len: int, group: int) -> tuple[int, int]:
    """(BLOCK_M, num_warps): the rows of one attention tile and the warps that share them.

    Rows are (query token, head in group) pairs. tl.dot wants at least 16, and 64 amortise
    each K/V block over a prefill's tokens. Registers decide the rest (ptxas's counts from
    tests/kernels/attention/attention_compile_check.py, sm_80 and sm_90). With 4 warps,
    64-row tiles need 170-255 registers per thread from head_dim 128 and spill up to
    270 bytes, 32-row tiles spill at head_dim 256-512, and 16-row (decode) tiles over
    64-position blocks need 168-255 at head_dim >= 256. Those tiles get 8 warps, which
    halves each thread's share of the scores, the fp32 accumulator and the K/V chunks:
    at most ~210 registers, no spill at the register ceiling. A 64-row tile at head_dim
    512 still spills with 8 warps on Ampere (its Q rows stay in registers across the KV
    loop), so tiles stop at 32 rows there.
    """
    max_rows = MAX_TILE_ROWS_HEAD_DIM_512 if head_dim >= 512 else MAX_TILE_ROWS
    rows = max(MIN_TILE_ROWS, min(max_rows, triton.next_power_of_2(max_query_len * group)))
    rows = max(rows, triton.next_power_of_2(group))  # a tile holds whole GQA groups
    wide_kv = block_size >= 64 and head_dim >= 256
    return rows, 8 if rows > MIN_TILE_ROWS or wide_kv else 4


def choose_num_kv_splits(num_programs: int, max_seq_len: int, max_query_len: int) -> int:
    """How many KV segments each tile is cut into: more only when the grid is too small.

    Splitting costs a partial-output round trip and a merge launch, which pays off only
    when few programs (small decode batches) each walk a long KV range.
    """
    if max_query_len > MAX_SPLIT_QUERY_LEN or num_programs >= TARGET_PROGRAMS:
        return 1
    return max(
        1,
        min(MAX_KV_SPLITS, TARGET_PROGRAMS // num_programs, max_seq_len // MIN_KV_PER_SPLIT),
    )


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _validate(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    query_start_loc: torch.Tensor,
    sliding_window: int | None,
    softcap: float | None,
    out: torch.Tensor | None,
    num_kv_splits: int | None,
    batch_maxima: tuple[int, int] | None,
) -> tuple[int, int]:
    """Check every argument (messages start with its name); return (max q_len, max seq_len).

    The value checks (q_len <= seq_len, token total) read the index tensors back on the
    host, a device sync. A caller that already holds the batch's maxima on the host
    (``batch_maxima``; vLLM's metadata builder computes them once per batch) skips them,
    so a model's per-layer calls do no host round trip; the shape, dtype and capacity
    checks still run, on metadata only.
    """
    for name, tensor, rank in (
        ("query", query, 3),
        ("key_cache", key_cache, 4),
        ("value_cache", value_cache, 4),
        ("block_table", block_table, 2),
        ("seq_lens", seq_lens, 1),
        ("query_start_loc", query_start_loc, 1),
    ):
        _require(tensor.dim() == rank, f"{name} must have {rank} dimensions, got {tensor.dim()}")
    _require(
        query.dtype in SUPPORTED_DTYPES,
        f"query dtype must be float16 or bfloat16, not {query.dtype}",
    )
    for name, tensor in (("key_cache", key_cache), ("value_cache", value_cache), ("out", out)):
        if tensor is not None:
            _require(
                tensor.dtype == query.dtype,
                f"{name} dtype {tensor.dtype} differs from query dtype {query.dtype}",
            )
    for name, tensor in (
        ("key_cache", key_cache),
        ("value_cache", value_cache),
        ("block_table", block_table),
        ("seq_lens", seq_lens),
        ("query_start_loc", query_start_loc),
        ("out", out),
    ):
        if tensor is not None:
            _require(
                tensor.device == query.device,
                f"{name} is on {tensor.device}, query on {query.device}",
            )
    for name, tensor in (
        ("block_table", block_table),
        ("seq_lens", seq_lens),
        ("query_start_loc", query_start_loc),
    ):
        _require(tensor.dtype == torch.int32, f"{name} must be int32, not {tensor.dtype}")
    for name, tensor in (("seq_lens", seq_lens), ("query_start_loc", query_start_loc)):
        _require(tensor.is_contiguous(), f"{name} must be contiguous")

    num_tokens, num_q_heads, head_dim = query.shape
    _require(
        value_cache.shape == key_cache.shape,
        f"value_cache shape {tuple(value_cache.shape)} != key_cache shape {tuple(key_cache.shape)}",
    )
    _, num_kv_heads, block_size, cache_head_dim = key_cache.shape
    _require(
        cache_head_dim == head_dim,
        f"key_cache head_dim {cache_head_dim} != query head_dim {head_dim}",
    )
    _require(
        head_dim in SUPPORTED_HEAD_DIMS,
        f"query head_dim {head_dim} is not one of {SUPPORTED_HEAD_DIMS}",
    )
    _require(
        block_size in SUPPORTED_BLOCK_SIZES,
        f"key_cache block size {block_size} is not one of {SUPPORTED_BLOCK_SIZES}",
    )
    _require(
        num_kv_heads > 0 and num_q_heads % num_kv_heads == 0,
        f"query heads ({num_q_heads}) must be a multiple of key_cache heads ({num_kv_heads})",
    )
    _require(
        sliding_window is None or sliding_window >= 1,
        f"sliding_window must be >= 1, got {sliding_window}",
    )
    _require(softcap is None or softcap > 0, f"softcap must be > 0, got {softcap}")
    if out is not None:
        _require(
            out.shape == query.shape,
            f"out shape {tuple(out.shape)} != query shape {tuple(query.shape)}",
        )
    _require(
        num_kv_splits is None or num_kv_splits >= 1,
        f"num_kv_splits must be >= 1, got {num_kv_splits}",
    )

    num_seqs = seq_lens.shape[0]
    _require(
        query_start_loc.shape[0] == num_seqs + 1,
        f"query_start_loc has {query_start_loc.shape[0]} entries, expected num_seqs + 1 = "
        f"{num_seqs + 1}",
    )
    _require(
        block_table.shape[0] >= num_seqs,
        f"block_table has {block_table.shape[0]} rows for {num_seqs} sequences",
    )
    if batch_maxima is not None:
        max_query_len, max_seq_len = batch_maxima
        _require(
            0 <= max_query_len <= max_seq_len,
            f"max_query_len = {max_query_len} must be in [0, max_seq_len = {max_seq_len}]",
        )
    else:
        max_query_len, max_seq_len = _batch_maxima(query_start_loc, seq_lens, num_tokens)
    _require(
        block_table.shape[1] * block_size >= max_seq_len,
        f"block_table has {block_table.shape[1]} columns of {block_size} positions, "
        f"too few for seq_lens up to {max_seq_len}",
    )
    return max_query_len, max_seq_len


def _batch_maxima(
    query_start_loc: torch.Tensor, seq_lens: torch.Tensor, num_tokens: int
) -> tuple[int, int]:
    """(max q_len, max seq_len), checking each sequence's values on the host."""
    starts = query_start_loc.tolist()
    lens = seq_lens.tolist()
    _require(
        starts[0] == 0 and starts[-1] == num_tokens,
        f"query_start_loc must run from 0 to query.shape[0] = {num_tokens}, "
        f"got {starts[0]} .. {starts[-1]}",
    )
    q_lens = [end - start for start, end in itertools.pairwise(starts)]
    _require(min(q_lens, default=0) >= 0, "query_start_loc must be non-decreasing")
    for i, (q_len, seq_len) in enumerate(zip(q_lens, lens, strict=True)):
        _require(q_len <= seq_len, f"seq_lens[{i}] = {seq_len} is shorter than its {q_len} queries")
    return max(q_lens, default=0), max(lens, default=0)


def paged_attention(
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
    out: torch.Tensor | None = None,
    num_kv_splits: int | None = None,
    max_query_len: int | None = None,
    max_seq_len: int | None = None,
) -> torch.Tensor:
    """Causal attention of each sequence's new tokens over its paged KV cache.

    Shapes: query [num_tokens, num_q_heads, head_dim]; key_cache and value_cache
    [num_blocks, num_kv_heads, block_size, head_dim], any strides; block_table
    [num_seqs, max_blocks], seq_lens [num_seqs] (KV length including the new tokens) and
    query_start_loc [num_seqs + 1], all int32. Sequence i's queries are its last
    ``q_len_i`` positions. ``sliding_window=w`` limits a query at position p to positions
    p-w+1 .. p; ``softcap=c`` maps logits to c * tanh(logits / c) after scaling.

    ``num_kv_splits`` overrides the split-KV heuristic (tests force splitting with it).
    ``max_query_len`` and ``max_seq_len``, given together, are the batch's largest q_len
    and seq_len as the caller computed them on the host (once per batch, as vLLM's
    metadata does): the launcher then never reads the index tensors back, which would
    sync the device on every layer. The caller vouches for them; without them the
    launcher derives and checks them itself.
    Returns ``out`` (allocated when None) in the query's dtype.
    """
    if (max_query_len is None) != (max_seq_len is None):
        raise ValueError("max_query_len and max_seq_len must be given together")
    maxima = None if max_query_len is None else (max_query_len, max_seq_len)
    max_query_len, max_seq_len = _validate(
        query,
        key_cache,
        value_cache,
        block_table,
        seq_lens,
        query_start_loc,
        sliding_window,
        softcap,
        out,
        num_kv_splits,
        maxima,
    )
    num_tokens, num_q_heads, head_dim = query.shape
    num_kv_heads, block_size = key_cache.shape[1], key_cache.shape[2]
    num_seqs = seq_lens.shape[0]
    if out is None:
        out = torch.empty(query.shape, dtype=query.dtype, device=query.device)
    if num_tokens == 0:
        return out

    group = num_q_heads // num_kv_heads
    block_m, num_warps = choose_tile(head_dim, block_size, max_query_len, group)
    block_q = block_m // group
    block_dk = min(head_dim, MAX_BLOCK_DK)
    block_dv = min(head_dim, MAX_BLOCK_DV)
    num_tiles = num_tokens // block_q + num_seqs  # see _find_seq; surplus programs exit
    num_dv = head_dim // block_dv
    if num_kv_splits is None:
        num_kv_splits = choose_num_kv_splits(
            num_tiles * num_kv_heads * num_dv, max_seq_len, max_query_len
        )

    if num_kv_splits == 1:
        target, lse = out, out  # lse is unused (NUM_SPLITS == 1): any pointer will do
        target_split_stride, lse_strides = 0, (0, 0, 0)
    else:
        target = torch.empty(
            (num_kv_splits, *query.shape), dtype=torch.float32, device=query.device
        )
        lse = torch.empty(
            (num_kv_splits, num_tokens, num_q_heads), dtype=torch.float32, device=query.device
        )
        target_split_stride, lse_strides = target.stride(0), lse.stride()
    target_strides = target.stride()[-3:]

    _paged_attention_kernel[(num_tiles, num_kv_heads * num_dv, num_kv_splits)](
        target,
        lse,
        query,
        key_cache,
        value_cache,
        block_table,
        seq_lens,
        query_start_loc,
        scale,
        softcap if softcap is not None else 1.0,
        sliding_window if sliding_window is not None else NO_WINDOW,
        num_seqs,
        target_split_stride,
        *target_strides,
        *lse_strides,
        *query.stride(),
        *key_cache.stride(),
        *value_cache.stride(),
        *block_table.stride(),
        GROUP=group,
        HEAD_DIM=head_dim,
        BLOCK_SIZE=block_size,
        BLOCK_M=block_m,
        BLOCK_DK=block_dk,
        BLOCK_DV=block_dv,
        NUM_SPLITS=num_kv_splits,
        USE_SOFTCAP=softcap is not None,
        DOT_FP32=_INTERPRETED and query.dtype == torch.bfloat16,
        num_warps=num_warps,
    )
    if num_kv_splits > 1:
        _merge_splits_kernel[(num_tokens, num_q_heads)](
            out,
            target,
            lse,
            num_kv_splits,
            *out.stride(),
            *target.stride(),
            *lse.stride(),
            SPLITS_POW2=triton.next_power_of_2(num_kv_splits),
            HEAD_DIM=head_dim,
        )
    return out
