"""What a saved kernel benchmark result says about where and how it was taken."""

from __future__ import annotations

import sys

import pytest

from switchyard.bench.kernels.attention import BenchResult, Settings, document

SETTINGS = Settings(
    models=("llama3-8b",),
    mode="decode",
    batches=(1,),
    kv_lens=(1024,),
    chunk=512,
    page_size=16,
    dtype="bf16",
    backends=("ours",),
    refcheck=True,
    warmup_ms=1.0,
    rep_ms=2.0,
    seed=0,
)
H100 = {"name": "NVIDIA H100 80GB HBM3", "memory_gib": 79.6, "driver": "570.86.15"}


def test_document_records_command_device_driver_and_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = ["switchyard", "bench", "kernels", "attention", "--refcheck"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr("switchyard.bench.kernels.attention.gpus", lambda: [H100])
    meta = document(SETTINGS, BenchResult(device=H100["name"], copy_bw_tbps=2.9))
    assert meta["command"] == argv
    assert meta["device"] == H100["name"]
    assert meta["environment"]["gpus"] == [H100]
    assert {"torch", "triton"} <= set(meta["environment"]["packages"])
    assert meta["settings"]["refcheck"] is True
