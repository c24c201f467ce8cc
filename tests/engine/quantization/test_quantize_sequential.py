"""Sequential GPTQ against one-pass GPTQ on SmolLM2 cut to two decoder layers: the same
where both see the same inputs, different after, and a quantized model closer to the
bf16 one on the calibration text it fits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from quantize_test_models import truncated_checkpoint
from safetensors import safe_open

from switchyard.engine.quantization import calibration
from switchyard.engine.quantization.checkpoint import QuantizeError, quantize_checkpoint
from switchyard.engine.quantization.recipes import Calibration, Recipe, load_recipe
from switchyard.engine.quantization.sequential import decoder_layers
from switchyard.kernels.quant.reference import nvfp4_dequantize_reference

SMOLLM = "smollm2-135m-instruct"
LAYERS = 2


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return truncated_checkpoint(SMOLLM, tmp_path_factory.mktemp("source") / SMOLLM, LAYERS)


# Where the two differ is in how closely they fit the calibration text, so they are
# compared where that fit dominates: lightly damped (1% of the Hessian's diagonal), over
# the first 2,048 tokens (the recipes' budget when sequential GPTQ was chosen). Over the
# whole ~31,000-token text, two layers leave too little error to carry forward to tell
# them apart (one run: sequential 0.3% worse).
CALIBRATION = Calibration(max_tokens=2048, sequence_length=256)


def with_sequential(recipe: Recipe, sequential: bool) -> Recipe:
    """``recipe`` with sequential GPTQ on or off, fitted closely to ``CALIBRATION``."""
    weights = recipe.weights.model_copy(update={"sequential": sequential, "damp": 0.01})
    return recipe.model_copy(update={"weights": weights, "calibration": CALIBRATION})


@pytest.fixture(scope="module")
def checkpoints(
    source: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[bool, dict[str, torch.Tensor]]:
    """nvfp4-w4a16 quantized one-pass (False) and sequentially (True): tensors by name."""
    recipe = load_recipe("nvfp4-w4a16")
    written = {}
    for sequential in (False, True):
        out = tmp_path_factory.mktemp("quantized") / f"sequential-{sequential}"
        quantize_checkpoint(source, with_sequential(recipe, sequential), out)
        with safe_open(out / "model.safetensors", "pt") as handle:
            written[sequential] = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    return written


def calibration_error(source: Path, tensors: dict[str, torch.Tensor] | None) -> float:
    """Squared distance of the last hidden states over the calibration text from the bf16
    model's, with the quantized weights of ``tensors`` put in (none: the bf16 model's)."""
    tokenizer, model = calibration.load_model(source)
    text = calibration.CALIBRATION_TEXT.read_text()
    batches = calibration.token_batches(tokenizer, text, CALIBRATION)
    with torch.no_grad():
        reference = [model.model(batch).last_hidden_state.float() for batch in batches]
        for name in tensors or {}:
            if name.endswith(".weight_scale"):
                module = name.removesuffix(".weight_scale")
                parts = (tensors[f"{module}.weight"], tensors[name], tensors[f"{name}_2"])
                model.get_submodule(module).weight.copy_(nvfp4_dequantize_reference(*parts))
        quantized = [model.model(batch).last_hidden_state.float() for batch in batches]
    return sum((q - r).square().sum().item() for q, r in zip(quantized, reference, strict=True))


def test_sequential_gptq_differs_only_where_earlier_layers_were_quantized(
    checkpoints: dict[bool, dict[str, torch.Tensor]],
) -> None:
    one_pass, sequential = checkpoints[False], checkpoints[True]
    assert one_pass.keys() == sequential.keys()
    # Layer 0's q/k/v read the embeddings, as in one pass: the same bytes.
    for shard in ("q_proj", "k_proj", "v_proj"):
        name = f"model.layers.0.self_attn.{shard}.weight"
        assert torch.equal(one_pass[name], sequential[name])
    # Everything after reads what quantized layers produced.
    for module in ("layers.0.self_attn.o_proj", "layers.0.mlp.down_proj", "layers.1.mlp.up_proj"):
        name = f"model.{module}.weight"
        assert not torch.equal(one_pass[name], sequential[name]), name


def test_sequential_gptq_stays_closer_to_the_bf16_model_on_calibration_text(
    source: Path, checkpoints: dict[bool, dict[str, torch.Tensor]]
) -> None:
    assert calibration_error(source, None) == 0.0
    one_pass = calibration_error(source, checkpoints[False])
    sequential = calibration_error(source, checkpoints[True])
    # Two layers only leave little error to carry forward: about 2% here.
    assert 0.0 < sequential < 0.99 * one_pass


def test_sequential_gptq_wants_modules_inside_one_stack_of_decoder_layers() -> None:
    model = torch.nn.Module()
    model.layers = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(16, 16))])
    model.blocks = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(16, 16))])
    model.head = torch.nn.Linear(16, 16)
    assert decoder_layers(model, ["layers.0.0"]) == ("layers", model.layers)
    with pytest.raises(QuantizeError, match="decoder layers only, not head"):
        decoder_layers(model, ["layers.0.0", "head"])
    with pytest.raises(QuantizeError, match=r"one stack of layers, not \['blocks', 'layers'\]"):
        decoder_layers(model, ["layers.0.0", "blocks.0.0"])
