"""Paged attention and the KV-cache write: the Triton kernels and their plain torch
references."""

from switchyard.kernels.attention.kv_cache import write_kv_cache
from switchyard.kernels.attention.paged_attention import paged_attention
from switchyard.kernels.attention.reference import (
    paged_attention_reference,
    write_kv_cache_reference,
)

__all__ = [
    "paged_attention",
    "paged_attention_reference",
    "write_kv_cache",
    "write_kv_cache_reference",
]
