"""``switchyard eval perplexity``: the arithmetic on hand-computed numbers, the windowing,
the checkpoint byte count, the CLI's refusals, and one real engine scoring the held-out
text against a shuffled copy of it."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from importlib import resources
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from switchyard.cli.eval import markdown_table, write_json
from switchyard.cli.main import main
from switchyard.engine.config import RuntimeConfig
from switchyard.engine.eval.perplexity import (
    PerplexityReport,
    heldout_text,
    make_windows,
    perplexity,
)
from switchyard.engine.eval.runner import Scorer
from switchyard.engine.eval.weights import WeightBytes, checkpoint_weight_bytes
from switchyard.engine.quantization.calibration import CALIBRATION_TEXT

MODEL = "smollm2-135m-instruct"
# The text the shipped recipes' settings were chosen on (docs/features/nvfp4.md).
DEVELOPMENT_TEXT = resources.files("switchyard.engine.eval").joinpath("data/development.txt")
SCORED_TOKENS = 128


def test_perplexity_is_exp_of_mean_nll() -> None:
    # p = 1/2 and 1/4: mean NLL = (ln 2 + ln 4) / 2 = 1.5 ln 2, so perplexity = 2 ** 1.5.
    assert perplexity([math.log(0.5), math.log(0.25)]) == pytest.approx(2**1.5, rel=1e-12)
    # A model sure of every token scores 1; one that spreads evenly over 10 tokens, 10.
    assert perplexity([0.0, 0.0, 0.0]) == 1.0
    assert perplexity([math.log(0.1)] * 7) == pytest.approx(10.0, rel=1e-12)
    assert math.isnan(perplexity([math.log(0.5), math.nan]))
    with pytest.raises(ValueError, match="no scored tokens"):
        perplexity([])


def _scored(windows) -> list[int]:
    return [t for w in windows for t in w.token_ids[w.first_scored :]]


def test_windows_without_prefix_overlap_by_one_token() -> None:
    ids = list(range(10))
    windows = make_windows(ids, [], context_len=4)
    assert [w.token_ids for w in windows] == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    # Every token but the first is scored exactly once.
    assert _scored(windows) == ids[1:]
    capped = make_windows(ids, [], context_len=4, max_tokens=5)
    assert [w.token_ids for w in capped] == [[0, 1, 2, 3], [3, 4, 5]]
    assert len(_scored(capped)) == 5


def test_windows_with_prefix_score_every_text_token() -> None:
    ids = list(range(10))
    windows = make_windows(ids, [99], context_len=4)
    assert [w.token_ids for w in windows] == [[99, 0, 1, 2], [99, 3, 4, 5], [99, 6, 7, 8], [99, 9]]
    assert _scored(windows) == ids


@pytest.mark.parametrize(
    ("ids", "prefix", "context_len", "max_tokens", "message"),
    [
        ([1, 2, 3], [], 1, None, "leaves no token to score"),
        ([1, 2, 3], [7], 1, None, "leaves no token to score"),
        ([1, 2, 3], [], 4, 0, "max_tokens must be >= 1"),
        ([1], [], 4, None, "nothing to score"),
    ],
)
def test_windows_refuse_what_cannot_be_scored(ids, prefix, context_len, max_tokens, message):
    with pytest.raises(ValueError, match=message):
        make_windows(ids, prefix, context_len, max_tokens)


def _shingles(text: str, n: int = 6) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_heldout_text_is_not_the_calibration_text() -> None:
    heldout = heldout_text()
    assert len(heldout) > 10_000
    shared = _shingles(heldout) & _shingles(CALIBRATION_TEXT.read_text())
    assert not shared, f"held-out and calibration texts share {sorted(shared)[:5]}"


def test_development_text_is_neither_heldout_nor_calibration_text() -> None:
    """Recipe settings are chosen on the development text, so it must not be the text they
    are reported on (held-out) nor the one they are fitted to (calibration)."""
    development = DEVELOPMENT_TEXT.read_text()
    assert len(development) > 10_000
    others = {"held-out": heldout_text(), "calibration": CALIBRATION_TEXT.read_text()}
    for name, other in others.items():
        shared = _shingles(development) & _shingles(other)
        assert not shared, f"development and {name} texts share {sorted(shared)[:5]}"


def _checkpoint(directory: Path, tensors: dict[str, torch.Tensor], config: dict) -> Path:
    directory.mkdir()
    save_file(tensors, directory / "model.safetensors")
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_weight_bytes_of_a_bf16_checkpoint(tmp_path: Path) -> None:
    tensors = {
        "embed.weight": torch.zeros(32, 8, dtype=torch.bfloat16),
        "norm.weight": torch.zeros(8, dtype=torch.float32),
    }
    bytes_ = checkpoint_weight_bytes(_checkpoint(tmp_path / "bf16", tensors, {}))
    assert bytes_ == WeightBytes(total=32 * 8 * 2 + 8 * 4)
    assert bytes_.quantized_ratio is None


def test_weight_bytes_count_packed_layers_and_their_scales(tmp_path: Path) -> None:
    # One NVFP4 linear with 8 outputs and 32 inputs: 8 x 16 packed bytes, 8 x 2 E4M3 block
    # scales, an fp32 global scale; in bf16 it would be 8 x 32 x 2 bytes.
    tensors = {
        "proj.weight": torch.zeros(8, 16, dtype=torch.uint8),
        "proj.weight_scale": torch.zeros(8, 2, dtype=torch.float8_e4m3fn),
        "proj.weight_scale_2": torch.zeros((), dtype=torch.float32),
        "embed.weight": torch.zeros(32, 8, dtype=torch.bfloat16),
    }
    config = {"quantization_config": {"quant_method": "modelopt"}}
    bytes_ = checkpoint_weight_bytes(_checkpoint(tmp_path / "nvfp4", tensors, config))
    quantized = 8 * 16 + 8 * 2 + 4
    assert bytes_ == WeightBytes(
        total=quantized + 32 * 8 * 2,
        quantized_layers=quantized,
        quantized_layers_bf16=8 * 32 * 2,
        quantized_layer_count=1,
    )
    assert bytes_.quantized_ratio == pytest.approx(quantized / 512)


def test_weight_bytes_refuse_a_folder_without_weights(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"holds no \*\.safetensors"):
        checkpoint_weight_bytes(tmp_path)


def _report(model: str, value: float, weights: WeightBytes) -> PerplexityReport:
    return PerplexityReport(
        model=model,
        path=f"/models/{model}",
        dtype="bfloat16",
        context_len=1024,
        tokens=4096,
        perplexity=value,
        load_s=20.0,
        score_s=30.0,
        wall_s=50.0,
        weights=weights,
        enforce_eager=True,
    )


def test_table_compares_with_the_first_model_and_json_round_trips(tmp_path: Path) -> None:
    reports = [
        _report("bf16", 20.0, WeightBytes(total=2_000_000)),
        _report("w4", 22.0, WeightBytes(1_000_000, 280_000, 1_000_000, 7)),
    ]
    table = markdown_table(reports).splitlines()
    assert len(table) == 4
    assert "| 20.000 | +0.00% |" in table[2]
    assert "| 22.000 | +10.00% |" in table[3] and "0.280x bf16" in table[3]
    path = tmp_path / "out" / "ppl.json"
    write_json(path, reports)
    written = json.loads(path.read_text())["perplexity"]
    assert [r["perplexity"] for r in written] == [20.0, 22.0]
    assert written[1]["weights"]["quantized_ratio"] == pytest.approx(0.28)
    assert [p.name for p in path.parent.iterdir()] == ["ppl.json"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "no-such-model"], "'no-such-model' is neither an embedded model"),
        (["--model", MODEL, "--max-tokens", "0"], "--max-tokens must be >= 1, got 0"),
        (["--model", MODEL, "--context-len", "1"], "--context-len must be >= 2, got 1"),
    ],
)
def test_cli_refuses_bad_input_before_starting_an_engine(argv, message, tmp_path: Path) -> None:
    out = tmp_path / "never.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "perplexity", *argv, "--json", str(out)])
    assert message in str(exit_info.value.code)
    assert not out.exists()


def _bad_text_files(folder: Path) -> list[tuple[Path, str]]:
    (folder / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (folder / "blank.txt").write_text(" \n\t\n")
    (folder / "subdir").mkdir()
    return [
        (folder / "missing.txt", "missing.txt: no such file"),
        (folder / "subdir", "subdir: is a directory, not a text file"),
        (folder / "latin1.txt", "latin1.txt: not UTF-8 text (byte 3: invalid continuation"),
        (folder / "blank.txt", "blank.txt: the file has no text to score"),
    ]


def test_cli_refuses_a_text_it_cannot_score_before_starting_an_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_engine(*_args, **_kwargs):
        raise AssertionError("an engine was started for a text that cannot be scored")

    monkeypatch.setattr("switchyard.engine.eval.runner.evaluate", no_engine)
    out = tmp_path / "never.json"
    for path, message in _bad_text_files(tmp_path):
        with pytest.raises(SystemExit) as exit_info:
            main(["eval", "perplexity", "--model", MODEL, "--text", str(path), "--json", str(out)])
        assert f"error: --text {tmp_path / message}" in str(exit_info.value.code)
        assert not out.exists()


@pytest.mark.parametrize("given", [True, False])
def test_cli_scores_the_given_text_or_else_the_heldout_text(
    given: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's wiring; what ``evaluate`` does with a text is the real-engine test below."""
    text = tmp_path / "domain.txt"
    text.write_text("Invoices are due thirty days after the delivery date.\n")
    scored: list[str] = []

    async def evaluate(config, content, context_len, max_tokens, text_name):
        scored.append(content)
        report = _report(config.model, 20.0, WeightBytes(total=1))
        return dataclasses.replace(report, text=text_name, tokens=max_tokens)

    monkeypatch.setattr("switchyard.engine.eval.runner.evaluate", evaluate)
    out = tmp_path / "ppl.json"
    argv = ["eval", "perplexity", "--model", MODEL, "--max-tokens", "7", "--json", str(out)]
    assert main([*argv, "--text", str(text)] if given else argv) == 0
    assert scored == [text.read_text() if given else heldout_text()]
    (report,) = json.loads(out.read_text())["perplexity"]
    assert report["text"] == (str(text) if given else "heldout")
    assert report["tokens"] == 7


async def test_engine_perplexity_is_plausible_and_shuffling_ruins_it() -> None:
    """One real engine (SmolLM2 in bf16, eager), started and stopped here."""
    config = RuntimeConfig(model=MODEL, dtype="bfloat16", kv_cache_gib=1, enforce_eager=True)
    scorer = Scorer.start(config, context_len=64)
    try:
        windows = scorer.windows(heldout_text(), SCORED_TOKENS)
        logprobs = await scorer.logprobs(windows)
        text_ids, prefix = scorer.tokenize(heldout_text())
        shuffled_ids = text_ids[: SCORED_TOKENS + 1]
        random.Random(0).shuffle(shuffled_ids)
        shuffled = make_windows(shuffled_ids, prefix, scorer.context_len, SCORED_TOKENS)
        scrambled = perplexity(await scorer.logprobs(shuffled))
    finally:
        scorer.shutdown()

    assert len(windows) > 1  # several windows, scored concurrently
    assert len(logprobs) == SCORED_TOKENS
    assert all(value <= 0.0 for value in logprobs)
    real = perplexity(logprobs)
    # A 135M model on plain English prose: tens, far from both 1 and the vocabulary size.
    assert 5.0 < real < 200.0, real
    assert scrambled > 10 * real, (real, scrambled)
