"""The attention benchmark's grid and its FLOP and byte accounting, checked by hand."""

from __future__ import annotations

import pytest

from switchyard.bench.kernels.backends import BACKENDS
from switchyard.bench.kernels.shapes import (
    BACKEND_NAMES,
    MODELS,
    AttentionShape,
    Case,
    attention_bytes,
    attention_flops,
)

# 4 query heads over 2 KV heads, head_dim 8; one sequence of 2 new tokens over 5 positions
# and one decode over 2 positions.
LENS = [(2, 5), (1, 2)]


def test_flops_count_causal_and_windowed_positions() -> None:
    # Window 3: the queries at positions 3 and 4 see 3 keys each, the decode at 1 sees 2.
    windowed = AttentionShape(num_q_heads=4, num_kv_heads=2, head_dim=8, sliding_window=3)
    assert attention_flops(windowed, LENS) == 4 * 8 * 4 * (3 + 3 + 2)
    # No window: they see 4, 5 and 2 keys.
    causal = AttentionShape(num_q_heads=4, num_kv_heads=2, head_dim=8)
    assert attention_flops(causal, LENS) == 4 * 8 * 4 * (4 + 5 + 2)


def test_bytes_count_q_visible_kv_and_o() -> None:
    q_and_o = 2 * 3 * 4 * 8  # Q read and O written: 3 tokens x 4 heads x 8
    # Window 3: sequence 0's first query (position 3) sees from position 1, so positions
    # 1..4 are read; the decode sees positions 0..1. K and V, 2 KV heads x 8 each.
    windowed = AttentionShape(num_q_heads=4, num_kv_heads=2, head_dim=8, sliding_window=3)
    assert attention_bytes(windowed, LENS, element_size=2) == 2 * (q_and_o + 2 * (4 + 2) * 2 * 8)
    causal = AttentionShape(num_q_heads=4, num_kv_heads=2, head_dim=8)
    assert attention_bytes(causal, LENS, element_size=2) == 2 * (q_and_o + 2 * (5 + 2) * 2 * 8)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("decode", [(1, 100)] * 3),
        ("prefill", [(32, 100)] * 3),
        ("mixed", [(32, 100), (1, 100), (1, 100)]),
    ],
)
def test_case_lens_per_mode(mode: str, expected: list[tuple[int, int]]) -> None:
    assert Case("llama3-8b", mode, batch=3, kv_len=100, chunk=32).lens() == expected


def test_prefill_chunk_is_capped_by_the_kv_length() -> None:
    assert Case("llama3-8b", "prefill", batch=2, kv_len=20, chunk=32).lens() == [(20, 20)] * 2


def test_table_shapes_are_whole_gqa_groups() -> None:
    for name, shape in MODELS.items():
        assert shape.num_q_heads % shape.num_kv_heads == 0, name
        assert shape.group * shape.num_kv_heads == shape.num_q_heads, name


def test_every_named_backend_is_implemented() -> None:
    assert tuple(BACKENDS) == BACKEND_NAMES
