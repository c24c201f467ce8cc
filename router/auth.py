"""Bearer-key authentication of the router's clients."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from switchyard.router.errors import APIError


class InsecureConfigError(ValueError):
    """Raised instead of silently serving an open router when no key is configured."""


class KeyChecker:
    """Checks ``Authorization: Bearer <key>`` against every configured key.

    Each comparison is constant-time and all keys are always compared, so neither the
    timing nor an early exit tells a caller how close a guess was or which key matched.
    """

    def __init__(self, keys: Sequence[str], *, insecure_no_auth: bool = False) -> None:
        if not keys and not insecure_no_auth:
            raise InsecureConfigError(
                "no API key configured: set auth.keys or the auth.keys_env variable, "
                "or pass insecure_no_auth to serve without authentication"
            )
        self._keys = [key.encode() for key in keys]
        self.enabled = not insecure_no_auth

    def check(self, authorization: Sequence[str]) -> None:
        """Raise a 401 unless the request's one ``Authorization`` header (``authorization``
        holds every one it sent) carries one of the keys.

        Two headers are refused even when one carries a key: servers and proxies differ
        in which one they take, so a request whose credentials read differently along
        the way is not one to serve."""
        if not self.enabled:
            return
        if len(authorization) > 1:
            raise APIError(
                401,
                f"{len(authorization)} Authorization headers: send exactly one",
                type="authentication_error",
                code="multiple_authorization_headers",
            )
        scheme, _, token = (authorization[0] if authorization else "").partition(" ")
        candidate = token.strip().encode()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        if scheme.lower() != "bearer" or not candidate or not matched:
            raise APIError(
                401,
                "missing or invalid API key",
                type="authentication_error",
                code="invalid_api_key",
            )
