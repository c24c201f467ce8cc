"""Workload builders: exact token lengths, shared prefixes, both JSONL formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from switchyard.bench.serving.jsonl import DatasetError, jsonl_workload, parse_line
from switchyard.bench.serving.workloads import random_workload, shared_prefix_workload


def _length(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False))


def test_random_prompts_have_exact_token_lengths(smollm_tokenizer) -> None:
    requests = random_workload(
        smollm_tokenizer, num_prompts=16, input_len=64, output_len=8, range_ratio=0.5, seed=3
    )
    assert len(requests) == 16
    assert len({r.prompt_len for r in requests}) > 1  # the range ratio varies lengths
    for request in requests:
        assert 32 <= request.prompt_len <= 96
        assert _length(smollm_tokenizer, request.prompt) == request.prompt_len
        assert list(request.token_ids) == smollm_tokenizer.encode(
            request.prompt, add_special_tokens=False
        )
        assert request.messages == ({"role": "user", "content": request.prompt},)
        assert 4 <= request.output_len <= 12


def test_random_workload_is_reproducible_with_a_seed(smollm_tokenizer) -> None:
    def build(seed: int) -> list:
        return random_workload(
            smollm_tokenizer, num_prompts=4, input_len=32, output_len=4, seed=seed
        )

    assert build(1) == build(1)
    assert build(1) != build(2)


def test_shared_prefix_groups_share_the_exact_system_prompt(smollm_tokenizer) -> None:
    requests = shared_prefix_workload(
        smollm_tokenizer,
        num_groups=3,
        prompts_per_group=4,
        system_prompt_len=40,
        question_len=12,
        output_len=5,
        seed=0,
    )
    assert len(requests) == 12
    systems: dict[str, list] = {}
    for request in requests:
        system, question = request.messages
        assert (system["role"], question["role"]) == ("system", "user")
        systems.setdefault(system["content"], []).append(request)
        assert _length(smollm_tokenizer, system["content"]) == 40
        assert _length(smollm_tokenizer, question["content"]) == 12
        assert request.prompt_len == len(request.token_ids) == 52
        assert request.output_len == 5
    assert sorted(len(group) for group in systems.values()) == [4, 4, 4]
    for group in systems.values():
        prefixes = {r.token_ids[:40] for r in group}
        assert len(prefixes) == 1
        assert len({r.messages[1]["content"] for r in group}) == 4


def test_jsonl_reads_openai_and_sharegpt_lines(tmp_path: Path, smollm_tokenizer) -> None:
    openai_line = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue is a colour"},
        ]
    }
    sharegpt_line = {
        "conversations": [
            {"from": "human", "value": "Say hi."},
            {"from": "gpt", "value": "Hi"},
        ]
    }
    no_user = {"messages": [{"role": "system", "content": "alone"}]}
    path = tmp_path / "data.jsonl"
    lines = [openai_line, sharegpt_line, no_user]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    requests = jsonl_workload(path, num_prompts=4, tokenizer=smollm_tokenizer, seed=0)
    assert len(requests) == 4  # two usable conversations, cycled
    by_first = {r.messages[0]["content"]: r for r in requests}
    chat, share = by_first["Be brief."], by_first["Say hi."]
    assert chat.messages == tuple(openai_line["messages"][:2])  # the reference is not sent
    assert chat.output_len == _length(smollm_tokenizer, "Blue is a colour")
    assert share.messages == ({"role": "user", "content": "Say hi."},)
    assert share.output_len == _length(smollm_tokenizer, "Hi")
    fixed = jsonl_workload(path, num_prompts=2, output_len=9)
    assert {r.output_len for r in fixed} == {9}
    assert {r.prompt_len for r in fixed} == {0}  # unknown without a tokenizer


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        "[1, 2]",
        '{"prompt": "hi"}',
        '{"messages": [{"role": "user"}]}',
        '{"conversations": [{"from": "robot", "value": "x"}]}',
    ],
)
def test_jsonl_rejects_malformed_lines_with_their_location(line: str) -> None:
    with pytest.raises(DatasetError, match=r"data\.jsonl:3"):
        parse_line(line, "data.jsonl:3")
