"""Quantized checkpoints: the tensors ModelOpt would write, configs vLLM accepts, and bad
input refused without leftovers.

The model is SmolLM2-135M-Instruct cut to its first two decoder layers (real weights,
tokenizer and tied embeddings; see ``quantize_test_models``), quantized once per recipe
for the whole module.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from quantize_test_models import truncated_checkpoint
from safetensors import safe_open

from switchyard.cli.main import main
from switchyard.engine.quantization import calibration
from switchyard.engine.quantization.checkpoint import (
    HF_QUANT_CONFIG,
    QuantizeReport,
    quantize_checkpoint,
)
from switchyard.engine.quantization.recipes import Weights, load_recipe, recipe_names
from switchyard.engine.quantization.source import QuantizeError, linear_modules
from switchyard.kernels.quant.reference import nvfp4_dequantize_reference

SMOLLM = "smollm2-135m-instruct"
LAYERS = 2
E2M1_E4M3_MAX = 6 * 448


def tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(path / "model.safetensors", "pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return truncated_checkpoint(SMOLLM, tmp_path_factory.mktemp("source") / SMOLLM, LAYERS)


@pytest.fixture(scope="module")
def quantized(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, QuantizeReport]:
    root = tmp_path_factory.mktemp("quantized")
    return {
        name: quantize_checkpoint(source, load_recipe(name), root / name) for name in recipe_names()
    }


@pytest.fixture(scope="module")
def rtn(source: Path, tmp_path_factory: pytest.TempPathFactory) -> QuantizeReport:
    """nvfp4-w4a16 with plain round-to-nearest weights: modelopt's own bytes."""
    recipe = load_recipe("nvfp4-w4a16").model_copy(
        update={"weights": Weights(), "calibration": None}
    )
    return quantize_checkpoint(source, recipe, tmp_path_factory.mktemp("rtn") / "rtn")


@pytest.fixture(scope="module")
def original(source: Path) -> dict[str, torch.Tensor]:
    return tensors(source)


def test_every_recipe_writes_nvfp4_tensors_and_keeps_the_rest(
    quantized: dict[str, QuantizeReport], original: dict[str, torch.Tensor], source: Path
) -> None:
    linear = linear_modules(source)
    for name, report in quantized.items():
        recipe = load_recipe(name)
        written = tensors(report.out)
        assert set(report.quantized) == {m for m in linear if recipe.selects(m)}
        assert "lm_head" in report.excluded and "lm_head.weight" not in written
        for module in report.quantized:
            rows, cols = original[f"{module}.weight"].shape
            assert written[f"{module}.weight"].dtype == torch.uint8
            assert written[f"{module}.weight"].shape == (rows, cols // 2)
            assert written[f"{module}.weight_scale"].dtype == torch.float8_e4m3fn
            assert written[f"{module}.weight_scale"].shape == (rows, cols // 16)
            assert written[f"{module}.weight_scale_2"].dtype == torch.float32
            assert written[f"{module}.weight_scale_2"].shape == ()
            has_input_scale = f"{module}.input_scale" in written
            assert has_input_scale == (recipe.quant_algo == "NVFP4"), (name, module)
        # Everything that is not a quantized weight is the source tensor, bit for bit.
        scale_suffixes = (".weight_scale", ".weight_scale_2", ".input_scale")
        for tensor_name, tensor in written.items():
            if tensor_name.endswith(scale_suffixes):
                continue
            if tensor_name.removesuffix(".weight") not in report.quantized:
                assert tensor.dtype == torch.bfloat16
                assert torch.equal(tensor, original[tensor_name]), tensor_name
        assert {n for n in original if n not in written} == set()


def test_mlp_only_recipe_leaves_attention_in_bf16(quantized: dict[str, QuantizeReport]) -> None:
    report = quantized["nvfp4-w4a16-mlp-only"]
    assert report.quantized and all(".mlp." in module for module in report.quantized)
    attention = [m for m in report.excluded if ".self_attn." in m]
    assert len(attention) == 4 * LAYERS
    written = tensors(report.out)
    assert all(written[f"{m}.weight"].dtype == torch.bfloat16 for m in attention)


def test_dequantized_weights_are_close_to_the_originals(
    quantized: dict[str, QuantizeReport], rtn: QuantizeReport, original: dict[str, torch.Tensor]
) -> None:
    calibrated = tensors(quantized["nvfp4-w4a16"].out)
    nearest = tensors(rtn.out)
    differ = 0
    for module in rtn.quantized:
        weight = original[f"{module}.weight"].float()
        for written in (calibrated, nearest):
            restored = nvfp4_dequantize_reference(
                written[f"{module}.weight"],
                written[f"{module}.weight_scale"],
                written[f"{module}.weight_scale_2"],
                torch.float32,
            )
            # 4-bit with 16-element blocks: ~10% relative error on Gaussian-like weights
            # (a little more under GPTQ, which trades weight error for output error); a
            # wrong scale or nibble order is far beyond it.
            relative = (restored - weight).norm() / weight.norm()
            assert relative < 0.15, (module, relative.item())
        differ += not torch.equal(calibrated[f"{module}.weight"], nearest[f"{module}.weight"])
    # The shipped recipe's rounding (GPTQ) chose other codes than round-to-nearest.
    assert differ == len(rtn.quantized)


def test_rtn_packed_bytes_equal_modelopts(
    rtn: QuantizeReport, original: dict[str, torch.Tensor]
) -> None:
    from modelopt.torch.quantization.qtensor.nvfp4_tensor import NVFP4QTensor

    written = tensors(rtn.out)
    # o_proj: its own global scale; k_proj: the one it shares with q_proj and v_proj.
    for module in ("model.layers.1.self_attn.o_proj", "model.layers.1.self_attn.k_proj"):
        shared = written[f"{module}.weight_scale_2"]
        expected, block_scales, global_scale = NVFP4QTensor.quantize(
            original[f"{module}.weight"], 16, weights_scaling_factor_2=shared
        )
        assert torch.equal(written[f"{module}.weight"], expected._quantized_data)
        assert torch.equal(
            written[f"{module}.weight_scale"].view(torch.uint8), block_scales.view(torch.uint8)
        )
        assert torch.equal(shared, global_scale.float())
    own = NVFP4QTensor.quantize(original["model.layers.1.self_attn.o_proj.weight"], 16)[2]
    assert torch.equal(written["model.layers.1.self_attn.o_proj.weight_scale_2"], own.float())


def test_fused_shards_share_their_global_scale(
    quantized: dict[str, QuantizeReport], original: dict[str, torch.Tensor]
) -> None:
    written = tensors(quantized["nvfp4-w4a16"].out)
    for layer in range(LAYERS):
        for shards in (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")):
            part = "self_attn" if "q_proj" in shards else "mlp"
            modules = [f"model.layers.{layer}.{part}.{shard}" for shard in shards]
            amax = max(original[f"{m}.weight"].abs().max().float() for m in modules)
            for module in modules:
                assert written[f"{module}.weight_scale_2"] == amax / E2M1_E4M3_MAX


def test_quantized_layers_shrink_below_three_tenths(
    quantized: dict[str, QuantizeReport], original: dict[str, torch.Tensor]
) -> None:
    for report in quantized.values():
        bf16 = sum(original[f"{m}.weight"].nbytes for m in report.quantized)
        assert report.source_bytes == bf16
        assert report.quantized_bytes < 0.3 * bf16


def test_w4a4_input_scales_come_from_calibration(
    quantized: dict[str, QuantizeReport], source: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    written = tensors(quantized["nvfp4-w4a4"].out)
    recipe = load_recipe("nvfp4-w4a4")
    assert recipe.calibration is not None
    # Layer 0's q/k/v read input_layernorm(embeddings): recompute their amax directly.
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(source)
    text = calibration.CALIBRATION_TEXT.read_text()
    batches = calibration.token_batches(tokenizer, text, recipe.calibration)
    with torch.inference_mode():
        amax = max(
            model.model.layers[0].input_layernorm(model.model.embed_tokens(batch)).abs().max()
            for batch in batches
        ).float()
    for shard in ("q_proj", "k_proj", "v_proj"):
        scale = written[f"model.layers.0.self_attn.{shard}.input_scale"]
        assert scale.dtype == torch.float32 and scale.shape == ()
        assert scale == amax / E2M1_E4M3_MAX
    scales = [v for k, v in written.items() if k.endswith(".input_scale")]
    assert len(scales) == 7 * LAYERS
    assert all(torch.isfinite(s) and s > 0 for s in scales)
    gate = written["model.layers.1.mlp.gate_proj.input_scale"]
    assert torch.equal(gate, written["model.layers.1.mlp.up_proj.input_scale"])


def test_calibration_batches_lead_with_the_tokenizers_special_tokens() -> None:
    from transformers import AutoTokenizer

    from switchyard.engine.models.prepare import resolve_model_path

    recipe = load_recipe("nvfp4-w4a4")
    assert recipe.calibration is not None
    text = calibration.CALIBRATION_TEXT.read_text()
    assert len(text) > 2000
    leads = {}
    for model in ("gemma-3-270m", SMOLLM):
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model)[1])
        lead = leads[model] = tokenizer("")["input_ids"]
        batches = calibration.token_batches(tokenizer, text, recipe.calibration)
        assert all(b.shape[1] <= recipe.calibration.sequence_length for b in batches)
        assert all(b[0, : len(lead)].tolist() == lead for b in batches)
        assert sum(b.shape[1] - len(lead) for b in batches) == recipe.calibration.max_tokens
    # Gemma needs its <bos> in front of every sequence; SmolLM2 has no such token.
    assert leads == {"gemma-3-270m": [2], SMOLLM: []}


def test_config_json_block_is_modelopts_own_conversion(
    quantized: dict[str, QuantizeReport],
) -> None:
    from modelopt.torch.export.convert_hf_config import convert_hf_quant_config_format

    for report in quantized.values():
        legacy = json.loads((report.out / HF_QUANT_CONFIG).read_text())
        config = json.loads((report.out / "config.json").read_text())["quantization_config"]
        assert config == convert_hf_quant_config_format(legacy)


def test_configs_parse_in_vllm_and_pick_the_right_layers(
    quantized: dict[str, QuantizeReport],
) -> None:
    from vllm.model_executor.layers.linear import LinearBase, UnquantizedLinearMethod
    from vllm.model_executor.layers.quantization.modelopt import (
        ModelOptLinearMethod,
        ModelOptNvFp4Config,
    )
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead
    from vllm.model_executor.model_loader.utils import configure_quant_config
    from vllm.model_executor.models.gemma3 import Gemma3ForCausalLM
    from vllm.model_executor.models.interfaces import SupportsQuant
    from vllm.model_executor.models.llama import LlamaForCausalLM

    class Linear(LinearBase):
        """Only its type matters to get_quant_method; no weights are built."""

    class LMHead(ParallelLMHead):
        pass

    raw = json.loads((quantized["nvfp4-w4a16"].out / "config.json").read_text())
    method = ModelOptNvFp4Config.override_quantization_method(raw["quantization_config"], None)
    assert method == "modelopt_fp4"
    # Gemma 3 shares Llama's module names, so one checkpoint checks both architectures'
    # fused-layer tables (one hands them over as SupportsQuant, one the older way).
    for model_class in (LlamaForCausalLM, Gemma3ForCausalLM):
        for name, report in quantized.items():
            config = json.loads((report.out / "config.json").read_text())["quantization_config"]
            legacy = json.loads((report.out / HF_QUANT_CONFIG).read_text())
            for raw_config in (config, legacy):
                quant_config = ModelOptNvFp4Config.from_config(raw_config)
                assert quant_config.quant_method == load_recipe(name).quant_algo
                # What vLLM's initialize_model does before the model's __init__.
                configure_quant_config(quant_config, model_class)
                if issubclass(model_class, SupportsQuant):
                    model_class.__new__(model_class, quant_config)
                assert quant_config.packed_modules_mapping["qkv_proj"] == [
                    "q_proj",
                    "k_proj",
                    "v_proj",
                ]
                head = quant_config.get_quant_method(LMHead.__new__(LMHead), "lm_head")
                assert isinstance(head, UnquantizedLinearMethod)
                for layer in range(LAYERS):
                    for fused, shard in (
                        ("self_attn.qkv_proj", "self_attn.q_proj"),
                        ("self_attn.o_proj", "self_attn.o_proj"),
                        ("mlp.gate_up_proj", "mlp.gate_proj"),
                        ("mlp.down_proj", "mlp.down_proj"),
                    ):
                        where = (model_class.__name__, name, fused)
                        method = quant_config.get_quant_method(
                            Linear.__new__(Linear), f"model.layers.{layer}.{fused}"
                        )
                        if f"model.layers.{layer}.{shard}" not in report.quantized:
                            assert isinstance(method, UnquantizedLinearMethod), where
                            continue
                        assert isinstance(method, ModelOptLinearMethod), where
                        weight_only = method.spec.activation is None
                        assert weight_only == (name != "nvfp4-w4a4"), where


def test_other_files_are_copied_and_the_manifest_is_not(
    quantized: dict[str, QuantizeReport], source: Path
) -> None:
    out = quantized["nvfp4-w4a16"].out
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (out / name).read_bytes() == (source / name).read_bytes()
    assert not (out / "switchyard-manifest.json").exists()
    config = json.loads((out / "config.json").read_text())
    source_config = json.loads((source / "config.json").read_text())
    assert {k: v for k, v in config.items() if k != "quantization_config"} == source_config
    assert config["quantization_config"]["quant_method"] == "modelopt"
    assert json.loads((out / HF_QUANT_CONFIG).read_text())["producer"]["recipe"] == "nvfp4-w4a16"


def test_cli_quantizes_a_checkpoint_directory(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "empty-dir-is-fine"
    out.mkdir()
    args = ["quantize", "--model", str(source), "--recipe", "nvfp4-w4a16-mlp-only"]
    assert main([*args, "--out", str(out)]) == 0
    assert f"{3 * LAYERS} linear layers in NVFP4 (W4A16_NVFP4)" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file() and (out / HF_QUANT_CONFIG).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-dir-is-fine"]


def test_bad_input_is_refused_with_nothing_left_behind(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    base = ["quantize", "--model", str(source), "--out", str(out)]

    assert main([*base, "--recipe", "nvfp4-w8"]) == 2
    message = capsys.readouterr().out
    assert "unknown recipe 'nvfp4-w8'" in message
    assert all(name in message for name in recipe_names())

    missing = ["quantize", "--model", str(tmp_path / "nope"), "--recipe", "nvfp4-w4a16"]
    assert main([*missing, "--out", str(out)]) == 2
    assert "neither an embedded model" in capsys.readouterr().out

    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main([*base, "--recipe", "nvfp4-w4a16"]) == 2
    assert "exists and is not empty" in capsys.readouterr().out
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    out.rmdir()

    def failing_calibration(*_args: object) -> dict[str, torch.Tensor]:
        raise QuantizeError("calibration failed")

    with pytest.raises(QuantizeError, match="calibration failed"):
        quantize_checkpoint(source, load_recipe("nvfp4-w4a4"), out, failing_calibration)
    assert list(tmp_path.iterdir()) == []


def test_recipes_vllm_could_not_load_are_refused(source: Path, tmp_path: Path) -> None:
    recipe = load_recipe("nvfp4-w4a16")
    tied = recipe.model_copy(update={"exclude": []})
    with pytest.raises(QuantizeError, match="lm_head, whose weight is not stored"):
        quantize_checkpoint(source, tied, tmp_path / "tied")
    partial = recipe.model_copy(update={"quantize": ["*.q_proj"]})
    with pytest.raises(QuantizeError, match=r"k_proj, .*v_proj; vLLM fuses"):
        quantize_checkpoint(source, partial, tmp_path / "partial")
    none = recipe.model_copy(update={"quantize": ["*.no_such_proj"]})
    with pytest.raises(QuantizeError, match="matches none"):
        quantize_checkpoint(source, none, tmp_path / "none")
    assert list(tmp_path.iterdir()) == []


def test_stacked_sequences_keep_their_order_and_length() -> None:
    sequences = [torch.full((1, 4), i) for i in range(10)] + [torch.full((1, 3), 10)]
    batches = calibration.stacked(sequences, size=4)
    assert [tuple(b.shape) for b in batches] == [(4, 4), (4, 4), (2, 4), (1, 3)]
    assert [row.tolist() for b in batches for row in b] == [s[0].tolist() for s in sequences]


def test_stacked_sequences_give_the_statistics_of_one_at_a_time(source: Path) -> None:
    """Rows of one batch do not see each other: what each layer sees is what it would see
    with the sequences run one by one (up to bf16 rounding of differently blocked products)."""
    tokenizer, model = calibration.load_model(source)
    recipe = load_recipe("nvfp4-w4a16")
    assert recipe.calibration is not None
    settings = recipe.calibration.model_copy(update={"max_tokens": 4 * 254 + 100})
    sequences = calibration.token_batches(
        tokenizer, calibration.CALIBRATION_TEXT.read_text(), settings
    )
    modules = ["model.layers.1.self_attn.q_proj", "model.layers.1.mlp.down_proj"]
    seen = {}
    for way, batches in (("one", sequences), ("stacked", calibration.stacked(sequences))):
        stats = seen[way] = calibration.InputStatistics()
        with calibration.recording(model, modules, stats, hessians=True), torch.no_grad():
            for batch in batches:
                model(input_ids=batch)
    assert len(calibration.stacked(sequences)) == 2
    for module in modules:
        one, stacked = seen["one"].hessian(module), seen["stacked"].hessian(module)
        assert torch.allclose(stacked, one, rtol=0.02, atol=1e-3 * one.abs().max().item())
        assert torch.allclose(seen["stacked"].amax[module], seen["one"].amax[module], rtol=0.02)
