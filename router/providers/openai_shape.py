"""The parts of an OpenAI response or stream chunk that the router itself reads, checked
on what every provider adapter hands back.

A provider that answers 200 with a body of another shape (a proxy's own page, a host's
half-compatible format, a protocol change) must be a 502 naming the provider, which a
fallback chain takes like any other upstream failure, not a 500 from deep in the
metrics or a 200 that breaks the client's SDK. Only what the router reads is checked
(``choices`` and each choice's message or delta, ``usage`` counts): the rest passes on
as the provider sent it, and the check stays a few ``isinstance`` calls per chunk.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]
USAGE_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")


class WrongShape(ValueError):
    """A provider's answer lacks what an OpenAI response must have; the message names
    the field."""


def check_response(data: Json) -> None:
    """A whole (non-streaming) response: ``choices`` a list of objects, each ``message``
    an object where there is one."""
    _check(data, "message")


def check_chunk(data: Json) -> None:
    """A stream chunk: ``choices`` a list of objects (empty in the usage chunk), each
    ``delta`` an object."""
    _check(data, "delta")


def _check(data: Json, part: str) -> None:
    choices = data.get("choices")
    if not isinstance(choices, list):
        raise WrongShape("choices is not a list")
    for index, choice in enumerate(choices):
        if not isinstance(choice, dict):
            raise WrongShape(f"choices[{index}] is not an object")
        if not isinstance(choice.get(part) or {}, dict):
            raise WrongShape(f"choices[{index}].{part} is not an object")
    usage = data.get("usage")
    if usage is None:
        return
    if not isinstance(usage, dict):
        raise WrongShape("usage is not an object")
    for name in USAGE_COUNTS:
        count = usage.get(name)
        if count is not None and (type(count) is not int or count < 0):
            raise WrongShape(f"usage.{name} is not a count")
