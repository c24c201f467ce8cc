"""Engine settings, importable without vLLM (the CLI parses them before vLLM loads)."""

from __future__ import annotations

from dataclasses import dataclass, field

from switchyard.engine.speculative import SpeculativeChoice

ATTENTION_BACKENDS = ("vllm", "switchyard")


@dataclass(frozen=True)
class RuntimeConfig:
    model: str = "embedded"
    served_name: str | None = None
    # None: the embedded model's serving dtype, or the checkpoint's own ("auto").
    dtype: str | None = None
    max_model_len: int = 4096
    # KV cache memory on CPU, in GiB (vLLM's VLLM_CPU_KVCACHE_SPACE); ignored on GPU.
    kv_cache_gib: float = 2.0
    # CPU cores kept from the model's threads; None: all cores on small machines, else
    # vLLM's choice (engine/cpu_cores.py).
    cpu_reserved_cores: int | None = None
    # CPU cores the model's threads are bound to; None: as cpu_reserved_cores says.
    cpu_cores: tuple[int, ...] | None = None
    gpu_memory_utilization: float = 0.85
    default_max_tokens: int = 512
    enforce_eager: bool = False
    enable_prefix_caching: bool = True
    seed: int = 0
    # "vllm" (vLLM's own choice for the platform) or "switchyard" (our kernels).
    attention_backend: str = "vllm"
    # Speculative decoding method and K (engine/speculative.py); off by default.
    speculative: SpeculativeChoice = field(default_factory=SpeculativeChoice)
