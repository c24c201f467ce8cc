"""Calibration: run the bf16 model over the shipped calibration text and record what each
quantized linear layer sees at its input: the largest absolute value (W4A4 input
scales) and, for calibrated weight rounding (GPTQ, block scale search), ``X^T X``.

An NVFP4 activation is quantized at run time in 16-element blocks whose E4M3 block scales
are relative to one static per-tensor scale, ``input_scale = amax / (6 * 448)``, as for
weights. ModelOpt's "max" calibration measures amax the same way, with quantization off.
Every sequence starts with the tokens the tokenizer puts in front of any prompt (Gemma's
``<bos>``): served prompts start with them too, and they carry some of the largest
activations of the whole model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from switchyard.engine.quantization.recipes import Calibration
from switchyard.engine.quantization.source import QuantizeError, fused_group
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


# Calibration sequences run through the model together, as rows of one batch: each row
# attends only to itself, so every layer sees the same inputs as one sequence at a time,
# in a fraction of the forward calls (on 2 CPU cores, per-call overhead dominated).
SEQUENCES_PER_PASS = 8


def stacked(sequences: list[torch.Tensor], size: int = SEQUENCES_PER_PASS) -> list[torch.Tensor]:
    """``[1, length]`` sequences as ``[n, length]`` batches of up to ``size`` consecutive
    sequences of one length (the text's last, shorter sequence gets a batch of its own)."""
    batches: list[torch.Tensor] = []
    for sequence in sequences:
        last = batches[-1] if batches else None
        if last is not None and last.shape[1] == sequence.shape[1] and last.shape[0] < size:
            batches[-1] = torch.cat([last, sequence])
        else:
            batches.append(sequence)
    return batches


def forward_batches(
    tokenizer: PreTrainedTokenizerBase, text: str, calibration: Calibration
) -> list[torch.Tensor]:
    """What calibration runs through the model: ``token_batches`` ``stacked``."""
    return stacked(token_batches(tokenizer, text, calibration))


@dataclass
class InputStatistics:
    """What calibration saw at each module's input: the largest |x| (fp32 0-dim) and,
    when asked for, ``X^T X`` over all tokens (fp32 ``[in, in]``) for GPTQ and the block
    scale search. Fused shards read one input, so their Hessian is stored once, under the
    first shard's name (:func:`hessian_key`). ``rounded`` holds the weights that
    sequential GPTQ already quantized while calibrating (``(packed, block scales, global
    scale)`` by module), to be written as they are."""

    amax: dict[str, torch.Tensor] = field(default_factory=dict)
    hessians: dict[str, torch.Tensor] = field(default_factory=dict)
    rounded: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(
        default_factory=dict
    )

    def hessian(self, module: str) -> torch.Tensor:
        return self.hessians[hessian_key(module)]


def hessian_key(module: str) -> str:
    """The module whose input Hessian ``module`` shares: the first of its fused group."""
    return (fused_group(module) or (module,))[0]


def load_model(source: Path) -> tuple[PreTrainedTokenizerBase, torch.nn.Module]:
    """The tokenizer and the bf16 model of ``source``, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # per-tensor loading bars are noise here
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16).eval()
    return tokenizer, model


@contextmanager
def recording(
    model: torch.nn.Module, modules: Iterable[str], stats: InputStatistics, hessians: bool
) -> Iterator[None]:
    """While open, every forward pass adds what ``modules`` see at their inputs to
    ``stats`` (in the order the modules first run: dicts keep insertion order)."""

    def record(name: str):
        own_hessian = hessians and hessian_key(name) == name

        def hook(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].detach()
            seen = x.abs().amax().float()
            amax = stats.amax
            amax[name] = torch.maximum(amax[name], seen) if name in amax else seen
            if own_hessian:
                rows = x.reshape(-1, x.shape[-1]).float()
                product = rows.T @ rows
                known = stats.hessians.get(name)
                stats.hessians[name] = product if known is None else known + product

        return hook

    wanted = set(modules)
    handles = [
        module.register_forward_pre_hook(record(name))
        for name, module in model.named_modules()
        if name in wanted
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def check_all_seen(stats: InputStatistics, modules: list[str]) -> None:
    missing = [module for module in modules if module not in stats.amax]
    if missing:
        raise QuantizeError(f"calibration never ran {', '.join(missing[:5])}")


def input_statistics(
    source: Path, modules: list[str], calibration: Calibration, text: str, hessians: bool
) -> InputStatistics:
    """Run the bf16 model over ``text`` and record each of ``modules``' inputs."""
    tokenizer, model = load_model(source)
    stats = InputStatistics()
    batches = forward_batches(tokenizer, text, calibration)
    # not inference_mode: GPTQ later computes on these tensors
    with recording(model, modules, stats, hessians), torch.no_grad():
        for batch in batches:
            model(input_ids=batch)
    tokens = sum(batch.numel() for batch in batches)
    log.info("calibrated %d layers over %d tokens", len(stats.amax), tokens)
    check_all_seen(stats, modules)
    return stats


def input_scales(stats: InputStatistics, modules: list[str]) -> dict[str, torch.Tensor]:
    """Each module's ``input_scale`` (fp32 0-dim), ``amax / (6 * 448)``.

    Fused shards (q/k/v, gate/up) read the same input, and vLLM keeps one input scale
    per fused layer; their maximum is written to all of them.
    """
    scales = {}
    for module in modules:
        group = [m for m in fused_group(module) or (module,) if m in stats.amax]
        largest = torch.stack([stats.amax[m] for m in group]).amax()
        if not torch.isfinite(largest) or largest == 0:
            raise QuantizeError(f"calibration saw input amax {largest.item()} at {module}")
        scales[module] = global_scale_from_amax(largest)
    return scales
