"""``switchyard serve`` end to end: the real engine and router, started, used and stopped
as a user would, from the console script."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import psutil
import pytest

from switchyard.common.engine_process import free_port

pytestmark = pytest.mark.timeout(900)

READY_TIMEOUT_S = 600
COMMAND = [sys.executable, "-m", "switchyard.cli.main", "serve"]


def _wait_for(log: Path, process: subprocess.Popen, pattern: str) -> re.Match:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        match = re.search(pattern, log.read_text(errors="replace"))
        if match:
            return match
        if process.poll() is not None:
            pytest.fail(f"serve exited {process.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"serve not ready after {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def _kill_tree(process: subprocess.Popen) -> None:
    """After a failure: the serve process and its engines (each in a session of its own)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(process.pid).children(recursive=True):
            child.kill()
    if process.poll() is None:
        process.kill()
        process.wait()


def test_serve_starts_engine_and_router_answers_and_stops_cleanly(tmp_path: Path) -> None:
    port, engine_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    # No client key in the environment: serve makes one for the run and shows it.
    unset = {"SWITCHYARD_API_KEYS", "TRITON_INTERPRET"}
    environment = {k: v for k, v in os.environ.items() if k not in unset}
    with log.open("w") as out:
        process = subprocess.Popen(
            [*COMMAND, "--port", str(port), "--engine-port", str(engine_port), "--enforce-eager"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**environment, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    try:
        ready = _wait_for(log, process, r"own\): (sk-local-\S+)")
        key = ready.group(1)
        banner = log.read_text()
        assert f"http://127.0.0.1:{port}/v1" in banner
        assert f"Bearer {key}" in banner  # the curl line works as pasted
        engines = psutil.Process(process.pid).children(recursive=True)
        assert engines, "the engine runs in child processes"

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        reply = client.chat.completions.create(
            model="switchyard/smollm2-135m-instruct",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=24,
            temperature=0,
        )
        assert "Paris" in reply.choices[0].message.content
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(
                base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0
            ).models.list()

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0
        _, alive = psutil.wait_procs(engines, timeout=10)
        assert not alive, f"left running: {[p.pid for p in alive]}"
    finally:
        _kill_tree(process)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", " , "], "--models names no model"),
        (["--config", "/nonexistent/router.yaml"], "no such file"),
    ],
)
def test_bad_arguments_exit_nonzero_with_a_message(args: list[str], message: str) -> None:
    result = subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_several_engines_each_get_their_own_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Started engines are recorded rather than run; the router is not started."""
    from switchyard.cli import main as cli_main
    from switchyard.cli import serve
    from switchyard.common import engine_process

    started: list[list[str]] = []

    class Recorded:
        pid = 0

        def __init__(self, command: list[str], **_: object) -> None:
            started.append(command)

        def poll(self) -> int:
            return 0

        def wait(self, timeout: float | None = None) -> int:
            return 0

    async def no_router(args, engines) -> int:
        return 0

    monkeypatch.setattr(engine_process.subprocess, "Popen", Recorded)
    monkeypatch.setattr(serve, "_run", no_router)
    monkeypatch.setattr(serve.signal, "signal", lambda *_: None)
    monkeypatch.setattr(engine_process.os, "killpg", lambda *_: None)
    monkeypatch.setattr(serve.os, "sched_getaffinity", lambda _: {0, 1, 2, 3, 4})
    args = cli_main.build_parser().parse_args(["serve", "--models", "a,b", "--engine-port", "1"])
    assert args.run(args) == 0
    shares = [c[c.index("--cpu-cores") + 1] for c in started]
    assert shares == ["0,1,2", "3,4"]

    started.clear()
    args = cli_main.build_parser().parse_args(["serve", "--models", "a", "--engine-port", "1"])
    assert args.run(args) == 0
    assert "--cpu-cores" not in started[0]
