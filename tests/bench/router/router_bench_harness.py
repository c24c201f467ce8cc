"""The router benchmark's stand-in upstream served on the test's event loop. A plain
module, not a conftest, so test files import it by a name no other folder's helpers share."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from switchyard.bench.router.upstream import Counts, serve


@dataclass(frozen=True)
class ServedUpstream:
    url: str
    counts: Counts


@contextlib.asynccontextmanager
async def served_upstream() -> AsyncIterator[ServedUpstream]:
    server, counts = await serve()
    port = server.sockets[0].getsockname()[1]
    try:
        yield ServedUpstream(f"http://127.0.0.1:{port}", counts)
    finally:
        server.close()
        await server.wait_closed()
