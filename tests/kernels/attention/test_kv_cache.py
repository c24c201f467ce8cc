"""The Triton KV-cache write against its torch reference.

Every case scatters a batch's K and V over a random cache, padding tokens (slot -1)
among them, and compares the whole cache bit for bit with the reference's result: a row
written to the wrong slot, a padding token written anywhere, or a slot left unwritten
shows up as a difference. Under Triton's interpreter on CPU (see conftest.py).
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable

import pytest
import torch
from attention_caches import DEVICE, LAYOUTS, make_cache

from switchyard.kernels.attention import write_kv_cache, write_kv_cache_reference

NUM_KV_HEADS = 2
NUM_BLOCKS = 6


def make_write(
    *,
    head_dim: int,
    block_size: int,
    dtype: torch.dtype,
    layout: str,
    slot_dtype: torch.dtype = torch.int64,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Arguments of one write: 7 tokens, every third one padding, slots in random blocks."""
    gen = torch.Generator().manual_seed(seed)
    key_cache, value_cache = make_cache(
        (NUM_BLOCKS, NUM_KV_HEADS, block_size, head_dim), dtype, layout, gen
    )
    num_tokens = 7
    slots = torch.randperm(NUM_BLOCKS * block_size, generator=gen)[:num_tokens]
    slots[::3] = -1
    # K and V as vLLM splits them from a fused QKV projection: strided token rows.
    qkv = torch.randn((num_tokens, 3, NUM_KV_HEADS, head_dim), generator=gen)
    qkv = qkv.to(device=DEVICE, dtype=dtype)
    return dict(
        key=qkv[:, 1],
        value=qkv[:, 2],
        key_cache=key_cache,
        value_cache=value_cache,
        slot_mapping=slots.to(device=DEVICE, dtype=slot_dtype),
    )


def check_against_reference(args: dict[str, torch.Tensor]) -> None:
    expected = {name: t.clone() if "cache" in name else t for name, t in args.items()}
    write_kv_cache_reference(**expected)
    before = args["key_cache"].clone()
    write_kv_cache(**args)
    for name in ("key_cache", "value_cache"):
        assert torch.equal(args[name], expected[name]), f"{name} differs from the reference"
    assert not torch.equal(args["key_cache"], before), "nothing was written"


CASES = [
    dict(head_dim=head_dim, block_size=block_size, dtype=dtype, layout=layout, slot_dtype=slots)
    for (head_dim, block_size), dtype, layout, slots in zip(
        itertools.product((64, 128, 256, 512), (16, 32, 64)),
        itertools.cycle((torch.bfloat16, torch.float16)),
        itertools.cycle(LAYOUTS),
        itertools.cycle((torch.int64, torch.int64, torch.int32, torch.int32)),
        strict=False,
    )
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(map(str, case.values())))
def test_matches_reference(case: dict) -> None:
    check_against_reference(make_write(**case, seed=zlib.crc32(repr(case).encode())))


def test_only_padding_writes_nothing() -> None:
    args = make_write(head_dim=64, block_size=16, dtype=torch.float16, layout="kv_halves")
    args["slot_mapping"].fill_(-1)
    before = {name: args[name].clone() for name in ("key_cache", "value_cache")}
    write_kv_cache(**args)
    for name, cache in before.items():
        assert torch.equal(args[name], cache), f"{name} changed"


def test_no_tokens() -> None:
    args = make_write(head_dim=64, block_size=16, dtype=torch.float16, layout="contiguous")
    before = args["key_cache"].clone()
    for name in ("key", "value", "slot_mapping"):
        args[name] = args[name][:0]
    write_kv_cache(**args)
    assert torch.equal(args["key_cache"], before)


Edit = Callable[[dict], None]


def _edit(names: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Edit:
    return lambda kwargs: kwargs.update({name: fn(kwargs[name]) for name in names.split()})


# (id, argument the error must name, edit turning valid arguments into invalid ones)
BAD_ARGUMENTS: list[tuple[str, str, Edit]] = [
    ("key-rank", "key", _edit("key", lambda t: t[0])),
    ("value-rank", "value", _edit("value", lambda t: t[0])),
    ("key_cache-rank", "key_cache", _edit("key_cache", lambda t: t[0])),
    ("slot_mapping-rank", "slot_mapping", _edit("slot_mapping", lambda t: t[None])),
    ("key-float32", "key", _edit("key value key_cache value_cache", lambda t: t.float())),
    ("value-dtype", "value", _edit("value", lambda t: t.bfloat16())),
    ("key_cache-dtype", "key_cache", _edit("key_cache", lambda t: t.bfloat16())),
    ("slot_mapping-float", "slot_mapping", _edit("slot_mapping", lambda t: t.float())),
    ("value-shape", "value", _edit("value", lambda t: t[:, :1])),
    ("value_cache-shape", "value_cache", _edit("value_cache", lambda t: t[:1])),
    ("cache-heads", "key_cache", _edit("key_cache value_cache", lambda t: t[:, :1])),
    ("head_dim-96", "key", _edit("key value key_cache value_cache", lambda t: t[..., :96])),
    ("slot_mapping-length", "slot_mapping", _edit("slot_mapping", lambda t: t[:-1])),
    ("slot_mapping-device", "slot_mapping", _edit("slot_mapping", lambda t: t.to("meta"))),
]


@pytest.mark.parametrize(
    ("argument", "edit"), [pytest.param(arg, edit, id=id_) for id_, arg, edit in BAD_ARGUMENTS]
)
def test_bad_arguments_name_the_argument(argument: str, edit: Edit) -> None:
    args = make_write(head_dim=128, block_size=16, dtype=torch.float16, layout="contiguous")
    edit(args)
    with pytest.raises(ValueError, match=rf"^{argument}\b"):
        write_kv_cache(**args)
