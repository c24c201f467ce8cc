"""Recipes: the shipped ones load and select the right layers; bad ones name the field."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from switchyard.cli.main import main
from switchyard.engine.quantization.recipes import (
    Recipe,
    RecipeError,
    WeightMethod,
    list_recipes,
    load_recipe,
    recipe_names,
)

ATTENTION = "model.layers.3.self_attn.k_proj"
MLP = "model.layers.3.mlp.gate_proj"


def test_shipped_recipes_select_the_layers_they_promise() -> None:
    recipes = {recipe.name: recipe for recipe in list_recipes()}
    assert set(recipes) == {"nvfp4-w4a16", "nvfp4-w4a16-mlp-only", "nvfp4-w4a4"}
    for name in ("nvfp4-w4a16", "nvfp4-w4a4"):
        assert recipes[name].selects(ATTENTION) and recipes[name].selects(MLP)
    assert recipes["nvfp4-w4a16-mlp-only"].selects(MLP)
    assert not recipes["nvfp4-w4a16-mlp-only"].selects(ATTENTION)
    for recipe in recipes.values():
        assert not recipe.selects("lm_head")
        assert not recipe.selects("model.embed_tokens")
    assert recipes["nvfp4-w4a16"].quant_algo == "W4A16_NVFP4"
    assert recipes["nvfp4-w4a16-mlp-only"].quant_algo == "W4A16_NVFP4"
    assert recipes["nvfp4-w4a4"].quant_algo == "NVFP4"
    assert recipes["nvfp4-w4a4"].calibration is not None
    for recipe in recipes.values():
        assert recipe.weights.method is WeightMethod.GPTQ and recipe.calibration is not None


def test_the_shipped_data_files_are_package_data() -> None:
    """A wheel carries only the data files pyproject.toml declares; every recipe and the
    calibration text must be among them."""
    root = Path(__file__).resolve().parents[3]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = declared["package-data"]["switchyard.engine.quantization"]
    folder = root / "engine" / "quantization"
    data = [
        path.relative_to(folder)
        for path in folder.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc")
    ]
    assert len(data) >= 4
    for path in data:
        assert any(fnmatch(str(path), pattern) for pattern in patterns), path
    assert sorted(p.stem for p in (folder / "recipe_files").glob("*.yaml")) == recipe_names()
    assert (folder / "data" / "calibration.txt").stat().st_size > 2000


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("quantise: ['*']", "quantise: Extra inputs are not permitted"),
        ("activations: int8", "activations: Input should be 'bf16' or 'nvfp4'"),
        ("quantize: []", "quantize: List should have at least 1 item"),
        ("calibration: {max_tokens: 4}", "calibration.max_tokens: Input should be greater"),
        ("calibration: {sequence_lenght: 64}", "calibration.sequence_lenght: Extra inputs"),
        ("activations: nvfp4\ncalibration: null", "calibration: required when activations"),
        ("activations: bf16\ncalibration: {}", "calibration: only used when activations"),
        ("name: other", "name: not allowed"),
        ("description: ''", "description: String should have at least 1 character"),
        ("weights: {method: awq}", "weights.method: Input should be 'rtn' or 'gptq'"),
        ("weights: {method: gptq}", "weights: damp: required when method is gptq"),
        ("weights: {damp: 0.5}", "weights: damp: only used when method is gptq"),
        ("weights: {sequential: true}", "weights: sequential: only used when method is gptq"),
        ("weights: {act_order: true}", "weights: act_order: only used when method is gptq"),
        ("weights: {method: gptq, damp: 1, sequential: 2}", "weights.sequential: Input should"),
        ("weights: {method: gptq, damp: 0}", "weights.damp: Input should be greater than 0"),
        ("weights: {scale_search: {low: 1.5}}", "weights.scale_search.low: Input should be less"),
        ("weights: {scale_search: {candidates: 0}}", "weights.scale_search.candidates: Input"),
        ("weights: {scale_search: {hi: 1}}", "weights.scale_search.hi: Extra inputs"),
        (
            "activations: bf16\nweights: {method: gptq, damp: 1}\ncalibration: null",
            "calibration: required when activations is nvfp4 or weights use gptq",
        ),
    ],
)
def test_a_bad_recipe_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    base = {
        "description": "d",
        "quantize": "['*']",
        "activations": "nvfp4",
        "calibration": "{max_tokens: 64}",
    }
    lines = dict(line.split(": ", 1) for line in text.splitlines())
    path = tmp_path / "bad.yaml"
    path.write_text("\n".join(f"{key}: {value}" for key, value in {**base, **lines}.items()))
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    assert field in str(error.value)
    assert str(path) in str(error.value)


def test_a_recipe_file_by_path_is_named_after_the_file(tmp_path: Path) -> None:
    path = tmp_path / "my-recipe.yaml"
    path.write_text("description: mine\nquantize: ['*.mlp.*']\nactivations: bf16\n")
    recipe = load_recipe(path)
    assert isinstance(recipe, Recipe) and recipe.name == "my-recipe"
    assert recipe.selects(MLP) and not recipe.selects(ATTENTION)


def test_unknown_and_unreadable_recipes(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="unknown recipe 'fp8'; known recipes: nvfp4-w4a16, "):
        load_recipe("fp8")
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("quantize: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="must be a mapping"):
        load_recipe(listed)


def test_cli_lists_the_recipes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quantize", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == recipe_names()
    for line, recipe in zip(lines, list_recipes(), strict=True):
        assert line.endswith(recipe.description)


def test_cli_wants_a_recipe_and_an_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quantize", "--recipe", "nvfp4-w4a16"]) == 2
    assert "--recipe and --out are required" in capsys.readouterr().out
