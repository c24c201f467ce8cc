"""The ``jsonl`` workload: real conversations from a file, one JSON object per line.

Two line formats are accepted, so exported chat logs and the ShareGPT dumps most serving
benchmarks use work as they are:

- OpenAI chat: ``{"messages": [{"role": "user", "content": "..."}, ...]}``
- ShareGPT: ``{"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", ...}]}``

A trailing assistant turn is the reference answer: it is not sent, and its token count
(with a tokenizer) becomes the request's output length, as in vLLM's ShareGPT dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from switchyard.bench.serving.workloads import BenchRequest

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "system": "system",
}


class DatasetError(ValueError):
    """A dataset line that is neither of the accepted formats."""


def parse_line(line: str, where: str) -> list[dict[str, str]]:
    """The chat messages of one JSONL line, in OpenAI form."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{where}: not JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object")
    if isinstance(record.get("messages"), list):
        messages = []
        for message in record["messages"]:
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, str) or not isinstance(message.get("role"), str):
                raise DatasetError(f"{where}: each message needs a string role and content")
            messages.append({"role": message["role"], "content": content})
        return messages
    if isinstance(record.get("conversations"), list):
        messages = []
        for turn in record["conversations"]:
            speaker = turn.get("from") if isinstance(turn, dict) else None
            role = SHAREGPT_ROLES.get(str(speaker).lower())
            if role is None or not isinstance(turn.get("value"), str):
                raise DatasetError(f"{where}: unknown ShareGPT turn {turn!r:.80}")
            messages.append({"role": role, "content": turn["value"]})
        return messages
    raise DatasetError(f"{where}: expected a 'messages' or 'conversations' list")


def _to_request(
    messages: list[dict[str, str]], tokenizer: Any | None, output_len: int | None
) -> BenchRequest | None:
    """The request for one conversation, or None if it has no user turn to answer."""
    reference = messages.pop() if messages and messages[-1]["role"] == "assistant" else None
    if not any(m["role"] == "user" for m in messages):
        return None
    prompt = "\n".join(m["content"] for m in messages)
    if output_len is None and reference is not None and tokenizer is not None:
        output_len = max(1, len(tokenizer.encode(reference["content"], add_special_tokens=False)))
    prompt_len = len(tokenizer.encode(prompt, add_special_tokens=False)) if tokenizer else 0
    return BenchRequest(
        messages=tuple(messages), prompt=prompt, prompt_len=prompt_len, output_len=output_len
    )


def jsonl_workload(
    path: str | Path,
    *,
    num_prompts: int,
    tokenizer: Any | None = None,
    output_len: int | None = None,
    seed: int = 0,
) -> list[BenchRequest]:
    """``num_prompts`` conversations drawn from ``path`` in a seeded order.

    The file is shuffled with ``seed`` and cycled if it holds fewer usable lines than
    requested. ``output_len`` overrides the reference answers' lengths.
    """
    path = Path(path)
    conversations = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                conversations.append(parse_line(line, f"{path}:{number}"))
    requests = [
        request
        for messages in conversations
        if (request := _to_request(messages, tokenizer, output_len)) is not None
    ]
    if not requests:
        raise DatasetError(f"{path}: no conversation with a user turn")
    order = np.random.default_rng(seed).permutation(len(requests))
    return [requests[order[i % len(requests)]] for i in range(num_prompts)]
