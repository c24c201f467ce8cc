"""Saved results: strict JSON whatever the figures, and the machine they were taken on."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from switchyard.bench import environment
from switchyard.bench.output import write_json
from switchyard.bench.serving.report import json_safe


def test_non_finite_numbers_become_valid_json(tmp_path: Path) -> None:
    document = {"rate": math.inf, "figures": [1.5, math.nan, -math.inf], "nested": {"x": 2}}
    assert json_safe(document) == {
        "rate": "inf",
        "figures": [1.5, None, "-inf"],
        "nested": {"x": 2},
    }
    path = tmp_path / "result.json"
    write_json(path, json_safe(document))
    assert json.loads(path.read_text())["rate"] == "inf"


def _fake_nvml(devices: list[tuple[str, int]]) -> SimpleNamespace:
    """NVML's calls as pynvml names them, answering for ``devices`` (name, bytes)."""
    state = {"initialized": False}

    def init() -> None:
        state["initialized"] = True

    def shutdown() -> None:
        state["initialized"] = False

    return SimpleNamespace(
        NVMLError=RuntimeError,
        nvmlInit=init,
        nvmlShutdown=shutdown,
        nvmlSystemGetDriverVersion=lambda: "570.86.15",
        nvmlDeviceGetCount=lambda: len(devices),
        nvmlDeviceGetHandleByIndex=lambda index: devices[index],
        nvmlDeviceGetName=lambda handle: handle[0],
        nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(total=handle[1]),
        state=state,
    )


def test_gpus_are_described_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = _fake_nvml([("NVIDIA H100 80GB HBM3", 85_520_809_984)] * 2)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    gpus = environment.gpus()
    assert (
        gpus == [{"name": "NVIDIA H100 80GB HBM3", "memory_gib": 79.6, "driver": "570.86.15"}] * 2
    )
    assert nvml.state["initialized"] is False  # shut down again


def test_no_nvml_driver_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = _fake_nvml([])

    def no_driver() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    nvml.nvmlInit = no_driver
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert environment.gpus() == []


def test_cpu_model_comes_from_cpuinfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654\n")
    monkeypatch.setattr(environment, "CPUINFO", cpuinfo)
    assert environment.cpu_model() == "AMD EPYC 9654"
    described = environment.machine_description()
    assert described["cpu"] == "AMD EPYC 9654"
    assert described["cpu_count"] >= described["cpu_affinity"] >= 1
