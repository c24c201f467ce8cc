"""The attention backends the benchmark compares, each behind the same two steps.

A backend is a loader that imports its package (lazily: vLLM and FlashInfer are optional
here, and ``kernels/`` never imports vLLM) and returns ``prepare``. ``prepare(batch)``
does what a serving engine does once per batch (plans, metadata, output buffers, for
SDPA the gather of the paged KV) and returns ``run``, the per-layer call: only ``run``
is timed, and its return value is the output that the reference check reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from switchyard.bench.kernels.batch import AttentionBatch
from switchyard.bench.kernels.shapes import visible_start

Run = Callable[[], torch.Tensor]
Prepare = Callable[[AttentionBatch], Run]

# vLLM's default VLLM_FLASHINFER_WORKSPACE_BUFFER_SIZE.
FLASHINFER_WORKSPACE_BYTES = 394 * 1024 * 1024


class BackendUnavailable(Exception):
    """The backend's package cannot be imported here; the benchmark skips it with a note."""


def _ours() -> Prepare:
    from switchyard.kernels.attention import paged_attention

    def prepare(batch: AttentionBatch) -> Run:
        # Our kernel takes [blocks, kv_heads, page, dim] with any strides: a view suffices.
        key_cache = batch.key_cache.transpose(1, 2)
        value_cache = batch.value_cache.transpose(1, 2)
        out = torch.empty_like(batch.query)

        def run() -> torch.Tensor:
            return paged_attention(
                batch.query,
                key_cache,
                value_cache,
                batch.block_table,
                batch.seq_lens,
                batch.query_start_loc,
                scale=batch.shape.softmax_scale,
                sliding_window=batch.shape.sliding_window,
                out=out,
                # As the engine calls it: maxima from the host, no readback per call.
                max_query_len=batch.max_q_len,
                max_seq_len=batch.max_seq_len,
            )

        return run

    return prepare


@dataclass
class _SdpaGroup:
    """Sequences of one (q_len, seq_len), gathered for one batched SDPA call."""

    query: torch.Tensor  # [n, kv_heads, group * q_len, dim]: GQA folded into the rows
    key: torch.Tensor  # [n, kv_heads, span, dim]: only the positions some query sees
    value: torch.Tensor
    mask: torch.Tensor | None  # [group * q_len, span], True = attend; None when all are
    tokens: torch.Tensor  # the rows of the batch's output these queries fill
    q_len: int


def _gather(
    cache: torch.Tensor, block_table: torch.Tensor, seqs: list[int], start: int, end: int
) -> torch.Tensor:
    """Positions start..end-1 of each sequence's pages, contiguous: [n, kv_heads, span, dim].

    Filled one sequence at a time, so the gather needs little beyond its result.
    """
    _, page, kv_heads, dim = cache.shape
    first, last = start // page, -(-end // page)
    out = torch.empty(
        (len(seqs), kv_heads, end - start, dim), dtype=cache.dtype, device=cache.device
    )
    for j, i in enumerate(seqs):
        positions = cache[block_table[i, first:last].long()].flatten(0, 1)
        out[j] = positions[start - first * page : end - first * page].transpose(0, 1)
    return out


def _sdpa_group(batch: AttentionBatch, seqs: list[int], q_len: int, seq_len: int) -> _SdpaGroup:
    shape = batch.shape
    group, kv_heads, dim = shape.group, shape.num_kv_heads, shape.head_dim
    start = visible_start(q_len, seq_len, shape.sliding_window)
    firsts = batch.query_start_loc.tolist()
    key = _gather(batch.key_cache, batch.block_table, seqs, start, seq_len)
    value = _gather(batch.value_cache, batch.block_table, seqs, start, seq_len)
    query = torch.stack([batch.query[firsts[i] : firsts[i] + q_len] for i in seqs])
    query = query.view(len(seqs), q_len, kv_heads, group, dim).permute(0, 2, 3, 1, 4)
    device = batch.query.device
    q_pos = torch.arange(seq_len - q_len, seq_len, device=device)[:, None]
    k_pos = torch.arange(start, seq_len, device=device)[None, :]
    visible = k_pos <= q_pos
    if shape.sliding_window is not None:
        visible &= k_pos > q_pos - shape.sliding_window
    tokens = torch.cat([torch.arange(firsts[i], firsts[i] + q_len, device=device) for i in seqs])
    return _SdpaGroup(
        query=query.reshape(len(seqs), kv_heads, group * q_len, dim),
        key=key,
        value=value,
        mask=None if bool(visible.all()) else visible.repeat(group, 1),
        tokens=tokens,
        q_len=q_len,
    )


def _sdpa() -> Prepare:
    def prepare(batch: AttentionBatch) -> Run:
        """torch SDPA over KV gathered into contiguous tensors (the gather is not timed).

        Sequences of equal (q_len, seq_len) share one batched call. GQA is folded into
        the query rows (a KV head's group of query heads becomes group * q_len rows), so
        K and V are never repeated per query head and any SDPA kernel applies.
        """
        shape = batch.shape
        by_lens: dict[tuple[int, int], list[int]] = {}
        for i, lens in enumerate(batch.lens):
            by_lens.setdefault(lens, []).append(i)
        groups = [_sdpa_group(batch, seqs, *lens) for lens, seqs in by_lens.items()]
        out = torch.empty_like(batch.query)

        def run() -> torch.Tensor:
            for g in groups:
                rows = F.scaled_dot_product_attention(
                    g.query, g.key, g.value, attn_mask=g.mask, scale=shape.softmax_scale
                )
                n = rows.shape[0]
                rows = rows.view(n, shape.num_kv_heads, shape.group, g.q_len, shape.head_dim)
                rows = rows.permute(0, 3, 1, 2, 4).reshape(n * g.q_len, shape.num_q_heads, -1)
                out.index_copy_(0, g.tokens, rows)
            return out

        return run

    return prepare


def _vllm_triton() -> Prepare:
    try:
        from vllm.v1.attention.backends.triton_attn import (
            MIN_LAUNCH_GRID_SIZE_2D,
            NUM_PAR_SOFTMAX_SEGMENTS,
        )
        from vllm.v1.attention.ops.triton_unified_attention import unified_attention
    except Exception as error:  # not only ImportError: a build for another torch fails anyhow
        raise BackendUnavailable(f"vLLM's Triton unified attention: {error!r}") from None

    def prepare(batch: AttentionBatch) -> Run:
        """Called as vLLM's TritonAttentionImpl calls it, 3D split-KV decode path included."""
        shape = batch.shape
        # vLLM's metadata builder: decode batches of at most this many sequences take the
        # 3D (split-KV) kernel, whose scratch buffers have a row per token.
        seq_threshold_3d = MIN_LAUNCH_GRID_SIZE_2D // shape.num_kv_heads
        rows = min(batch.query.shape[0], seq_threshold_3d)
        head_dim_padded = 1 << (shape.head_dim - 1).bit_length()
        scratch = (rows, shape.num_q_heads, NUM_PAR_SOFTMAX_SEGMENTS)
        device = batch.query.device
        segm_output = torch.empty((*scratch, head_dim_padded), dtype=torch.float32, device=device)
        segm_max = torch.empty(scratch, dtype=torch.float32, device=device)
        segm_expsum = torch.empty(scratch, dtype=torch.float32, device=device)
        window = shape.sliding_window
        out = torch.empty_like(batch.query)

        def run() -> torch.Tensor:
            unified_attention(
                q=batch.query,
                k=batch.key_cache,
                v=batch.value_cache,
                out=out,
                cu_seqlens_q=batch.query_start_loc,
                max_seqlen_q=batch.max_q_len,
                seqused_k=batch.seq_lens,
                max_seqlen_k=batch.max_seq_len,
                softmax_scale=shape.softmax_scale,
                causal=True,
                window_size=(window - 1, 0) if window is not None else (-1, -1),
                block_table=batch.block_table,
                softcap=0,
                q_descale=None,
                k_descale=None,
                v_descale=None,
                seq_threshold_3D=seq_threshold_3d,
                num_par_softmax_segments=NUM_PAR_SOFTMAX_SEGMENTS,
                softmax_segm_output=segm_output,
                softmax_segm_max=segm_max,
                softmax_segm_expsum=segm_expsum,
            )
            return out

        return run

    return prepare


def _flashinfer() -> Prepare:
    try:
        import flashinfer
    except Exception as error:  # as for vLLM: any failure to import means "not here"
        raise BackendUnavailable(f"FlashInfer: {error!r}") from None

    def prepare(batch: AttentionBatch) -> Run:
        """The decode wrapper for all-decode batches, the prefill wrapper otherwise (as vLLM).

        ``plan`` runs here, once per batch; its CSR page table comes from the block table.
        """
        shape, page = batch.shape, batch.page_size
        device = batch.query.device
        counts = [-(-seq_len // page) for _, seq_len in batch.lens]
        indptr = torch.tensor([0, *counts], dtype=torch.int32).cumsum(0, dtype=torch.int32)
        indices = torch.cat([batch.block_table[i, :n] for i, n in enumerate(counts)])
        last_page_len = torch.tensor(
            [seq_len - (n - 1) * page for (_, seq_len), n in zip(batch.lens, counts, strict=True)],
            dtype=torch.int32,
        )
        window = shape.sliding_window
        options = {
            "window_left": window - 1 if window is not None else -1,
            "sm_scale": shape.softmax_scale,
            "q_data_type": batch.query.dtype,
            "kv_data_type": batch.key_cache.dtype,
        }
        geometry = (shape.num_q_heads, shape.num_kv_heads, shape.head_dim, page)
        workspace = torch.zeros(FLASHINFER_WORKSPACE_BYTES, dtype=torch.uint8, device=device)
        if batch.max_q_len == 1:
            wrapper = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
                workspace, "NHD", use_tensor_cores=True
            )
            wrapper.plan(indptr, indices, last_page_len, *geometry, **options)
        else:
            wrapper = flashinfer.BatchPrefillWithPagedKVCacheWrapper(workspace, "NHD")
            qo_indptr = batch.query_start_loc.cpu()
            wrapper.plan(
                qo_indptr, indptr, indices, last_page_len, *geometry, causal=True, **options
            )
        kv_cache = (batch.key_cache, batch.value_cache)
        out = torch.empty_like(batch.query)

        def run() -> torch.Tensor:
            return wrapper.run(batch.query, kv_cache, out=out)

        return run

    return prepare


BACKENDS: dict[str, Callable[[], Prepare]] = {
    "ours": _ours,
    "sdpa": _sdpa,
    "vllm-triton": _vllm_triton,
    "flashinfer": _flashinfer,
}
