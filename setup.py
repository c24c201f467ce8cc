"""Packaging for Switchyard.

Every top-level source folder installs under the ``switchyard`` import namespace
(``engine/`` -> ``switchyard.engine``, ...), because bare names such as ``kernels`` or
``proto`` collide with unrelated PyPI packages. The gRPC stubs are generated from
``proto/`` at build time into ``engine/v1`` (git-ignored), installed as
``switchyard.engine.v1``, the proto package's own name, so the contract is the only
thing under version control.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
FOLDERS = ("engine", "kernels", "router", "bench", "cli")
PROTO_PACKAGE = "switchyard/engine/v1"
STUB_PACKAGE = "switchyard.engine.v1"


def _packages() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = [STUB_PACKAGE]
    package_dir: dict[str, str] = {}
    for folder in FOLDERS:
        package_dir[f"switchyard.{folder}"] = folder
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            relative = init.parent.relative_to(ROOT / folder)
            packages.append(".".join(("switchyard", folder, *relative.parts)))
    return packages, package_dir


def generate_stubs(target: Path) -> None:
    """Compile proto/*.proto into ``target`` as the package ``switchyard.engine.v1``.

    The ``-I<virtual>=<folder>`` mapping makes protoc name the files after the proto
    package, so the generated ``*_grpc.py`` imports ``switchyard.engine.v1.engine_pb2``
    rather than a bare ``engine_pb2``.
    """
    protos = sorted((ROOT / "proto").glob("*.proto"))
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_PACKAGE}={ROOT / 'proto'}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *(f"{PROTO_PACKAGE}/{p.name}" for p in protos),
        ]
        subprocess.run(command, check=True)
        target.mkdir(parents=True, exist_ok=True)
        for generated in (Path(out) / PROTO_PACKAGE).iterdir():
            shutil.copy2(generated, target / generated.name)
    (target / "__init__.py").write_text('"""Generated from proto/ at build time; do not edit."""\n')


packages, package_dir = _packages()
package_dir[STUB_PACKAGE] = "engine/v1"

# Regenerated on every build (well under a second) so stubs never lag the .proto files;
# the folder is git-ignored and exists before setuptools looks for its packages.
generate_stubs(ROOT / "engine" / "v1")

setup(packages=packages, package_dir=package_dir)
