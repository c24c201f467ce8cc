"""Pydantic error locations as the field paths our error messages name.

Both a bad request (400 ``param``) and a bad config file (start-up error) point at the
field at fault, and they must spell it the same way: ``messages[0].content``.
"""

from __future__ import annotations

# Pydantic names the member of a union that failed (``str``, ``list[TextPart]``) in an
# error's location; those are not fields and are left out.
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def field_path(location: tuple[int | str, ...]) -> str | None:
    """``('messages', 0, 'content', 'str')`` -> ``messages[0].content``; None if empty."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.lower() not in _TYPE_TAGS and not any(c in part for c in "[-"):
            path += f".{part}" if path else part
    return path or None
