"""Small real checkpoints for the quantization tests: an embedded model cut down to its
first few decoder layers. Weights, tokenizer and architecture are the real ones (tied
embeddings included), and quantizing it takes seconds instead of a minute."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from switchyard.engine.models.prepare import resolve_model_path

LAYER = re.compile(r"\.layers\.(\d+)\.")


def truncated_checkpoint(model: str, out: Path, layers: int) -> Path:
    """``model`` (an embedded model's name) with only decoder layers ``0 .. layers - 1``."""
    _, source = resolve_model_path(model)
    out.mkdir(parents=True)
    for path in source.iterdir():
        if path.name not in ("config.json", "model.safetensors", "switchyard-manifest.json"):
            shutil.copy2(path, out / path.name)
    config = json.loads((source / "config.json").read_text())
    config["num_hidden_layers"] = layers
    if "layer_types" in config:
        config["layer_types"] = config["layer_types"][:layers]
    (out / "config.json").write_text(json.dumps(config, indent=2))
    kept = {}
    with safe_open(source / "model.safetensors", "pt") as handle:
        for name in handle.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
            match = LAYER.search(name)
            if match is None or int(match.group(1)) < layers:
                kept[name] = handle.get_tensor(name)
    save_file(kept, out / "model.safetensors", metadata={"format": "pt"})
    return out
