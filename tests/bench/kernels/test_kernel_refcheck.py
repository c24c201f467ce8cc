"""The benchmark's inputs and reference check, on CPU: the ``--refcheck`` path of the GPU run.

Our kernel runs under Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET), so
batches are tiny; the shapes are the table's own, so every model's inputs are known to
be valid for our kernel, SDPA over gathered KV, and the reference alike.
"""

from __future__ import annotations

import pytest
import torch

from switchyard.bench.kernels import shapes
from switchyard.bench.kernels.backends import BACKENDS
from switchyard.bench.kernels.batch import TOLERANCE, make_batch, refcheck, reference_output
from switchyard.bench.kernels.shapes import MODELS, AttentionShape, Case

CPU_BACKENDS = ("ours", "sdpa")
# A window far shorter than the table's, so that tiny sequences cross it: its start falls
# inside a page, and decode, prefill and mixed batches all see it.
TINY_WINDOWED = AttentionShape(num_q_heads=4, num_kv_heads=2, head_dim=64, sliding_window=20)


def _check_backends(case: Case, dtype: torch.dtype) -> None:
    batch = make_batch(case, page_size=16, dtype=dtype, device="cpu")
    expected = reference_output(batch)
    for name in CPU_BACKENDS:
        output = BACKENDS[name]()(batch)()
        assert output.shape == batch.query.shape and output.dtype == dtype, name
        check = refcheck(output, expected)
        assert check.passed, f"{name}: relative error {check.relative_error:.2e}"


@pytest.mark.parametrize("model", list(MODELS))
def test_table_shapes_run_on_our_kernel_and_sdpa(model: str) -> None:
    # Mixed: a 3-token prefill chunk over 17 positions (two pages) beside a decode.
    _check_backends(Case(model, "mixed", batch=2, kv_len=17, chunk=3), torch.bfloat16)


@pytest.mark.parametrize("mode", shapes.MODES)
def test_sliding_window_batches(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODELS, "tiny-windowed", TINY_WINDOWED)
    _check_backends(Case("tiny-windowed", mode, batch=3, kv_len=45, chunk=8), torch.float16)


def test_batch_matches_its_case() -> None:
    case = Case("smollm2-135m", "mixed", batch=3, kv_len=40, chunk=5)
    batch = make_batch(case, page_size=16, dtype=torch.float16, device="cpu")
    assert batch.query.shape == (5 + 1 + 1, 9, 64)
    assert batch.key_cache.shape == batch.value_cache.shape == (3 * 3, 16, 3, 64)
    assert batch.query_start_loc.tolist() == [0, 5, 6, 7]
    assert batch.seq_lens.tolist() == [40, 40, 40]
    # Every page belongs to exactly one sequence.
    assert sorted(batch.block_table.flatten().tolist()) == list(range(9))
    for tensor in (batch.block_table, batch.seq_lens, batch.query_start_loc):
        assert tensor.dtype == torch.int32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_refcheck_fails_beyond_the_dtype_tolerance(dtype: torch.dtype) -> None:
    expected = torch.randn(8, 4, 64, generator=torch.Generator().manual_seed(0))
    tolerance = TOLERANCE[dtype]
    # Errors at half and twice the tolerance, along the reference itself.
    assert refcheck((expected * (1 + tolerance / 2)).to(dtype), expected).passed
    failing = refcheck((expected * (1 + 2 * tolerance)).to(dtype), expected)
    assert not failing.passed
    assert failing.relative_error == pytest.approx(2 * tolerance, rel=0.2)


def test_refcheck_fails_on_nan() -> None:
    expected = torch.ones(4, 2, 64)
    output = expected.to(torch.bfloat16)
    output[0, 0, 0] = float("nan")
    assert not refcheck(output, expected).passed
