"""Our attention backend inside the real vLLM engine, against vLLM's own CPU attention.

Each embedded model is started a second time with ``--attention-backend switchyard``
(on CPU our backend stands in for vLLM's and runs the kernel's torch reference, with our
own KV-cache writes); greedy generations must match the stock engine token for token,
including prompts longer than Gemma's 512-token sliding window.
"""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.timeout(900)

PROMPTS = [
    "def fibonacci(n):",
    "The three primary colours are",
    # Longer than Gemma's 512-token window, so windowed and global layers differ.
    "Here is a list of numbered facts about rivers.\n"
    + "\n".join(f"{i}. River number {i} flows into the sea {i % 7} times a day." for i in range(60))
    + "\n61.",
]
CHAT = [{"role": "user", "content": "What is the capital of France?"}]


async def _greedy(client, **kwargs):
    result = await client.complete(max_tokens=16, temperature=0, **kwargs)
    return result.token_ids, result.complete.usage.prompt_tokens


@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "gemma-3-270m"])
async def test_greedy_generations_match_vllm_cpu_attention(
    model: str, spawn_engine, smollm, gemma
) -> None:
    stock = {"smollm2-135m-instruct": smollm, "gemma-3-270m": gemma}[model]
    ours_process = spawn_engine(model, "--attention-backend", "switchyard")
    ours = await ours_process.wait_serving()
    try:
        requests = [dict(text=p) for p in PROMPTS] + [dict(messages=CHAT)]
        expected = [await _greedy(stock, **r) for r in requests]
        got = await asyncio.gather(*(_greedy(ours, **r) for r in requests))
        assert max(tokens for _, tokens in expected) > 600
        for (want, _), (have, _), request in zip(expected, got, requests, strict=True):
            assert have == want, f"diverged on {str(request)[:60]!r}"
        assert "switchyard attention backend in use" in ours_process.log_tail(10_000)
    finally:
        await ours.close()
