"""What a bf16 source checkpoint holds, as quantization sees it: its weight files, its
linear layers, the shards vLLM fuses, and each quantized layer's global scale. Read by
both calibration and the checkpoint writer, so it depends on neither."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from switchyard.kernels.quant.reference import global_scale_from_amax

# vLLM's packed_modules_mapping for the decoder families we quantize (Llama, Gemma 3 and
# most others): a fused layer's name -> the checkpoint modules it is built from.
FUSED_SHARDS: dict[str, tuple[str, ...]] = {
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "gate_up_proj": ("gate_proj", "up_proj"),
}
SAFETENSORS_INDEX = "model.safetensors.index.json"


class QuantizeError(ValueError):
    """Input that cannot be quantized; the message names the problem."""


def weight_files(source: Path) -> list[str]:
    """The checkpoint's safetensors files, in the order of its index (if sharded)."""
    index = source / SAFETENSORS_INDEX
    if index.is_file():
        return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    if (source / "model.safetensors").is_file():
        return ["model.safetensors"]
    raise QuantizeError(f"{source} has no model.safetensors or {SAFETENSORS_INDEX}")


def linear_modules(source: Path) -> list[str]:
    """Names of the model's ``nn.Linear`` layers, from its architecture on the meta device
    (no weights read), so that "every linear layer" means exactly that."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(source)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]


def fused_group(module: str) -> tuple[str, ...] | None:
    """The sibling modules vLLM fuses ``module`` with (itself included), or None."""
    parent, _, leaf = module.rpartition(".")
    for shards in FUSED_SHARDS.values():
        if leaf in shards:
            return tuple(f"{parent}.{shard}" for shard in shards)
    return None


def global_scales(source: Path, files: list[str], selected: list[str]) -> dict[str, torch.Tensor]:
    """Each quantized module's global scale: its own amax / (6 * 448), or for fused
    shards the largest of theirs."""
    amax: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(source / file, "pt") as handle:
            names = set(handle.keys())
            for module in selected:
                if f"{module}.weight" in names:
                    amax[module] = handle.get_tensor(f"{module}.weight").abs().amax().float()
    scales = {}
    for module in selected:
        group = [m for m in fused_group(module) or (module,) if m in amax]
        scales[module] = global_scale_from_amax(torch.stack([amax[m] for m in group]).amax())
    return scales
