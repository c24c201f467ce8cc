"""The OpenAI backend against the loopback server: which events count as chunks, where
output tokens come from, and every kind of failed request."""

from __future__ import annotations

import time

import pytest
from injected_truth import in_one_of
from loopback_server import GAP_S, PROMPT_TOKENS, TTFT_S, FakeServer

from switchyard.bench.serving.openai_backend import OpenAIBackend
from switchyard.bench.serving.workloads import BenchRequest

TOKENS = 6
TOLERANCE_S = 0.015  # scheduling noise, per chunk
REPLY = "".join(f"t{i} " for i in range(TOKENS))


def _request(script: str = "", output_len: int = TOKENS) -> BenchRequest:
    content = f"hello {script}"
    return BenchRequest(
        messages=({"role": "user", "content": content},),
        prompt=content,
        prompt_len=1,
        output_len=output_len,
    )


async def _send(server: FakeServer, script: str = "", *, warm: bool = False, **options: object):
    """One request's record; ``warm`` sends another first, so that the measured one does
    not pay for opening the connection."""
    backend = OpenAIBackend(server.url, "fake", **options)
    try:
        if warm:
            await backend.send(_request())
        return await backend.send(_request(script))
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("endpoint", "script", "gaps"),
    [
        # vLLM's chat role chunk comes with the first token: one gap of about 0.
        ("chat", "", [0.0] + [GAP_S] * (TOKENS - 1)),
        ("completions", "", [GAP_S] * (TOKENS - 1)),
        # An empty delta:{} finish chunk one gap after the last token is a chunk too.
        ("chat", "finish=separate", [0.0] + [GAP_S] * TOKENS),
        ("completions", "finish=separate", [GAP_S] * TOKENS),
    ],
)
async def test_every_event_with_choices_is_a_chunk(
    fake_server: FakeServer, endpoint: str, script: str, gaps: list[float]
) -> None:
    await in_one_of(3, lambda: _check_chunks(fake_server, endpoint, script, gaps))


async def _check_chunks(fake_server: FakeServer, endpoint: str, script: str, gaps: list[float]):
    record = await _send(fake_server, script, warm=True, endpoint=endpoint)
    assert record.success, record.error
    assert len(record.itl_s) == len(gaps)  # the usage-only event is not a chunk
    assert record.chunk_tokens == [1] * (len(gaps) + 1)
    assert record.ttft_s == pytest.approx(TTFT_S, abs=TOLERANCE_S)
    assert record.itl_s == pytest.approx(gaps, abs=TOLERANCE_S)
    assert record.latency_s == pytest.approx(TTFT_S + sum(gaps), abs=TOLERANCE_S)
    assert (record.output_tokens, record.prompt_tokens) == (TOKENS, PROMPT_TOKENS)
    assert record.generated_text == REPLY


async def test_without_usage_output_tokens_are_the_reply_retokenized(
    fake_server: FakeServer, smollm_tokenizer
) -> None:
    record = await _send(fake_server, "usage=none", tokenizer=smollm_tokenizer)
    assert record.success, record.error
    expected = len(smollm_tokenizer(REPLY, add_special_tokens=False).input_ids)
    assert expected != TOKENS  # "t0 " is more than one token: the count really is re-done
    assert record.output_tokens == expected
    assert record.prompt_tokens == 1  # the workload's length, as no usage came


async def test_without_usage_or_tokenizer_chunks_with_text_are_counted(
    fake_server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    record = await _send(fake_server, "usage=none finish=separate")
    assert record.success, record.error
    # Role chunk, 6 tokens, finish chunk: 8 chunks, of which 6 carry text.
    assert (len(record.chunk_tokens), record.output_tokens) == (TOKENS + 2, TOKENS)
    assert "reported no usage.completion_tokens" in caplog.text


@pytest.mark.parametrize(
    ("script", "kind", "message"),
    [
        ("fault=stall", "timeout", "timed out"),
        ("fault=cut", "payload", "ClientPayloadError"),
        ("fault=badjson", "bad_stream", "JSONDecodeError"),
        ("fault=error", "stream_error", "injected stream error"),
        ("fault=empty", "no_content", "without a chunk"),
        ("FAIL", "http_500", "injected failure"),
    ],
)
async def test_failure_kinds(fake_server: FakeServer, script: str, kind: str, message: str) -> None:
    started = time.perf_counter()
    record = await _send(fake_server, script, timeout_s=0.5)
    assert not record.success
    assert record.error_kind == kind
    assert message in record.error
    assert time.perf_counter() - started < 2


async def test_a_connection_without_answer_fails_after_the_connect_timeout(
    unanswered_port: int,
) -> None:
    server = FakeServer(f"http://127.0.0.1:{unanswered_port}")
    started = time.perf_counter()
    record = await _send(server, timeout_s=60, connect_timeout_s=0.3)
    elapsed = time.perf_counter() - started
    assert (record.success, record.error_kind) == (False, "connect_timeout")
    assert "0.3 s" in record.error
    assert 0.3 <= elapsed < 1.5


async def test_a_refused_connection_fails_at_once() -> None:
    started = time.perf_counter()
    record = await _send(FakeServer("http://127.0.0.1:9"), connect_timeout_s=5)
    assert record.error_kind == "connection"
    assert time.perf_counter() - started < 1
