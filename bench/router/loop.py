"""The event loop every process of the router benchmark runs on.

uvicorn serves the router on uvloop whenever uvloop is installed, so the load generator
and the stand-in upstream use it too: otherwise the direct path would be measured on a
slower loop than the router's and the comparison would favour the router.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_name() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def http_parser_name() -> str:
    """The HTTP implementation uvicorn picks by itself (``--http auto``)."""
    return "httptools" if importlib.util.find_spec("httptools") else "h11"


def _factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def run(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=_factory()) as runner:
        return runner.run(main)
