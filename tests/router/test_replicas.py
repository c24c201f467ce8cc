"""Choosing among engine replicas: prefix affinity, load balance, stickiness, failover order."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter, deque
from dataclasses import dataclass

import pytest

from switchyard.router.replicas import REPLICA_POLICIES, ReplicaSet, prefix_hashes

WORDS = [
    "cache",
    "kernel",
    "batch",
    "token",
    "prefix",
    "replica",
    "engine",
    "router",
    "stream",
    "latency",
    "queue",
    "decode",
    "prefill",
    "block",
    "tensor",
    "model",
    "answer",
    "question",
    "system",
    "policy",
    "request",
    "warp",
    "memory",
]


@dataclass
class Engine:
    """Like the registry's engine: a plain dataclass, so unhashable, labelled by .label."""

    label: str


def text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words)[:chars]


def system_prompts(count: int, chars: int = 2000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"System prompt {i}: {text(rng, chars)}" for i in range(count)]


def questions(count: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [f"\nQuestion {i}: {text(rng, rng.randint(40, 300))}?" for i in range(count)]


def pair() -> tuple[Engine, Engine]:
    return Engine("a"), Engine("b")


def drive(replicas: ReplicaSet, prompts: list[str], concurrency: int = 1) -> list[Engine]:
    """Send each prompt to order()[0], with at most ``concurrency`` requests in flight (the
    oldest finishes first); the replica each went to."""
    chosen: list[Engine] = []
    running: deque[Engine] = deque()
    for prompt in prompts:
        if len(running) == concurrency:
            replicas.finished(running.popleft())
        replica = replicas.order(prompt)[0]
        replicas.started(replica, prompt)
        running.append(replica)
        chosen.append(replica)
    while running:
        replicas.finished(running.popleft())
    return chosen


@pytest.mark.parametrize("interleaved", [False, True], ids=["grouped", "interleaved"])
@pytest.mark.parametrize("concurrency", [1, 4])
def test_cache_aware_keeps_each_prefix_on_one_replica_and_spreads_prefixes(
    interleaved: bool, concurrency: int
) -> None:
    systems, asks = system_prompts(8), questions(12)
    if interleaved:
        sent = [(s, q) for q in range(len(asks)) for s in range(len(systems))]
    else:
        sent = [(s, q) for s in range(len(systems)) for q in range(len(asks))]
    replicas = ReplicaSet(pair())
    chosen = drive(replicas, [systems[s] + asks[q] for s, q in sent], concurrency)

    by_prefix: dict[int, set[str]] = {}
    for (s, _), replica in zip(sent, chosen, strict=True):
        by_prefix.setdefault(s, set()).add(replica.label)
    assert all(len(labels) == 1 for labels in by_prefix.values()), by_prefix
    split = Counter(next(iter(labels)) for labels in by_prefix.values())
    assert 3 <= split["a"] <= 5 and 3 <= split["b"] <= 5, split
    assert [r["in_flight"] for r in replicas.snapshot()] == [0, 0]


def test_round_robin_alternates() -> None:
    a, b = pair()
    replicas = ReplicaSet([a, b], "round_robin")
    prompt = system_prompts(1)[0]
    assert drive(replicas, [prompt] * 6) == [a, b, a, b, a, b]


def test_round_robin_shares_an_unavailable_replicas_turns_evenly() -> None:
    a, b, c = Engine("a"), Engine("b"), Engine("c")
    replicas = ReplicaSet([a, b, c], "round_robin")
    firsts = Counter(replicas.order("q", available=lambda r: r is not b)[0].label for _ in range(6))
    assert firsts == {"a": 3, "c": 3}


def test_least_loaded_picks_fewest_in_flight_and_counts_engine_waiting() -> None:
    a, b = pair()
    replicas = ReplicaSet([a, b], "least_loaded")
    replicas.started(a, "x")
    replicas.started(a, "x")
    replicas.started(b, "x")
    assert replicas.order("x") == [b, a]
    replicas.finished(a)
    replicas.finished(a)
    assert replicas.order("x") == [a, b]
    # The engine's queue counts too: b's own in-flight plus 5 waiting outweighs a's 0.
    replicas.set_engine_load(b, running=1, waiting=5)
    assert replicas.order("x")[0] is a
    replicas.set_engine_load(b, running=1, waiting=0)
    replicas.set_engine_load(a, running=3, waiting=2)
    assert replicas.order("x")[0] is b


def test_least_loaded_rotates_between_equally_loaded_replicas() -> None:
    a, b = pair()
    replicas = ReplicaSet([a, b], "least_loaded")
    assert drive(replicas, ["x"] * 4) == [a, b, a, b]


def test_consistent_hash_is_sticky_even_and_moves_users_only_to_a_new_replica() -> None:
    a, b, c = Engine("a"), Engine("b"), Engine("c")
    users = [f"user-{i}" for i in range(1000)]
    replicas = ReplicaSet([a, b], "consistent_hash")
    before = {u: replicas.order("p", u)[0].label for u in users}
    # Sticky, also for a fresh set (as in another router process) and whatever the load.
    again = ReplicaSet([Engine("a"), Engine("b")], "consistent_hash")
    for _ in range(30):
        again.started(again.replicas[0], "p")
    assert {u: again.order("p", u)[0].label for u in users} == before
    share = Counter(before.values())["a"] / len(users)
    assert 0.4 <= share <= 0.6, share

    replicas.add(c)
    after = {u: replicas.order("p", u)[0].label for u in users}
    moved = {(before[u], after[u]) for u in users if before[u] != after[u]}
    assert moved <= {("a", "c"), ("b", "c")}, moved
    assert 0.2 <= Counter(after.values())["c"] / len(users) <= 0.47


def test_consistent_hash_without_user_is_least_loaded() -> None:
    a, b = pair()
    replicas = ReplicaSet([a, b], "consistent_hash")
    replicas.started(a, "x")
    assert replicas.order("x") == [b, a]


@pytest.mark.parametrize(
    ("hot_in_flight", "expected"),
    [(100, "b"), (70, "b"), (10, "a")],
    ids=["far-above", "just-above", "within-thresholds"],
)
def test_cache_aware_leaves_a_hot_prefix_when_its_replica_is_overloaded(
    hot_in_flight: int, expected: str
) -> None:
    a, b = pair()
    replicas = ReplicaSet([a, b], balance_abs_threshold=64, balance_rel_threshold=1.5)
    system = system_prompts(1)[0]
    for question in questions(hot_in_flight):
        replicas.started(a, system + question)
    assert replicas.order(system + "\nQuestion: next?")[0].label == expected


def test_cache_aware_breaks_equal_matches_by_load() -> None:
    a, b = pair()
    replicas = ReplicaSet([a, b])
    system = system_prompts(1)[0]
    for replica, count in ((a, 3), (b, 1)):
        for question in questions(count):
            replicas.started(replica, system + question)
    assert replicas.order(system + "\nQuestion: next?") == [b, a]


def test_cache_aware_prefers_the_longer_match_within_thresholds() -> None:
    a, b = pair()
    replicas = ReplicaSet([a, b])
    system = system_prompts(1)[0]
    replicas.started(a, system[:1000])
    for question in questions(5):
        replicas.started(b, system + question)
    assert replicas.order(system + "\nQuestion: next?") == [b, a]


def test_cache_aware_replicates_a_hot_prefix_then_balances_it() -> None:
    """Once the overloaded replica's prefix has also been sent to the other, both match
    and the lower load wins, so the hot prefix ends up spread over both."""
    a, b = pair()
    replicas = ReplicaSet([a, b], balance_abs_threshold=4, balance_rel_threshold=1.5)
    system = system_prompts(1)[0]
    chosen = drive(replicas, [system + q for q in questions(40)], concurrency=16)
    counts = Counter(r.label for r in chosen)
    assert counts["a"] >= 12 and counts["b"] >= 12, counts


@pytest.mark.parametrize("policy", REPLICA_POLICIES)
def test_unavailable_replicas_go_last(policy: str) -> None:
    a, b, c = Engine("a"), Engine("b"), Engine("c")
    replicas = ReplicaSet([a, b, c], policy)  # type: ignore[arg-type]
    prompt = system_prompts(1)[0]
    replicas.started(a, prompt)
    replicas.finished(a)
    for _ in range(5):
        ranked = replicas.order(prompt, "user-1", available=lambda r: r is not a)
        assert sorted(r.label for r in ranked) == ["a", "b", "c"]
        assert ranked[-1] is a
    down = {a.label, b.label}
    ranked = replicas.order(prompt, "user-1", available=lambda r: r.label not in down)
    assert ranked[0] is c


def test_index_is_bounded_and_forgets_least_recently_sent_prefixes() -> None:
    a, b = pair()
    replicas = ReplicaSet([a, b], block_chars=64, index_capacity_blocks=100)
    old, *others = system_prompts(10)
    replicas.started(a, old)
    for prompt in others:
        replicas.started(a, prompt)
        assert replicas.snapshot()[0]["indexed_blocks"] <= 100
    assert replicas.snapshot()[0]["indexed_blocks"] == 100
    # The old prefix is gone from a's index: it is a new prefix, and b's index is smaller.
    assert replicas.order(old)[0] is b
    # The most recent one is still there, despite b being the emptier replica.
    assert replicas.order(others[-1])[0] is a


def test_eviction_takes_a_prefix_from_its_tail() -> None:
    a, b = pair()
    replicas = ReplicaSet([a, b], block_chars=10, index_capacity_blocks=10, cache_threshold=0.3)
    prompt, other = "p" * 100, "q" * 50  # 10 and 5 blocks
    replicas.started(a, prompt)
    replicas.started(a, other)
    # a kept the prompt's first 5 blocks (a 50 % match), not its last 5 (no match at all).
    assert replicas.snapshot()[0]["indexed_blocks"] == 10
    assert replicas.order(prompt)[0] is a


@pytest.mark.parametrize("policy", REPLICA_POLICIES)
@pytest.mark.parametrize("prompt", ["", "hi", "x" * 63])
def test_prompts_shorter_than_a_block_are_served(policy: str, prompt: str) -> None:
    a, b = pair()
    replicas = ReplicaSet([a, b], policy)  # type: ignore[arg-type]
    ranked = replicas.order(prompt, "u")
    assert sorted(r.label for r in ranked) == ["a", "b"]
    replicas.started(ranked[0], prompt)
    assert replicas.in_flight(ranked[0]) == 1
    assert [r["indexed_blocks"] for r in replicas.snapshot()] == [0, 0]
    replicas.finished(ranked[0])
    assert replicas.in_flight(ranked[0]) == 0


def test_finished_never_goes_below_zero() -> None:
    a, b = pair()
    replicas = ReplicaSet([a, b], "least_loaded")
    replicas.finished(a)
    replicas.started(b, "x")
    assert replicas.in_flight(a) == 0
    assert replicas.order("x")[0] is a


def test_replicas_added_later_take_part() -> None:
    a, b = pair()
    replicas: ReplicaSet[Engine] = ReplicaSet([])
    assert replicas.order("x") == []
    replicas.add(a)
    replicas.add(a)  # discovery retrying is harmless
    systems = system_prompts(2)
    replicas.started(a, systems[0])
    replicas.add(b)
    assert replicas.replicas == [a, b]
    assert replicas.order(systems[1])[0] is b
    with pytest.raises(ValueError, match="labelled 'b'"):
        replicas.add(Engine("b"))


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown replica policy"):
        ReplicaSet([], "random")  # type: ignore[arg-type]


def test_snapshot_reports_load_figures() -> None:
    a, b = pair()
    replicas = ReplicaSet([a, b])
    replicas.started(a, "y" * 200)
    replicas.set_engine_load(a, running=3, waiting=2)
    assert replicas.snapshot() == [
        {
            "label": "a",
            "in_flight": 1,
            "load": 3,
            "engine_running": 3,
            "engine_waiting": 2,
            "indexed_blocks": 3,
        },
        {
            "label": "b",
            "in_flight": 0,
            "load": 0,
            "engine_running": None,
            "engine_waiting": None,
            "indexed_blocks": 0,
        },
    ]


def test_prefix_hashes_chain_over_full_blocks() -> None:
    base = "a" * 130
    one, two = prefix_hashes(base + "b" * 70, 64), prefix_hashes(base + "c" * 70, 64)
    assert len(one) == len(two) == 200 // 64
    assert one[:2] == two[:2] and one[2] != two[2]
    # Chained: equal blocks at different depths hash differently.
    assert len(set(prefix_hashes("z" * 640, 64))) == 10
    assert prefix_hashes("\ud800" * 64, 64)  # a lone surrogate from JSON does not raise


def test_prefix_hashes_agree_across_processes() -> None:
    """Another process (another router, or this one restarted) indexes the same text the
    same way, whatever its hash seed."""
    code = (
        "from switchyard.router.replicas import prefix_hashes;"
        "print([h.hex() for h in prefix_hashes('héllo wörld ' * 40, 64)])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == str([h.hex() for h in prefix_hashes("héllo wörld " * 40, 64)])
