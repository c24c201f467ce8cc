"""The Triton paged attention kernel against its torch reference.

Every case builds a fresh batch: a shuffled block table (sequences scattered over the
cache), spare blocks and the unused tail of each sequence's last block filled with NaN (a
read past seq_len shows up as NaN), and an output poisoned with NaN (an unwritten element
shows up too). On CPU the kernels run under Triton's interpreter (see conftest.py), which
is slow, so the default run takes a pairwise covering set of the parameter matrix and the
full cartesian product is marked slow.
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields

import pytest
import torch
from attention_caches import DEVICE, LAYOUTS, make_cache

from switchyard.kernels.attention import paged_attention, paged_attention_reference
from switchyard.kernels.attention.paged_attention import (
    MAX_KV_SPLITS,
    SUPPORTED_BLOCK_SIZES,
    SUPPORTED_HEAD_DIMS,
    TARGET_PROGRAMS,
    choose_num_kv_splits,
    choose_tile,
)

TOLERANCE = {torch.bfloat16: 1e-2, torch.float16: 5e-3}
NUM_KV_HEADS = 2
SOFTCAP = 1.5  # small enough to bend logits of scale ~1, so a missing cap is visible

# The parameter matrix. A "window" is 2 blocks + 5 positions, so its edges fall inside a
# block; the batches probe KV lengths around block and window edges either way.
AXES: dict[str, tuple] = {
    "batch": ("decode", "mixed", "prefill"),
    "group": (1, 2, 4, 8),
    "head_dim": (64, 128, 256, 512),
    "block_size": (16, 32, 64),
    "softcap": (False, True),
    "window": (False, True),
    "dtype": (torch.bfloat16, torch.float16),
    "splits": (None, 3),  # None: the launcher's heuristic (1 for these sizes); 3: forced
    "layout": LAYOUTS,
}


@dataclass(frozen=True)
class Case:
    batch: str
    group: int
    head_dim: int
    block_size: int
    softcap: bool
    window: bool
    dtype: torch.dtype
    splits: int | None
    layout: str

    def __str__(self) -> str:
        return "-".join(
            f"{field.name}={str(value).removeprefix('torch.')}"
            for field, value in zip(fields(self), astuple(self), strict=True)
        )

    @property
    def window_size(self) -> int:
        return 2 * self.block_size + 5

    def lens(self) -> list[tuple[int, int]]:
        """(q_len, seq_len) per sequence."""
        bs, w = self.block_size, self.window_size
        long = 2 * w + bs + 3
        if self.batch == "decode":
            return [(1, n) for n in (1, bs - 1, bs, bs + 1, w - 1, w, w + 1, long)]
        if self.batch == "mixed":  # decode, speculative verification, chunked and new prefill
            return [
                (1, 1),
                (1, w + 1),
                (2, bs),
                (3, bs + 1),
                (5, w),
                (8, w + 1),
                (8, long),
                (2 * bs + 3, long),
                (bs - 1, bs - 1),
            ]
        return [(long, long)]


def pairwise(axes: dict[str, tuple]) -> list[Case]:
    """A few cases in which every pair of values of any two axes occurs (seeded greedy).

    Each step fixes one still-uncovered pair, fills the other axes with whichever of a
    few random draws covers the most uncovered pairs, and repeats until none is left.
    """
    names = list(axes)

    def pairs(case: dict) -> set[tuple]:
        return {(a, case[a], b, case[b]) for a, b in itertools.combinations(names, 2)}

    uncovered = {
        (a, value_a, b, value_b)
        for a, b in itertools.combinations(names, 2)
        for value_a in axes[a]
        for value_b in axes[b]
    }
    rng = random.Random(0)
    cases = []
    while uncovered:
        a, value_a, b, value_b = min(uncovered, key=repr)
        draws = [{name: rng.choice(axes[name]) for name in names} for _ in range(50)]
        for draw in draws:
            draw.update({a: value_a, b: value_b})
        best = max(draws, key=lambda draw: len(pairs(draw) & uncovered))
        uncovered -= pairs(best)
        cases.append(Case(**best))
    return cases


DEFAULT_CASES = pairwise(AXES)
SLOW_CASES = [
    case
    for case in (Case(*values) for values in itertools.product(*AXES.values()))
    if case not in set(DEFAULT_CASES)
]


@dataclass
class Batch:
    query: torch.Tensor
    key_cache: torch.Tensor
    value_cache: torch.Tensor
    block_table: torch.Tensor
    seq_lens: torch.Tensor
    query_start_loc: torch.Tensor

    def args(self) -> tuple[torch.Tensor, ...]:
        """The positional arguments, as they are (``astuple`` would deep-copy them)."""
        return tuple(getattr(self, field.name) for field in fields(self))


def make_batch(
    lens: list[tuple[int, int]],
    *,
    num_kv_heads: int,
    group: int,
    head_dim: int,
    block_size: int,
    dtype: torch.dtype,
    layout: str = "contiguous",
    seed: int = 0,
) -> Batch:
    """A batch over a shuffled, NaN-poisoned paged cache (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    blocks_per_seq = [-(-seq_len // block_size) for _, seq_len in lens]
    num_spare = 2
    num_blocks = sum(blocks_per_seq) + num_spare
    order = torch.randperm(num_blocks, generator=gen).tolist()
    spare, order = order[:num_spare], order[num_spare:]
    key_cache, value_cache = make_cache(
        (num_blocks, num_kv_heads, block_size, head_dim), dtype, layout, gen
    )
    # Unused block table entries point at a NaN block: following one poisons the output.
    block_table = torch.full((len(lens), max(blocks_per_seq) + 1), spare[0], dtype=torch.int32)
    for cache in (key_cache, value_cache):
        cache[spare] = float("nan")
    for i, ((_, seq_len), count) in enumerate(zip(lens, blocks_per_seq, strict=True)):
        block_table[i, :count] = torch.tensor(order[:count])
        last, used = order[count - 1], seq_len - (count - 1) * block_size
        for cache in (key_cache, value_cache):
            cache[last, :, used:] = float("nan")
        order = order[count:]
    q_lens = torch.tensor([q_len for q_len, _ in lens])
    query = torch.randn((int(q_lens.sum()), num_kv_heads * group, head_dim), generator=gen)
    return Batch(
        query=query.to(device=DEVICE, dtype=dtype),
        key_cache=key_cache,
        value_cache=value_cache,
        block_table=block_table.to(DEVICE),
        seq_lens=torch.tensor([n for _, n in lens], dtype=torch.int32, device=DEVICE),
        query_start_loc=torch.cat([q_lens.new_zeros(1), q_lens.cumsum(0)]).to(
            device=DEVICE, dtype=torch.int32
        ),
    )


def check_against_reference(batch: Batch, *, num_kv_splits: int | None = None, **options) -> None:
    """Poisoned ``out`` fully written, no NaN, relative error within the dtype's bound."""
    out = torch.full_like(batch.query, float("nan"))
    result = paged_attention(*batch.args(), out=out, num_kv_splits=num_kv_splits, **options)
    assert result is out
    assert not out.isnan().any(), "unwritten or NaN output elements"
    ref = paged_attention_reference(*batch.args(), **options)
    error = ((out.float() - ref).norm() / ref.norm()).item()
    assert error <= TOLERANCE[batch.query.dtype], f"relative error {error:.2e}"


def run_case(case: Case) -> None:
    batch = make_batch(
        case.lens(),
        num_kv_heads=NUM_KV_HEADS,
        group=case.group,
        head_dim=case.head_dim,
        block_size=case.block_size,
        dtype=case.dtype,
        layout=case.layout,
        seed=zlib.crc32(str(case).encode()),
    )
    check_against_reference(
        batch,
        scale=case.head_dim**-0.5,
        sliding_window=case.window_size if case.window else None,
        softcap=SOFTCAP if case.softcap else None,
        num_kv_splits=case.splits,
    )


@pytest.mark.parametrize("case", DEFAULT_CASES, ids=str)
def test_matches_reference(case: Case) -> None:
    run_case(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES, ids=str)
def test_matches_reference_full_matrix(case: Case) -> None:
    run_case(case)


def test_default_cases_cover_every_value() -> None:
    for index, (name, values) in enumerate(AXES.items()):
        assert {astuple(case)[index] for case in DEFAULT_CASES} == set(values), name


def test_heuristic_splits_small_long_decode_batches() -> None:
    assert choose_num_kv_splits(4, 8192, 1) == MAX_KV_SPLITS
    assert choose_num_kv_splits(4, 600, 1) == 2  # no split shorter than MIN_KV_PER_SPLIT
    assert choose_num_kv_splits(4, 8192, 512) == 1  # prefill: tiles are plentiful
    assert choose_num_kv_splits(TARGET_PROGRAMS, 8192, 1) == 1
    assert choose_num_kv_splits(4, 100, 1) == 1


@pytest.mark.parametrize("head_dim", SUPPORTED_HEAD_DIMS)
@pytest.mark.parametrize("block_size", SUPPORTED_BLOCK_SIZES)
def test_tiles_hold_whole_groups_within_the_register_budget(head_dim: int, block_size: int) -> None:
    """Rows are a power of two >= 16 holding whole GQA groups, at most 64 (32 at
    head_dim 512, where 64 rows spill); tiles past 16 rows, and 16-row tiles over 64-wide
    blocks at head_dim >= 256, get 8 warps. attention_compile_check.py counts the
    registers themselves."""
    for group, max_query_len in itertools.product((1, 2, 3, 4, 8, 16), (1, 2, 4, 8, 512)):
        rows, warps = choose_tile(head_dim, block_size, max_query_len, group)
        assert rows >= 16 and rows & (rows - 1) == 0 and rows >= group
        assert rows <= (32 if head_dim == 512 else 64)
        assert rows >= min(max_query_len * group, 32 if head_dim == 512 else 64)
        wide = block_size == 64 and head_dim >= 256
        assert warps == (4 if rows == 16 and not wide else 8)


def test_heuristic_split_matches_reference() -> None:
    """Without an override, one long decode sequence is split (and merged) correctly."""
    lens = [(1, 600), (1, 9)]
    assert choose_num_kv_splits(2 * NUM_KV_HEADS, 600, 1) > 1
    batch = make_batch(
        lens, num_kv_heads=NUM_KV_HEADS, group=2, head_dim=64, block_size=16, dtype=torch.float16
    )
    check_against_reference(batch, scale=0.125)


def test_strided_query_and_out_and_allocated_out() -> None:
    """Query and out may be views into wider tensors; without out, one is allocated."""
    batch = make_batch(
        [(3, 20), (1, 40)], num_kv_heads=1, group=4, head_dim=64, block_size=16, dtype=torch.float16
    )
    ref = paged_attention_reference(*batch.args(), scale=0.125)
    packed = torch.cat([batch.query, torch.zeros_like(batch.query)], dim=-1)
    batch.query = packed[..., :64]  # e.g. the q slice of a fused qkv projection
    wide = torch.full((4, 4, 128), float("nan"), dtype=torch.float16, device=DEVICE)
    out = wide[..., 64:]
    paged_attention(*batch.args(), scale=0.125, out=out)
    allocated = paged_attention(*batch.args(), scale=0.125)
    assert allocated.dtype == torch.float16
    assert wide[..., :64].isnan().all(), "wrote outside out"
    for result in (out, allocated):
        assert ((result.float() - ref).norm() / ref.norm()).item() <= 5e-3


def test_empty_batch() -> None:
    batch = make_batch(
        [(1, 5)], num_kv_heads=1, group=1, head_dim=64, block_size=16, dtype=torch.float16
    )
    empty = torch.zeros(0, dtype=torch.int32, device=DEVICE)
    out = paged_attention(
        batch.query[:0],
        batch.key_cache,
        batch.value_cache,
        batch.block_table[:0],
        empty,
        torch.zeros(1, dtype=torch.int32, device=DEVICE),
        scale=0.125,
    )
    assert out.shape == (0, 1, 64)


def test_host_maxima_skip_reading_the_indices_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the batch's maxima, the launcher reads no tensor back (on a GPU that read is
    a sync on every layer) and computes the same attention."""
    lens = [(5, 40), (1, 70), (3, 3)]
    batch = make_batch(
        lens, num_kv_heads=2, group=4, head_dim=64, block_size=16, dtype=torch.float16, seed=7
    )
    reference = paged_attention_reference(*batch.args(), scale=0.125, sliding_window=32)
    out = torch.full_like(batch.query, float("nan"))

    def no_readback(self: torch.Tensor) -> list:
        raise AssertionError("the launcher read a tensor back to the host")

    monkeypatch.setattr(torch.Tensor, "tolist", no_readback)
    paged_attention(
        *batch.args(),
        scale=0.125,
        sliding_window=32,
        out=out,
        max_query_len=max(q for q, _ in lens),
        max_seq_len=max(n for _, n in lens),
    )
    monkeypatch.undo()
    error = ((out.float() - reference).norm() / reference.norm()).item()
    assert error <= TOLERANCE[torch.float16], f"relative error {error:.2e}"


Edit = Callable[[dict], None]


def _set(**changes) -> Edit:
    return lambda kwargs: kwargs.update(changes)


def _edit(names: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Edit:
    return lambda kwargs: kwargs.update({name: fn(kwargs[name]) for name in names.split()})


CACHES = "key_cache value_cache"
# (id, argument the error must name, edit turning valid arguments into invalid ones)
BAD_ARGUMENTS: list[tuple[str, str, Edit]] = [
    ("query-rank", "query", _edit("query", lambda t: t[0])),
    ("key_cache-rank", "key_cache", _edit("key_cache", lambda t: t[0])),
    ("value_cache-rank", "value_cache", _edit("value_cache", lambda t: t[0])),
    ("block_table-rank", "block_table", _edit("block_table", lambda t: t[0])),
    ("seq_lens-rank", "seq_lens", _edit("seq_lens", lambda t: t[None])),
    ("query_start_loc-rank", "query_start_loc", _edit("query_start_loc", lambda t: t[None])),
    ("head_dim-mismatch", "key_cache", _edit(CACHES, lambda t: t[..., :64])),
    ("heads-not-multiple", "query", _edit("query", lambda t: t[:, :3])),
    ("cache-shapes-differ", "value_cache", _edit("value_cache", lambda t: t[:, :1])),
    ("query-float32", "query", _edit("query", lambda t: t.float())),
    ("key_cache-dtype", "key_cache", _edit("key_cache", lambda t: t.bfloat16())),
    ("value_cache-dtype", "value_cache", _edit("value_cache", lambda t: t.bfloat16())),
    ("out-dtype", "out", _set(out=torch.empty(4, 4, 128, dtype=torch.bfloat16, device=DEVICE))),
    ("out-shape", "out", _set(out=torch.empty(4, 4, 64, dtype=torch.float16, device=DEVICE))),
    ("block_table-int64", "block_table", _edit("block_table", lambda t: t.long())),
    ("seq_lens-int64", "seq_lens", _edit("seq_lens", lambda t: t.long())),
    ("query_start_loc-int64", "query_start_loc", _edit("query_start_loc", lambda t: t.long())),
    ("query_start_loc-length", "query_start_loc", _edit("query_start_loc", lambda t: t[:-1])),
    ("token-total", "query_start_loc", _edit("query_start_loc", lambda t: t - t.clamp(max=1))),
    ("decreasing", "query_start_loc", _edit("query_start_loc", lambda t: t[[0, 2, 1]] + t[1])),
    ("q_len-over-seq_len", "seq_lens", _edit("seq_lens", lambda t: t.clamp(max=2))),
    ("block_table-device", "block_table", _edit("block_table", lambda t: t.to("meta"))),
    ("block_table-narrow", "block_table", _edit("block_table", lambda t: t[:, :1])),
    ("head_dim-96", "query", _edit(f"query {CACHES}", lambda t: t[..., :96])),
    ("block_size-8", "key_cache", _edit(CACHES, lambda t: t[:, :, :8])),
    ("sliding_window-0", "sliding_window", _set(sliding_window=0)),
    ("softcap-0", "softcap", _set(softcap=0.0)),
    ("softcap-negative", "softcap", _set(softcap=-1.0)),
    ("num_kv_splits-0", "num_kv_splits", _set(num_kv_splits=0)),
    ("maxima-half-given", "max_query_len", _set(max_query_len=3)),
    ("maxima-inverted", "max_query_len", _set(max_query_len=50, max_seq_len=40)),
    ("max_seq_len-beyond-table", "block_table", _set(max_query_len=3, max_seq_len=10_000)),
]


@pytest.mark.parametrize(
    ("argument", "edit"), [pytest.param(arg, edit, id=id_) for id_, arg, edit in BAD_ARGUMENTS]
)
def test_bad_arguments_name_the_argument(argument: str, edit: Edit) -> None:
    batch = make_batch(
        [(3, 20), (1, 40)],
        num_kv_heads=2,
        group=2,
        head_dim=128,
        block_size=16,
        dtype=torch.float16,
    )
    kwargs = dict(zip(("query", "key_cache", "value_cache"), batch.args()[:3], strict=True))
    kwargs |= dict(
        block_table=batch.block_table,
        seq_lens=batch.seq_lens,
        query_start_loc=batch.query_start_loc,
        scale=0.1,
    )
    edit(kwargs)
    with pytest.raises(ValueError, match=rf"^{argument}\b"):
        paged_attention(**kwargs)
