"""The redactor on its own: what it replaces, and the errors it copies."""

from __future__ import annotations

from switchyard.router.errors import APIError, unsupported
from switchyard.router.redaction import MARKER, Redactor


def test_a_secret_that_contains_another_is_replaced_whole() -> None:
    redact = Redactor(["sk-abc", "sk-abc-long", None, ""])
    assert redact("keys sk-abc-long and sk-abc.") == f"keys {MARKER} and {MARKER}."


def test_secrets_are_matched_literally() -> None:
    redact = Redactor(["a.b*c"])
    assert redact("a.b*c axbbc") == f"{MARKER} axbbc"


def test_without_secrets_text_is_left_alone() -> None:
    assert Redactor([None, ""])("sk-anything") == "sk-anything"


def test_an_error_is_copied_with_every_text_redacted() -> None:
    error = unsupported("rejected sk-1", "field sk-1")
    error.code = "code sk-1"
    error.headers = {"Retry-After": "sk-1"}
    clean = Redactor(["sk-1"]).error(error)
    assert (clean.status, clean.type, clean.unsupported) == (400, "invalid_request_error", True)
    assert (clean.message, clean.param, clean.code) == (
        f"rejected {MARKER}",
        f"field {MARKER}",
        f"code {MARKER}",
    )
    assert clean.headers == {"Retry-After": MARKER}
    # The exception itself says it too, so a traceback or a log line cannot leak it.
    assert "sk-1" not in str(clean)
    assert Redactor(["sk-1"]).error(APIError(502, "fine")).param is None
