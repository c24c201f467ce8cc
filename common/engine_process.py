"""Starting and stopping ``switchyard engine serve`` processes: one way, for
``switchyard serve``, the benchmarks and the tests.

An engine runs in a process of its own (vLLM wants one, and a crash must not take the
caller down), in a session of its own, so that stopping it also stops the engine-core
and worker processes vLLM starts: killing only the server would orphan them, holding
gigabytes each. Stopping sends SIGTERM, which lets in-flight requests drain (the
server's ``--shutdown-grace``), and then SIGKILLs the whole group, whatever outlived it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from switchyard.api.client import EngineClient, EngineNotReady

# Loading a model and, unless --enforce-eager, compiling it: about a minute on 2 CPU cores.
START_TIMEOUT_S = 900.0
# In-flight requests drain on SIGTERM before the server exits.
STOP_TIMEOUT_S = 60.0
LOOPBACK = "127.0.0.1"


class EngineStartError(RuntimeError):
    """The engine exited or did not become ready in time; the message ends with its log."""


def free_port(host: str = LOOPBACK) -> int:
    """A port free on ``host`` now (the engine binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclass
class EngineProcess:
    """A started ``switchyard engine serve``; ``target`` is the ``host:port`` that
    :class:`EngineClient` and the router's config take."""

    name: str
    target: str
    process: subprocess.Popen
    log_path: Path | None = None

    @classmethod
    def start(
        cls,
        name: str,
        args: Sequence[str],
        *,
        port: int | None = None,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> EngineProcess:
        """``switchyard engine serve ARGS --host 127.0.0.1 --port PORT`` (a free port if
        none is given), its output to ``log_path`` or, without one, to ours."""
        port = port or free_port()
        command = [sys.executable, "-m", "switchyard.cli.main", "engine", "serve", *args]
        command += ["--host", LOOPBACK, "--port", str(port)]
        environment = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
        with contextlib.ExitStack() as files:
            output = None
            if log_path is not None:
                output = files.enter_context(log_path.open("wb"))
            process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT if output is not None else None,
                env=environment,
                start_new_session=True,
            )
        return cls(name, f"{LOOPBACK}:{port}", process, log_path)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(its output went to this process's own)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def wait_serving(self, timeout_s: float = START_TIMEOUT_S) -> EngineClient:
        """A client, once the engine's health says SERVING; :class:`EngineStartError`
        at once if the process exits first, or at the deadline."""
        try:
            return await EngineClient.connect(
                self.target, ready_timeout_s=timeout_s, alive=self.alive
            )
        except EngineNotReady as error:
            code = self.process.poll()
            exited = f" (exit code {code})" if code is not None else ""
            raise EngineStartError(f"{self.name}: {error}{exited}:\n{self.log_tail()}") from None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait up to ``timeout_s`` for the exit code, then SIGKILL the group;
        the exit code, or None if it had to be killed."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        self.kill()
        return code

    def kill(self) -> None:
        """SIGKILL the server and every process it started; reap the server."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
