"""The router's ASGI entry: completion POSTs go straight to their handler, everything
else to the Starlette app behind.

Starlette's error and exception middleware and its route scan cost a streamed request
several percent of the router's time (two wrappers around every ``send`` among them);
the two endpoints that carry all the traffic skip them. Their handler answers every
error itself, so only a bug reaches the ``except`` here, which logs it and answers a
generic 500 as Starlette's error middleware would. Other paths, and a wrong method on
these (405), go through Starlette as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from switchyard.router.errors import server_error

log = logging.getLogger(__name__)
Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class RouterApp:
    def __init__(self, app: Starlette, completions: Mapping[str, Handler]) -> None:
        self.app = app
        self.completions = completions
        # As on a Starlette app, so callers find the Router at ``app.state.router``.
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.completions.get(scope["path"]) if scope.get("method") == "POST" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        try:
            response = await handler(Request(scope, receive, send))
        except ClientDisconnect:
            return  # the client left while sending its body: nobody to answer
        except Exception:
            log.exception("unexpected error")
            response = server_error(500, "internal error", "internal_error").response()
        await response(scope, receive, send)
