"""Choosing among several engine replicas of one first-party model.

A prompt whose prefix is already in a replica's KV cache (vLLM automatic prefix caching)
skips that part of the prefill, so the router sends a request where its prefix most
likely is, unless that replica is already much busier than another: the approach of
SGLang's cache-aware router, with the prefix index of llm-d's prefix scorer (hashed
prompt blocks) instead of a radix tree.

The router does not tokenize, so the index works on prompt text: fixed-size character
blocks, chain-hashed so that one hash stands for the whole prefix up to its block. Each
replica's index is what the router has sent it, not what the engine holds: an
approximation, kept honest by a capacity in blocks and LRU eviction like the engine's.

Everything here runs on the router's event loop, so nothing is locked.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, get_args

R = TypeVar("R")

ReplicaPolicy = Literal["cache_aware", "round_robin", "least_loaded", "consistent_hash"]
REPLICA_POLICIES: tuple[str, ...] = get_args(ReplicaPolicy)

# 64 characters is about 16 tokens of English or code, vLLM's default KV block size, so a
# block here is about as coarse as the cache it stands for.
DEFAULT_BLOCK_CHARS = 64
# 200,000 blocks of 64 characters is ~12.8 M characters, ~3 M tokens: the KV cache of a
# small model on a large GPU. Set it to (engine KV tokens x ~4 chars per token) /
# block_chars so that the index forgets about when the engine does. Each indexed block
# costs ~100-150 bytes of router memory (OrderedDict entry and an 8-byte key).
DEFAULT_INDEX_CAPACITY_BLOCKS = 200_000
# SGLang's router defaults (cache_threshold 0.3, balance_abs_threshold 64,
# balance_rel_threshold 1.5). Load here counts requests, as SGLang's does. Both balance
# thresholds must be exceeded before load wins over the cache: the absolute one keeps a
# few requests' difference at low load (where continuous batching absorbs them almost for
# free, and a cache hit saves a whole prefill) from scattering a prefix; the relative one
# keeps a difference that is small next to both loads from doing so at high load.
DEFAULT_BALANCE_ABS_THRESHOLD = 64
DEFAULT_BALANCE_REL_THRESHOLD = 1.5
# A replica holding less than 30 % of the prompt saves too little prefill to outweigh
# spreading: a short shared preamble (a chat template's first lines, a common
# instruction) must not pull every new conversation onto the replica that saw it first.
DEFAULT_CACHE_THRESHOLD = 0.3


def _default_label(replica: object) -> str:
    label = getattr(replica, "label", None)
    return label if isinstance(label, str) else str(replica)


def prefix_hashes(text: str, block_chars: int = DEFAULT_BLOCK_CHARS) -> list[bytes]:
    """The chain hash of each full block of ``text``: the i-th covers blocks 0..i, so two
    prompts share the i-th hash exactly when they share their first i+1 blocks.

    A partial last block is left out, as vLLM caches only full blocks. BLAKE2b rather than
    ``hash()``, whose per-process salt would make indexes disagree across restarts and
    routers; one running hasher updated block by block, so each hash costs one block's
    worth of hashing rather than the whole prefix.
    """
    hasher = hashlib.blake2b(digest_size=8)
    hashes = []
    for start in range(0, len(text) - block_chars + 1, block_chars):
        # surrogatepass: JSON may carry a lone surrogate, which strict UTF-8 refuses.
        hasher.update(text[start : start + block_chars].encode("utf-8", "surrogatepass"))
        hashes.append(hasher.digest())
    return hashes


def _rendezvous_weight(label: str, user: str) -> int:
    digest = hashlib.blake2b(f"{label}\0{user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(eq=False)
class _Replica:
    label: str
    index: OrderedDict[bytes, None] = field(default_factory=OrderedDict)
    in_flight: int = 0
    engine_running: int | None = None
    engine_waiting: int | None = None

    @property
    def load(self) -> int:
        # In-flight already counts this router's requests that the engine reports as
        # running, so adding ``running`` would count them twice. ``waiting`` is added
        # because it is what in-flight cannot see: the engine has no room (batch or KV
        # cache full), whoever sent the requests. Counting this router's own queued
        # requests twice is deliberate: a queued request costs TTFT, a running one not.
        return self.in_flight + (self.engine_waiting or 0)

    def matched(self, hashes: list[bytes]) -> int:
        """Leading blocks present. Stops at the first miss, since a later block cannot be
        in the engine's cache without the ones before it."""
        count = 0
        for digest in hashes:
            if digest not in self.index:
                break
            count += 1
        return count

    def insert(self, hashes: list[bytes], capacity: int) -> None:
        # Deepest block first, so a prompt's first blocks are the most recently used and
        # eviction takes prefixes from their tail, as vLLM frees a request's blocks: the
        # index stays (almost) prefix-closed, and matched() stays meaningful.
        index = self.index
        for digest in reversed(hashes):
            if digest in index:
                index.move_to_end(digest)
            else:
                index[digest] = None
        while len(index) > capacity:
            index.popitem(last=False)


class ReplicaSet(Generic[R]):
    """Replicas of one model and the policy that orders them for a request.

    ``order()`` ranks every replica for a request, so the caller can fail over down the
    list; ``started()`` and ``finished()`` tell the set what was actually sent, which is
    what its load counts and prefix indexes are built from.
    """

    def __init__(
        self,
        replicas: Sequence[R],
        policy: ReplicaPolicy = "cache_aware",
        *,
        label: Callable[[R], str] = _default_label,
        block_chars: int = DEFAULT_BLOCK_CHARS,
        index_capacity_blocks: int = DEFAULT_INDEX_CAPACITY_BLOCKS,
        balance_abs_threshold: int = DEFAULT_BALANCE_ABS_THRESHOLD,
        balance_rel_threshold: float = DEFAULT_BALANCE_REL_THRESHOLD,
        cache_threshold: float = DEFAULT_CACHE_THRESHOLD,
    ) -> None:
        if policy not in REPLICA_POLICIES:
            raise ValueError(f"unknown replica policy {policy!r}; one of {REPLICA_POLICIES}")
        if block_chars < 1 or index_capacity_blocks < 1:
            raise ValueError("block_chars and index_capacity_blocks must be at least 1")
        if not 0.0 <= cache_threshold <= 1.0:
            raise ValueError("cache_threshold is a fraction of the prompt, 0 to 1")
        self.policy = policy
        self._label = label
        self._block_chars = block_chars
        self._capacity = index_capacity_blocks
        self._balance_abs = balance_abs_threshold
        self._balance_rel = balance_rel_threshold
        self._cache_threshold = cache_threshold
        self._replicas: list[R] = []
        self._states: list[_Replica] = []
        # By identity: replicas need not be hashable (a plain dataclass is not).
        self._by_id: dict[int, _Replica] = {}
        self._turn = 0
        # order() and started() of one request hash the same prompt; remember the last.
        self._memo: tuple[str, list[bytes]] = ("", [])
        for replica in replicas:
            self.add(replica)

    def add(self, replica: R) -> None:
        """Add a replica discovered after the set was made; adding the same one again is a
        no-op, so discovery may simply retry."""
        if id(replica) in self._by_id:
            return
        label = self._label(replica)
        if any(state.label == label for state in self._states):
            # Consistent hashing and the admin view tell replicas apart by label.
            raise ValueError(f"two replicas labelled {label!r}")
        state = _Replica(label)
        self._replicas.append(replica)
        self._states.append(state)
        self._by_id[id(replica)] = state

    @property
    def replicas(self) -> list[R]:
        return list(self._replicas)

    def order(
        self,
        prompt: str,
        user: str | None = None,
        *,
        available: Callable[[R], bool] = lambda r: True,
    ) -> list[R]:
        """Every replica, best first for this request (so the caller can fail over to the
        next one); replicas for which available() is False go last, in the same policy
        order."""
        up = [available(replica) for replica in self._replicas]
        if self.policy == "round_robin":
            ranked = self._round_robin(up)
        elif self.policy == "consistent_hash" and user is not None:
            ranked = sorted(
                range(len(self._states)),
                key=lambda i: _rendezvous_weight(self._states[i].label, user),
                reverse=True,
            )
        elif self.policy == "cache_aware":
            ranked = self._cache_aware(prompt, up)
        else:
            ranked = self._least_loaded()
        return [self._replicas[i] for i in ranked if up[i]] + [
            self._replicas[i] for i in ranked if not up[i]
        ]

    def started(self, replica: R, prompt: str) -> None:
        """The request was sent to ``replica``: it counts as in flight there, and (under
        cache_aware, the only policy that reads the index) that replica now holds its
        prefix."""
        state = self._by_id[id(replica)]
        state.in_flight += 1
        if self.policy == "cache_aware":
            state.insert(self._hashes(prompt), self._capacity)

    def finished(self, replica: R) -> None:
        """The request sent to ``replica`` ended, however it ended."""
        state = self._by_id[id(replica)]
        # Never below zero: a stray extra call must not make a replica look idle forever.
        state.in_flight = max(0, state.in_flight - 1)

    def set_engine_load(self, replica: R, running: int, waiting: int) -> None:
        """The engine's own figures (GetLoads); ``waiting`` adds to the replica's load,
        ``running`` is kept for the admin view only (see _Replica.load)."""
        state = self._by_id[id(replica)]
        state.engine_running = running
        state.engine_waiting = waiting

    def in_flight(self, replica: R) -> int:
        return self._by_id[id(replica)].in_flight

    def snapshot(self) -> list[dict[str, Any]]:
        return [
            {
                "label": state.label,
                "in_flight": state.in_flight,
                "load": state.load,
                "engine_running": state.engine_running,
                "engine_waiting": state.engine_waiting,
                "indexed_blocks": len(state.index),
            }
            for state in self._states
        ]

    def _hashes(self, prompt: str) -> list[bytes]:
        if self._memo[0] != prompt:
            self._memo = (prompt, prefix_hashes(prompt, self._block_chars))
        return self._memo[1]

    def _next_turn(self) -> int:
        turn = self._turn
        self._turn += 1
        return turn

    def _round_robin(self, up: list[bool]) -> list[int]:
        # Rotate over the available replicas only: rotating over all of them and then
        # moving the unavailable ones last would hand an unavailable replica's turns to
        # its successor, which would get twice the others' share.
        turn = self._next_turn()
        ranked = []
        for group in (
            [i for i, ok in enumerate(up) if ok],
            [i for i, ok in enumerate(up) if not ok],
        ):
            if group:
                start = turn % len(group)
                ranked += group[start:] + group[:start]
        return ranked

    def _least_loaded(self) -> list[int]:
        # Ties rotate rather than going to the first replica, which would otherwise get
        # every request whenever requests do not overlap.
        turn = self._next_turn()
        count = len(self._states)
        return sorted(range(count), key=lambda i: (self._states[i].load, (i - turn) % count))

    def _cache_aware(self, prompt: str, up: list[bool]) -> list[int]:
        states = self._states
        if not states:
            return []
        # Balance is judged among the replicas that can take the request: an unavailable
        # one sits idle and would make any set look imbalanced.
        candidates = [i for i, ok in enumerate(up) if ok] or list(range(len(states)))
        loads = [state.load for state in states]
        low = min(loads[i] for i in candidates)
        high = max(loads[i] for i in candidates)
        hashes = self._hashes(prompt)
        matched = [state.matched(hashes) for state in states]
        best = max(matched[i] for i in candidates)

        if high - low > self._balance_abs and high > low * self._balance_rel:
            # Imbalanced: load first, whatever the cache holds.
            def key(i: int) -> tuple[int, ...]:
                return (loads[i], -matched[i], i)
        elif best and best >= self._cache_threshold * len(hashes):
            # A replica holds enough of the prompt: the longest match, then less load.
            def key(i: int) -> tuple[int, ...]:
                return (-matched[i], loads[i], i)
        else:
            # A new prefix: the least loaded, then the smallest index, so that new
            # prefixes spread over the replicas instead of piling onto the first.
            def key(i: int) -> tuple[int, ...]:
                return (loads[i], len(states[i].index), i)

        return sorted(range(len(states)), key=key)
