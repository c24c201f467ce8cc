"""``--speculative history``: drafts from this request's context *and* from what the engine
served before.

vLLM's n-gram proposer looks for the last few tokens inside the request's own context
(prompt, earlier turns, output so far) and drafts whatever followed them there. In
consumer chat that context is short and the answer is new text, so it finds little, and
what a two-token match finds is often wrong. Yet answers resemble each other across
requests: a character app sends every user the same persona, and a model answers in the
same phrases and markdown scaffolding again and again.

So this proposer counts which token followed each n-gram (orders ``min_n``..``max_n``),
in two tables: the request's own context, and a shared history of recently finished
requests (prompts and answers, the oldest dropped first past a token budget). It drafts
by following the most frequent continuation of the longest n-gram found in either table,
an occurrence in the request's own context weighing ``own_weight`` times one from
history, and stops as soon as the estimated chance that the whole draft is accepted
falls below ``min_confidence``: a short likely draft is worth more than a long wrong one
(each rejected token is a wasted verification slot).

Measured (``bench spec`` on gemma-3-270m, docs/features/speculative-decoding.md): longer
acceptance than n-gram on every workload and fewer rejected tokens, which is what pays at
concurrency 8 on CPU. Replaying that model's answers offline with the history switched off
gives the same acceptance length: the gain comes from the counts and the confidence stop
over the request's own context. That model's chat answers loop on their own text, and
under the tuned ``prior`` history alone drafts only what ten earlier requests agreed on.
Offline with SmolLM, whose answers are real prose, history adds a little (acceptance length 2.58
without it 2.51, n-gram 2.18, on persona chat).

:class:`NgramCounts`, :class:`History` and :class:`HistoryDrafter` are plain Python over
token lists, testable without vLLM; :class:`HistoryProposer` adapts the drafter to vLLM's
``custom_class`` proposer interface (``speculative_config.model`` names it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DraftPolicy:
    """How far to match and how sure a draft must be.

    The defaults were chosen by replaying gemma-3-270m's sampled chat answers (to
    questions and a persona other than ``bench spec``'s) through this drafter and vLLM's
    n-gram proposer offline, for the highest mean acceptance length that still accepts
    at least as many tokens per step as n-gram does.
    """

    # Tokens proposed per step at most (vLLM's num_speculative_tokens).
    k: int = 4
    # Shortest and longest n-gram matched against the tables.
    min_n: int = 2
    max_n: int = 6
    # One occurrence in the request's own context counts as this many from history: the
    # request's own text (persona, earlier turns, code being edited) is by far the best
    # predictor, so history decides only where the own context has no match.
    own_weight: float = 64.0
    # Pseudo-count of "some other token" per lookup, so that a continuation seen once
    # is not certain (from history alone, ten unanimous sightings give p = 0.71).
    prior: float = 4.0
    # Stop drafting when the product of the drafted tokens' estimated probabilities
    # falls below this.
    min_confidence: float = 0.7

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not 1 <= self.min_n <= self.max_n:
            raise ValueError(f"need 1 <= min_n <= max_n, got {self.min_n} and {self.max_n}")
        if self.own_weight < 0 or self.prior < 0:
            raise ValueError("own_weight and prior must be >= 0")
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")


class NgramCounts:
    """How often each token followed each n-gram of orders ``min_n``..``max_n``."""

    def __init__(self, min_n: int, max_n: int) -> None:
        self.min_n = min_n
        self.max_n = max_n
        self._table: dict[tuple[int, ...], dict[int, int]] = {}

    def __len__(self) -> int:
        return len(self._table)

    def add(self, tokens: Sequence[int], start: int = 0) -> None:
        """Count ``tokens[start:]``, each as the continuation of the n-grams before it."""
        table = self._table
        for i in range(max(start, self.min_n), len(tokens)):
            token = tokens[i]
            window = tuple(tokens[max(0, i - self.max_n) : i])
            for n in range(self.min_n, len(window) + 1):
                key = window[-n:]
                followers = table.get(key)
                if followers is None:
                    table[key] = {token: 1}
                else:
                    followers[token] = followers.get(token, 0) + 1

    def remove(self, tokens: Sequence[int]) -> None:
        """Undo :meth:`add` of the same ``tokens`` (from 0)."""
        table = self._table
        for i in range(self.min_n, len(tokens)):
            token = tokens[i]
            window = tuple(tokens[max(0, i - self.max_n) : i])
            for n in range(self.min_n, len(window) + 1):
                key = window[-n:]
                followers = table[key]
                if followers[token] == 1:
                    del followers[token]
                    if not followers:
                        del table[key]
                else:
                    followers[token] -= 1

    def followers(self, key: tuple[int, ...]) -> dict[int, int] | None:
        return self._table.get(key)


class History:
    """Counts over recently finished sequences; past ``capacity`` tokens in all, the
    oldest sequences are forgotten, so memory stays bounded however long the engine runs."""

    def __init__(self, min_n: int, max_n: int, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"history capacity must be >= 1 token, got {capacity}")
        self.capacity = capacity
        self.counts = NgramCounts(min_n, max_n)
        self._sequences: deque[list[int]] = deque()
        self.tokens = 0

    def __len__(self) -> int:
        return len(self._sequences)

    def add(self, tokens: Sequence[int]) -> None:
        sequence = list(tokens[-self.capacity :])
        self.counts.add(sequence)
        self._sequences.append(sequence)
        self.tokens += len(sequence)
        while self.tokens > self.capacity:
            oldest = self._sequences.popleft()
            self.counts.remove(oldest)
            self.tokens -= len(oldest)


def draft(
    policy: DraftPolicy, context: Sequence[int], own: NgramCounts, shared: NgramCounts
) -> list[int]:
    """Up to ``policy.k`` tokens likely to follow ``context``; [] when nothing is likely."""
    window = list(context[-policy.max_n :])
    drafted: list[int] = []
    confidence = 1.0
    while len(drafted) < policy.k:
        guess = _next_token(policy, window, own, shared)
        if guess is None:
            break
        token, probability = guess
        confidence *= probability
        if confidence < policy.min_confidence:
            break
        drafted.append(token)
        window = [*window, token][-policy.max_n :]
    return drafted


def _next_token(
    policy: DraftPolicy, window: list[int], own: NgramCounts, shared: NgramCounts
) -> tuple[int, float] | None:
    """The likeliest follower of the longest n-gram at the end of ``window`` found in
    either table, and its estimated probability."""
    for n in range(min(policy.max_n, len(window)), policy.min_n - 1, -1):
        key = tuple(window[-n:])
        mine, theirs = own.followers(key), shared.followers(key)
        if not mine and not theirs:
            continue
        scores: dict[int, float] = dict(theirs) if theirs else {}
        if mine:
            for token, count in mine.items():
                scores[token] = scores.get(token, 0) + policy.own_weight * count
        token = max(scores, key=scores.__getitem__)
        return token, scores[token] / (sum(scores.values()) + policy.prior)
    return None


@dataclass
class _Live:
    """One running request: the tokens counted so far and their counts."""

    tokens: list[int]
    own: NgramCounts = field(repr=False)


class HistoryDrafter:
    """Drafts for a batch whose rows hold running requests' confirmed tokens.

    vLLM hands a proposer batch rows, not request ids, and moves requests between rows
    as others finish; so a row's request is recognised by its tokens: the same request
    still starts with every token counted for it last step. A request that no longer
    appears has finished (or was preempted): its tokens go to the shared history.
    """

    def __init__(self, policy: DraftPolicy, capacity: int) -> None:
        self.policy = policy
        self.history = History(policy.min_n, policy.max_n, capacity)
        self._rows: dict[int, _Live] = {}

    def propose(self, contexts: Sequence[Sequence[int] | None]) -> list[list[int]]:
        """Drafts for each row; a ``None`` row (its request is still in prefill, or at
        its length limit) gets none and keeps its request."""
        previous, self._rows = self._rows, {}
        unmatched: list[int] = []
        for row, context in enumerate(contexts):
            live = previous.get(row)
            if context is not None and live is not None and _continues(context, live.tokens):
                self._rows[row] = previous.pop(row)
            elif context is not None:
                unmatched.append(row)
        # Rows whose request is new here, or moved here from another row.
        for row in unmatched:
            context = contexts[row]
            assert context is not None
            moved = next(
                (r for r, live in previous.items() if _continues(context, live.tokens)), None
            )
            if moved is not None:
                self._rows[row] = previous.pop(moved)
            else:
                self._rows[row] = _Live([], NgramCounts(self.policy.min_n, self.policy.max_n))
        # A row without tokens this step keeps its request, unless it moved.
        for row, context in enumerate(contexts):
            if context is None and row in previous:
                self._rows[row] = previous.pop(row)
        for finished in previous.values():
            self.history.add(finished.tokens)
        drafts = []
        for row, context in enumerate(contexts):
            if context is None:
                drafts.append([])
                continue
            live = self._rows[row]
            counted = len(live.tokens)
            live.tokens.extend(context[counted:])
            live.own.add(live.tokens, counted)
            drafts.append(draft(self.policy, live.tokens, live.own, self.history.counts))
        return drafts


def _continues(context: Sequence[int], counted: list[int]) -> bool:
    return len(context) >= len(counted) and list(context[: len(counted)]) == counted


# Tokens of finished requests remembered: some 40 chat requests (prompt and answer).
# Counts cost 0.5 to 3 KB per token (up to one key per order), so at most ~60 MB.
HISTORY_CAPACITY = 20_000


class HistoryProposer:
    """vLLM's ``custom_class`` proposer over :class:`HistoryDrafter`.

    vLLM constructs it with the engine's VllmConfig and calls :meth:`propose` after each
    step with the batch's confirmed tokens, the way it calls its n-gram proposer.
    """

    def __init__(self, vllm_config: Any) -> None:
        spec = vllm_config.speculative_config
        self.max_model_len: int = vllm_config.model_config.max_model_len
        self.drafter = HistoryDrafter(
            DraftPolicy(k=spec.num_speculative_tokens), capacity=HISTORY_CAPACITY
        )

    def propose(
        self,
        sampled_token_ids: list[list[int]],
        num_tokens_no_spec: Any,
        token_ids_cpu: Any,
        slot_mappings: Any = None,
    ) -> list[list[int]]:
        """Per row of the batch, the draft token ids (a list per row, maybe empty), as
        vLLM's NgramProposer returns them. ``token_ids_cpu[i, :num_tokens_no_spec[i]]`` is
        row i's prompt and confirmed output; ``slot_mappings`` is unused (no forward)."""
        contexts: list[list[int] | None] = []
        for row, sampled in enumerate(sampled_token_ids):
            length = int(num_tokens_no_spec[row])
            # No sampled token: a partial prefill, nothing to draft from yet.
            if not sampled or length >= self.max_model_len:
                contexts.append(None)
            else:
                contexts.append(token_ids_cpu[row, :length].tolist())
        drafts = self.drafter.propose(contexts)
        # Never past the model's length, like vLLM's n-gram proposer.
        return [
            d[: max(0, self.max_model_len - int(num_tokens_no_spec[row]))]
            for row, d in enumerate(drafts)
        ]

    def load_model(self, *args: object, **kwargs: object) -> None:
        """No weights: vLLM calls this on every drafter."""
