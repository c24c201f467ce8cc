"""Synthetic workloads: ``random`` and ``shared-prefix``, token-exact with the model's tokenizer.

Prompts are built from random token ids, decoded, re-encoded and adjusted until the text
encodes back to exactly the requested number of tokens (as vLLM's random dataset does):
decoding is not a bijection (neighbouring tokens can merge), so a naive decode would
yield prompts of the wrong length and skew every per-token metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Decode/re-encode rounds before a prompt keeps whatever length it converged to.
MAX_LENGTH_RETRIES = 10


@dataclass(frozen=True)
class BenchRequest:
    """One request of a workload, in every form a backend may send it.

    ``token_ids`` is set when the exact prompt tokens are known, so the gRPC backend can
    send them as they are; ``output_len`` set means "generate exactly this many tokens"
    (``max_tokens`` plus ``ignore_eos``); None leaves the length to the server.
    """

    messages: tuple[dict[str, str], ...]
    prompt: str
    prompt_len: int
    output_len: int | None
    token_ids: tuple[int, ...] | None = None


def load_tokenizer(name_or_path: str) -> Any:
    """A tokenizer from a checkpoint directory, an embedded model name, or a hub id."""
    from transformers import AutoTokenizer

    from switchyard.engine.models.prepare import ModelNotFound, resolve_model_path

    if Path(name_or_path).expanduser().is_dir():
        return AutoTokenizer.from_pretrained(Path(name_or_path).expanduser())
    try:
        _, path = resolve_model_path(name_or_path)
    except ModelNotFound:
        return AutoTokenizer.from_pretrained(name_or_path)
    return AutoTokenizer.from_pretrained(path)


def candidate_ids(tokenizer: Any) -> np.ndarray:
    """Token ids a random prompt may use: the vocabulary without special tokens."""
    special = set(tokenizer.all_special_ids)
    return np.array([i for i in range(tokenizer.vocab_size) if i not in special])


def exact_length_prompt(
    tokenizer: Any, length: int, rng: np.random.Generator, candidates: np.ndarray
) -> tuple[str, list[int]]:
    """Random text that encodes (without special tokens) to ``length`` tokens, and its ids.

    After MAX_LENGTH_RETRIES rounds the last re-encoding is kept even if its length is
    off; the returned ids are always the encoding of the returned text.
    """
    ids = rng.choice(candidates, size=length).tolist()
    for _ in range(MAX_LENGTH_RETRIES + 1):
        text = tokenizer.decode(ids)
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) == length:
            break
        if len(ids) > length:
            ids = ids[:length]
        else:
            ids += rng.choice(candidates, size=length - len(ids)).tolist()
    return text, ids


def _lengths(mean: int, range_ratio: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """Integer lengths uniform in [mean*(1-r), mean*(1+r)], at least 1."""
    if not 0 <= range_ratio < 1:
        raise ValueError(f"range ratio must be in [0, 1), got {range_ratio}")
    low = max(1, int(np.floor(mean * (1 - range_ratio))))
    high = max(low, int(np.ceil(mean * (1 + range_ratio))))
    return rng.integers(low, high + 1, size=count)


def random_workload(
    tokenizer: Any,
    *,
    num_prompts: int,
    input_len: int,
    output_len: int,
    range_ratio: float = 0.0,
    seed: int = 0,
) -> list[BenchRequest]:
    """``num_prompts`` random prompts of ``input_len`` tokens asking for ``output_len``."""
    rng = np.random.default_rng(seed)
    candidates = candidate_ids(tokenizer)
    input_lens = _lengths(input_len, range_ratio, num_prompts, rng)
    output_lens = _lengths(output_len, range_ratio, num_prompts, rng)
    requests = []
    for in_len, out_len in zip(input_lens, output_lens, strict=True):
        text, ids = exact_length_prompt(tokenizer, int(in_len), rng, candidates)
        requests.append(
            BenchRequest(
                messages=({"role": "user", "content": text},),
                prompt=text,
                prompt_len=len(ids),
                output_len=int(out_len),
                token_ids=tuple(ids),
            )
        )
    return requests


def shared_prefix_workload(
    tokenizer: Any,
    *,
    num_groups: int,
    prompts_per_group: int,
    system_prompt_len: int,
    question_len: int,
    output_len: int,
    seed: int = 0,
) -> list[BenchRequest]:
    """SGLang's generated-shared-prefix: groups of questions behind one system prompt each.

    Exercises prefix caching: every prompt of a group starts with the same system prompt
    (a system message for chat, leading text and token ids otherwise). The requests of
    all groups are shuffled together, as concurrent users would send them.
    """
    rng = np.random.default_rng(seed)
    candidates = candidate_ids(tokenizer)
    requests = []
    for _ in range(num_groups):
        system_text, system_ids = exact_length_prompt(tokenizer, system_prompt_len, rng, candidates)
        for _ in range(prompts_per_group):
            question, question_ids = exact_length_prompt(tokenizer, question_len, rng, candidates)
            requests.append(
                BenchRequest(
                    messages=(
                        {"role": "system", "content": system_text},
                        {"role": "user", "content": question},
                    ),
                    prompt=system_text + question,
                    prompt_len=len(system_ids) + len(question_ids),
                    output_len=output_len,
                    token_ids=(*system_ids, *question_ids),
                )
            )
    order = rng.permutation(len(requests))
    return [requests[i] for i in order]
