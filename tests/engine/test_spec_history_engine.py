"""``--speculative history`` in a real engine: vLLM loads our proposer, and greedy output
is unchanged by it.

Slow (two engine starts). SmolLM runs in float32, so greedy outputs with speculation must
match those without exactly. The reference engine is stopped before the speculative one
starts, so only one engine runs at a time. The prompts repeat text, so the proposer
drafts, and the test requires drafts both accepted and rejected: a test where nothing
was drafted, or a verifier that accepted anything, would pass for any proposer. (What
the proposer drafts, from its own context and from history, is tested without vLLM in
test_spec_history.py.)
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator

import pytest

from switchyard.api.client import EngineClient, Generation

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MODEL = "smollm2-135m-instruct"
PROMPTS = (
    "Copy the list exactly.\nList: apple, banana, cherry, date, elderberry, fig, grape.\n"
    "Copy: apple, banana, cherry, date, elderberry, fig, grape.\n"
    "List: red, orange, yellow, green, blue, indigo, violet.\nCopy:",
    "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n\n\ndef mul(a, b):\n",
    "Why is the sky blue?",
)
MAX_TOKENS = 40


def _stop(engine) -> None:
    engine.process.send_signal(signal.SIGTERM)
    try:
        engine.process.wait(timeout=60)
    finally:
        engine.kill()


@pytest.fixture(scope="module")
async def reference(launch_engine) -> dict[str, list[int]]:
    """Greedy answers without speculation, from an engine that is gone afterwards."""
    engine = launch_engine(MODEL)
    client = await engine.wait_serving()
    try:
        return {p: (await _greedy(client, p)).token_ids for p in PROMPTS}
    finally:
        await client.close()
        _stop(engine)


@pytest.fixture(scope="module")
async def history(launch_engine, reference: dict[str, list[int]]) -> AsyncIterator[EngineClient]:
    engine = launch_engine(MODEL, "--speculative", "history")
    client = await engine.wait_serving()
    try:
        yield client
    finally:
        await client.close()
        _stop(engine)


async def _greedy(client: EngineClient, prompt: str) -> Generation:
    return await client.complete(text=prompt, max_tokens=MAX_TOKENS, temperature=0, ignore_eos=True)


async def test_model_info_names_the_custom_proposer(history: EngineClient) -> None:
    info = await history.model_info()
    assert '"method": "custom_class"' in info.speculative_config


async def test_greedy_output_is_unchanged(
    history: EngineClient, reference: dict[str, list[int]]
) -> None:
    drafted = accepted = 0
    for prompt in PROMPTS:
        # One request at a time, as for the reference.
        on = await _greedy(history, prompt)
        assert on.token_ids == reference[prompt], prompt[:40]
        assert on.complete.spec_accepted_tokens <= on.complete.spec_draft_tokens
        drafted += on.complete.spec_draft_tokens
        accepted += on.complete.spec_accepted_tokens
    assert 0 < accepted < drafted, (accepted, drafted)
