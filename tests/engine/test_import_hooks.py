"""``after_import``: the callback sees the executed module, before any importer of it."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from switchyard.engine.import_hooks import after_import


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh package ``hooked_<n>`` with a module ``registry`` (defining ``select``) and
    a module ``consumer`` that imports ``select`` by name, as vLLM's modules do."""
    name = f"hooked_{tmp_path.name.replace('-', '_')}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "registry.py").write_text("def select():\n    return 'original'\n")
    (root / "consumer.py").write_text(f"from {name}.registry import select\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    # Hooks for modules that were never imported stay registered; drop this package's.
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "name", "").startswith(name)]
    for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[module]


def _replace_select(module: ModuleType) -> None:
    module.select = lambda: "replaced"


def test_runs_when_the_module_is_imported_before_importers_bind_names(package: str) -> None:
    calls: list[ModuleType] = []

    def callback(module: ModuleType) -> None:
        calls.append(module)
        _replace_select(module)

    after_import(f"{package}.registry", callback)
    assert calls == []  # nothing imported yet, nothing called
    consumer = importlib.import_module(f"{package}.consumer")
    registry = sys.modules[f"{package}.registry"]
    assert calls == [registry]
    assert consumer.select() == "replaced"
    # The module keeps a working loader, and the hook is gone from the meta path.
    assert registry.__loader__.get_source(registry.__name__).startswith("def select")
    importlib.reload(registry)
    assert len(calls) == 1


def test_runs_at_once_for_an_imported_module(package: str) -> None:
    registry = importlib.import_module(f"{package}.registry")
    calls: list[ModuleType] = []
    after_import(f"{package}.registry", calls.append)
    assert calls == [registry]


def test_registering_twice_calls_once(package: str) -> None:
    calls: list[ModuleType] = []
    after_import(f"{package}.registry", calls.append)
    after_import(f"{package}.registry", calls.append)
    importlib.import_module(f"{package}.registry")
    assert len(calls) == 1


def test_a_module_that_does_not_exist_still_fails_to_import(package: str) -> None:
    calls: list[ModuleType] = []
    after_import(f"{package}.missing", calls.append)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"{package}.missing")
    assert calls == []
