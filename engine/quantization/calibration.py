"""Activation scales for W4A4 recipes: run the bf16 model over the shipped calibration text
and record the largest absolute input each quantized linear layer sees.

An NVFP4 activation is quantized at run time in 16-element blocks whose E4M3 block scales
are relative to one static per-tensor scale, ``input_scale = amax / (6 * 448)``, as for
weights. ModelOpt's "max" calibration measures amax the same way, with quantization off.
Every sequence starts with the tokens the tokenizer puts in front of any prompt (Gemma's
``<bos>``): served prompts start with them too, and they carry some of the largest
activations of the whole model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from switchyard.engine.quantization.checkpoint import QuantizeError, fused_group
from switchyard.engine.quantization.recipes import Calibration, Recipe
from switchyard.kernels.quant.reference import global_scale_from_amax

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

CALIBRATION_TEXT = Path(__file__).resolve().parent / "data" / "calibration.txt"


def token_batches(
    tokenizer: PreTrainedTokenizerBase, text: str, calibration: Calibration
) -> list[torch.Tensor]:
    """``text`` as sequences of at most ``sequence_length`` tokens, ``max_tokens`` of text
    in all, each led by the tokenizer's own leading special tokens."""
    lead = tokenizer("")["input_ids"]
    body = tokenizer(text, add_special_tokens=False)["input_ids"][: calibration.max_tokens]
    step = calibration.sequence_length - len(lead)
    return [
        torch.tensor([lead + body[start : start + step]]) for start in range(0, len(body), step)
    ]


def input_amax(
    source: Path, modules: list[str], calibration: Calibration, text: str
) -> dict[str, torch.Tensor]:
    """The largest |input| of each module in ``modules`` over ``text``, fp32 0-dim."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # per-tensor loading bars are noise here
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16).eval()
    amax: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            seen = inputs[0].detach().abs().amax().float()
            amax[name] = torch.maximum(amax[name], seen) if name in amax else seen

        return hook

    wanted = set(modules)
    handles = [
        module.register_forward_pre_hook(record(name))
        for name, module in model.named_modules()
        if name in wanted
    ]
    batches = token_batches(tokenizer, text, calibration)
    try:
        with torch.inference_mode():
            for batch in batches:
                model(input_ids=batch)
    finally:
        for handle in handles:
            handle.remove()
    log.info("calibrated %d layers over %d tokens", len(amax), sum(b.numel() for b in batches))
    return amax


def input_scales(
    source: Path, recipe: Recipe, modules: list[str], text: str | None = None
) -> dict[str, torch.Tensor]:
    """Each module's ``input_scale`` (fp32 0-dim), ``amax / (6 * 448)``.

    Fused shards (q/k/v, gate/up) read the same input, and vLLM keeps one input scale
    per fused layer; their maximum is written to all of them.
    """
    if recipe.calibration is None:
        raise QuantizeError(f"recipe {recipe.name} has no calibration settings")
    text = CALIBRATION_TEXT.read_text() if text is None else text
    amax = input_amax(source, modules, recipe.calibration, text)
    missing = [module for module in modules if module not in amax]
    if missing:
        raise QuantizeError(f"calibration never ran {', '.join(missing[:5])}")
    scales = {}
    for module in modules:
        group = [m for m in fused_group(module) or (module,) if m in amax]
        largest = torch.stack([amax[m] for m in group]).amax()
        if not torch.isfinite(largest) or largest == 0:
            raise QuantizeError(f"calibration saw input amax {largest.item()} at {module}")
        scales[module] = global_scale_from_amax(largest)
    return scales
