"""Our attention backend inside the real vLLM engine, against vLLM's own CPU attention.

Each embedded model is started a second time with ``--attention-backend switchyard``
(on CPU our backend stands in for vLLM's and runs the kernel's torch reference, with our
own KV-cache writes); its greedy generations must follow the stock engine's, including a
prompt longer than Gemma's 512-token sliding window.

"Follow" is not token-for-token equality. vLLM-CPU's attention depends on the CPU (its
AMX kernel where the CPU has AMX tiles, a vector kernel elsewhere), and in bf16 two
correct implementations can order a near-tie differently: Gemma's logits are bf16, one
unit in the last place is 0.125 nats around the values greedy decoding compares, and on
"The three primary colours are" the third token is such a tie (" yellow" over " blue" by
0.125 nats under vLLM's AMX kernel, 0.25 under its vector kernel, a dead heat under ours).
So generations are compared token by token while they agree, each sampled token's
logprob within ``LOGPROB_TOLERANCE`` of the stock engine's; they may part only where both
engines saw a near-tie (top-2 margin at most ``NEAR_TIE_NATS``) and each chose the
other's runner-up. A real defect (a wrong window, scale or block) moves logprobs by far
more than the tolerance or flips a clear choice, and fails.
"""

from __future__ import annotations

import asyncio

import pytest
from greedy_comparison import positions_that_agree

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
MAX_TOKENS = 16
# Most positions must be compared, or a run of early near-ties would prove nothing.
MIN_COMPARED_FRACTION = 0.75


async def _greedy(client, **request):
    return await client.complete(max_tokens=MAX_TOKENS, temperature=0, logprobs=2, **request)


@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "gemma-3-270m"])
async def test_greedy_generations_follow_vllm_cpu_attention(
    model: str, spawn_engine, smollm, gemma
) -> None:
    stock = {"smollm2-135m-instruct": smollm, "gemma-3-270m": gemma}[model]
    ours_process = spawn_engine(model, "--attention-backend", "switchyard")
    ours = await ours_process.wait_serving()
    try:
        requests = [dict(text=p) for p in PROMPTS] + [dict(messages=CHAT)]
        expected = [await _greedy(stock, **r) for r in requests]
        got = await asyncio.gather(*(_greedy(ours, **r) for r in requests))
        assert max(e.complete.usage.prompt_tokens for e in expected) > 600
        compared = sum(
            positions_that_agree(want, have, str(request)[:60])
            for want, have, request in zip(expected, got, requests, strict=True)
        )
        total = sum(len(e.logprobs) for e in expected)
        assert compared >= MIN_COMPARED_FRACTION * total, f"{compared} of {total} compared"
        assert "switchyard attention backend in use" in ours_process.log_tail(10_000)
    finally:
        await ours.close()
