"""Route conditions: CEL expressions over a request's metadata and a few request fields.

CEL is compiled once, when the config is loaded, so a syntax error or an unknown
variable stops the load with the route named instead of failing on live traffic. At
request time a condition that cannot be evaluated (``metadata.tier`` on a request
without that key, a comparison of mismatched types) does not match: a route is taken
only on a definite ``true``, and the next route or the default gets the request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cel

log = logging.getLogger(__name__)

# What a condition can read; anything else is refused when the config is loaded.
VARIABLES = {
    "metadata": "the request's metadata (OpenAI `metadata`, string keys and values)",
    "model": "the model the client asked for, e.g. router/support",
    "user": "the request's `user`, or an empty string",
    "message_count": "the number of chat messages (1 for a completions prompt)",
    "prompt_tokens": "an estimate of the prompt's tokens (characters / 4)",
    "endpoint": "`chat` or `completions`",
}


@dataclass(frozen=True)
class Condition:
    source: str
    program: Any

    def matches(self, facts: dict[str, Any]) -> bool:
        try:
            return self.program.execute(facts) is True
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            log.debug("condition %r did not evaluate: %s", self.source, error)
            return False


def compile_condition(source: str) -> Condition:
    """Raise ValueError naming the problem: a syntax error or an unknown variable."""
    try:
        program = cel.compile(source)
    except ValueError as error:
        raise ValueError(f"invalid CEL: {error}") from None
    unknown = sorted(set(program.variables()) - set(VARIABLES))
    if unknown:
        raise ValueError(
            f"unknown variable {unknown[0]!r}; a condition can read {', '.join(VARIABLES)}"
        )
    return Condition(source, program)
