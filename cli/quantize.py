"""``switchyard quantize --model M --recipe R --out DIR`` and ``switchyard quantize --list``."""

from __future__ import annotations

import argparse

from switchyard.engine.models.registry import EMBEDDED_MODELS
from switchyard.engine.quantization.recipes import RecipeError, list_recipes, load_recipe


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser(
        "quantize", help="write an NVFP4 (ModelOpt-format) checkpoint of a model under a recipe"
    )
    parser.add_argument(
        "--model",
        default="embedded",
        help=(
            f"embedded model name ({', '.join(EMBEDDED_MODELS)}; 'embedded' = the default) "
            "or a bf16 Hugging Face checkpoint directory"
        ),
    )
    parser.add_argument("--recipe", help="recipe name (see --list) or a recipe .yaml file")
    parser.add_argument("--out", help="output directory; must not exist or be empty")
    parser.add_argument("--list", action="store_true", help="list the recipes and exit")
    parser.set_defaults(run=_run)


def _list() -> int:
    recipes = list_recipes()
    width = max(len(recipe.name) for recipe in recipes)
    for recipe in recipes:
        print(f"{recipe.name:<{width}}  {recipe.description}")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.list:
        return _list()
    if not args.recipe or not args.out:
        print("error: --recipe and --out are required (or --list)")
        return 2
    # Heavy imports (torch, transformers) only once there is work to do.
    from pathlib import Path

    from switchyard.engine.models.prepare import ModelNotFound, resolve_model_path
    from switchyard.engine.quantization.checkpoint import check_output_dir, quantize_checkpoint
    from switchyard.engine.quantization.source import QuantizeError

    out = Path(args.out)
    try:
        recipe = load_recipe(args.recipe)
        check_output_dir(out)
        _, source = resolve_model_path(args.model)
        report = quantize_checkpoint(source, recipe, out)
    except (RecipeError, QuantizeError, ModelNotFound) as error:
        print(f"error: {error}")
        return 2
    print(
        f"{report.out}: {len(report.quantized)} linear layers in NVFP4 ({report.quant_algo}), "
        f"{len(report.excluded)} left in bf16; quantized layers {report.source_bytes / 1e6:.1f} MB "
        f"-> {report.quantized_bytes / 1e6:.1f} MB ({report.ratio:.3f}x) in {report.seconds:.1f} s"
    )
    return 0
