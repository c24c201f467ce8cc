"""Run code right after a module is imported, without importing it ourselves.

Our vLLM plugin runs in every vLLM process, including the API server, which never builds a
model. Some of what it registers lives in vLLM modules that take seconds to import (the
linear-kernel registry); importing them just to register would make every process pay
that. ``after_import`` defers the registration to the moment vLLM imports the module
itself, and it happens before any other module can bind names from it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType

Callback = Callable[[ModuleType], None]


def after_import(name: str, callback: Callback) -> None:
    """Call ``callback(module)`` once module ``name`` has been executed: now if it already
    has, else at the end of its import. Registering the same pair again does nothing."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    for finder in sys.meta_path:
        if isinstance(finder, _AfterImportFinder) and finder.key == (name, callback):
            return
    sys.meta_path.insert(0, _AfterImportFinder(name, callback))


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Finds ``name`` with the finders after it, and wraps the loader they return."""

    def __init__(self, name: str, callback: Callback) -> None:
        self.name = name
        self.callback = callback
        self.searching = False

    @property
    def key(self) -> tuple[str, Callback]:
        return self.name, self.callback

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name or self.searching:
            return None
        self.searching = True  # importlib.util.find_spec asks the meta path again, us too
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.searching = False
        if spec is not None and spec.loader is not None:
            spec.loader = _CallbackLoader(spec.loader, self)
        return spec


class _CallbackLoader(importlib.abc.Loader):
    """The module's own loader, followed by the callback; otherwise the same loader."""

    def __init__(self, loader: importlib.abc.Loader, finder: _AfterImportFinder) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        # Out of the meta path before the callback, so its own imports skip the hook.
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        self._finder.callback(module)

    def __getattr__(self, attribute: str) -> object:
        # get_source, is_package, get_resource_reader, ...: the real loader answers.
        return getattr(self._loader, attribute)
