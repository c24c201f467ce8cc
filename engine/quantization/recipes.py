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

from switchyard.common.validation import describe

RECIPES_DIR = Path(__file__).resolve().parent / "recipe_files"


class RecipeError(ValueError):
    """A recipe that does not exist or does not validate; the message names the problem."""


class Activations(StrEnum):
    # Weight-only: activations keep the model's dtype (ModelOpt's W4A16_NVFP4).
    BF16 = "bf16"
    # W4A4: activations quantized to NVFP4 at run time against calibrated scales
    # (ModelOpt's NVFP4).
    NVFP4 = "nvfp4"


class WeightMethod(StrEnum):
    # Round to nearest, block scales by amax: modelopt's own bytes, no calibration.
    RTN = "rtn"
    # GPTQ onto the NVFP4 grid against each layer's calibration Hessian (gptq.py).
    GPTQ = "gptq"


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


class ScaleSearch(_Strict):
    # Each block tries its amax scale and ``candidates`` more, amax / 6 times factors
    # evenly spaced over [low, high] and rounded to E4M3, and keeps the one with the least
    # activation-weighted error (scale_search.py). E4M3 steps are 6-12% apart, so a
    # dozen candidates over +-30% reach every E4M3 value in range.
    low: float = Field(default=0.7, gt=0.0, le=1.0)
    high: float = Field(default=1.3, ge=1.0, le=2.0)
    candidates: int = Field(default=12, ge=1, le=64)

    @property
    def factors(self) -> tuple[float, ...]:
        if self.candidates == 1:
            return (self.low,)
        step = (self.high - self.low) / (self.candidates - 1)
        return tuple(self.low + step * i for i in range(self.candidates))


class Weights(_Strict):
    """How weights are rounded to NVFP4; every choice writes the same format."""

    method: WeightMethod = WeightMethod.RTN
    # GPTQ only: the Hessian X^T X gets ``damp * diag(X^T X)`` added (shrinking it toward
    # its diagonal). A few hundred calibration tokens estimate each input's energy well
    # but their correlations poorly; undamped GPTQ fits the calibration text and loses
    # elsewhere.
    damp: float | None = Field(default=None, gt=0.0, le=100.0)
    scale_search: ScaleSearch | None = None
    # GPTQ only: quantize the decoder layer by layer, each layer's Hessians taken from the
    # inputs that the already-quantized layers before it produce (sequential.py), so that
    # every layer also corrects for the error upstream of it. Off: every Hessian comes
    # from one pass of the bf16 model.
    sequential: bool = False
    # GPTQ only: round columns in order of falling input energy, block scales chosen up
    # front (gptq.py).
    act_order: bool = False

    @model_validator(mode="after")
    def _gptq_options_only_for_gptq(self) -> Weights:
        if self.method is WeightMethod.GPTQ and self.damp is None:
            raise ValueError("damp: required when method is gptq")
        if self.method is not WeightMethod.GPTQ and self.damp is not None:
            raise ValueError("damp: only used when method is gptq")
        for option in ("sequential", "act_order"):
            if self.method is not WeightMethod.GPTQ and getattr(self, option):
                raise ValueError(f"{option}: only used when method is gptq")
        return self

    @property
    def calibrated(self) -> bool:
        """Whether rounding needs calibration activations (GPTQ, or the search's weights)."""
        return self.method is WeightMethod.GPTQ or self.scale_search is not None


class Recipe(_Strict):
    name: str = Field(exclude=True)
    description: str = Field(min_length=1)
    # fnmatch globs over module names (``model.layers.0.mlp.up_proj``): a linear layer is
    # quantized when it matches one of ``quantize`` and none of ``exclude``.
    quantize: list[str] = Field(min_length=1)
    exclude: list[str] = Field(default_factory=list)
    activations: Activations
    weights: Weights = Field(default_factory=Weights)
    calibration: Calibration | None = None

    @model_validator(mode="after")
    def _calibration_matches_its_users(self) -> Recipe:
        users = "activations is nvfp4 or weights use gptq or scale_search"
        needed = self.activations is Activations.NVFP4 or self.weights.calibrated
        if needed and self.calibration is None:
            raise ValueError(f"calibration: required when {users}")
        if not needed and self.calibration is not None:
            raise ValueError(f"calibration: only used when {users}")
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
        raise RecipeError(f"recipe {path}: {describe(error)}") from None


def list_recipes() -> list[Recipe]:
    return [load_recipe(name) for name in recipe_names()]
