"""What to install for a command whose packages are missing: a router-only install
(``switchyard[router]``) has the whole console script, but not the engine's or the
benchmarks' third-party packages."""

from __future__ import annotations

import importlib
from types import ModuleType

ENGINE = "switchyard[cpu] (switchyard[gpu] with an NVIDIA GPU)"
QUANTIZE = "switchyard[cpu,quant] (switchyard[gpu,quant] with an NVIDIA GPU)"
ROUTER = "switchyard[router]"
BENCH = "switchyard[bench]"


class MissingExtra(SystemExit):
    """Exit with one line naming the command, the install it needs and what is missing."""

    def __init__(self, command: str, install: str, error: ModuleNotFoundError) -> None:
        super().__init__(f"error: {command} needs {install} (missing: {error.name})")


def is_missing_package(error: ModuleNotFoundError) -> bool:
    """A third-party package is absent (not a module of ours: that would be a bug)."""
    return error.name is not None and error.name.partition(".")[0] != "switchyard"


def require(module: str, command: str, install: str) -> ModuleType:
    """``module``, imported; or exit saying which install ``command`` needs."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if not is_missing_package(error):
            raise
        raise MissingExtra(command, install, error) from None
