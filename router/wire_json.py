"""JSON on the router's hot path: request bodies, provider responses and every streamed
chunk are decoded and encoded here, with msgspec.

A streamed request decodes and re-encodes each chunk (to set ``model``) and the standard
library's ``json`` spends about 6 µs on one; msgspec takes under 1. The output is compact
UTF-8 JSON (no ASCII escaping, no spaces), which every client reads the same. ``NaN`` and
``Infinity`` are not JSON and are refused on input, as OpenAI refuses them.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

DecodeError = msgspec.DecodeError

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def loads(data: bytes | str) -> Any:
    """Raises DecodeError for invalid JSON (invalid UTF-8 and lone surrogates included) and
    RecursionError for nesting deeper than msgspec recurses."""
    return _decoder.decode(data)


def dumps(value: Any) -> bytes:
    return _encoder.encode(value)


class JSONBody(Response):
    """A JSON response encoded as above (Starlette's ``JSONResponse`` uses ``json``)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)
