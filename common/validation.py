"""Pydantic validation errors as the messages our users read.

A bad request (400 with ``param``), a bad router config and a bad quantization recipe
all point at the field at fault, and they must spell it the same way:
``messages[0].content: Input should be a valid string``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

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


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: the field's path (None for the whole input) and
    what is wrong with it."""

    path: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def problems(error: ValidationError) -> list[Problem]:
    """Every problem pydantic found, in its order, without its "Value error, " prefix."""
    return [
        Problem(field_path(item["loc"]), item["msg"].removeprefix("Value error, "))
        for item in error.errors(include_url=False)
    ]


def describe(error: ValidationError) -> str:
    """All problems on one line, ``; ``-separated."""
    return "; ".join(str(problem) for problem in problems(error))
