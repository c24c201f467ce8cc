"""Speculative decoding: the ``--speculative`` choice, recipes, and vLLM's config for it.

One flag picks the method (``ngram``, ``suffix``, ``eagle3:PATH``, ``draft:PATH``,
``mtp``, ``history`` or ``off``); everything else (how many tokens to propose, the
n-gram window) comes from :data:`RECIPES`, one declarative table keyed by model family
(the checkpoint's ``model_type``) and method, so tuning a family is a one-row change
that docs/features/speculative-decoding.md documents. Every check runs before vLLM
starts, so a bad choice stops the engine at once with a message naming what to fix,
instead of failing inside vLLM's engine core (or, worse, in the middle of a request).

Importable without vLLM: the CLI parses the flag before vLLM loads.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METHODS = ("off", "ngram", "suffix", "eagle3", "draft", "mtp", "history")
# Methods whose proposer is a separate checkpoint, given as METHOD:PATH.
WITH_PATH = ("eagle3", "draft")
# Our method name -> vLLM's ``speculative_config["method"]``.
VLLM_METHODS = {
    "ngram": "ngram",
    "suffix": "suffix",
    "eagle3": "eagle3",
    "draft": "draft_model",
    "mtp": "mtp",
    # Ours (engine/spec_history.py), loaded by vLLM from speculative_config["model"].
    "history": "custom_class",
}
HISTORY_PROPOSER = "switchyard.engine.spec_history.HistoryProposer"
ANY_FAMILY = "*"
SUFFIX_PACKAGE = "arctic-inference"
SUFFIX_MODULE = "arctic_inference"
# The version vLLM 0.32 names in its own install hint.
SUFFIX_INSTALL = "pip install arctic-inference==0.1.1"


class SpeculativeConfigError(ValueError):
    """The speculative-decoding choice cannot work with this model; says why."""


@dataclass(frozen=True)
class SpeculativeChoice:
    """What the operator asked for: a method, its checkpoint if it needs one, and K."""

    method: str = "off"
    path: str | None = None
    # Tokens proposed per step; None takes the recipe's.
    num_tokens: int | None = None

    @property
    def enabled(self) -> bool:
        return self.method != "off"

    def label(self) -> str:
        return f"{self.method}:{self.path}" if self.path else self.method


@dataclass(frozen=True)
class Recipe:
    """Defaults for one method on one model family, and the reason for them."""

    # None: vLLM's own default for the method (suffix decoding sizes its drafts itself).
    num_speculative_tokens: int | None
    why: str
    # Further ``speculative_config`` keys for vLLM.
    options: Mapping[str, Any] = field(default_factory=dict)


# (model family, method) -> Recipe. A family's own row wins over the ANY_FAMILY row; a
# method with no row for the family and none for ANY_FAMILY is refused (MTP needs
# prediction layers only some families ship). Families are HF ``model_type`` values.
RECIPES: Mapping[tuple[str, str], Recipe] = {
    (ANY_FAMILY, "ngram"): Recipe(
        4,
        "prompt lookup: free (no weights, no extra forward), and long matches are common "
        "when the answer copies its input (code edits, quoting summaries, RAG); 2-5 token "
        "matches find more of them than vLLM's default of exactly 5",
        {"prompt_lookup_min": 2, "prompt_lookup_max": 5},
    ),
    (ANY_FAMILY, "suffix"): Recipe(
        None,
        "suffix trees over the prompt and earlier answers; it sizes each draft from match "
        "confidence, up to vLLM's tree depth of 24, so K is a ceiling, not a length",
    ),
    (ANY_FAMILY, "history"): Recipe(
        4,
        "our proposer: counts of what followed each 2-6-gram in the request's own context "
        "and in recently served requests, drafting only while the estimated chance that "
        "the whole draft is accepted stays >= 0.7; fewer rejected draft tokens than "
        "n-gram, which pays where verification is not free (concurrency 8 on CPU)",
        {"model": HISTORY_PROPOSER},
    ),
    (ANY_FAMILY, "draft"): Recipe(
        4,
        "a smaller model of the same tokenizer: its acceptance falls with every position, "
        "and past about 4 tokens the draft's own steps cost more than they save",
    ),
    (ANY_FAMILY, "eagle3"): Recipe(
        3,
        "EAGLE-3 heads are trained to chain a few steps off the target's hidden states; "
        "acceptance drops sharply after ~3",
    ),
    ("deepseek_v3", "mtp"): Recipe(
        1,
        "one MTP layer in the checkpoint; longer chains reuse it with falling acceptance",
    ),
    ("glm4_moe", "mtp"): Recipe(1, "one MTP layer in the checkpoint"),
    ("mimo", "mtp"): Recipe(1, "MTP layers trained for the next token first"),
    ("qwen3_next", "mtp"): Recipe(2, "the model card's setting for its MTP module"),
}


def parse_choice(value: str) -> SpeculativeChoice:
    """``--speculative`` as typed: ``METHOD`` or ``METHOD:PATH``. Raises ValueError."""
    method, _, path = value.partition(":")
    method = method.strip().lower()
    if method not in METHODS:
        raise ValueError(
            f"unknown speculative method {method!r}; expected one of "
            f"{', '.join(m + ':PATH' if m in WITH_PATH else m for m in METHODS)}"
        )
    if method in WITH_PATH and not path:
        raise ValueError(f"{method} needs a checkpoint: --speculative {method}:PATH")
    if method not in WITH_PATH and path:
        raise ValueError(f"{method} takes no checkpoint, got {value!r}")
    return SpeculativeChoice(method, path or None)


def model_family(model_path: Path) -> str:
    """The checkpoint's ``model_type``, the key of :data:`RECIPES`."""
    config = _read_config(model_path)
    family = config.get("model_type")
    if not isinstance(family, str):
        raise SpeculativeConfigError(f"{model_path / 'config.json'} has no model_type")
    return family


def recipe_for(family: str, method: str) -> Recipe:
    recipe = RECIPES.get((family, method)) or RECIPES.get((ANY_FAMILY, method))
    if recipe is None:
        families = sorted(f for f, m in RECIPES if m == method)
        raise SpeculativeConfigError(
            f"--speculative {method}: no recipe for model family {family!r}; "
            f"known families: {', '.join(families) or 'none'}"
        )
    return recipe


def vllm_speculative_config(
    choice: SpeculativeChoice, model_path: Path, *, resolve_path: Any = None
) -> dict[str, Any] | None:
    """vLLM's ``speculative_config`` for ``choice`` on the target at ``model_path``.

    None when speculation is off. ``resolve_path`` maps an embedded model name to its
    checkpoint directory (for ``draft:NAME``); without it PATH must be a directory.
    Raises SpeculativeConfigError naming what is wrong or missing.
    """
    if not choice.enabled:
        if choice.num_tokens is not None:
            raise SpeculativeConfigError("--num-speculative-tokens needs --speculative (it is off)")
        return None
    if choice.num_tokens is not None and choice.num_tokens < 1:
        raise SpeculativeConfigError(
            f"--num-speculative-tokens must be >= 1, got {choice.num_tokens}"
        )
    family = model_family(model_path)
    recipe = recipe_for(family, choice.method)
    config: dict[str, Any] = {"method": VLLM_METHODS[choice.method], **recipe.options}
    k = choice.num_tokens if choice.num_tokens is not None else recipe.num_speculative_tokens
    if k is not None:
        config["num_speculative_tokens"] = k
    if choice.method == "suffix":
        _require_suffix_package()
        if k is not None:
            # K is the ceiling on a draft; the tree must be at least that deep.
            config["suffix_decoding_max_tree_depth"] = max(k, 1)
    elif choice.method == "mtp":
        _require_mtp_layers(model_path, family)
    elif choice.method in WITH_PATH:
        proposer = _checkpoint(choice, resolve_path)
        if choice.method == "draft":
            check_same_tokenizer(model_path, proposer)
        config["model"] = str(proposer)
    return config


def _read_config(model_path: Path) -> dict[str, Any]:
    path = Path(model_path) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SpeculativeConfigError(f"cannot read {path}: {error}") from None


def _require_suffix_package() -> None:
    if importlib.util.find_spec(SUFFIX_MODULE) is None:
        raise SpeculativeConfigError(
            f"--speculative suffix needs the {SUFFIX_PACKAGE} package (Python module "
            f"{SUFFIX_MODULE}), which is not installed; install it with "
            f"`{SUFFIX_INSTALL}`, or use --speculative ngram"
        )


def _require_mtp_layers(model_path: Path, family: str) -> None:
    layers = _read_config(model_path).get("num_nextn_predict_layers")
    if not layers:
        raise SpeculativeConfigError(
            f"--speculative mtp: the {family} checkpoint at {model_path} has no "
            "multi-token-prediction layers (num_nextn_predict_layers is "
            f"{layers!r} in its config.json)"
        )


def _checkpoint(choice: SpeculativeChoice, resolve_path: Any) -> Path:
    assert choice.path is not None
    if resolve_path is not None:
        try:
            return Path(resolve_path(choice.path))
        except Exception as error:  # the resolver's own message says what is wrong
            raise SpeculativeConfigError(f"--speculative {choice.label()}: {error}") from None
    path = Path(choice.path).expanduser()
    if not (path / "config.json").is_file():
        raise SpeculativeConfigError(
            f"--speculative {choice.label()}: {path} is not a checkpoint directory (no config.json)"
        )
    return path.resolve()


def check_same_tokenizer(target: Path, draft: Path) -> None:
    """Refuse a draft whose token ids mean something else than the target's.

    vLLM verifies draft token ids against the target's logits: with another vocabulary
    the drafts are nonsense (acceptance near zero) or ids past the target's vocabulary,
    so the mismatch is an operator error, best reported before anything loads.
    """
    from transformers import AutoTokenizer

    vocabs = {}
    for role, path in (("target", target), ("draft", draft)):
        try:
            vocabs[role] = AutoTokenizer.from_pretrained(str(path)).get_vocab()
        except Exception as error:
            raise SpeculativeConfigError(
                f"--speculative draft: cannot load the {role}'s tokenizer from {path}: {error}"
            ) from None
    target_vocab, draft_vocab = vocabs["target"], vocabs["draft"]
    if target_vocab == draft_vocab:
        return
    differing = next(
        (t for t in sorted(set(target_vocab) ^ set(draft_vocab)) if t),
        None,
    )
    if differing is None:  # same tokens, different ids
        differing = next(t for t in sorted(target_vocab) if target_vocab[t] != draft_vocab[t])
    raise SpeculativeConfigError(
        f"--speculative draft:{draft}: the draft model's tokenizer differs from the "
        f"target's ({len(draft_vocab)} vs {len(target_vocab)} tokens; e.g. {differing!r} "
        f"is id {draft_vocab.get(differing)} in the draft and {target_vocab.get(differing)} "
        "in the target). A draft model must share the target's tokenizer."
    )
