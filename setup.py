"""Packaging for Switchyard: which folders install as which packages.

Every top-level source folder installs under the ``switchyard`` import namespace
(``engine/`` -> ``switchyard.engine``, ...), because bare names such as ``kernels`` or
``proto`` collide with unrelated PyPI packages. The gRPC stubs in ``api/v1`` are build
output: the build backend (``tools/build_backend.py``) generates them from ``proto/``
before setuptools runs, and they install as ``switchyard.api.v1``.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
FOLDERS = ("api", "common", "kernels", "engine", "router", "bench", "cli")
STUB_PACKAGE = "switchyard.api.v1"


def _packages() -> tuple[list[str], dict[str, str]]:
    packages = {STUB_PACKAGE}
    package_dir: dict[str, str] = {}
    for folder in FOLDERS:
        package_dir[f"switchyard.{folder}"] = folder
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            packages.add(".".join(("switchyard", folder, *relative.parts)))
    return sorted(packages), package_dir


packages, package_dir = _packages()
setup(packages=packages, package_dir=package_dir)
