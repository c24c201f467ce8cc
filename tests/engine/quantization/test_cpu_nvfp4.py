"""Our CPU NVFP4 linear kernel, driven through vLLM's own ModelOpt linear method as a
served layer is: checkpoint tensors in, ``process_weights_after_loading``, ``apply``."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from vllm import _custom_ops as vllm_ops
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.distributed import (
    destroy_distributed_environment,
    destroy_model_parallel,
    ensure_model_parallel_initialized,
    init_distributed_environment,
)
from vllm.model_executor.layers import utils as vllm_layer_utils
from vllm.model_executor.layers.quantization.modelopt import (
    ModelOptNvFp4Config,
    build_linear_method,
)
from vllm.platforms import current_platform

from switchyard.engine import plugin
from switchyard.engine.quantization.cpu_nvfp4 import (
    INSTALLED_MARK,
    CpuNvFp4LinearKernel,
    nvfp4_quantize_dequantize,
)
from switchyard.kernels.quant import (
    nvfp4_dequantize_reference,
    nvfp4_linear_reference,
    nvfp4_quantize_reference,
)

K = 256
# A fused layer (two shards, as q/k/v or gate/up), which vLLM gives one global scale.
SHARDS = [64, 96]
# Calibrated activation amax for W4A4: most of the test inputs sit below it, a few above.
INPUT_AMAX = 3.0


@pytest.fixture(scope="module")
def single_process_vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """What vLLM's layers expect around them: a current config and a tensor-parallel
    group (of one process), as in a worker."""
    init_file = Path(tmp_path_factory.mktemp("vllm-dist")) / "init"
    with set_current_vllm_config(VllmConfig()):
        init_distributed_environment(
            world_size=1,
            rank=0,
            distributed_init_method=f"file://{init_file}",
            local_rank=0,
            backend="gloo",
        )
        ensure_model_parallel_initialized(1, 1)
        yield
        destroy_model_parallel()
        destroy_distributed_environment()


def _installed_selector_module():
    """vLLM's ModelOpt module, after our plugin has registered the way it does in vLLM."""
    plugin.register()
    importlib.import_module(plugin.LINEAR_KERNELS_MODULE)  # fires the deferred install
    return importlib.import_module("vllm.model_executor.layers.quantization.modelopt")


def _quantized_layer(algo: str, dtype: torch.dtype, seed: int):
    """A layer built by vLLM's ModelOpt method for ``algo``, holding a random weight
    quantized as a checkpoint would store it; returns (layer, method, checkpoint)."""
    _installed_selector_module()
    config = ModelOptNvFp4Config(
        quant_method=algo, is_checkpoint_nvfp4_serialized=True, exclude_modules=[]
    )
    method = build_linear_method(config, algo, "model.layers.0.mlp.gate_up_proj")
    layer = torch.nn.Module()
    layer.params_dtype = dtype  # what vLLM's LinearBase carries
    method.create_weights(
        layer, K, SHARDS, K, sum(SHARDS), dtype, weight_loader=lambda *args, **kwargs: None
    )
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(sum(SHARDS), K, generator=generator) * 0.05
    weight[3, 17] = 0.9  # an outlier, so blocks use very different scales
    packed, block_scales, global_scale = nvfp4_quantize_reference(weight)
    layer.weight.data.copy_(packed)
    layer.weight_scale.data.copy_(block_scales)
    layer.weight_scale_2.data.fill_(global_scale.item())
    checkpoint = {"packed": packed, "block_scales": block_scales, "global_scale": global_scale}
    if algo == "NVFP4":
        checkpoint["input_scale"] = torch.tensor(INPUT_AMAX / (6 * 448))
        layer.input_scale.data.fill_(checkpoint["input_scale"].item())
    method.process_weights_after_loading(layer)
    return layer, method, checkpoint


def _inputs(tokens: int, dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(tokens)
    return torch.randn(tokens, K, generator=generator).to(dtype)


def _assert_close(out: torch.Tensor, expected: torch.Tensor) -> None:
    # Rounding the dequantized weight and the output to 16 bits costs ~2**-8 relative;
    # a wrong scale, block or nibble order costs the whole magnitude.
    assert out.shape == expected.shape
    error = (out.float() - expected).abs().max().item()
    assert error <= 1e-2 * expected.abs().max().item(), error


@pytest.mark.usefixtures("single_process_vllm")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("tokens", [1, 37])
def test_weight_only_layer_matches_dequantize_then_matmul(tokens: int, dtype: torch.dtype) -> None:
    layer, method, ckpt = _quantized_layer("W4A16_NVFP4", dtype, seed=tokens)
    assert isinstance(method.kernel, CpuNvFp4LinearKernel)
    x = _inputs(tokens, dtype)
    bias = torch.linspace(-1, 1, sum(SHARDS)).to(dtype)
    out = method.apply(layer, x, bias)
    assert out.dtype == dtype
    expected = nvfp4_linear_reference(
        x, ckpt["packed"], ckpt["block_scales"], ckpt["global_scale"], bias
    )
    _assert_close(out, expected)
    # The packed tensors are gone: the layer holds its GEMM's weight and nothing else.
    assert not hasattr(layer, "weight_scale") and not hasattr(layer, "weight_global_scale")


@pytest.mark.usefixtures("single_process_vllm")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_weight_only_layer_computes_the_same_whether_or_not_the_cpu_has_amx(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vLLM's unquantized dispatch takes the SGL kernel on AMX CPUs and oneDNN elsewhere;
    our layer must take neither decision, so both answers of the AMX probe give the same
    bytes, and the SGL kernel and vLLM's dispatch are never reached."""

    def refuse(*args, **kwargs):
        raise AssertionError("the NVFP4 layer went through vLLM's unquantized GEMM dispatch")

    monkeypatch.setattr(vllm_ops, "weight_packed_linear_cpu", refuse)
    monkeypatch.setattr(vllm_layer_utils, "dispatch_cpu_unquantized_gemm", refuse)
    x = _inputs(5, dtype)
    bias = torch.linspace(-1, 1, sum(SHARDS)).to(dtype)
    outputs = []
    for has_amx in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda has_amx=has_amx: has_amx)
        layer, method, ckpt = _quantized_layer("W4A16_NVFP4", dtype, seed=5)
        assert not hasattr(layer, "cpu_linear")
        outputs.append(method.apply(layer, x, bias))
    assert torch.equal(outputs[0], outputs[1])
    expected = nvfp4_linear_reference(
        x, ckpt["packed"], ckpt["block_scales"], ckpt["global_scale"], bias
    )
    _assert_close(outputs[0], expected)


@pytest.mark.usefixtures("single_process_vllm")
def test_a_dtype_onednn_cannot_multiply_here_falls_back_to_torch_at_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a CPU without native fp16 arithmetic oneDNN has no fp16 matmul and says so only
    when first called; the layer finds out at load and computes with torch instead."""

    def no_primitive(*args, **kwargs):
        raise RuntimeError("could not create a primitive descriptor for the matmul primitive")

    monkeypatch.setattr(vllm_ops, "onednn_mm", no_primitive)
    dtype = torch.float16
    layer, method, ckpt = _quantized_layer("W4A16_NVFP4", dtype, seed=3)
    x = _inputs(3, dtype)
    out = method.apply(layer, x)
    assert out.dtype == dtype
    expected = nvfp4_linear_reference(x, ckpt["packed"], ckpt["block_scales"], ckpt["global_scale"])
    _assert_close(out, expected)


@pytest.mark.usefixtures("single_process_vllm")
@pytest.mark.parametrize("tokens", [1, 37])
def test_w4a4_layer_quantizes_its_input_like_the_fp4_gemm(tokens: int) -> None:
    dtype = torch.bfloat16
    layer, method, ckpt = _quantized_layer("NVFP4", dtype, seed=tokens)
    assert isinstance(method.kernel, CpuNvFp4LinearKernel)
    x = _inputs(tokens, dtype) * 1.5  # |x| up to ~7: some blocks saturate at INPUT_AMAX
    out = method.apply(layer, x)
    weight = (ckpt["packed"], ckpt["block_scales"], ckpt["global_scale"])
    x_packed, x_scales, x_global = nvfp4_quantize_reference(x.float(), ckpt["input_scale"])
    x_fp4 = nvfp4_dequantize_reference(x_packed, x_scales, x_global, torch.float32)
    _assert_close(out, nvfp4_linear_reference(x_fp4, *weight))
    # And the input quantization is real: unquantized activations give another answer.
    weight_only = nvfp4_linear_reference(x, *weight)
    # (4-bit activations: several percent of the output's norm, 100x the check above.)
    assert torch.linalg.norm(out.float() - weight_only) > 2e-2 * torch.linalg.norm(weight_only)


def test_quantize_dequantize_keeps_shape_and_dtype() -> None:
    x = torch.randn(2, 3, 32, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    amax = x.float().abs().max()
    rounded = nvfp4_quantize_dequantize(x, amax / (6 * 448))
    assert rounded.shape == x.shape and rounded.dtype == x.dtype
    # Each block of 16 holds E2M1 values times one scale: at most 8 distinct magnitudes,
    # each within half the widest E2M1 gap (1 of 6) of a block maximum below amax.
    blocks = rounded.float().abs().reshape(-1, 16)
    assert all(len(set(block.tolist())) <= 8 for block in blocks)
    assert (rounded.float() - x.float()).abs().max() <= amax / 5


def test_install_wraps_vllms_selector_once() -> None:
    modelopt = _installed_selector_module()
    linear = importlib.import_module(plugin.LINEAR_KERNELS_MODULE)
    selector = linear.init_nvfp4_linear_kernel
    assert getattr(selector, INSTALLED_MARK, False)
    assert modelopt.init_nvfp4_linear_kernel is selector
    plugin.install_cpu_nvfp4(linear)
    assert linear.init_nvfp4_linear_kernel is selector
    # W4A16 (vLLM would force Marlin) and W4A4 (the registry, where we are the CPU entry).
    assert isinstance(selector(use_a16=True), CpuNvFp4LinearKernel)
    assert isinstance(selector(use_a16=False), CpuNvFp4LinearKernel)


def test_plugin_leaves_gpu_kernel_selection_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    deferred = []
    monkeypatch.setattr(plugin, "after_import", lambda *args: deferred.append(args))
    monkeypatch.setattr(current_platform, "is_cpu", lambda: False)
    plugin.register()
    assert deferred == []
    assert not CpuNvFp4LinearKernel.is_supported()[0]
    monkeypatch.setattr(current_platform, "is_cpu", lambda: True)
    plugin.register()
    assert deferred == [(plugin.LINEAR_KERNELS_MODULE, plugin.install_cpu_nvfp4)]
    assert CpuNvFp4LinearKernel.is_supported()[0]
