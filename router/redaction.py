"""The router's secrets kept out of what providers say.

A provider's error message may quote the key it was sent ("Incorrect API key provided:
sk-..."), and such messages travel on: to the client's ``error.message``, a fallback's
``metadata.attempts``, a stream's last error event, the admin API's ``last_error`` and
the logs. Every error built from a provider's words passes through :meth:`Redactor.error`
before it is raised, so none of those places can carry a secret the router holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from switchyard.router.errors import APIError

MARKER = "[redacted]"


class Redactor:
    """Replaces every occurrence of the given secrets with :data:`MARKER`."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        distinct = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, distinct))) if distinct else None

    def __call__(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(MARKER, text)

    def error(self, error: APIError) -> APIError:
        """A copy of ``error`` with every text a provider could have written redacted:
        a copy, not an update, since the exception's own args hold the message too."""
        optional = self._optional
        clean = APIError(
            error.status,
            self(error.message),
            type=self(error.type),
            param=optional(error.param),
            code=optional(error.code),
            headers={name: self(value) for name, value in error.headers.items()},
        )
        clean.unsupported = error.unsupported
        return clean

    def _optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)
