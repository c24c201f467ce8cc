"""The engine launcher's promises that a real engine cannot easily show: a failed start
is reported with its log at once, and stopping reaches every process of the group."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil
import pytest

from switchyard.common.engine_process import EngineProcess, EngineStartError, free_port

pytestmark = pytest.mark.timeout(120)


async def test_an_engine_that_exits_is_reported_at_once_with_its_log(tmp_path: Path) -> None:
    engine = EngineProcess.start(
        "broken", ["--model", "no-such-model"], log_path=tmp_path / "engine.log"
    )
    started = time.monotonic()
    with pytest.raises(EngineStartError) as error:
        await engine.wait_serving(timeout_s=100)
    assert time.monotonic() - started < 60  # the exit, not the deadline, ended the wait
    message = str(error.value)
    assert message.startswith("broken: ")
    assert "exit code 1" in message and "no-such-model" in message
    assert "Traceback" not in message
    engine.kill()


def test_stop_kills_what_outlived_sigterm_in_the_whole_group() -> None:
    # A server that ignores SIGTERM and has started a child, as vLLM's engine core is.
    script = "trap '' TERM; sleep 600 & echo $!; wait"
    process = subprocess.Popen(
        ["bash", "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stdout is not None
    child = psutil.Process(int(process.stdout.readline()))
    engine = EngineProcess("stubborn", f"127.0.0.1:{free_port()}", process)
    assert engine.stop(timeout_s=0.5) is None  # did not exit by itself: killed
    assert process.returncode is not None
    child.wait(timeout=10)
    assert not child.is_running()


def test_free_port_can_be_bound() -> None:
    import socket

    port = free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
