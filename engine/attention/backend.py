"""Switchyard's paged attention as a vLLM v1 attention backend (Backend / Builder / Impl).

vLLM hands each attention layer a KV view ``[num_blocks, num_kv_heads, block_size,
2 * head_size]`` whose last dimension holds K then V. Our kernel takes K and V caches
with arbitrary strides, so the two halves of that view go straight in: no copy, and
any physical layout vLLM picks works.

On CUDA the Triton kernels run (attention and the KV-cache write). On CPU (where vLLM's
build has no Triton backend) the same backend runs their plain torch references: slow,
but it exercises every piece of the integration (KV write, block tables, windows,
metadata) inside the real engine, which is what the CPU equivalence test checks against
vLLM's own CPU attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from vllm.config import VllmConfig
from vllm.logger import init_logger
from vllm.v1.attention.backend import (
    AttentionBackend,
    AttentionImpl,
    AttentionMetadataBuilder,
    AttentionType,
    CommonAttentionMetadata,
    MultipleOf,
)
from vllm.v1.kv_cache_interface import AttentionSpec

from switchyard.kernels.attention import (
    paged_attention,
    paged_attention_reference,
    write_kv_cache,
    write_kv_cache_reference,
)

# Under vLLM's logger: worker processes configure only that one, and the line saying
# which backend runs must reach their output.
log = init_logger(f"vllm.{__name__}")

SUPPORTED_HEAD_SIZES = [64, 128, 256, 512]


@dataclass
class SwitchyardAttentionMetadata:
    """Per-batch inputs of the kernel, built once per step and shared by every layer."""

    num_actual_tokens: int
    max_query_len: int
    max_seq_len: int
    query_start_loc: torch.Tensor
    seq_lens: torch.Tensor
    block_table: torch.Tensor
    slot_mapping: torch.Tensor


class SwitchyardAttentionMetadataBuilder(AttentionMetadataBuilder[SwitchyardAttentionMetadata]):
    def __init__(
        self,
        kv_cache_spec: AttentionSpec,
        layer_names: list[str],
        vllm_config: VllmConfig,
        device: torch.device,
    ) -> None:
        super().__init__(kv_cache_spec, layer_names, vllm_config, device)

    def build(
        self,
        common_prefix_len: int,
        common_attn_metadata: CommonAttentionMetadata,
        fast_build: bool = False,
    ) -> SwitchyardAttentionMetadata:
        common = common_attn_metadata
        return SwitchyardAttentionMetadata(
            num_actual_tokens=common.num_actual_tokens,
            max_query_len=common.max_query_len,
            max_seq_len=common.max_seq_len,
            query_start_loc=common.query_start_loc.to(torch.int32),
            seq_lens=common.seq_lens.to(torch.int32),
            block_table=common.block_table_tensor.to(torch.int32),
            slot_mapping=common.slot_mapping,
        )


class SwitchyardAttentionImpl(AttentionImpl[SwitchyardAttentionMetadata]):
    def __init__(
        self,
        num_heads: int,
        head_size: int,
        scale: float,
        num_kv_heads: int,
        alibi_slopes: list[float] | None,
        sliding_window: int | None,
        kv_cache_dtype: str,
        logits_soft_cap: float | None = None,
        attn_type: str = AttentionType.DECODER,
        kv_sharing_target_layer_name: str | None = None,
        sinks: torch.Tensor | None = None,
    ) -> None:
        unsupported = []
        if alibi_slopes is not None:
            unsupported.append("ALiBi")
        if sinks is not None:
            unsupported.append("attention sinks")
        if attn_type != AttentionType.DECODER:
            unsupported.append(f"attention type {attn_type}")
        if kv_cache_dtype not in ("auto", "bfloat16", "float16"):
            unsupported.append(f"KV cache dtype {kv_cache_dtype}")
        if unsupported:
            raise NotImplementedError(
                f"the switchyard attention backend does not support {', '.join(unsupported)}"
            )
        self.num_heads = num_heads
        self.head_size = head_size
        self.scale = float(scale)
        self.num_kv_heads = num_kv_heads
        self.sliding_window = sliding_window
        self.softcap = logits_soft_cap or None
        self.kv_sharing_target_layer_name = kv_sharing_target_layer_name
        log.info_once("switchyard attention backend in use (head_size %d)", head_size)

    def _split_cache(self, kv_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return kv_cache[..., : self.head_size], kv_cache[..., self.head_size :]

    def do_kv_cache_update(
        self,
        layer: torch.nn.Module,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        slot_mapping: torch.Tensor,
    ) -> None:
        if self.kv_sharing_target_layer_name is not None:
            return  # this layer reads another layer's cache and writes none
        key_cache, value_cache = self._split_cache(kv_cache)
        num_tokens = slot_mapping.shape[0]  # key and value may carry padding rows beyond
        args = (key[:num_tokens], value[:num_tokens], key_cache, value_cache, slot_mapping)
        if key.is_cuda:
            write_kv_cache(*args)  # skips padding slots on the device: no sync per layer
        else:
            write_kv_cache_reference(*args)

    def forward(
        self,
        layer: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        attn_metadata: SwitchyardAttentionMetadata | None,
        output: torch.Tensor,
        output_scale: torch.Tensor | None = None,
        output_block_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if output_scale is not None or output_block_scale is not None:
            raise NotImplementedError("fused output quantization is not supported")
        if attn_metadata is None:  # profiling / warm-up run
            return output
        tokens = attn_metadata.num_actual_tokens
        key_cache, value_cache = self._split_cache(kv_cache)
        query = query[:tokens].view(tokens, self.num_heads, self.head_size)
        out = output[:tokens].view(tokens, self.num_heads, self.head_size)
        args = (
            query,
            key_cache,
            value_cache,
            attn_metadata.block_table,
            attn_metadata.seq_lens,
            attn_metadata.query_start_loc,
        )
        options = dict(scale=self.scale, sliding_window=self.sliding_window, softcap=self.softcap)
        if query.is_cuda:
            # The maxima come from the host (computed once per batch), so no layer syncs.
            maxima = dict(
                max_query_len=attn_metadata.max_query_len, max_seq_len=attn_metadata.max_seq_len
            )
            paged_attention(*args, out=out, **options, **maxima)
        else:
            out.copy_(paged_attention_reference(*args, **options))
        return output


class SwitchyardAttentionBackend(AttentionBackend):
    """Selected on GPU with ``switchyard engine serve --attention-backend switchyard``."""

    forward_includes_kv_cache_update: bool = False
    supported_dtypes: ClassVar[list[torch.dtype]] = [torch.float16, torch.bfloat16]
    supported_kv_cache_dtypes: ClassVar[list[str]] = ["auto", "bfloat16", "float16"]

    @staticmethod
    def get_name() -> str:
        return "CUSTOM"

    @staticmethod
    def get_impl_cls() -> type[SwitchyardAttentionImpl]:
        return SwitchyardAttentionImpl

    @staticmethod
    def get_builder_cls() -> type[SwitchyardAttentionMetadataBuilder]:
        return SwitchyardAttentionMetadataBuilder

    @staticmethod
    def get_supported_kernel_block_sizes(kv_cache_spec=None) -> list[int | MultipleOf]:
        return [16, 32, 64]

    @classmethod
    def get_supported_head_sizes(cls) -> list[int]:
        return SUPPORTED_HEAD_SIZES

    @classmethod
    def supports_sliding_window(cls) -> bool:
        return True

    @classmethod
    def supports_attn_type(cls, attn_type: str) -> bool:
        return attn_type == AttentionType.DECODER


class SwitchyardCPUAttentionBackend(SwitchyardAttentionBackend):
    """Stands in for vLLM's CPU backend (the CPU platform ignores a selected custom
    backend), running the torch reference; float32 too, as SmolLM2 is served in it."""

    supported_dtypes: ClassVar[list[torch.dtype]] = [torch.float16, torch.bfloat16, torch.float32]

    @staticmethod
    def get_name() -> str:
        return "CPU_ATTN"

    @staticmethod
    def get_supported_kernel_block_sizes(kv_cache_spec=None) -> list[int | MultipleOf]:
        return [MultipleOf(16)]
