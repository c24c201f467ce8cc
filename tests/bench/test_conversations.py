"""The multi-turn workload: exact turn lengths, and turns that carry the server's replies."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from loopback_server import GAP_S, TTFT_S, FakeServer

from switchyard.bench.serving.conversations import (
    Conversation,
    chat_template_renderer,
    multi_turn_workload,
)
from switchyard.bench.serving.serve import ServeSettings, run_serve

TOKENIZER = "smollm2-135m-instruct"


def _settings(server: FakeServer, **overrides: object) -> ServeSettings:
    values: dict = {
        "target": server.url,
        "model": "fake",
        "workload": "multi-turn",
        "tokenizer": TOKENIZER,
        "mt_num_conversations": 3,
        "mt_turns": 2,
        "mt_user_len": 8,
        "mt_output_len": 3,
    }
    return ServeSettings(**(values | overrides))


def test_user_turns_have_exact_lengths_and_follow_the_seed(smollm_tokenizer) -> None:
    def build(seed: int) -> list:
        return multi_turn_workload(
            smollm_tokenizer, num_conversations=2, turns=3, user_len=12, output_len=5, seed=seed
        )

    conversations = build(4)
    assert len(conversations) == 2
    for conversation in conversations:
        assert len(conversation.user_turns) == 3
        assert conversation.user_lens == (12, 12, 12)
        for text in conversation.user_turns:
            assert len(smollm_tokenizer.encode(text, add_special_tokens=False)) == 12
    assert len({t for c in conversations for t in c.user_turns}) == 6
    assert build(4) == conversations
    assert build(5) != conversations


async def test_later_turns_resend_the_history_with_the_actual_reply(
    fake_server: FakeServer,
) -> None:
    before = len(fake_server.bodies)
    [result] = await run_serve(_settings(fake_server))
    bodies = fake_server.bodies[before:]
    assert len(bodies) == 6
    assert (result.metrics.completed, result.metrics.failed) == (6, 0)
    first_turns = [b["messages"] for b in bodies if len(b["messages"]) == 1]
    second_turns = [b["messages"] for b in bodies if len(b["messages"]) == 3]
    assert len(first_turns) == len(second_turns) == 3
    for user, reply, follow_up in second_turns:
        assert [user] in first_turns
        assert reply == {"role": "assistant", "content": "t0 t1 t2 "}  # what the server sent
        assert follow_up["role"] == "user" and follow_up["content"] != user["content"]
    assert all((b["max_tokens"], b["ignore_eos"]) == (3, True) for b in bodies)
    # Conversations run side by side, their turns one after the other: two request times.
    e2el_s = TTFT_S + 2 * GAP_S
    assert 2 * e2el_s <= result.metrics.duration_s < 3 * e2el_s
    assert [r.generated_text for r in result.records] == ["t0 t1 t2 "] * 6


async def test_completions_get_the_history_in_the_chat_template(fake_server: FakeServer) -> None:
    before = len(fake_server.bodies)
    settings = _settings(fake_server, endpoint="completions", mt_num_conversations=1)
    [result] = await run_serve(settings)
    assert result.metrics.completed == 2
    first, second = (b["prompt"] for b in fake_server.bodies[before:])
    assert first.startswith("<|im_start|>system\n")  # SmolLM's BOS is not added on encode
    assert first.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert second.startswith(first)
    assert "<|im_start|>assistant\nt0 t1 t2 <|im_end|>\n<|im_start|>user\n" in second


async def test_a_failed_turn_ends_its_conversation(fake_server: FakeServer) -> None:
    conversation = Conversation(("FAIL", "next", "last"), (1, 1, 1), output_len=2)
    before = len(fake_server.bodies)
    [result] = await run_serve(_settings(fake_server), requests=[conversation])
    assert len(fake_server.bodies) - before == 1
    assert (result.metrics.completed, result.metrics.failed) == (0, 1)


def test_a_bos_the_tokenizer_adds_anyway_is_not_rendered_twice() -> None:
    tokenizer = SimpleNamespace(  # Gemma's: the template writes <bos>, encoding adds it too
        chat_template="...",
        bos_token="<bos>",
        bos_token_id=2,
        encode=lambda text: [2],
        apply_chat_template=lambda messages, **_: "<bos><start_of_turn>user\nhi",
    )
    render = chat_template_renderer(tokenizer)
    assert render([{"role": "user", "content": "hi"}]) == "<start_of_turn>user\nhi"


def test_completions_without_a_chat_template_are_refused() -> None:
    tokenizer = SimpleNamespace(chat_template=None, name_or_path="base-model")
    with pytest.raises(ValueError, match=r"'base-model' has no chat template.*--endpoint chat"):
        chat_template_renderer(tokenizer)
