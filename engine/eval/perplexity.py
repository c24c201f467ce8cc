"""Perplexity arithmetic and how a long text is cut into windows the engine can score.

Kept free of vLLM so the arithmetic is tested on hand-computed numbers, and so the CLI can
check its arguments before the engine (seconds to import, a minute to start) loads.

Windowing: the text is tokenized once, then cut into consecutive windows of at most
``context_len`` tokens, each scored independently (no stride, no carried-over context), so
a window's first tokens are predicted from little context, as they are at the start of any
request. Every window starts with the tokenizer's own prefix (Gemma's ``<bos>``; nothing
for SmolLM2), exactly as a served prompt would. A token is scored from the tokens before
it in its window; the first token of a window has no prediction, so:

- with a prefix, windows do not overlap and every text token is scored once;
- without one, each window starts with the last token of the previous window (as context
  only), so again every text token but the very first is scored exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources

from switchyard.engine.eval.weights import WeightBytes

HELDOUT_RESOURCE = "data/heldout.txt"
# What a report names the shipped held-out text by; any other text is named by its path.
HELDOUT_NAME = "heldout"


def heldout_text() -> str:
    """The held-out evaluation text shipped with the package (never used to calibrate)."""
    return resources.files(__package__).joinpath(HELDOUT_RESOURCE).read_text(encoding="utf-8")


def perplexity(logprobs: Sequence[float]) -> float:
    """``exp`` of the mean negative log-likelihood (natural log) of the scored tokens.

    A NaN logprob (a broken model) gives NaN rather than an error, so a comparison table
    still shows which model broke.
    """
    if not logprobs:
        raise ValueError("no scored tokens: perplexity is undefined")
    return math.exp(-math.fsum(logprobs) / len(logprobs))


@dataclass(frozen=True)
class Window:
    """One prompt to score: ``token_ids[first_scored:]`` are the tokens that count."""

    token_ids: list[int]
    first_scored: int


def make_windows(
    text_ids: Sequence[int],
    prefix: Sequence[int],
    context_len: int,
    max_tokens: int | None = None,
) -> list[Window]:
    """Cut ``text_ids`` into windows (see the module docstring) scoring at most
    ``max_tokens`` tokens in all (``None``: the whole text)."""
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    # Without a prefix, the first token of each window is context only.
    overlap = 0 if prefix else 1
    per_window = context_len - len(prefix) - overlap
    if per_window < 1:
        raise ValueError(
            f"context_len {context_len} leaves no token to score after the "
            f"{len(prefix) + overlap} that every window starts with"
        )
    windows: list[Window] = []
    start = 0
    budget = math.inf if max_tokens is None else max_tokens
    while start + overlap < len(text_ids) and budget > 0:
        count = int(min(per_window, budget, len(text_ids) - start - overlap))
        chunk = list(text_ids[start : start + overlap + count])
        windows.append(Window(list(prefix) + chunk, first_scored=len(prefix) + overlap))
        start += count
        budget -= count
    if not windows:
        raise ValueError(f"the text has {len(text_ids)} tokens: nothing to score")
    return windows


@dataclass(frozen=True)
class PerplexityReport:
    """One model's result. ``load_s``: from asking for the engine until it is ready to
    serve (weights, KV cache, compile or not); ``score_s``: scoring the windows;
    ``wall_s``: both."""

    model: str
    path: str
    dtype: str
    context_len: int
    tokens: int
    perplexity: float
    load_s: float
    score_s: float
    wall_s: float
    weights: WeightBytes
    enforce_eager: bool
    text: str = HELDOUT_NAME

    def to_json(self) -> dict:
        figures = asdict(self)
        figures["weights"]["quantized_ratio"] = self.weights.quantized_ratio
        return figures
