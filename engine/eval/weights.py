"""How many bytes a checkpoint's weights take, and what quantization saved.

Read from the safetensors headers alone (the tensors are not loaded), so it costs
milliseconds for any checkpoint size. Quantized layers are the ModelOpt NVFP4 ones: a
packed ``uint8`` ``weight`` ``[out, in/2]`` next to its ``weight_scale``. Their bytes count
the packed weight and every scale (``weight_scale``, ``weight_scale_2``, ``input_scale``);
their bf16 equivalent is the unpacked weight at 2 bytes per element, what the same layers
take in a bf16 checkpoint.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

QUANT_TENSOR_SUFFIXES = ("weight", "weight_scale", "weight_scale_2", "input_scale")
BF16_BYTES = 2
# Two E2M1 values per packed byte.
VALUES_PER_PACKED_BYTE = 2


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class WeightBytes:
    total: int
    # None when the checkpoint has no quantization_config.
    quantized_layers: int | None = None
    quantized_layers_bf16: int | None = None
    quantized_layer_count: int = 0

    @property
    def quantized_ratio(self) -> float | None:
        if not self.quantized_layers_bf16:
            return None
        return self.quantized_layers / self.quantized_layers_bf16


def read_header(path: Path) -> dict[str, TensorInfo]:
    """The tensor table of one safetensors file: an 8-byte little-endian header length,
    then a JSON object naming each tensor's dtype, shape and byte range."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        tensors[name] = TensorInfo(entry["dtype"], tuple(entry["shape"]), end - begin)
    return tensors


def checkpoint_weight_bytes(directory: Path) -> WeightBytes:
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{directory} holds no *.safetensors files")
    tensors: dict[str, TensorInfo] = {}
    for path in files:
        tensors.update(read_header(path))
    total = sum(t.nbytes for t in tensors.values())
    config = json.loads((directory / "config.json").read_text())
    if "quantization_config" not in config:
        return WeightBytes(total=total)
    layers = [
        name.removesuffix(".weight_scale")
        for name in tensors
        if name.endswith(".weight_scale") and name.removesuffix("_scale") in tensors
    ]
    quantized = bf16 = 0
    for layer in layers:
        weight = tensors[f"{layer}.weight"]
        if weight.dtype != "U8":
            raise ValueError(
                f"{layer}.weight has a weight_scale but dtype {weight.dtype}, not packed U8"
            )
        quantized += sum(
            tensors[f"{layer}.{suffix}"].nbytes
            for suffix in QUANT_TENSOR_SUFFIXES
            if f"{layer}.{suffix}" in tensors
        )
        bf16 += weight.nbytes * VALUES_PER_PACKED_BYTE * BF16_BYTES
    return WeightBytes(
        total=total,
        quantized_layers=quantized,
        quantized_layers_bf16=bf16,
        quantized_layer_count=len(layers),
    )
