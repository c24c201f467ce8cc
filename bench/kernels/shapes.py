"""What the attention benchmark measures: real models' attention shapes, batches, accounting.

Torch-free on purpose: the ``switchyard`` CLI imports this to build its parser, and
importing torch would slow every command down.
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("decode", "prefill", "mixed")
# The backends of backends.py, named here so the CLI can check names without torch.
BACKEND_NAMES = ("ours", "sdpa", "vllm-triton", "flashinfer")


@dataclass(frozen=True)
class AttentionShape:
    """One attention layer as a kernel sees it (no softcap: none of these models uses one)."""

    num_q_heads: int
    num_kv_heads: int
    head_dim: int
    sliding_window: int | None = None
    scale: float | None = None  # None: head_dim ** -0.5

    @property
    def group(self) -> int:
        """Query heads per KV head (GQA group size)."""
        return self.num_q_heads // self.num_kv_heads

    @property
    def softmax_scale(self) -> float:
        return self.head_dim**-0.5 if self.scale is None else self.scale


# Sources: the embedded models' configs (docs/features/embedded-models.md),
# design/REFERENCE.md's Gemma table, and the published Llama 3 8B config. Gemma models
# alternate 5 sliding : 1 global layers; the named layer kind is the one benchmarked.
MODELS: dict[str, AttentionShape] = {
    "smollm2-135m": AttentionShape(num_q_heads=9, num_kv_heads=3, head_dim=64),
    # A sliding layer (5 of 6); query_pre_attn_scalar = 256.
    "gemma3-270m": AttentionShape(4, 1, 256, sliding_window=512, scale=256**-0.5),
    # A global layer (its local layers use a 1024 window); query_pre_attn_scalar = 168.
    "gemma3-27b": AttentionShape(32, 16, 128, scale=168**-0.5),
    # Gemma 4 normalises Q and K (QK-norm) and so uses softmax scale 1.0. Head counts are
    # REFERENCE.md's (32 q; 16 kv on sliding, 4 kv on global layers), not checked against
    # a released config.
    "gemma4-31b-sliding": AttentionShape(32, 16, 256, sliding_window=1024, scale=1.0),
    "gemma4-31b-global": AttentionShape(32, 4, 512, scale=1.0),
    "llama3-8b": AttentionShape(32, 8, 128),
}


@dataclass(frozen=True)
class Case:
    """One point of the grid: a model's layer, a batch kind, a batch size and a KV length.

    Every sequence holds ``kv_len`` positions (the new tokens included). ``decode``: one
    new token each. ``prefill``: the last ``min(chunk, kv_len)`` positions are new (a
    chunked-prefill step over a cached context). ``mixed``: vLLM's chunked-prefill step,
    one prefill chunk (sequence 0) batched with ``batch - 1`` decodes.
    """

    model: str
    mode: str
    batch: int
    kv_len: int
    chunk: int

    @property
    def shape(self) -> AttentionShape:
        return MODELS[self.model]

    def lens(self) -> list[tuple[int, int]]:
        """(q_len, seq_len) per sequence."""
        chunk = min(self.chunk, self.kv_len)
        if self.mode == "decode":
            q_lens = [1] * self.batch
        elif self.mode == "prefill":
            q_lens = [chunk] * self.batch
        else:
            q_lens = [chunk] + [1] * (self.batch - 1)
        return [(q_len, self.kv_len) for q_len in q_lens]


def visible_start(q_len: int, seq_len: int, window: int | None) -> int:
    """The first KV position any query of a sequence can see (its first query's window)."""
    return 0 if window is None else max(0, seq_len - q_len - window + 1)


def attention_flops(shape: AttentionShape, lens: list[tuple[int, int]]) -> int:
    """FLOPs of QK^T and PV over exactly the (causal, windowed) positions each query sees.

    A query at position p sees min(p + 1, window) keys; each costs 2 * head_dim FLOPs
    for its logit and 2 * head_dim for its share of the output, per query head.
    """
    window = shape.sliding_window
    seen = 0
    for q_len, seq_len in lens:
        for position in range(seq_len - q_len, seq_len):
            seen += position + 1 if window is None else min(position + 1, window)
    return 4 * shape.head_dim * shape.num_q_heads * seen


def attention_bytes(shape: AttentionShape, lens: list[tuple[int, int]], element_size: int) -> int:
    """Bytes a kernel must move at least: Q read, the visible K and V read once, O written.

    K/V positions are counted, not whole pages: the measure is useful bytes, so a kernel
    that reads the same K/V twice (or a page's unused tail) gets no credit for it.
    """
    tokens = sum(q_len for q_len, _ in lens)
    kv_positions = sum(
        seq_len - visible_start(q_len, seq_len, shape.sliding_window) for q_len, seq_len in lens
    )
    q_and_o = 2 * tokens * shape.num_q_heads * shape.head_dim
    k_and_v = 2 * kv_positions * shape.num_kv_heads * shape.head_dim
    return (q_and_o + k_and_v) * element_size
