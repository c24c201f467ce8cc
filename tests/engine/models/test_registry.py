"""The embedded models' serving dtypes: fp32 where vLLM's CPU path needs it, and on a GPU
a dtype our attention backend accepts."""

from __future__ import annotations

import pytest
import torch

from switchyard.engine.attention.backend import (
    SwitchyardAttentionBackend,
    SwitchyardCPUAttentionBackend,
)
from switchyard.engine.models.registry import EMBEDDED_MODELS


def test_smollm2_is_served_in_float32_on_cpu_and_bfloat16_on_gpu() -> None:
    smollm = EMBEDDED_MODELS["smollm2-135m-instruct"]
    assert smollm.serving_dtype(on_cpu=True) == "float32"
    assert smollm.serving_dtype(on_cpu=False) == "bfloat16"


def test_gemma_is_served_in_bfloat16_everywhere() -> None:
    gemma = EMBEDDED_MODELS["gemma-3-270m"]
    assert gemma.serving_dtype(on_cpu=True) == gemma.serving_dtype(on_cpu=False) == "bfloat16"


@pytest.mark.parametrize("name", sorted(EMBEDDED_MODELS))
@pytest.mark.parametrize(
    ("on_cpu", "backend"),
    [(True, SwitchyardCPUAttentionBackend), (False, SwitchyardAttentionBackend)],
    ids=["cpu", "gpu"],
)
def test_our_attention_backend_accepts_the_serving_dtype(
    name: str, on_cpu: bool, backend: type
) -> None:
    dtype = getattr(torch, EMBEDDED_MODELS[name].serving_dtype(on_cpu=on_cpu))
    assert dtype in backend.supported_dtypes
