"""Whether a target accepts a TCP connection in time, checked once before a benchmark.

A host that drops packets never refuses a connection: an HTTP client then waits for the
whole request timeout, and a gRPC channel keeps retrying. Opening (and closing) one plain
TCP connection first, bounded by the connect timeout, turns both into a prompt error.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlparse

DEFAULT_PORTS = {"http": 80, "https": 443}


async def unreachable(target: str, timeout_s: float | None) -> tuple[str, str] | None:
    """None once ``target`` (``scheme://host:port``) accepted a TCP connection within
    ``timeout_s``; otherwise the failure kind (``connect_timeout`` or ``connection``) and
    what happened."""
    parsed = urlparse(target)
    host, port = parsed.hostname or "", parsed.port or DEFAULT_PORTS.get(parsed.scheme, 0)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except TimeoutError:
        return "connect_timeout", f"no connection to {host}:{port} within {timeout_s:g} s"
    except OSError as error:
        return "connection", f"{type(error).__name__}: {error}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None
