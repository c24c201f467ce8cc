"""Where benchmark numbers were taken, saved beside them so results are compared knowingly."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """Installed versions of ``packages``; those not installed are left out."""
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_model() -> str | None:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def gpus() -> list[dict[str, Any]]:
    """Name, memory and driver of each NVIDIA GPU NVML sees; empty without NVML or GPUs."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # no driver, no library: no GPU to report
        return []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total
            found.append(
                {
                    "name": pynvml.nvmlDeviceGetName(handle),
                    "memory_gib": round(memory / 2**30, 1),
                    "driver": driver,
                }
            )
        return found
    finally:
        pynvml.nvmlShutdown()


def machine_description() -> dict[str, Any]:
    """CPU model, logical CPUs (all, and those this process may run on) and GPUs."""
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "gpus": gpus(),
    }
