"""Perplexity through the serving engine: the same ``ModelRuntime`` that
``switchyard engine serve`` starts (dtype choice, CPU settings, our vLLM plugin), so an
NVFP4 checkpoint is scored with the kernels that serve it.

Each window is one request asking vLLM for ``prompt_logprobs=0`` (the log-probability of
every prompt token after the first, raw model log-softmax, no sampling processors) and a
single generated token, which is ignored. All windows are submitted at once; vLLM batches
them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from vllm import SamplingParams
from vllm.sampling_params import RequestOutputKind

from switchyard.engine.config import RuntimeConfig
from switchyard.engine.eval.perplexity import (
    HELDOUT_NAME,
    PerplexityReport,
    Window,
    make_windows,
    perplexity,
)
from switchyard.engine.eval.weights import checkpoint_weight_bytes
from switchyard.engine.requests import PreparedRequest
from switchyard.engine.runtime import ModelRuntime

PROMPT_LOGPROBS = SamplingParams(
    max_tokens=1,
    temperature=0.0,
    prompt_logprobs=0,
    detokenize=False,
    output_kind=RequestOutputKind.FINAL_ONLY,
)


class Scorer:
    """A started engine that returns per-token log-probabilities of token windows."""

    def __init__(self, runtime: ModelRuntime, context_len: int) -> None:
        self.runtime = runtime
        self.context_len = context_len

    @classmethod
    def start(cls, config: RuntimeConfig, context_len: int) -> Scorer:
        """``config.max_model_len`` is replaced: the context is ``context_len`` tokens plus
        the one token each request generates."""
        runtime = ModelRuntime.start(replace(config, max_model_len=context_len + 1))
        return cls(runtime, context_len)

    def shutdown(self) -> None:
        self.runtime.shutdown()

    def tokenize(self, text: str) -> tuple[list[int], list[int]]:
        """``(text token ids, prefix)``: the prefix is what the tokenizer puts before any
        served prompt (Gemma's ``<bos>``), which every window repeats."""
        tokenizer = self.runtime.tokenizer
        return (
            tokenizer(text, add_special_tokens=False).input_ids,
            tokenizer("").input_ids,
        )

    def windows(self, text: str, max_tokens: int | None) -> list[Window]:
        text_ids, prefix = self.tokenize(text)
        return make_windows(text_ids, prefix, self.context_len, max_tokens)

    async def _window_logprobs(self, window: Window) -> list[float]:
        final = None
        request = PreparedRequest(window.token_ids, PROMPT_LOGPROBS)
        async for output in self.runtime.generate(self.runtime.new_request_id(""), request):
            final = output
        if final is None or final.prompt_logprobs is None:
            raise RuntimeError("the engine returned no prompt logprobs")
        scored = range(window.first_scored, len(window.token_ids))
        return [final.prompt_logprobs[i][window.token_ids[i]].logprob for i in scored]

    async def logprobs(self, windows: Sequence[Window]) -> list[float]:
        per_window = await asyncio.gather(*(self._window_logprobs(w) for w in windows))
        return [value for values in per_window for value in values]


async def evaluate(
    config: RuntimeConfig,
    text: str,
    context_len: int,
    max_tokens: int | None,
    text_name: str = HELDOUT_NAME,
) -> PerplexityReport:
    """Start the engine for ``config``, score ``text`` (reported as ``text_name``) and
    shut the engine down."""
    started = time.perf_counter()
    scorer = Scorer.start(config, context_len)
    loaded = time.perf_counter()
    try:
        logprobs = await scorer.logprobs(scorer.windows(text, max_tokens))
    finally:
        scorer.shutdown()
    done = time.perf_counter()
    runtime = scorer.runtime
    return PerplexityReport(
        model=runtime.served_name,
        path=runtime.model_path,
        dtype=str(runtime.llm.model_config.dtype).removeprefix("torch."),
        context_len=context_len,
        tokens=len(logprobs),
        perplexity=perplexity(logprobs),
        load_s=loaded - started,
        score_s=done - loaded,
        wall_s=done - started,
        weights=checkpoint_weight_bytes(Path(runtime.model_path)),
        enforce_eager=config.enforce_eager,
        text=text_name,
    )
