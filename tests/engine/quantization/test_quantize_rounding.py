"""Calibrated weight rounding (block-scale search, GPTQ) against plain round-to-nearest,
on small random matrices: valid NVFP4 that the reference dequantizes to the weights the
method chose, and less error where each method promises it."""

from __future__ import annotations

import pytest
import torch

from switchyard.engine.quantization.calibration import InputStatistics
from switchyard.engine.quantization.gptq import gptq_nvfp4
from switchyard.engine.quantization.recipes import ScaleSearch, WeightMethod, Weights
from switchyard.engine.quantization.rounding import weight_quantizer
from switchyard.engine.quantization.scale_search import encode, search_block_scales
from switchyard.kernels.quant.reference import (
    global_scale_from_amax,
    nvfp4_dequantize_reference,
    nvfp4_quantize_reference,
)

ROWS, COLS, TOKENS = 48, 128, 512
FACTORS = ScaleSearch().factors


@pytest.fixture
def layer() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A weight and calibration inputs with correlated features of unequal energy, as a
    transformer layer's inputs are."""
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(COLS, COLS, generator=generator) / COLS**0.5 + torch.eye(COLS)
    energy = torch.rand(COLS, generator=generator) * 4 + 0.1
    x = (torch.randn(TOKENS, COLS, generator=generator) @ mixing) * energy
    w = torch.randn(ROWS, COLS, generator=generator) * 0.05
    return w, x, global_scale_from_amax(w.abs().amax())


def dequantized(parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return nvfp4_dequantize_reference(*parts, torch.float32)


def output_error(w: torch.Tensor, q: torch.Tensor, x: torch.Tensor) -> float:
    return ((w - q) @ x.T).square().sum().item()


def block_error(w: torch.Tensor, q: torch.Tensor, importance: torch.Tensor) -> torch.Tensor:
    return ((w - q).square() * importance).reshape(ROWS, COLS // 16, 16).sum(-1)


def test_scale_search_never_loses_to_rtn_in_any_block(layer) -> None:
    w, x, global_scale = layer
    importance = (x * x).sum(0)
    rtn = nvfp4_quantize_reference(w, global_scale)
    scales = search_block_scales(w, global_scale, FACTORS, importance)
    searched = (encode(w, scales, global_scale), scales, global_scale)
    before = block_error(w, dequantized(rtn), importance)
    after = block_error(w, dequantized(searched), importance)
    assert (after <= before).all()
    assert after.sum() < 0.8 * before.sum()
    changed = scales.view(torch.uint8) != rtn[1].view(torch.uint8)
    assert 0.1 < changed.float().mean() < 0.9


def test_scale_search_without_candidates_is_rtn_byte_for_byte(layer) -> None:
    w, _, global_scale = layer
    packed, scales, _ = nvfp4_quantize_reference(w, global_scale)
    found = search_block_scales(w, global_scale, ())
    assert torch.equal(found.view(torch.uint8), scales.view(torch.uint8))
    assert torch.equal(encode(w, found, global_scale), packed)


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_cuts_the_layer_output_error_on_calibration_inputs(layer, act_order: bool) -> None:
    w, x, global_scale = layer
    hessian = x.T @ x
    rtn = output_error(w, dequantized(nvfp4_quantize_reference(w, global_scale)), x)
    for factors in ((), FACTORS):
        packed, scales, scale = gptq_nvfp4(
            w, hessian, global_scale, 0.01, factors, act_order=act_order
        )
        assert packed.dtype == torch.uint8 and packed.shape == (ROWS, COLS // 2)
        assert scales.dtype == torch.float8_e4m3fn and scales.shape == (ROWS, COLS // 16)
        assert scale == global_scale
        restored = dequantized((packed, scales, scale))
        assert output_error(w, restored, x) < 0.7 * rtn
        # Still a 4-bit approximation of w, not some other matrix that fits x.
        assert (restored - w).norm() < 0.3 * w.norm()


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_with_uncorrelated_inputs_is_rtn(layer, act_order: bool) -> None:
    """A diagonal Hessian gives GPTQ no neighbour to push an error onto; in act-order the
    columns are visited shuffled (random energies) and must land back in place."""
    w, _, global_scale = layer
    hessian = torch.diag(torch.rand(COLS) + 0.5)
    ours = gptq_nvfp4(w, hessian, global_scale, 0.5, act_order=act_order)
    rtn = nvfp4_quantize_reference(w, global_scale)
    assert torch.equal(ours[0], rtn[0])
    assert torch.equal(ours[1].view(torch.uint8), rtn[1].view(torch.uint8))


def test_act_order_fixes_every_block_scale_from_the_original_weights(layer) -> None:
    w, x, global_scale = layer
    hessian = x.T @ x
    _, scales, _ = gptq_nvfp4(w, hessian, global_scale, 0.5, FACTORS, act_order=True)
    static = search_block_scales(w, global_scale, FACTORS, hessian.diagonal())
    assert torch.equal(scales.view(torch.uint8), static.view(torch.uint8))
    # In order, later blocks' scales follow the error pushed onto them instead.
    _, in_order, _ = gptq_nvfp4(w, hessian, global_scale, 0.5, FACTORS)
    assert not torch.equal(in_order.view(torch.uint8), static.view(torch.uint8))


def test_more_damping_trades_calibration_fit_for_closeness_to_the_weights(layer) -> None:
    w, x, global_scale = layer
    hessian = x.T @ x
    loose = dequantized(gptq_nvfp4(w, hessian, global_scale, 0.01))
    damped = dequantized(gptq_nvfp4(w, hessian, global_scale, 10.0))
    assert output_error(w, loose, x) < output_error(w, damped, x)
    assert (damped - w).norm() < (loose - w).norm()


def test_weight_quantizer_dispatches_on_the_recipe(layer) -> None:
    w, x, global_scale = layer
    stats = InputStatistics(hessians={"layer": x.T @ x})
    rtn = weight_quantizer(Weights(), None)("layer", w, global_scale)
    assert torch.equal(rtn[0], nvfp4_quantize_reference(w, global_scale)[0])
    search = Weights(scale_search=ScaleSearch())
    searched = weight_quantizer(search, stats)("layer", w, global_scale)
    assert output_error(w, dequantized(searched), x) < output_error(w, dequantized(rtn), x)
    gptq = Weights(method=WeightMethod.GPTQ, damp=0.5, scale_search=ScaleSearch())
    fitted = weight_quantizer(gptq, stats)("layer", w, global_scale)
    assert output_error(w, dequantized(fitted), x) < output_error(w, dequantized(searched), x)
    with pytest.raises(ValueError, match="needs the calibration Hessians"):
        weight_quantizer(gptq, None)


def test_non_finite_weights_are_refused(layer) -> None:
    w, x, global_scale = layer
    w = w.clone()
    w[3, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        gptq_nvfp4(w, x.T @ x, global_scale, 0.5)
    stats = InputStatistics(hessians={"layer": x.T @ x})
    with pytest.raises(ValueError, match="NaN"):
        weight_quantizer(Weights(scale_search=ScaleSearch()), stats)("layer", w, global_scale)
