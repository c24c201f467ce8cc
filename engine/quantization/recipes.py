"""Quantization recipes: small YAML files that say which linear layers get NVFP4 weights
and whether their activations are quantized too.

A recipe is validated when it is loaded, so a typo fails before a model is read, with the
field at fault named (``calibration.max_tokens: ...``). The recipe's name is its file
name: the list of recipes is the folder's contents and nothing else.
"""

from __future__ import annotations

from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from switchyard.router.field_paths import field_path

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


class RecipeError(ValueError):
    """A recipe that does not exist or does not validate; the message names the problem."""


class Activations(StrEnum):
    # Weight-only: activations keep the model's dtype (ModelOpt's W4A16_NVFP4).
    BF16 = "bf16"
    # W4A4: activations quantized to NVFP4 at run time against calibrated scales
    # (ModelOpt's NVFP4).
    NVFP4 = "nvfp4"


class _Strict(BaseModel):
    # A misspelt key would otherwise be silently ignored and its default used.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Calibration(_Strict):
    # Tokens of the calibration text run through the model; activation maxima settle
    # after a few hundred tokens on models this size.
    max_tokens: int = Field(default=512, ge=16, le=65536)
    # Tokens per forward pass: bounds memory, and keeps every sequence well inside the
    # smallest context (and sliding window) of the models we quantize.
    sequence_length: int = Field(default=256, ge=16, le=8192)


class Recipe(_Strict):
    name: str = Field(exclude=True)
    description: str = Field(min_length=1)
    # fnmatch globs over module names (``model.layers.0.mlp.up_proj``): a linear layer is
    # quantized when it matches one of ``quantize`` and none of ``exclude``.
    quantize: list[str] = Field(min_length=1)
    exclude: list[str] = Field(default_factory=list)
    activations: Activations
    calibration: Calibration | None = None

    @model_validator(mode="after")
    def _calibration_matches_activations(self) -> Recipe:
        if self.activations is Activations.NVFP4 and self.calibration is None:
            raise ValueError("calibration: required when activations is nvfp4")
        if self.activations is Activations.BF16 and self.calibration is not None:
            raise ValueError("calibration: only used when activations is nvfp4")
        return self

    @property
    def quant_algo(self) -> str:
        """The ModelOpt ``quant_algo`` that vLLM's ``modelopt_fp4`` config dispatches on."""
        return "NVFP4" if self.activations is Activations.NVFP4 else "W4A16_NVFP4"

    def selects(self, module: str) -> bool:
        """Whether the linear layer named ``module`` is quantized under this recipe."""
        included = any(fnmatchcase(module, pattern) for pattern in self.quantize)
        return included and not any(fnmatchcase(module, pattern) for pattern in self.exclude)


def recipe_names() -> list[str]:
    return sorted(path.stem for path in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Load a shipped recipe by name, or a recipe file by path (a ``.yaml`` name)."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = RECIPES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(recipe_names())
            raise RecipeError(f"unknown recipe {str(name_or_path)!r}; known recipes: {known}")
    elif not path.is_file():
        raise RecipeError(f"recipe file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RecipeError(f"recipe {path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path}: must be a mapping at the top level")
    if "name" in data:
        raise RecipeError(f"recipe {path}: name: not allowed, the file name is the recipe's name")
    try:
        return Recipe.model_validate({**data, "name": path.stem})
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            message = item["msg"].removeprefix("Value error, ")
            location = field_path(item["loc"])
            problems.append(f"{location}: {message}" if location else message)
        raise RecipeError(f"recipe {path}: {'; '.join(problems)}") from None


def list_recipes() -> list[Recipe]:
    return [load_recipe(name) for name in recipe_names()]
