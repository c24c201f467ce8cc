"""Sequential GPTQ: quantize the decoder one layer at a time, each GPTQ step against the
Hessian of the inputs that the already-quantized model produces there (Frantar et al.,
2022, as GPTQ is usually run).

One bf16 pass of the model over the calibration text yields the first decoder layer's
inputs and the arguments every layer is called with (attention masks, rotary
embeddings: they depend on the tokens only). Then, layer by layer, the layer is run on
its inputs; the quantized linear layers it reaches first (q/k/v together, then o, gate
and up together, then down) are rounded by GPTQ against the Hessian of what they saw,
and their weights replaced by the rounded ones; and so on until the layer is done, when
its outputs become the next layer's inputs. So every layer is fitted to what the
quantized layers before it actually give it, and partly corrects their error, where
one-pass GPTQ fits every layer to the bf16 model's activations.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from switchyard.engine.quantization.calibration import (
    InputStatistics,
    check_all_seen,
    forward_batches,
    hessian_key,
    load_model,
    recording,
)
from switchyard.engine.quantization.recipes import Calibration, Weights
from switchyard.engine.quantization.rounding import WeightQuantizer, weight_quantizer
from switchyard.engine.quantization.source import (
    QuantizeError,
    fused_group,
    global_scales,
    weight_files,
)
from switchyard.kernels.quant.reference import nvfp4_dequantize_reference

log = logging.getLogger(__name__)

DECODER_LAYER = re.compile(r"^(.+?)\.(\d+)\.")

# One decoder layer's call for one calibration sequence: its hidden-state input and the
# keyword arguments the model passed along with it.
LayerCall = tuple[torch.Tensor, dict[str, object]]


def decoder_layers(model: torch.nn.Module, modules: list[str]) -> tuple[str, torch.nn.ModuleList]:
    """The name and the ``ModuleList`` of the decoder layers that hold all of ``modules``."""
    lists = set()
    for module in modules:
        match = DECODER_LAYER.match(module)
        if match is None:
            raise QuantizeError(f"sequential GPTQ quantizes decoder layers only, not {module}")
        lists.add(match.group(1))
    if len(lists) != 1:
        raise QuantizeError(f"sequential GPTQ wants one stack of layers, not {sorted(lists)}")
    name = lists.pop()
    layers = model.get_submodule(name)
    if not isinstance(layers, torch.nn.ModuleList):
        raise QuantizeError(f"{name} is not a list of decoder layers")
    return name, layers


def layer_calls(
    model: torch.nn.Module, layers: torch.nn.ModuleList, batches: list[torch.Tensor]
) -> tuple[list[torch.Tensor], list[list[dict[str, object]]]]:
    """Run the bf16 model once over ``batches``: the first layer's hidden-state input per
    batch, and every layer's keyword arguments per batch (``[layer][batch]``)."""
    inputs: list[torch.Tensor] = []
    arguments: list[list[dict[str, object]]] = [[] for _ in layers]

    def capture(index: int):
        def hook(_module: torch.nn.Module, args: tuple, kwargs: dict[str, object]) -> None:
            if len(args) != 1:
                raise QuantizeError(f"decoder layer {index} takes {len(args)} positional inputs")
            if index == 0:
                inputs.append(args[0].detach())
            arguments[index].append(kwargs)

        return hook

    handles = [
        layer.register_forward_pre_hook(capture(index), with_kwargs=True)
        for index, layer in enumerate(layers)
    ]
    try:
        with torch.no_grad():
            for batch in batches:
                # No KV cache: the layers are called again, and must not append to one.
                model(input_ids=batch, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return inputs, arguments


def run_layer(
    layer: torch.nn.Module, inputs: list[torch.Tensor], arguments: list[dict[str, object]]
) -> list[torch.Tensor]:
    with torch.no_grad():
        outputs = [layer(x, **kwargs) for x, kwargs in zip(inputs, arguments, strict=True)]
    if not all(isinstance(output, torch.Tensor) for output in outputs):
        raise QuantizeError("a decoder layer returned something other than its hidden states")
    return outputs


def quantize_in_place(
    model: torch.nn.Module,
    group: list[str],
    quantize: WeightQuantizer,
    scales: dict[str, torch.Tensor],
    stats: InputStatistics,
) -> None:
    """Round ``group``'s weights, keep the result in ``stats.rounded`` and put the
    rounded weights into the model, for the layers downstream to see."""
    for name in group:
        weight = model.get_submodule(name).weight
        parts = quantize(name, weight.detach(), scales[name])
        stats.rounded[name] = parts
        weight.data.copy_(nvfp4_dequantize_reference(*parts, weight.dtype))


def sequential_gptq(
    source: Path, modules: list[str], calibration: Calibration, text: str, weights: Weights
) -> InputStatistics:
    """GPTQ-round ``modules`` of ``source`` layer by layer over ``text``: the statistics
    of what each module saw (from the quantized layers before it), with every weight
    already rounded in ``rounded``."""
    tokenizer, model = load_model(source)
    scales = global_scales(source, weight_files(source), modules)
    list_name, layers = decoder_layers(model, modules)
    batches = forward_batches(tokenizer, text, calibration)
    hidden, arguments = layer_calls(model, layers, batches)
    stats = InputStatistics()
    for index, layer in enumerate(layers):
        prefix = f"{list_name}.{index}."
        pending = [module for module in modules if module.startswith(prefix)]
        while pending:
            step = InputStatistics()
            with recording(model, pending, step, hessians=True):
                run_layer(layer, hidden, arguments[index])
            check_all_seen(step, pending)
            first = next(iter(step.amax))  # the earliest of the pending modules to run
            group = [m for m in fused_group(first) or (first,) if m in pending]
            stats.hessians[hessian_key(first)] = step.hessian(first)
            stats.amax.update({m: step.amax[m] for m in group})
            quantize = weight_quantizer(weights, stats)
            quantize_in_place(model, group, quantize, scales, stats)
            pending = [m for m in pending if m not in group]
        hidden = run_layer(layer, hidden, arguments[index])
        arguments[index] = []  # no longer needed
    tokens = sum(batch.numel() for batch in batches)
    log.info("sequential GPTQ: %d layers over %d tokens", len(stats.rounded), tokens)
    return stats
