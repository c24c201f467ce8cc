"""The history proposer's core (counts, drafting, request tracking) and its vLLM adapter,
without an engine."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import numpy as np
import pytest

from switchyard.engine import speculative
from switchyard.engine.spec_history import (
    DraftPolicy,
    History,
    HistoryDrafter,
    HistoryProposer,
    NgramCounts,
    draft,
)

POLICY = DraftPolicy(k=4, min_n=2, max_n=4, own_weight=4.0, prior=1.0, min_confidence=0.3)


def counts(*sequences: list[int]) -> NgramCounts:
    table = NgramCounts(POLICY.min_n, POLICY.max_n)
    for sequence in sequences:
        table.add(sequence)
    return table


def test_counts_follow_every_order_and_remove_undoes_add() -> None:
    table = counts([1, 2, 3, 1, 2, 4])
    assert table.followers((1, 2)) == {3: 1, 4: 1}
    assert table.followers((3, 1, 2)) == {4: 1}
    assert table.followers((2, 3, 1, 2)) == {4: 1}
    assert table.followers((1,)) is None  # below min_n: not counted
    table.add([9, 1, 2, 3])
    assert table.followers((1, 2)) == {3: 2, 4: 1}
    table.remove([9, 1, 2, 3])
    table.remove([1, 2, 3, 1, 2, 4])
    assert len(table) == 0


def test_add_from_start_counts_only_the_new_tokens() -> None:
    whole, in_steps = counts([5, 6, 7, 5, 6, 8]), counts([5, 6, 7])
    in_steps.add([5, 6, 7, 5, 6, 8], start=3)
    for key in ((5, 6), (6, 7), (7, 5, 6), (6, 7, 5, 6)):
        assert in_steps.followers(key) == whole.followers(key)


def test_draft_copies_the_requests_own_context() -> None:
    context = [10, 11, 12, 13, 14, 15, 16, 99, 10, 11]
    assert draft(POLICY, context, counts(context), counts()) == [12, 13, 14, 15]


def test_draft_follows_history_when_the_own_context_has_no_match() -> None:
    served = [7, 20, 21, 22, 23, 24, 25, 8]
    shared = counts(served, served, served)  # three earlier answers said the same
    context = [1, 2, 3, 20, 21]
    own = counts(context)
    assert draft(POLICY, context, own, NgramCounts(2, 4)) == []
    assert draft(POLICY, context, own, shared) == [22, 23, 24, 25]


def test_draft_stops_where_history_disagrees() -> None:
    shared = counts([20, 21, 22, 30, 31], [20, 21, 22, 40, 41])
    # After 20 21 both answers said 22 (p = 2/3); then they split (p = 1/3 each).
    assert draft(POLICY, [20, 21], counts([20, 21]), shared) == [22]


def test_one_unsure_guess_is_not_drafted() -> None:
    single = counts([20, 21, 22])
    # Seen once in history: p = 1 / (1 + prior) = 0.5, above 0.3 but not 0.6.
    assert draft(POLICY, [20, 21], counts(), single) == [22]
    strict = DraftPolicy(min_confidence=0.6)
    assert draft(strict, [20, 21], counts(), single) == []


def test_own_context_outweighs_history() -> None:
    shared = counts([1, 2, 3], [1, 2, 3], [1, 2, 3])  # 3 x "1 2 -> 3"
    context = [1, 2, 5, 6, 1, 2]  # own: "1 2 -> 5" once, weighing 4
    assert draft(POLICY, context, counts(context), shared)[0] == 5


def test_history_forgets_the_oldest_sequences_past_its_capacity() -> None:
    history = History(2, 4, capacity=10)
    history.add([1, 2, 3, 4, 5, 6])
    history.add([7, 8, 9, 10])
    assert history.counts.followers((1, 2)) == {3: 1}
    history.add([11, 12, 13])  # 13 tokens > 10: the first sequence goes
    assert history.counts.followers((1, 2)) is None
    assert history.counts.followers((7, 8)) == {9: 1}
    assert (len(history), history.tokens) == (2, 7)
    history.add(list(range(100, 130)))  # longer than the capacity: its last 10 kept
    assert (len(history), history.tokens) == (1, 10)
    assert history.counts.followers((120, 121)) == {122: 1}
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        History(2, 4, capacity=0)


def test_a_finished_request_drafts_for_the_next() -> None:
    drafter = HistoryDrafter(POLICY, capacity=1000)
    answer = [50, 51, 52, 53, 54, 55]
    # Three requests answer alike, each fed a token at a time as vLLM confirms them.
    for prompt in ([1, 2, 3], [4, 5, 6], [7, 8, 9]):
        for length in range(len(prompt) + 1, len(prompt) + len(answer) + 1):
            drafter.propose([[*prompt, *answer][:length]])
    # The next one starts the same answer: "50 51" was followed by 52 three times out of
    # three (p = 3/4 with the prior), and so on; the whole draft stays above 0.3.
    assert drafter.propose([[10, 11, 50, 51]]) == [[52, 53, 54, 55]]
    # Three finished requests are history; the running one is not, yet.
    assert len(drafter.history) == 3
    assert drafter.history.counts.followers((50, 51)) == {52: 3}


def test_requests_are_recognised_when_they_move_between_rows() -> None:
    drafter = HistoryDrafter(POLICY, capacity=1000)
    a, b, c = [1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]
    drafter.propose([a, b, c])
    # a finished; vLLM moved c into its row and b stays.
    drafter.propose([[*c, 13], [*b, 14]])
    assert len(drafter.history) == 1
    assert drafter.history.counts.followers((1, 2)) == {3: 1}  # a, once
    # A row in prefill (None) keeps its request; a row beyond the batch has finished.
    drafter.propose([None, [*b, 14, 15]])
    drafter.propose([[*c, 13, 16]])
    assert len(drafter.history) == 2
    assert drafter.history.counts.followers((6, 7)) == {8: 1}  # b, once


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("k", 0, "k must be >= 1"),
        ("min_n", 0, "need 1 <= min_n <= max_n"),
        ("max_n", 1, "need 1 <= min_n <= max_n"),
        ("prior", -1.0, "must be >= 0"),
        ("min_confidence", 1.5, r"min_confidence must be in \[0, 1\]"),
    ],
)
def test_policy_refuses_nonsense(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DraftPolicy(**{field: value})


def _vllm_config(k: int, max_model_len: int) -> SimpleNamespace:
    return SimpleNamespace(
        speculative_config=SimpleNamespace(num_speculative_tokens=k),
        model_config=SimpleNamespace(max_model_len=max_model_len),
    )


def test_proposer_speaks_vllms_custom_class_interface() -> None:
    proposer = HistoryProposer(_vllm_config(k=3, max_model_len=12))
    assert proposer.drafter.policy.k == 3
    proposer.load_model(object())  # vLLM calls it on every drafter
    rows = np.zeros((3, 12), dtype=np.int32)
    rows[0, :10] = [1, 2, 3, 4, 5, 6, 1, 2, 3, 4]
    rows[1, :3] = [7, 8, 9]
    rows[2, :8] = [1, 2, 3, 4, 5, 6, 1, 2]
    drafts = proposer.propose([[4], [], [2]], np.array([10, 3, 8]), rows, slot_mappings=None)
    # Row 0 has room for 2 more tokens only; row 1 is in prefill (no sampled token).
    assert drafts == [[5, 6], [], [3, 4, 5]]
    assert all(isinstance(t, int) for d in drafts for t in d)


def test_the_recipe_names_an_importable_proposer() -> None:
    options = speculative.RECIPES[(speculative.ANY_FAMILY, "history")].options
    module, _, name = options["model"].rpartition(".")
    assert getattr(importlib.import_module(module), name) is HistoryProposer
