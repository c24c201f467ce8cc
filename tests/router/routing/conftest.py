"""One fake upstream per routing test module: its scenarios are chosen per request, so
the module's tests share it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fake_upstream import FakeUpstream
from routing_harness import fake_upstream


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with fake_upstream() as fake:
        yield fake
