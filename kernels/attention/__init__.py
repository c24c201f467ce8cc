"""Paged attention: the Triton kernel and its plain torch reference."""

from switchyard.kernels.attention.paged_attention import paged_attention
from switchyard.kernels.attention.reference import paged_attention_reference

__all__ = ["paged_attention", "paged_attention_reference"]
