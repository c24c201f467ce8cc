"""Request building in the engine client (no server needed)."""

from __future__ import annotations

import pytest

from switchyard.engine.client import build_request


def test_build_request_text_and_sampling() -> None:
    request = build_request(text="hi", max_tokens=8, temperature=0.0, stop=["\n"], seed=3)
    assert request.WhichOneof("input") == "text"
    assert request.sampling.max_tokens == 8
    # An explicit 0.0 is set, not left at the default.
    assert request.sampling.HasField("temperature")
    assert request.sampling.temperature == 0.0
    assert list(request.sampling.stop) == ["\n"]
    assert not request.sampling.HasField("top_p")


def test_build_request_chat_and_token_ids() -> None:
    chat = build_request(messages=[{"role": "user", "content": "hello"}])
    assert chat.chat.messages[0].role == "user"
    assert chat.chat.messages[0].content == "hello"
    ids = build_request(token_ids=[1, 2, 3])
    assert list(ids.token_ids.ids) == [1, 2, 3]


@pytest.mark.parametrize("inputs", [{}, {"text": "a", "token_ids": [1]}])
def test_build_request_needs_exactly_one_input(inputs) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        build_request(**inputs)


def test_build_request_rejects_unknown_sampling_names() -> None:
    with pytest.raises(TypeError, match="max_new_tokens"):
        build_request(text="a", max_new_tokens=3)
