"""The router benchmarks' servers, each in a process of its own on loopback.

The load generator, the router and the upstream must not share an event loop or a GIL:
sharing one, the benchmark would time the client's and the upstream's work as the
router's. The router is started exactly as a user starts it (``switchyard router serve``,
one uvicorn worker), with a config naming one OpenAI-compatible provider, the upstream,
and a client key passed through the environment, never on a command line or in a file.
The replica benchmark starts engines the same way (``switchyard engine serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

from switchyard.common.engine_process import EngineProcess, EngineStartError, free_port

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
PROVIDER = "bench"
# The variable that carries the client key from the benchmark to the router.
KEY_ENV = "SWITCHYARD_BENCH_ROUTER_KEY"


class StartError(Exception):
    """A server of the benchmark did not come up; the message has its log's end."""


@dataclass(frozen=True)
class Server:
    process: asyncio.subprocess.Process
    url: str

    @property
    def pid(self) -> int:
        return self.process.pid


def _log_tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def upstream(workdir: Path) -> AsyncIterator[Server]:
    """The stand-in provider; it prints its port once it listens."""
    log_path = workdir / "upstream.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "switchyard.bench.router.upstream",
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    try:
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            line = b""
        if not line.strip().isdigit():
            raise StartError(f"the upstream did not start:\n{_log_tail(log_path)}")
        yield Server(process, f"http://127.0.0.1:{int(line)}")
    finally:
        await _stop(process)


def router_config(upstream_url: str) -> dict:
    return {
        "auth": {"keys_env": KEY_ENV},
        "providers": {
            PROVIDER: {"protocol": "openai", "base_url": f"{upstream_url}/v1", "models": ["echo"]}
        },
    }


@contextlib.asynccontextmanager
async def router(workdir: Path, upstream_url: str, key: str) -> AsyncIterator[Server]:
    """``switchyard router serve`` in front of the upstream, once its /health answers."""
    async with configured_router(workdir, router_config(upstream_url), key) as server:
        yield server


@contextlib.asynccontextmanager
async def configured_router(
    workdir: Path, config: dict, key: str, *, name: str = "router", wait_path: str = "/health"
) -> AsyncIterator[Server]:
    """``switchyard router serve`` with ``config``, once ``wait_path`` answers 200 (/ready
    waits for its engines too); its config and log are ``<name>.yaml`` and ``<name>.log``."""
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / f"{name}.log"
    port = free_port()
    command = [sys.executable, "-m", "switchyard.cli.main", "--log-level", "WARNING"]
    command += ["router", "serve", "--config", str(config_path), "--port", str(port)]
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=log, stderr=log, env={**os.environ, KEY_ENV: key}
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_healthy(process, url + wait_path, log_path)
        yield Server(process, url)
    finally:
        await _stop(process)


async def _wait_healthy(process: asyncio.subprocess.Process, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise StartError(
                    f"the router exited with status {process.returncode}:\n{_log_tail(log_path)}"
                )
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise StartError(f"the router did not answer {url} in {START_TIMEOUT_S:.0f} s")


@contextlib.asynccontextmanager
async def engine(workdir: Path, name: str, args: Sequence[str]) -> AsyncIterator[EngineProcess]:
    """``switchyard engine serve ARGS`` on a free loopback port, once its health check says
    SERVING; its log is ``engine-<name>.log``."""
    process = EngineProcess.start(name, args, log_path=workdir / f"engine-{name}.log")
    try:
        try:
            client = await process.wait_serving()
        except EngineStartError as error:
            raise StartError(f"engine {error}") from None
        await client.close()
        yield process
    finally:
        await asyncio.to_thread(process.stop)
