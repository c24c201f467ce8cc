"""Convert embedded GGUF weights into bf16 Hugging Face checkpoints, once, safely.

A prepared model is a directory under ``$SWITCHYARD_HOME/models/<name>`` holding a
config, safetensors weights, a tokenizer with its chat template, and a manifest of
sha256 checksums written last. A directory whose manifest is missing, stale or does not
match its files is treated as absent and rebuilt. Conversion happens in a temporary
directory beside the target and is renamed into place, so a crash never leaves a
half-written model where the engine would load it; a file lock keeps two processes
from converting the same model at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from switchyard.engine.models.registry import (
    EMBEDDED_MODELS,
    EmbeddedModel,
    ModelSourceMissing,
    resolve_name,
)

log = logging.getLogger(__name__)

MANIFEST = "switchyard-manifest.json"
# Bump when the conversion code's output changes, so existing caches are rebuilt. Changes
# to a model's registry entry are caught by its recipe fingerprint instead.
CONVERTER_VERSION = 1
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


class ModelNotFound(ValueError):
    """A name that is neither an embedded model nor a checkpoint directory."""


def switchyard_home() -> Path:
    return Path(os.environ.get("SWITCHYARD_HOME") or Path.home() / ".cache" / "switchyard")


def model_dir(name: str) -> Path:
    return switchyard_home() / "models" / name


@dataclass(frozen=True)
class ModelStatus:
    name: str
    architecture: str
    description: str
    path: Path
    prepared: bool
    # The checkpoint directory on disk (0 when there is none).
    size_bytes: int
    problem: str | None
    # The GGUF in its package, known before preparation; None when the package is missing.
    source_bytes: int | None = None
    source_problem: str | None = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def recipe_fingerprint(model: EmbeddedModel) -> str:
    """Hash of everything in a registry entry that shapes the converted checkpoint."""
    recipe = {
        "converter_version": CONVERTER_VERSION,
        "architecture": model.architecture,
        "chat_template": model.chat_template,
        "add_bos": model.add_bos,
        "extra_eos_tokens": list(model.extra_eos_tokens),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def verify(directory: Path, model: EmbeddedModel | None = None) -> str | None:
    """Return why ``directory`` is not a complete prepared model, or None if it is.

    With ``model``, a checkpoint converted under a different recipe is stale too.
    """
    manifest_path = directory / MANIFEST
    if not directory.is_dir():
        return "not prepared"
    if not manifest_path.is_file():
        return f"no {MANIFEST} (partial or foreign directory)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, dict[str, object]] = manifest["files"]
        version = manifest["converter_version"]
        recipe = manifest.get("recipe")
    except (ValueError, KeyError, TypeError) as error:
        return f"unreadable {MANIFEST}: {error}"
    if version != CONVERTER_VERSION:
        return f"prepared by converter v{version}, current is v{CONVERTER_VERSION}"
    if model is not None and recipe != recipe_fingerprint(model):
        return f"prepared under an older recipe for {model.name}"
    for required in REQUIRED_FILES:
        if required not in files:
            return f"manifest lacks {required}"
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["size"]:
            return f"{name} has {path.stat().st_size} bytes, manifest says {expected['size']}"
        if _sha256(path) != expected["sha256"]:
            return f"{name} does not match its sha256"
    return None


def _write_manifest(directory: Path, model: EmbeddedModel, source_sha256: str) -> None:
    files = {
        path.name: {"size": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(directory.iterdir())
        if path.is_file()
    }
    manifest = {
        "model": model.name,
        "converter_version": CONVERTER_VERSION,
        "recipe": recipe_fingerprint(model),
        "source_package": model.package,
        "source_sha256": source_sha256,
        "files": files,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def convert_gguf(model: EmbeddedModel, gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF into a bf16 Hugging Face checkpoint in ``out_dir``.

    transformers reads both the weights and the tokenizer out of the GGUF (undoing
    llama.cpp's q/k permutation); what GGUF does not carry is patched in here.
    """
    import torch
    from tokenizers import processors
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.utils import logging as transformers_logging

    # Per-tensor progress bars and dtype advice are noise in `make` output.
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()

    folder, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    network = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.bfloat16)
    # The loaded model is marked as GGUF-quantized, which save_pretrained refuses; its
    # tensors are already plain bf16.
    network.hf_quantizer = None
    network.config.__dict__.pop("quantization_config", None)
    network.config.architectures = [model.architecture]

    if model.add_bos:
        bos = tokenizer.bos_token
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A $B",
            special_tokens=[(bos, tokenizer.bos_token_id)],
        )
    if model.chat_template is not None:
        tokenizer.chat_template = model.chat_template

    eos_ids = [tokenizer.eos_token_id]
    eos_ids += [tokenizer.convert_tokens_to_ids(token) for token in model.extra_eos_tokens]
    generation = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_ids if len(eos_ids) > 1 else eos_ids[0],
        pad_token_id=tokenizer.pad_token_id,
    )
    network.generation_config = generation

    network.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    generation.save_pretrained(out_dir)


@contextmanager
def _lock(name: str) -> Iterator[None]:
    locks = switchyard_home() / "models" / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / f"{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(name: str, *, force: bool = False) -> Path:
    """Make sure the embedded model ``name`` is prepared; return its directory."""
    name = resolve_name(name)
    model = EMBEDDED_MODELS.get(name)
    if model is None:
        raise ModelNotFound(
            f"unknown embedded model {name!r}; choose one of {sorted(EMBEDDED_MODELS)}"
        )
    target = model_dir(name)
    with _lock(name):
        if not force and verify(target, model) is None:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=target.parent) as scratch:
            scratch_path = Path(scratch)
            staged = scratch_path / "checkpoint"
            log.info("preparing %s (once): converting its GGUF to a bf16 checkpoint", name)
            gguf_path = model.locate_gguf(scratch_path)
            convert_gguf(model, gguf_path, staged)
            _write_manifest(staged, model, _sha256(gguf_path))
            if target.exists():
                # Move the stale copy aside first: rename is atomic, rmtree is not.
                target.rename(scratch_path / "stale")
            staged.rename(target)
    return target


def resolve_model_path(name_or_path: str) -> tuple[str, Path]:
    """Turn a model argument into ``(served name, checkpoint directory)``.

    An embedded model name (or ``embedded``) is prepared on demand; anything else must
    be a Hugging Face checkpoint directory.
    """
    check_model(name_or_path)
    name = resolve_name(name_or_path)
    if name in EMBEDDED_MODELS:
        return name, prepare(name)
    path = Path(name_or_path).expanduser().resolve()
    return path.name, path


def check_model(name_or_path: str) -> None:
    """Refuse a model argument that names nothing servable, without preparing anything:
    the early answer a command gives before it starts servers."""
    if resolve_name(name_or_path) in EMBEDDED_MODELS:
        return
    if not (Path(name_or_path).expanduser() / "config.json").is_file():
        raise ModelNotFound(
            f"model {name_or_path!r} is neither an embedded model "
            f"({', '.join(EMBEDDED_MODELS)}) nor a directory with a Hugging Face config.json"
        )


def embedded_status() -> list[ModelStatus]:
    rows = []
    for model in EMBEDDED_MODELS.values():
        directory = model_dir(model.name)
        problem = verify(directory, model)
        size = (
            sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
            if directory.is_dir()
            else 0
        )
        try:
            source_bytes, source_problem = model.source_bytes(), None
        except ModelSourceMissing as error:
            source_bytes, source_problem = None, str(error)
        rows.append(
            ModelStatus(
                name=model.name,
                architecture=model.architecture,
                description=model.description,
                path=directory,
                prepared=problem is None,
                size_bytes=size,
                problem=problem,
                source_bytes=source_bytes,
                source_problem=source_problem,
            )
        )
    return rows
