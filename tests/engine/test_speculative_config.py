"""``--speculative`` parsing, recipes and validation: everything before vLLM starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from switchyard.engine import speculative
from switchyard.engine.config import RuntimeConfig
from switchyard.engine.models.prepare import prepare
from switchyard.engine.speculative import (
    RECIPES,
    SpeculativeChoice,
    SpeculativeConfigError,
    parse_choice,
    vllm_speculative_config,
)


def checkpoint(tmp_path: Path, model_type: str, **config: object) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type, **config}))
    return tmp_path


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("off", SpeculativeChoice("off")),
        ("ngram", SpeculativeChoice("ngram")),
        ("NGram", SpeculativeChoice("ngram")),
        ("suffix", SpeculativeChoice("suffix")),
        ("mtp", SpeculativeChoice("mtp")),
        ("history", SpeculativeChoice("history")),
        ("eagle3:/models/head", SpeculativeChoice("eagle3", "/models/head")),
        ("draft:/models/small:v2", SpeculativeChoice("draft", "/models/small:v2")),
    ],
)
def test_parse_choice(value: str, expected: SpeculativeChoice) -> None:
    assert parse_choice(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "medusa",
            "unknown speculative method 'medusa'; expected one of off, ngram, suffix, "
            "eagle3:PATH, draft:PATH, mtp, history",
        ),
        ("", "unknown speculative method ''"),
        ("draft", "draft needs a checkpoint: --speculative draft:PATH"),
        ("eagle3:", "eagle3 needs a checkpoint"),
        ("ngram:/x", "ngram takes no checkpoint"),
        ("history:/x", "history takes no checkpoint"),
    ],
)
def test_parse_choice_refuses(value: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_choice(value)


def test_off_maps_to_no_config(tmp_path: Path) -> None:
    assert vllm_speculative_config(SpeculativeChoice(), checkpoint(tmp_path, "llama")) is None
    assert RuntimeConfig().speculative == SpeculativeChoice()


def test_ngram_takes_the_recipe(tmp_path: Path) -> None:
    config = vllm_speculative_config(SpeculativeChoice("ngram"), checkpoint(tmp_path, "llama"))
    recipe = RECIPES[("*", "ngram")]
    assert config == {
        "method": "ngram",
        "num_speculative_tokens": recipe.num_speculative_tokens,
        **recipe.options,
    }


def test_history_is_our_custom_class_proposer(tmp_path: Path) -> None:
    path = checkpoint(tmp_path, "gemma3_text")
    assert vllm_speculative_config(SpeculativeChoice("history"), path) == {
        "method": "custom_class",
        "model": "switchyard.engine.spec_history.HistoryProposer",
        "num_speculative_tokens": 4,
    }
    choice = SpeculativeChoice("history", num_tokens=6)
    assert vllm_speculative_config(choice, path)["num_speculative_tokens"] == 6


def test_explicit_k_wins_over_the_recipe(tmp_path: Path) -> None:
    choice = SpeculativeChoice("ngram", num_tokens=7)
    config = vllm_speculative_config(choice, checkpoint(tmp_path, "gemma3_text"))
    assert config["num_speculative_tokens"] == 7


def test_family_row_wins_over_the_any_family_row(tmp_path: Path, monkeypatch) -> None:
    rows = dict(RECIPES)
    rows[("gemma3_text", "ngram")] = speculative.Recipe(6, "test", {"prompt_lookup_max": 3})
    monkeypatch.setattr(speculative, "RECIPES", rows)
    gemma = vllm_speculative_config(
        SpeculativeChoice("ngram"), checkpoint(tmp_path / "g", "gemma3_text")
    )
    llama = vllm_speculative_config(SpeculativeChoice("ngram"), checkpoint(tmp_path / "l", "llama"))
    assert gemma == {"method": "ngram", "num_speculative_tokens": 6, "prompt_lookup_max": 3}
    assert llama["num_speculative_tokens"] == RECIPES[("*", "ngram")].num_speculative_tokens


def test_every_recipe_is_well_formed() -> None:
    for (family, method), recipe in RECIPES.items():
        assert method in speculative.VLLM_METHODS, (family, method)
        assert recipe.why, (family, method)
        k = recipe.num_speculative_tokens
        assert k is None or k >= 1, (family, method)


@pytest.mark.parametrize("k", [0, -3])
def test_k_below_one_is_refused(tmp_path: Path, k: int) -> None:
    with pytest.raises(SpeculativeConfigError, match=f"must be >= 1, got {k}"):
        vllm_speculative_config(
            SpeculativeChoice("ngram", num_tokens=k), checkpoint(tmp_path, "llama")
        )


def test_k_without_a_method_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpeculativeConfigError, match="needs --speculative"):
        vllm_speculative_config(SpeculativeChoice(num_tokens=4), checkpoint(tmp_path, "llama"))


def test_suffix_names_the_missing_package(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(speculative.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SpeculativeConfigError) as error:
        vllm_speculative_config(SpeculativeChoice("suffix"), checkpoint(tmp_path, "llama"))
    assert "needs the arctic-inference package" in str(error.value)
    assert "pip install arctic-inference==" in str(error.value)


def test_suffix_with_the_package_maps_k_to_tree_depth(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(speculative.importlib.util, "find_spec", lambda name: object())
    path = checkpoint(tmp_path, "llama")
    assert vllm_speculative_config(SpeculativeChoice("suffix"), path) == {"method": "suffix"}
    assert vllm_speculative_config(SpeculativeChoice("suffix", num_tokens=8), path) == {
        "method": "suffix",
        "num_speculative_tokens": 8,
        "suffix_decoding_max_tree_depth": 8,
    }


def test_mtp_needs_a_family_with_a_recipe(tmp_path: Path) -> None:
    with pytest.raises(SpeculativeConfigError) as error:
        vllm_speculative_config(SpeculativeChoice("mtp"), checkpoint(tmp_path, "gemma3_text"))
    message = str(error.value)
    assert "no recipe for model family 'gemma3_text'" in message
    assert "deepseek_v3" in message and "qwen3_next" in message


def test_mtp_needs_prediction_layers(tmp_path: Path) -> None:
    with pytest.raises(SpeculativeConfigError, match="has no multi-token-prediction layers"):
        vllm_speculative_config(SpeculativeChoice("mtp"), checkpoint(tmp_path, "deepseek_v3"))
    path = checkpoint(tmp_path, "deepseek_v3", num_nextn_predict_layers=1)
    assert vllm_speculative_config(SpeculativeChoice("mtp"), path) == {
        "method": "mtp",
        "num_speculative_tokens": 1,
    }


def test_eagle3_needs_a_checkpoint_directory(tmp_path: Path) -> None:
    target = checkpoint(tmp_path / "target", "llama")
    with pytest.raises(SpeculativeConfigError, match="is not a checkpoint directory"):
        vllm_speculative_config(SpeculativeChoice("eagle3", str(tmp_path / "nowhere")), target)
    head = checkpoint(tmp_path / "head", "llama")
    config = vllm_speculative_config(SpeculativeChoice("eagle3", str(head)), target)
    assert config == {"method": "eagle3", "num_speculative_tokens": 3, "model": str(head)}


def test_missing_target_config_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpeculativeConfigError, match=r"cannot read .*config\.json"):
        vllm_speculative_config(SpeculativeChoice("ngram"), tmp_path)


# The draft-model checks use the two embedded models' real tokenizers.


@pytest.fixture(scope="module")
def embedded_paths() -> dict[str, Path]:
    return {name: prepare(name) for name in ("smollm2-135m-instruct", "gemma-3-270m")}


def test_draft_with_another_tokenizer_is_refused(embedded_paths: dict[str, Path]) -> None:
    target, draft = embedded_paths["smollm2-135m-instruct"], embedded_paths["gemma-3-270m"]
    with pytest.raises(SpeculativeConfigError) as error:
        vllm_speculative_config(SpeculativeChoice("draft", str(draft)), target)
    message = str(error.value)
    assert "the draft model's tokenizer differs from the target's" in message
    assert "262144 vs 49152 tokens" in message


def test_draft_with_the_same_tokenizer_maps_to_draft_model(
    embedded_paths: dict[str, Path],
) -> None:
    target = embedded_paths["smollm2-135m-instruct"]
    # By embedded name, resolved to its checkpoint the way the engine resolves models.
    config = vllm_speculative_config(
        SpeculativeChoice("draft", "smollm2-135m-instruct"),
        target,
        resolve_path=lambda name: embedded_paths[name],
    )
    assert config == {"method": "draft_model", "num_speculative_tokens": 4, "model": str(target)}


def test_draft_resolver_errors_are_named(embedded_paths: dict[str, Path]) -> None:
    def resolve(name: str) -> Path:
        raise FileNotFoundError(f"model {name!r} is not here")

    with pytest.raises(SpeculativeConfigError, match="draft:nope: model 'nope' is not here"):
        vllm_speculative_config(
            SpeculativeChoice("draft", "nope"),
            embedded_paths["gemma-3-270m"],
            resolve_path=resolve,
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--speculative", "lookahead"], "argument --speculative: unknown speculative method"),
        (
            ["--speculative", "ngram", "--num-speculative-tokens", "0"],
            "--num-speculative-tokens must be >= 1, got 0",
        ),
        (["--speculative", "mtp"], "no recipe for model family 'llama'"),
        (["--speculative", "draft:/nowhere/model"], "draft:/nowhere/model: model '/nowhere"),
    ],
)
def test_engine_serve_refuses_at_start(args: list[str], message: str) -> None:
    """The engine exits with the reason before loading vLLM's engine, not mid-request."""
    result = subprocess.run(
        [sys.executable, "-m", "switchyard.cli.main", "engine", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
