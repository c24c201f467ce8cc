"""What the NVFP4 GEMM benchmark measures: MLP projection shapes and their byte counts.

Torch-free on purpose, like shapes.py: the ``switchyard`` CLI imports this to build its
parser.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MlpShape:
    """A gated MLP's sizes: gate and up project hidden -> intermediate, down the reverse."""

    hidden: int
    intermediate: int

    def layers(self) -> dict[str, tuple[int, int]]:
        """(N, K) of each projection as a linear layer computes x [M, K] @ W.T [K, N]."""
        return {
            "gate_up": (2 * self.intermediate, self.hidden),  # gate and up, fused as vLLM does
            "down": (self.hidden, self.intermediate),
        }


# Sources. gemma4-31b: design/REFERENCE.md has no MLP sizes for Gemma 4 31B; these are the
# sizes the brief gives (hidden 5376, intermediate 21504; the same as Gemma 3
# 27B's published config), not checked against a released Gemma 4 config. The embedded
# models' sizes come from their converted configs (docs/features/embedded-models.md);
# they are small enough for the CPU interpreter, which is how the command is tested
# without a GPU.
MODELS: dict[str, MlpShape] = {
    "gemma4-31b": MlpShape(hidden=5376, intermediate=21504),
    "gemma3-270m": MlpShape(hidden=640, intermediate=2048),
    "smollm2-135m": MlpShape(hidden=576, intermediate=1536),
}
LAYERS = ("gate_up", "down")
BACKEND_NAMES = ("ours", "torch")
DEFAULT_MS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def gemm_flops(m: int, n: int, k: int) -> int:
    return 2 * m * n * k


def nvfp4_bytes(m: int, n: int, k: int, activation_size: int = 2) -> int:
    """Bytes our W4A16 GEMM must move at least: 4-bit codes, one E4M3 scale per 16
    weights, the global scale, x read and the output written (bias not counted)."""
    return n * k // 2 + n * k // 16 + 4 + (m * k + m * n) * activation_size


def dense_bytes(m: int, n: int, k: int, activation_size: int = 2) -> int:
    """Bytes of the bf16 GEMM it replaces: the bf16 weight, x read and the output written."""
    return (n * k + m * k + m * n) * activation_size
