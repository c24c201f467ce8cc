"""Where a benchmark writes its results: each output path checked before a run spends
minutes on work it then could not save, and JSON written whole or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def check_writable(flag: str, path: str | Path, *, make_folder: bool = False) -> None:
    """Raise ValueError naming ``flag`` if a file cannot be written at ``path``.

    ``make_folder`` creates the file's folder first, for results filed under a folder
    named at run time (``bench/results/<gpu>/``); otherwise it must exist."""
    target = Path(path)
    folder = target.parent
    if make_folder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"{flag}: cannot create {str(folder)!r}: {error.strerror}") from None
    if not folder.is_dir():
        raise ValueError(f"{flag}: no directory {str(folder)!r}")
    if target.is_dir():
        raise ValueError(f"{flag}: {str(target)!r} is a directory")
    if not os.access(target if target.exists() else folder, os.W_OK):
        raise ValueError(f"{flag}: {str(target)!r} is not writable")


def write_whole(path: str | Path, text: str) -> None:
    """``text`` written to a temporary file beside ``path`` and renamed into place, so a
    reader (or a failure halfway) never leaves half a file."""
    target = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(descriptor, "w", newline="") as handle:
            handle.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, document: dict[str, Any]) -> None:
    """Strict JSON (a NaN or an infinity raises rather than writing what JSON readers
    reject), indented, written whole."""
    write_whole(path, json.dumps(document, indent=2, allow_nan=False) + "\n")
