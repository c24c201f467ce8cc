"""A fresh stand-in upstream per test, so its counts start at zero."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from router_bench_harness import ServedUpstream, served_upstream


@pytest.fixture
async def upstream() -> AsyncIterator[ServedUpstream]:
    async with served_upstream() as served:
        yield served
