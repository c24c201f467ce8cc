"""Write a ModelOpt-format NVFP4 Hugging Face checkpoint from a bf16 one.

The output is what ``nvidia-modelopt``'s ``export_hf_checkpoint`` writes and what stock
vLLM loads with ``quantization="modelopt_fp4"``: per quantized linear layer ``weight``
(uint8 ``[out, in/2]``), ``weight_scale`` (float8_e4m3fn ``[out, in/16]``),
``weight_scale_2`` (fp32 scalar) and, for W4A4 only, ``input_scale`` (fp32 scalar);
``hf_quant_config.json`` and a ``quantization_config`` block in ``config.json``. Every
other tensor is copied unchanged, and so is every other file (tokenizer, templates).

Shards that vLLM fuses into one layer (q/k/v, gate/up) are quantized against one shared
global scale: vLLM keeps a single ``weight_scale_2`` per fused layer (the shards' max,
warning when they differ), and block scales computed against another shard's global
scale would then read back wrong. ModelOpt's export does the same.

The checkpoint is built in a temporary directory beside ``out`` and renamed into place
at the end, so a failure never leaves a half-written model where an engine would load it.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from switchyard.engine.quantization.calibration import (
    CALIBRATION_TEXT,
    InputStatistics,
    input_scales,
    input_statistics,
)
from switchyard.engine.quantization.recipes import Activations, Recipe
from switchyard.engine.quantization.rounding import WeightQuantizer, weight_quantizer
from switchyard.engine.quantization.sequential import sequential_gptq
from switchyard.engine.quantization.source import (
    SAFETENSORS_INDEX,
    QuantizeError,
    fused_group,
    global_scales,
    linear_modules,
    weight_files,
)
from switchyard.kernels.quant.reference import BLOCK_SIZE

log = logging.getLogger(__name__)

HF_QUANT_CONFIG = "hf_quant_config.json"
# Files of the source that describe the source itself and would be wrong in the output:
# the weights and config are rewritten, and the prepared-model manifest lists checksums
# of the bf16 files.
NOT_COPIED = frozenset({"config.json", SAFETENSORS_INDEX, "switchyard-manifest.json"})


@dataclass(frozen=True)
class QuantizeReport:
    out: Path
    recipe: str
    quant_algo: str
    quantized: tuple[str, ...]
    excluded: tuple[str, ...]
    # Bytes of the quantized layers' weights: bf16 in the source, packed codes + block
    # scales + global scale in the output.
    source_bytes: int
    quantized_bytes: int
    seconds: float

    @property
    def ratio(self) -> float:
        return self.quantized_bytes / self.source_bytes if self.source_bytes else 0.0


def check_output_dir(out: Path) -> None:
    """Refuse to write over anything: ``out`` must not exist, or be an empty directory."""
    if out.is_dir() and any(out.iterdir()):
        raise QuantizeError(f"output directory {out} exists and is not empty")
    if out.exists() and not out.is_dir():
        raise QuantizeError(f"output path {out} exists and is not a directory")


def plan(recipe: Recipe, modules: Iterable[str], tensors: set[str]) -> list[str]:
    """The modules ``recipe`` quantizes, checked against what vLLM and the file allow."""
    modules = list(modules)
    selected = [module for module in modules if recipe.selects(module)]
    if not selected:
        raise QuantizeError(f"recipe {recipe.name} matches none of the model's linear layers")
    chosen = set(selected)
    present = set(modules)
    for module in selected:
        if f"{module}.weight" not in tensors:
            raise QuantizeError(
                f"recipe {recipe.name} quantizes {module}, whose weight is not stored in the "
                "checkpoint (tied to another tensor, e.g. an LM head tied to the embeddings); "
                f"add {module!r} to the recipe's exclude list"
            )
        group = fused_group(module)
        partial = [m for m in group or () if m in present and m not in chosen]
        if partial:
            raise QuantizeError(
                f"recipe {recipe.name} quantizes {module} but not {', '.join(partial)}; vLLM "
                "fuses them into one layer, whose shards must share one precision"
            )
    return selected


def exclude_list(linear: list[str], selected: list[str]) -> list[str]:
    """The unquantized linear layers by name, as vLLM matches them (exactly, and per shard
    for fused layers)."""
    chosen = set(selected)
    return sorted(module for module in linear if module not in chosen)


def quant_configs(recipe: Recipe, exclude: list[str]) -> tuple[dict, dict]:
    """``hf_quant_config.json`` and config.json's ``quantization_config``, in the two
    layouts ModelOpt 0.47 writes (the second is its ``convert_hf_quant_config_format``)."""
    producer = {"name": "switchyard", "version": version("switchyard"), "recipe": recipe.name}
    hf_quant_config = {
        "producer": producer,
        "quantization": {
            "quant_algo": recipe.quant_algo,
            "kv_cache_quant_algo": None,
            "group_size": BLOCK_SIZE,
            "exclude_modules": exclude,
        },
    }
    scheme = {"dynamic": False, "num_bits": 4, "type": "float", "group_size": BLOCK_SIZE}
    group: dict = {"weights": scheme, "targets": ["Linear"]}
    if recipe.activations is Activations.NVFP4:
        group = {"input_activations": scheme, **group}
    quantization_config = {
        "config_groups": {"group_0": group},
        "ignore": exclude,
        "quant_algo": recipe.quant_algo,
        "producer": producer,
        "quant_method": "modelopt",
    }
    return hf_quant_config, quantization_config


def _copy_other_files(source: Path, staged: Path, files: list[str]) -> None:
    skip = NOT_COPIED | set(files)
    for path in sorted(source.iterdir()):
        if path.name in skip:
            continue
        if path.is_dir():
            shutil.copytree(path, staged / path.name)
        else:
            shutil.copy2(path, staged / path.name)


def _write_tensors(
    source: Path,
    staged: Path,
    files: list[str],
    scales: dict[str, torch.Tensor],
    quantize: WeightQuantizer,
    input_scales: dict[str, torch.Tensor] | None,
) -> tuple[dict[str, str], int, int]:
    """Quantize shard by shard; returns the new weight map and the bytes before/after."""
    weight_map: dict[str, str] = {}
    source_bytes = quantized_bytes = 0
    for file in files:
        out: dict[str, torch.Tensor] = {}
        with safe_open(source / file, "pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                tensor = handle.get_tensor(name)
                module = name.removesuffix(".weight")
                if name.endswith(".weight") and module in scales:
                    if tensor.shape[-1] % BLOCK_SIZE:
                        raise QuantizeError(
                            f"{module} has {tensor.shape[-1]} input features, not a multiple "
                            f"of {BLOCK_SIZE}; exclude it in the recipe"
                        )
                    packed, block_scales, global_scale = quantize(module, tensor, scales[module])
                    out[name] = packed
                    out[f"{module}.weight_scale"] = block_scales
                    out[f"{module}.weight_scale_2"] = global_scale.reshape(())
                    if input_scales is not None:
                        out[f"{module}.input_scale"] = input_scales[module].reshape(())
                    source_bytes += tensor.nbytes
                    quantized_bytes += packed.nbytes + block_scales.nbytes + 4
                else:
                    out[name] = tensor
        save_file(out, staged / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(out, file))
    return weight_map, source_bytes, quantized_bytes


def calibrate_recipe(source: Path, recipe: Recipe, modules: list[str]) -> InputStatistics:
    """Run ``recipe``'s calibration over the shipped text (Hessians only if its weight
    rounding uses them; with ``weights.sequential``, GPTQ runs layer by layer here)."""
    if recipe.calibration is None:
        raise QuantizeError(f"recipe {recipe.name} has no calibration settings")
    text = CALIBRATION_TEXT.read_text()
    if recipe.weights.sequential:
        return sequential_gptq(source, modules, recipe.calibration, text, recipe.weights)
    return input_statistics(
        source, modules, recipe.calibration, text, hessians=recipe.weights.calibrated
    )


def quantize_checkpoint(
    source: Path,
    recipe: Recipe,
    out: Path,
    calibrate: Callable[[Path, Recipe, list[str]], InputStatistics] | None = None,
) -> QuantizeReport:
    """Quantize the bf16 checkpoint in ``source`` under ``recipe`` into ``out``.

    ``calibrate`` measures what the recipe needs of the layers' inputs (amax for W4A4
    input scales, ``X^T X`` for calibrated weight rounding); it defaults to running the
    model over the shipped text.
    """
    started = time.perf_counter()
    out = out.expanduser().absolute()
    check_output_dir(out)
    if not (source / "config.json").is_file():
        raise QuantizeError(f"{source} is not a Hugging Face checkpoint (no config.json)")
    config = json.loads((source / "config.json").read_text())
    if "quantization_config" in config:
        raise QuantizeError(f"{source} is already quantized (config.json has quantization_config)")
    files = weight_files(source)
    tensors: set[str] = set()
    for file in files:
        with safe_open(source / file, "pt") as handle:
            tensors.update(handle.keys())
    linear = linear_modules(source)
    selected = plan(recipe, linear, tensors)
    excluded = exclude_list(linear, selected)
    scales = global_scales(source, files, selected)

    stats = activation_scales = None
    if recipe.calibration is not None:
        stats = (calibrate or calibrate_recipe)(source, recipe, selected)
        if recipe.activations is Activations.NVFP4:
            activation_scales = input_scales(stats, selected)
    quantize = weight_quantizer(recipe.weights, stats)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would make the model private to its writer
        weight_map, source_bytes, quantized_bytes = _write_tensors(
            source, staging, files, scales, quantize, activation_scales
        )
        if len(files) > 1:
            index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
            (staging / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2) + "\n")
        hf_quant_config, quantization_config = quant_configs(recipe, excluded)
        (staging / HF_QUANT_CONFIG).write_text(json.dumps(hf_quant_config, indent=2) + "\n")
        config["quantization_config"] = quantization_config
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        _copy_other_files(source, staging, files)
        check_output_dir(out)  # again: another process may have written there meanwhile
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report = QuantizeReport(
        out=out,
        recipe=recipe.name,
        quant_algo=recipe.quant_algo,
        quantized=tuple(selected),
        excluded=tuple(excluded),
        source_bytes=source_bytes,
        quantized_bytes=quantized_bytes,
        seconds=time.perf_counter() - started,
    )
    log.info(
        "quantized %d linear layers of %s with %s in %.1f s: %.1f MB -> %.1f MB (%.3fx)",
        len(selected),
        source,
        recipe.name,
        report.seconds,
        source_bytes / 1e6,
        quantized_bytes / 1e6,
        report.ratio,
    )
    return report
