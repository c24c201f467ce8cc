"""The build backend: setuptools, after generating the gRPC stubs from ``proto/``.

The stubs are build output, not source: ``proto/*.proto`` is the contract under version
control, and every build (wheel, editable install, sdist metadata) compiles it into
``api/v1/`` (git-ignored), installed as ``switchyard.api.v1``. Generating here rather
than in ``setup.py`` keeps importing ``setup.py`` free of side effects. protoc takes well
under a second, so the stubs never lag the .proto files.

The ``-I<virtual>=<folder>`` mapping makes protoc name the files after the Python
package, so the generated ``*_grpc.py`` imports ``switchyard.api.v1.engine_pb2`` rather
than a bare ``engine_pb2``. The proto package (``switchyard.engine.v1``: the service
name on the wire) is the .proto file's own and does not change with it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import build_meta
from setuptools.build_meta import (  # noqa: F401 (the hooks this backend passes through)
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
)

ROOT = Path(__file__).resolve().parent.parent
STUB_FOLDER = ROOT / "api" / "v1"
STUB_PATH = "switchyard/api/v1"


def generate_stubs(target: Path = STUB_FOLDER) -> None:
    """Compile proto/*.proto into ``target`` as the package ``switchyard.api.v1``."""
    protos = sorted((ROOT / "proto").glob("*.proto"))
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{STUB_PATH}={ROOT / 'proto'}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *(f"{STUB_PATH}/{p.name}" for p in protos),
        ]
        subprocess.run(command, check=True)
        target.mkdir(parents=True, exist_ok=True)
        for generated in (Path(out) / STUB_PATH).iterdir():
            shutil.copy2(generated, target / generated.name)
    (target / "__init__.py").write_text('"""Generated from proto/ at build time; do not edit."""\n')


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    generate_stubs()
    return build_meta.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    generate_stubs()
    return build_meta.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    generate_stubs()
    return build_meta.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    generate_stubs()
    return build_meta.build_editable(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):
    # The sdist ships proto/ and leaves the stubs out (MANIFEST.in); its builds make them.
    return build_meta.build_sdist(sdist_directory, config_settings)
